"""Labeler: paint a page of unlabeled images with a plot type's labels, then Apply.

The grid (``components/labeler_grid``) paints in the browser; only Apply
reaches the server. Its event is read from ``st.session_state`` *before* the
grid is drawn, so one script run stores the labels (``hydra.services.labeling``, one
transaction, permission checked there) and draws the next page.

Each image carries the model's verdict and weight; in Label mode the verdict
is painted as a suggestion (dashed), which one key (S) accepts for the whole
page, so a page the model got right costs two actions (S, Enter). Editor mode
shows labeled images filtered by time window, label and run range, page by
page, relabels them the same way (keeping the history) and sets per-image
training weights.

The grid carries thumbnails only, so a page loads fast; Space's preview asks
for its one image, and the answer is the file at full resolution. That
request reruns the workspace on the page already shown (no new query, so a
page another labeler changed meanwhile does not drop the painting).
"""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import shell
import streamlit as st
from components.labeler_grid import full_uri, labeler_grid, page_token, preview_request, thumbnail_uri

from hydra.auth import can
from hydra.services import labeling, run

GRID_KEY = "labeler_grid"
NOTE = "labeler_note"
WINDOWS = {"24 hours": 1, "7 days": 7, "30 days": 30, "365 days": 365, "all time": None}
ORDER_NAMES = {"Oldest first": "oldest", "Most doubtful first": "doubtful", "Newest first": "newest"}

shell.page(viewing=False)
st.title("Labeler")
user = shell.require_login("Log in to label images.")
types = shell.plot_types_or_stop(
    "Create one on the Admin page or with `hydra plot-type add`, then ingest images with `hydra ingest DIR`."
)

c1, c2, c3, c4, c5 = st.columns([2, 1.2, 1.5, 1.4, 1])
by_name = {pt.name: pt for pt in types}
pt = by_name[c1.selectbox("Plot type", list(by_name), key="labeler_plot_type")]
mode = c2.radio("Mode", ["Label", "Editor"], horizontal=True, key="labeler_mode")
order = ORDER_NAMES[c3.selectbox("Order", list(ORDER_NAMES), key="labeler_order", disabled=mode == "Editor")]
tile_px = c4.slider("Tile size (px)", 100, 400, 170, 10, key="labeler_tile_px",
                    help="The grid fits as many tiles per row as the width allows")  # fmt: skip
per_page = c5.selectbox("Per page", [48, 72, 96], key="labeler_per_page")

with shell.session() as s:
    labels = run.labels_of(pt.id, session=s)
    allowed = can(user, "label", pt.id, session=s)
if not labels:
    shell.empty_state("This plot type has no labels.", "Add labels on the Admin page first.")
    st.stop()
if not allowed:
    st.warning(
        f"{user.name} ({user.role}) has no label permission on {pt.name}: you can look, but Apply will be "
        "refused. Ask an admin for the permission."
    )
palette = [{"id": lb.id, "name": lb.name, "color": shell.safe_color(lb.color)} for lb in labels]
label_names = {lb.id: lb.name for lb in labels}

# Editor filters (read before the Apply event is handled: they decide which page comes next).
filters: dict = {}
if mode == "Editor":
    f1, f2, f3, f4 = st.columns([2, 1.3, 1, 1])
    chosen = f1.multiselect("Labels", [lb.name for lb in labels], key="editor_labels")
    window = f2.selectbox("Time window", list(WINDOWS), index=1, key="editor_window")
    run_min = f3.number_input("Run from", min_value=0, value=None, step=1, key="editor_run_min")
    run_max = f4.number_input("Run to", min_value=0, value=None, step=1, key="editor_run_max")
    days = WINDOWS[window]
    filters = dict(
        label_ids=[lb.id for lb in labels if lb.name in chosen],
        start=shell.utcnow() - timedelta(days=days) if days else None,
        run_min=int(run_min) if run_min is not None else None,
        run_max=int(run_max) if run_max is not None else None,
    )
    signature = (pt.id, tuple(chosen), window, run_min, run_max, per_page)
    if st.session_state.get("editor_signature") != signature:  # other filters: back to the first page
        st.session_state["editor_signature"] = signature
        st.session_state["editor_page"] = 0


@st.cache_data(ttl=15, show_spinner=False)
def _board(plot_type_id: int) -> list[tuple[str, int]]:
    with shell.session() as s2:
        return labeling.leaderboard(plot_type_id, session=s2)


source = "editor" if mode == "Editor" else "labeler"


