// Hydra labeler grid: paint images with labels in the browser, send them on Apply.
//
// Painting never talks to the server (a click costs nothing); only Apply
// sends {event, token, labels: {imageId: labelId}} to Python. The server
// answers with a new page (a new token) or, when it refused, with ack = the
// event id and the same token, so the painting stays for another try.
// Speaks Streamlit's component protocol by hand (no npm build step).
(function () {
  "use strict";
  const state = {
    token: null, labels: [], images: [], painted: new Map(), current: null,
    last: null, pending: null, columns: null, readonly: false,
  };
  const $ = (id) => document.getElementById(id);

  function send(type, data) {
    window.parent.postMessage(Object.assign({ isStreamlitMessage: true, type: type }, data), "*");
  }
  let lastHeight = 0;
  function setHeight() {
    const h = document.documentElement.scrollHeight + 4;
    if (Math.abs(h - lastHeight) > 2) { lastHeight = h; send("streamlit:setFrameHeight", { height: h }); }
  }

  function labelById(id) { return state.labels.find((l) => l.id === id); }

  function drawPalette() {
    const pal = $("palette");
    pal.textContent = "";
    state.labels.forEach((l, i) => {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "swatch" + (l.id === state.current ? " current" : "");
      b.style.borderColor = l.color;
      b.dataset.labelId = l.id;
      b.title = "Paint with " + l.name + (i < 9 ? " (key " + (i + 1) + ")" : "");
      const chip = document.createElement("span");
      chip.className = "chip";
      chip.style.background = l.color;
      b.append(chip, document.createTextNode(l.name));
      if (i < 9) { const k = document.createElement("kbd"); k.textContent = String(i + 1); b.append(k); }
      b.addEventListener("click", () => choose(l.id));
      pal.append(b);
    });
  }

  function markCurrent() {
    Array.from($("palette").children).forEach((b) => {
      b.classList.toggle("current", Number(b.dataset.labelId) === state.current);
    });
  }

  function choose(labelId) {
    state.current = labelId;
    markCurrent();
  }

  function paintCell(cell) {
    const id = Number(cell.dataset.imageId);
    const l = labelById(state.painted.get(id));
    const badge = cell.querySelector(".badge");
    if (l) {
      cell.classList.add("painted");
      cell.style.borderColor = l.color;
      badge.textContent = l.name;
      badge.style.background = l.color;
      badge.hidden = false;
    } else {
      cell.classList.remove("painted");
      cell.style.borderColor = "";
      badge.hidden = true;
    }
  }

  function refreshCount() {
    const n = state.painted.size;
    const b = $("apply");
    b.textContent = state.pending ? "Applying…" : "Apply " + n + (n === 1 ? " label" : " labels");
    b.disabled = n === 0 || !!state.pending;
    b.dataset.count = String(n);
    document.body.dataset.painted = String(n);
  }

  function paint(index, shift) {
    if (state.current === null || state.pending) return;
    const cells = $("grid").children;
    if (shift && state.last !== null) {
      const [a, b] = state.last < index ? [state.last, index] : [index, state.last];
      for (let i = a; i <= b; i++) state.painted.set(state.images[i].id, state.current);
      for (let i = a; i <= b; i++) paintCell(cells[i]);
    } else {
      const id = state.images[index].id;
      if (state.painted.get(id) === state.current) state.painted.delete(id);
      else state.painted.set(id, state.current);
      paintCell(cells[index]);
    }
    state.last = index;
    refreshCount();
  }

  function fillUnpainted() {
    if (state.current === null || state.pending) return;
    state.images.forEach((img) => { if (!state.painted.has(img.id)) state.painted.set(img.id, state.current); });
    Array.from($("grid").children).forEach(paintCell);
    refreshCount();
  }

  function clearAll() {
    if (state.pending) return;
    state.painted.clear();
    state.last = null;
    Array.from($("grid").children).forEach(paintCell);
    refreshCount();
  }

  function apply() {
    if (!state.painted.size || state.pending) return;
    state.pending = Math.random().toString(36).slice(2) + Date.now().toString(36);
    const labels = {};
    state.painted.forEach((labelId, imageId) => { labels[String(imageId)] = labelId; });
    document.body.classList.add("busy");
    document.body.dataset.applying = state.pending;
    document.body.dataset.appliedAt = String(Date.now());
    refreshCount();
    send("streamlit:setComponentValue", {
      value: { event: state.pending, token: state.token, labels: labels }, dataType: "json",
    });
  }

  function buildGrid() {
    const grid = $("grid");
    grid.textContent = "";
    const frag = document.createDocumentFragment();
    const loads = [];
    state.images.forEach((img, i) => {
      const cell = document.createElement("div");
      cell.className = "cell";
      cell.tabIndex = 0;
      cell.dataset.imageId = img.id;
      cell.dataset.index = i;
      cell.title = img.title || img.caption;
      if (img.src) {
        const el = document.createElement("img");
        el.alt = img.caption;
        el.draggable = false;
        el.src = img.src;
        loads.push(el.decode().catch(() => null));
        cell.append(el);
      } else {
        const miss = document.createElement("div");
        miss.className = "missing";
        miss.textContent = "image file missing";
        cell.append(miss);
      }
      const cap = document.createElement("div");
      cap.className = "cap";
      cap.textContent = img.caption;
      const badge = document.createElement("span");
      badge.className = "badge";
      badge.hidden = true;
      cell.append(cap, badge);
      const was = labelById(img.label_id);
      if (was) {
        const w = document.createElement("span");
        w.className = "was";
        w.style.borderColor = was.color;
        w.textContent = was.name;
        cell.append(w);
      }
      cell.addEventListener("click", (ev) => { ev.preventDefault(); paint(i, ev.shiftKey); });
      frag.append(cell);
    });
    grid.append(frag);
    const token = state.token;
    Promise.all(loads).then(() => {
      if (state.token === token) {
        document.body.dataset.readyAt = String(Date.now());
        document.body.dataset.readyToken = token;
        setHeight();
      }
    });
  }

  function onKey(ev) {
    const t = ev.target;
    if (t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName || ""))) return;
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (/^[1-9]$/.test(ev.key)) {
      const l = state.labels[Number(ev.key) - 1];
      if (l) { choose(l.id); ev.preventDefault(); }
    } else if (ev.key === "a" || ev.key === "A") { fillUnpainted(); ev.preventDefault(); }
    else if (ev.key === "c" || ev.key === "C") { clearAll(); ev.preventDefault(); }
    else if (ev.key === "Enter") { apply(); ev.preventDefault(); }
  }

  function render(args) {
    const labelsChanged = JSON.stringify(args.labels) !== JSON.stringify(state.labels);
    state.labels = args.labels || [];
    if (labelsChanged || state.current === null || !labelById(state.current)) {
      state.current = state.labels.length ? state.labels[0].id : null;
    }
    state.readonly = !!args.readonly;
    $("hint").textContent = args.hint || $("hint").textContent;
    if (state.pending && args.ack === state.pending) {  // the server answered (stored or refused)
      state.pending = null;
      document.body.classList.remove("busy");
    }
    if (args.token !== state.token) {
      document.body.dataset.renderedAt = String(Date.now());
      state.token = args.token;
      state.images = args.images || [];
      state.painted = new Map();
      state.last = null;
      state.pending = null;
      document.body.classList.remove("busy");
      buildGrid();
    }
    if (args.columns !== state.columns) {
      state.columns = args.columns;
      $("grid").style.gridTemplateColumns = "repeat(" + state.columns + ", minmax(0, 1fr))";
    }
    if (labelsChanged) drawPalette();
    markCurrent();
    refreshCount();
    setHeight();
  }

  $("fill").addEventListener("click", fillUnpainted);
  $("clear").addEventListener("click", clearAll);
  $("apply").addEventListener("click", apply);
  document.addEventListener("keydown", onKey);
  try {  // shortcuts also work while the focus is on the page around the frame
    window.parent.document.addEventListener("keydown", onKey);
    window.addEventListener("unload", () => window.parent.document.removeEventListener("keydown", onKey));
  } catch (e) { /* another origin: shortcuts work inside the grid only */ }
  window.addEventListener("message", (ev) => {
    if (ev.data && ev.data.type === "streamlit:render") render(ev.data.args || {});
  });
  new ResizeObserver(setHeight).observe(document.body);
  send("streamlit:componentReady", { apiVersion: 1 });
})();
