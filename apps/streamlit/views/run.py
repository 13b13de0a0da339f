"""Run: the counting-house view, the newest image of every plot type.

Controls live outside the refreshing fragment (changing one reruns the page);
the header, the group summary, the alarms and the grid are one
``st.fragment`` that reruns every ``app.refresh_s`` seconds, so the big screen
updates without a reload.

Tiles are ordered confirmed problems first, then unconfirmed, then by group
and name (``hydra.services.run.frame_order``): a tile moves only when its verdict
changes its rank. Frames take their label's colour (dashed while
unconfirmed, dotted grey without a model, faded when the plot type stopped
arriving). Problem and unconfirmed tiles carry their Grad-CAM heat map at a
visible opacity from the start; the opacity a logged-in user chooses is stored
for that user in the database (``run.set_heatmap_opacity``), so it survives new
sessions and app restarts. Images are embedded in the page (data URIs), so a refresh never
leaves the browser asking for media files that are gone.

Alarms are collapsed to one banner per condition (plot type and label) that
updates in place, at most ``ALARMS_SHOWN`` of them, with acknowledge per
condition, per plot type and all.
"""

from __future__ import annotations

import base64
from datetime import datetime

import shell
import streamlit as st

from hydra.services import run

cfg = shell.config()
DEFAULT_OPACITY = run.DEFAULT_OPACITY
ALARMS_SHOWN = 3
ALL = "All"
ACK_OUTCOME = "run_ack_refused"
OPACITY_OUTCOME = "run_opacity_refused"
shell.page()


with shell.session() as s:
    groups = run.plot_groups(session=s)
    all_types = run.plot_types(session=s, include_hidden=False)

st.title("Run")
if not all_types:
    shell.empty_state(
        "No plot types yet.",
        "Create them with `hydra plot-type add NAME --labels Good,Bad,NoData` or `hydra ingest DIR`, train a "
        "model with `hydra train`, and start the pipeline with `hydra serve`; the newest image of every plot "
        "type then appears here.",
    )
    st.stop()

user = shell.current_user()
user_id = user.id if user else None
if st.session_state.get("run_opacity_user", "nobody yet") != user_id:  # a new session, or a login
    with shell.session() as s:
        st.session_state["run_opacity"] = run.heatmap_opacity(user_id, session=s)
    st.session_state["run_opacity_user"] = user_id


def _remember_opacity() -> None:
    if user is not None:
        shell.run_service(run.set_heatmap_opacity, user.id, float(st.session_state["run_opacity"]),
                          outcome=OPACITY_OUTCOME)  # fmt: skip


group_names = {g.name: g.id for g in groups}
c1, c2, c3, c4, c5 = st.columns([1.2, 2, 1.2, 1.2, 1])
c1.selectbox("Plot group", [ALL, *group_names], key="run_group")
hidden = c2.multiselect("Hide plot types", [pt.name for pt in all_types], key="run_hidden")
c3.slider(
    "Grad-CAM opacity", 0.0, 1.0, step=0.05, key="run_opacity", on_change=_remember_opacity,
    help="Heat maps are drawn on problem and unconfirmed tiles; 0 hides them. Remembered for a logged-in user.",
)  # fmt: skip
size = c4.slider("Tile size (px)", 200, 640, 320, 20, key="run_size")
sound = c5.toggle("Alarm sound", key="run_sound")
shell.show_outcome(OPACITY_OUTCOME)


def _header(header: run.RunHeader, now: datetime) -> None:
    cols = st.columns(3)
    cols[0].metric("Current run", str(header.run) if header.run is not None else "none yet")
    when = header.last_update
    cols[1].metric(
        "Last update",
        f"{shell.age_text(now - when)} ago" if when else "never",
        help=when.strftime("%Y-%m-%d %H:%M:%S UTC") if when else None,
    )
    condition = shell.run_condition()
    if condition is not None:
        cols[2].metric("Run conditions", "alarms armed" if condition.ok else "alarms off")
        cols[2].caption(condition.text or "")


def _acknowledge(**which) -> None:
    # a callback, so the acknowledgement is stored before the page is drawn again
    shell.run_service(run.acknowledge_alarms, user_id=user.id if user else None, outcome=ACK_OUTCOME, **which)


def _runs_text(runs: list[int]) -> str:
    if len(runs) == 1:
        return f"run {runs[0]}"
    shown = ", ".join(map(str, runs[:4]))
    return f"runs {shown}" + (f" and {len(runs) - 4} more" if len(runs) > 4 else "")


