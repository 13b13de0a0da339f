// Hydra labeler grid: paint images with labels in the browser, send them on Apply.
//
// Painting never talks to the server (a click costs nothing); only Apply
// sends {event, token, labels: {imageId: labelId}} to Python. The server
// answers with a new page (a new token) or, when it refused, with ack = the
// event id and the same token, so the painting stays for another try.
// The model's verdict of each image arrives as a suggestion: a dashed frame
// and an outlined tag, never sent unless accepted (key S or the button),
// which paints it on every image not painted by hand. Space previews the
// image under the mouse (or the focused one) large; Escape closes it. The
// grid holds thumbnails only: the preview shows the thumbnail at once and asks
// Python for that one image at full resolution ({preview: id, request, token}),
// which replaces it when the answer (args.preview) arrives.
// Speaks Streamlit's component protocol by hand (no npm build step).
(function () {
  "use strict";
  const state = {
    token: null, labels: [], images: [], painted: new Map(), current: null,
    last: null, pending: null, columns: null, tilePx: null, readonly: false, hover: null,
    full: new Map(),  // image id -> full-resolution data URI, for this page
    asking: null,  // the timer of the next full-image request
  };
  const FULL_KEPT = 12;  // full-size images kept for the page (each can be megabytes)
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
    const img = state.images[Number(cell.dataset.index)] || {};
    const s = l ? null : labelById(img.suggested_label_id);
    const badge = cell.querySelector(".badge");
    cell.classList.toggle("painted", !!l);
    cell.classList.toggle("suggested", !!s);
    if (l) {
      cell.style.borderColor = l.color;
      badge.textContent = l.name;
      badge.style.background = l.color;
      badge.style.color = "";
      badge.hidden = false;
    } else if (s) {
      cell.style.borderColor = s.color;
      badge.textContent = s.name + "?";
      badge.style.background = "#ffffffee";
      badge.style.color = s.color;
      badge.hidden = false;
    } else {
      cell.style.borderColor = "";
      badge.hidden = true;
    }
  }

  function suggestionCount() {
    return state.images.filter((img) => labelById(img.suggested_label_id) && !state.painted.has(img.id)).length;
  }

  function acceptSuggestions() {
    if (state.pending) return;
    state.images.forEach((img) => {
      if (labelById(img.suggested_label_id) && !state.painted.has(img.id)) state.painted.set(img.id, img.suggested_label_id);
    });
    Array.from($("grid").children).forEach(paintCell);
    refreshCount();
  }

  function showFull(box, id) {
    const src = state.full.get(id);
    if (!src) return false;
    box.querySelector("img").src = src;
    box.dataset.full = "1";
    return true;
  }

  function preview(index) {
    const box = $("preview");
    if (index === null || index === undefined || !state.images[index] || !state.images[index].src) {
      box.hidden = true;
      box.dataset.index = "";
      box.dataset.imageId = "";
      return;
    }
    const img = state.images[index];
    box.querySelector(".pcap").textContent = (img.title || img.caption) + (img.verdict ? " · " + img.verdict : "");
    box.dataset.index = String(index);
    box.dataset.imageId = String(img.id);
    box.hidden = false;
    if (showFull(box, img.id)) return;
    box.querySelector("img").src = img.src;  // the thumbnail until the full image arrives
    box.dataset.full = "0";
    clearTimeout(state.asking);
    // ask once the mouse rests on a tile (sweeping across the grid asks for nothing)
    state.asking = setTimeout(() => {
      if (state.pending || box.hidden || box.dataset.imageId !== String(img.id)) return;  // an Apply goes first
      send("streamlit:setComponentValue", {
        value: { preview: img.id, request: Math.random().toString(36).slice(2), token: state.token },
        dataType: "json",
      });
    }, 150);
  }

  function receiveFull(answer) {
    if (!answer || !answer.src || state.full.get(answer.id) === answer.src) return;
    state.full.delete(answer.id);
    state.full.set(answer.id, answer.src);
    while (state.full.size > FULL_KEPT) state.full.delete(state.full.keys().next().value);
    const box = $("preview");
    if (!box.hidden && box.dataset.imageId === String(answer.id)) showFull(box, answer.id);
  }

  function refreshCount() {
    const n = state.painted.size;
    const b = $("apply");
    b.textContent = state.pending ? "Applying…" : "Apply " + n + (n === 1 ? " label" : " labels");
    b.disabled = n === 0 || !!state.pending;
    b.dataset.count = String(n);
    document.body.dataset.painted = String(n);
    const k = suggestionCount();
    const acc = $("accept");
    acc.textContent = "Accept " + k + (k === 1 ? " suggestion" : " suggestions");
    acc.append(Object.assign(document.createElement("kbd"), { textContent: "S" }));
    acc.disabled = k === 0 || !!state.pending;
    document.body.dataset.suggested = String(k);
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
      if (img.verdict) {  // the model's verdict and weight, always visible
        const v = document.createElement("div");
        v.className = "verdict";
        v.textContent = img.verdict;
        cell.append(v);
      }
      const was = labelById(img.label_id);
      if (was) {
        const w = document.createElement("span");
        w.className = "was";
        w.style.borderColor = was.color;
        w.textContent = was.name;
        cell.append(w);
      }
      cell.addEventListener("click", (ev) => { ev.preventDefault(); paint(i, ev.shiftKey); });
      cell.addEventListener("mouseenter", () => { state.hover = i; if (!$("preview").hidden) preview(i); });
      cell.addEventListener("mouseleave", () => { if (state.hover === i) state.hover = null; });
      frag.append(cell);
      paintCell(cell);
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
    else if (ev.key === "s" || ev.key === "S") { acceptSuggestions(); ev.preventDefault(); }
    else if (ev.key === " ") {
      const focused = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.index : undefined;
      const index = state.hover !== null ? state.hover : (focused !== undefined ? Number(focused) : null);
      preview($("preview").hidden ? index : null);
      ev.preventDefault();
    } else if (ev.key === "Escape") { preview(null); }
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
      state.full = new Map();
      document.body.classList.remove("busy");
      preview(null);
      buildGrid();
    }
    receiveFull(args.preview);
    if (args.columns !== state.columns || args.tile_px !== state.tilePx) {
      state.columns = args.columns;
      state.tilePx = args.tile_px;
      $("grid").style.gridTemplateColumns = state.tilePx
        ? "repeat(auto-fill, minmax(" + state.tilePx + "px, 1fr))"
        : "repeat(" + state.columns + ", minmax(0, 1fr))";
    }
    if (labelsChanged) drawPalette();
    markCurrent();
    refreshCount();
    setHeight();
  }

  $("fill").addEventListener("click", fillUnpainted);
  $("clear").addEventListener("click", clearAll);
  $("accept").addEventListener("click", acceptSuggestions);
  $("preview").addEventListener("click", () => preview(null));
  $("apply").addEventListener("click", apply);
  document.addEventListener("keydown", onKey);
  try {  // shortcuts also work while the focus is on the page around the frame
    window.parent.document.addEventListener("keydown", onKey);
    window.addEventListener("unload", () => window.parent.document.removeEventListener("keydown", onKey));
  } catch (e) { /* another origin: shortcuts work inside the grid only */ }
  let rendered = false;
  window.addEventListener("message", (ev) => {
    if (ev.data && ev.data.type === "streamlit:render") { rendered = true; render(ev.data.args || {}); }
  });
  new ResizeObserver(setHeight).observe(document.body);
  // Say "ready" until the first render arrives: a ready message sent while the
  // page is still wiring up this frame is lost, and the frame would stay a
  // loading skeleton for good. A repeated ready only makes Streamlit render again.
  (function announce(tries) {
    if (rendered || tries <= 0) return;
    send("streamlit:componentReady", { apiVersion: 1 });
    setTimeout(() => announce(tries - 1), 1000);
  })(120);
})();