def store(assignments: dict[int, int]) -> None:
    """Apply labels through the service (permission and plot type checked there).

    The outcome waits in the session state for the workspace to show, so this
    also works as a widget callback.
    """

    def stored(result: labeling.ApplyResult) -> str:
        note = f"Stored {result.stored} label{'s' if result.stored != 1 else ''} on {pt.name}."
        if result.skipped:
            note += f" {len(result.skipped)} skipped (labeled by someone else meanwhile, or unchanged)."
        return note

    result = shell.run_service(
        labeling.apply_labels, user, pt.id, assignments, source=source, outcome=NOTE, done=stored
    )
    if result is not None:
        _board.clear()  # the leaderboard shows these labels at once


def submit_form() -> None:
    """Callback of the form: the picked images get the picked label."""
    target = st.session_state.get("labeler_form_label")
    label_id = next(i for i, n in label_names.items() if n == target)
    picked = st.session_state.get("labeler_form_images") or []
    store({int(name.rsplit("#", 1)[1].rstrip(")")): label_id for name in picked})


def handle_apply(notice) -> None:
    """An Apply from the grid: handle each event once (the component keeps its last value)."""
    event = st.session_state.get(GRID_KEY)
    done: list = st.session_state.setdefault("labeler_done", [])
    if not (isinstance(event, dict) and event.get("event")) or event["event"] in done:
        return
    done.append(event["event"])
    del done[:-50]
    st.session_state["labeler_ack"] = event["event"]
    if event.get("token") != st.session_state.get("labeler_token"):
        notice.error("The page changed before Apply arrived; nothing was stored. Paint again.")
    else:
        store({int(k): int(v) for k, v in (event.get("labels") or {}).items()})


def side_panel(waiting: int | None) -> None:
    """Waiting count and leaderboard in one row above the grid (the grid gets the full width)."""
    left, right = st.columns([1, 4])
    if waiting is not None:
        left.metric("Waiting for a label", f"{waiting:,}")
    board = _board(pt.id)
    with right.container(key="labeler_board"):
        if board:
            st.markdown(
                "**Leaderboard:** "
                + " · ".join(f"{i}. {name} ({n:,})" for i, (name, n) in enumerate(board, 1))
            )
        else:
            st.caption("Nobody has labeled this plot type yet.")


def _verdict(g: labeling.GridImage) -> str:
    if g.suggested_label is None:
        return ""
    mark = "" if g.suggested_confirmed else ", unconfirmed"
    return f"model: {g.suggested_label} {g.suggested_weight:.2f}{mark}"


def full_size(page: list[labeling.GridImage], request: dict | None) -> dict | None:
    """The answer to the grid's request for one image at full resolution (None without one)."""
    image = next((g for g in page if request and g.id == request["preview"]), None)
    if image is None:
        return None
    st.session_state["labeler_preview_answered"] = request["request"]
    return {"id": image.id, "request": request["request"], "src": full_uri(shell.resolve_path(image.path))}


def grid(page: list[labeling.GridImage], request: dict | None) -> None:
    token = page_token([g.id for g in page], f"{pt.id}|{mode}")
    st.session_state["labeler_token"] = token
    cells = [
        {
            "id": g.id,
            "src": thumbnail_uri(shell.resolve_path(g.path)),
            "caption": f"run {g.run}" + (f" · {g.chunk}" if g.chunk is not None else ""),
            "title": f"{g.filename} · {g.created_at:%Y-%m-%d %H:%M} · kept: {g.kept_reason}"
            + (f" · doubt {g.doubt:.2f}" if g.doubt else ""),
            "label_id": g.label_id,
            "suggested_label_id": g.suggested_label_id if mode == "Label" else None,
            "verdict": _verdict(g),
        }
        for g in page
    ]
    hint = (
        "Dashed: the model's suggestion; S accepts them all, painting overrides one. Keys 1-9 choose a "
        "label, A paints all unpainted, C clears, Space previews the image under the mouse, Enter applies; "
        "click paints, shift-click paints a range."
    )
    labeler_grid(
        cells,
        palette,
        token=token,
        tile_px=tile_px,
        ack=st.session_state.get("labeler_ack"),
        hint=hint if mode == "Label" else "Editor: the corner tag is the current label. " + hint,
        preview=full_size(page, request),
        key=GRID_KEY,
    )


def form(page: list[labeling.GridImage]) -> None:
    """The same labeling without the grid (no JavaScript needed, and scriptable)."""
    with st.expander("Label without the grid (keyboard-free form)"), st.form("labeler_form"):
        st.multiselect("Images", [f"{g.filename} (#{g.id})" for g in page], key="labeler_form_images")
        st.selectbox("Label", [lb.name for lb in labels], key="labeler_form_label")
        st.form_submit_button("Apply the label to the selected images", on_click=submit_form)