def _banner(where, g: run.AlarmGroup, now: datetime, several: bool) -> None:
    box = where.container(key=f"alarm_{g.key}")
    text, buttons = box.columns([6, 1.3])
    times = f"{g.count} alarms, first {shell.age_text(now - g.first_at)} ago, latest" if g.count > 1 else ""
    text.error(
        f"**{g.plot_type}**: {g.label} confirmed · {_runs_text(g.runs)} · "
        f"{times or 'raised'} {shell.age_text(now - g.last_at)} ago",
        icon=":material/warning:",
    )
    buttons.button("Acknowledge", key=f"ack_{g.key}", on_click=_acknowledge, kwargs={"alarm_ids": g.ids},
                   help="Needs a logged-in user")  # fmt: skip
    if several:
        buttons.button(f"All of {g.plot_type}", key=f"ack_pt_{g.key}", on_click=_acknowledge,
                       kwargs={"plot_type_id": g.plot_type_id})  # fmt: skip


def _alarms(alarms: list[run.AlarmGroup], now: datetime) -> None:
    shell.show_outcome(ACK_OUTCOME)
    if not alarms:
        return
    total = sum(g.count for g in alarms)
    per_type: dict[int, int] = {}
    for g in alarms:
        per_type[g.plot_type_id] = per_type.get(g.plot_type_id, 0) + 1
    with st.container(key="run_alarms"):
        head, button = st.columns([6, 1.3])
        head.markdown(
            f":red[**{total} open alarm{'s' if total != 1 else ''}** on {len(alarms)} "
            f"condition{'s' if len(alarms) != 1 else ''}]"
        )
        button.button("Acknowledge all", key="ack_all", on_click=_acknowledge, type="primary",
                      help="Needs a logged-in user")  # fmt: skip
        for g in alarms[:ALARMS_SHOWN]:
            _banner(st, g, now, per_type[g.plot_type_id] > 1)
        if len(alarms) > ALARMS_SHOWN:
            with st.expander(f"{len(alarms) - ALARMS_SHOWN} more condition(s) with open alarms"):
                for g in alarms[ALARMS_SHOWN:]:
                    _banner(st, g, now, per_type[g.plot_type_id] > 1)
    new = [i for g in alarms for i in g.ids if i not in st.session_state.setdefault("run_sounded", set())]
    if sound and new:
        st.audio(shell.beep_wav(), format="audio/wav", autoplay=True)
        st.session_state["run_sounded"].update(new)


def _choose_group(name: str) -> None:
    st.session_state["run_group"] = name
    st.session_state["run_rerun_app"] = True


def _summary(summaries: list[run.GroupSummary], chosen: str) -> None:
    """One button per detector group with its counts; a click filters the grid to that group."""
    with st.container(horizontal=True, gap="small", key="run_summary"):
        for g in summaries:
            name = g.group or "no group"
            parts = [f":red[{g.problem} problem]" if g.problem else "0 problem"]
            parts.append(f":orange[{g.unconfirmed} unconfirmed]" if g.unconfirmed else "0 unconfirmed")
            parts.append(f"{g.good} Good")
            if g.stale:
                parts.append(f"{g.stale} stale")
            target = ALL if chosen == g.group else (g.group or ALL)
            st.button(
                f"**{name}** · " + " · ".join(parts),
                key=f"run_sum_{name}",
                on_click=_choose_group,
                args=(target,),
                type="primary" if chosen == g.group else "secondary",
                help="Show only this group (click again for all)" if g.group else None,
            )


def _style(frame: run.Frame, now: datetime) -> str:
    color = shell.safe_color(frame.color)
    if frame.rank >= 3:
        border = "4px dotted #5a5a5a; background: repeating-linear-gradient(45deg,#f4f4f4,#f4f4f4 8px,#e8e8e8 8px,#e8e8e8 16px)"
    elif not frame.confirmed:
        border = f"5px dashed {color}"
    else:
        border = f"5px solid {color}"
    stale = "opacity: 0.5;" if frame.is_stale(cfg.app.stale_after_min, now) else ""
    return (
        f".st-key-frame_{frame.plot_type_id} {{border: {border}; border-radius: 6px; padding: 4px; {stale}}}"
    )