def pager(page: list[labeling.GridImage]) -> None:
    """Previous / next page of the Editor's filtered images."""
    number = st.session_state.get("editor_page", 0)

    def go(step: int) -> None:
        st.session_state["editor_page"] = max(0, number + step)

    with st.container(horizontal=True, gap="small", key="editor_pager", vertical_alignment="center"):
        st.button("Previous page", key="editor_prev", disabled=number == 0, on_click=go, args=(-1,),
                  icon=":material/chevron_left:")  # fmt: skip
        st.markdown(f"Page {number + 1} · images {number * per_page + 1}-{number * per_page + len(page)}")
        st.button("Next page", key="editor_next", disabled=len(page) < per_page, on_click=go, args=(1,),
                  icon=":material/chevron_right:")  # fmt: skip


def weight_panel(page: list[labeling.GridImage]) -> None:
    """Per-image training weight (0 leaves an image out of training, 2 counts it twice)."""

    def save() -> None:
        picked = st.session_state.get("editor_weight_images") or []
        ids = [int(name.rsplit("#", 1)[1].rstrip(")")) for name in picked]
        weight = float(st.session_state.get("editor_weight_value", 1.0))
        shell.run_service(
            labeling.set_train_weight, user, pt.id, ids, weight, outcome=NOTE,
            done=lambda n: f"Training weight {weight:g} on {n} image(s).",
        )  # fmt: skip

    with st.expander("Training weight of images"), st.form("editor_weight_form"):
        st.multiselect(
            "Images",
            [f"{g.filename} · weight {g.train_weight:g} (#{g.id})" for g in page],
            key="editor_weight_images",
        )
        st.number_input("Training weight", 0.0, 10.0, 1.0, 0.5, key="editor_weight_value",
                        help="0 leaves the image out of training; 2 counts it twice")  # fmt: skip
        st.form_submit_button("Set the training weight", on_click=save)


def history_panel(page: list[labeling.GridImage]) -> None:
    with st.expander("History of one image"):
        chosen_image = st.selectbox("Image", [f"{g.filename} (#{g.id})" for g in page], key="editor_history")
        image_id = int(chosen_image.rsplit("#", 1)[1].rstrip(")"))
        with shell.session() as s:
            steps = labeling.history(image_id, session=s)
        st.dataframe(
            pd.DataFrame(
                [(h.label, h.user or "-", h.source, f"{h.created_at:%Y-%m-%d %H:%M:%S}") for h in steps],
                columns=["Label", "By", "Source", "When (UTC)"],
            ),
            hide_index=True,
        )


def read_page() -> tuple[list[labeling.GridImage], int | None]:
    """The page to show, with the model's suggestions, and how many images wait (Label mode)."""
    with shell.session() as s:
        if mode == "Editor":
            offset = st.session_state.get("editor_page", 0) * per_page
            page = labeling.editor_page(pt.id, session=s, limit=per_page, offset=offset, **filters)
            waiting = None
        else:
            page = labeling.next_page(pt.id, session=s, order=order, limit=per_page)
            waiting = labeling.count_unlabeled(pt.id, session=s)
        return labeling.with_suggestions(page, pt.id, session=s), waiting


@st.fragment
def workspace() -> None:
    """Grid, counts and leaderboard: an Apply reruns only this, not the whole app."""
    # Messages go into this fixed slot so the grid keeps its place and its frame is not rebuilt.
    notice = st.container()
    handle_apply(notice)
    request = preview_request(st.session_state.get(GRID_KEY))
    if request and request["request"] == st.session_state.get("labeler_preview_answered"):
        request = None  # answered on an earlier run
    shown = st.session_state.get("labeler_page")
    if request and shown and request.get("token") == st.session_state.get("labeler_token"):
        page, waiting = shown  # only the preview asked: the page on screen, as it is
    else:
        page, waiting = read_page()
    st.session_state["labeler_page"] = (page, waiting)
    shell.show_outcome(NOTE, notice)
    side_panel(waiting)
    if mode == "Editor":
        pager(page)
    with st.container():
        if not page:
            if mode == "Editor":
                shell.empty_state("No labeled images match.", "Widen the time window or choose other labels.")
            else:
                shell.empty_state(
                    f"Nothing left to label on {pt.name}.",
                    "New images arrive as the Keeper keeps them (problems, unconfirmed, collect percentage) "
                    "or with `hydra ingest DIR`.",
                )
            return
        grid(page, request)
        form(page)
        if mode == "Editor":
            weight_panel(page)
            history_panel(page)


workspace()