def _caption(frame: run.Frame, now: datetime) -> str:
    if frame.source == "none":
        return "no image yet"
    parts = [f"run {frame.run}"]
    if frame.chunk is not None:
        parts.append(f"chunk {frame.chunk}")
    if frame.source == "image":
        parts.append("no model")
    else:
        mark = "" if frame.confirmed else " (unconfirmed)"
        parts.append(f"**{frame.label}** {frame.weight:.2f}{mark}")
    parts.append(f"{shell.age_text(frame.age(now))} ago")
    if frame.is_stale(cfg.app.stale_after_min, now):
        parts.append(":orange[STALE]")
    return " · ".join(parts)


def _img_html(data: bytes, *, kind: str, alt: str, heat: bool) -> str:
    uri = "data:image/png;base64," + base64.b64encode(data).decode()
    cls = f"hydra-{kind} heat" if heat else f"hydra-{kind}"
    return f"<img class='{cls}' src='{uri}' alt='{alt}'>"


def _open(name: str | None) -> None:
    st.session_state["run_full"] = name


def _full_view(frame: run.Frame, now: datetime, opacity: float) -> None:
    with st.container(border=True, key="run_full_view"):
        title, close = st.columns([6, 1])
        title.subheader(f"{frame.plot_type} (full size)")
        close.button("Close", key="run_full_close", on_click=_open, args=(None,), icon=":material/close:")
        data = shell.render_image(frame.image_path, frame.heatmap_path, opacity)
        if data is None:
            st.warning("The image file is no longer on disk.")
        else:
            heat = bool(frame.heatmap_path) and opacity > 0
            st.markdown(_img_html(data, kind="full", alt=frame.plot_type, heat=heat), unsafe_allow_html=True)
            st.caption(frame.image_path + (f" · heat map {frame.heatmap_path}" if heat else ""))
        st.markdown(_caption(frame, now))
        if frame.weights:
            st.dataframe(
                {"label": list(frame.weights), "weight": [round(w, 3) for w in frame.weights.values()]},
                hide_index=True,
            )


@st.fragment(run_every=cfg.app.refresh_s)
def live() -> None:
    if st.session_state.pop("run_rerun_app", False):
        st.rerun()  # a summary button changed the group: redraw the controls too
    now = shell.utcnow()
    chosen = st.session_state.get("run_group", ALL)
    group_id = group_names.get(chosen)
    opacity = float(st.session_state.get("run_opacity", DEFAULT_OPACITY))
    with shell.session() as s:
        everything = [f for f in run.run_frames(session=s) if f.plot_type not in hidden]
        header = run.run_header(session=s, frames=everything)
        alarms = run.alarm_groups(session=s)
        legend = run.legend(session=s)
    frames = [f for f in everything if group_id is None or f.group == chosen]
    _header(header, now)
    _alarms(alarms, now)
    _summary(run.group_summaries(everything, stale_after_min=cfg.app.stale_after_min, now=now), chosen)
    shell.label_legend(legend, extra=[("no model", "#5a5a5a")])
    st.caption(
        f"Solid frame: confirmed; dashed: unconfirmed; faded: nothing new for {cfg.app.stale_after_min:g} min. "
        f"Refreshes every {cfg.app.refresh_s:g} s; times are UTC."
    )
    full = next((f for f in everything if f.plot_type == st.session_state.get("run_full")), None)
    if full is not None:
        _full_view(full, now, opacity)
    if not frames:
        shell.empty_state(
            "Nothing to show.", "Every plot type of this group is hidden or the group is empty."
        )
        return
    tiles_css = (
        "img.hydra-tile {width: 100%; height: auto; display: block;} "
        "img.hydra-full {max-width: 100%; min-width: min(100%, 640px); height: auto; display: block;}"
    )
    st.html("<style>" + "\n".join([tiles_css, *(_style(f, now) for f in frames)]) + "</style>")
    with st.container(horizontal=True, gap="small", key="run_grid"):
        for frame in frames:
            with st.container(key=f"frame_{frame.plot_type_id}", width=size + 20):
                name, button = st.columns([5, 1], vertical_alignment="center")
                name.markdown(f"**{frame.plot_type}**")
                data = shell.render_image(frame.image_path, frame.heatmap_path, opacity, max_px=size)
                if data is not None:
                    heat = bool(frame.heatmap_path) and opacity > 0
                    st.markdown(_img_html(data, kind="tile", alt=frame.plot_type, heat=heat),
                                unsafe_allow_html=True)  # fmt: skip
                    button.button("", key=f"open_{frame.plot_type_id}", icon=":material/open_in_full:",
                                  on_click=_open, args=(frame.plot_type,), help="Full size, with the heat map")  # fmt: skip
                elif frame.source != "none":
                    st.caption("image file no longer on disk")
                st.caption(_caption(frame, now))


live()
