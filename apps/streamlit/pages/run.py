"""Run: the counting-house view, the newest image of every plot type.

Controls live outside the refreshing fragment (changing one reruns the page);
the header, the alarm banner and the grid are one ``st.fragment`` that reruns
every ``app.refresh_s`` seconds, so the big screen updates without a reload.
Frames are ordered confirmed problems first, then unconfirmed, and coloured
by their label's colour (dashed while unconfirmed, dotted grey without a model,
faded when the plot type stopped arriving).
"""

from __future__ import annotations

from datetime import datetime

import shell
import streamlit as st

from hydra.auth import PermissionDenied
from hydra.db import pages as q
from hydra.db.models import utcnow

cfg = shell.config()
NONE = "—"
shell.page()

with shell.session() as s:
    groups = q.plot_groups(session=s)
    all_types = q.plot_types(session=s, include_hidden=False)

st.title("Run")
if not all_types:
    shell.empty_state(
        "No plot types yet.",
        "Create them with `hydra plot-type add NAME --labels Good,Bad,NoData` or `hydra ingest DIR`, train a "
        "model with `hydra train`, and start the pipeline with `hydra serve`; the newest image of every plot "
        "type then appears here.",
    )
    st.stop()

group_names = {g.name: g.id for g in groups}
c1, c2, c3, c4, c5 = st.columns([1.2, 2, 1.2, 1.2, 1])
group = c1.selectbox("Plot group", ["All", *group_names], key="run_group")
hidden = c2.multiselect("Hide plot types", [pt.name for pt in all_types], key="run_hidden")
opacity = c3.slider("Grad-CAM opacity", 0.0, 1.0, 0.0, 0.05, key="run_opacity")
size = c4.slider("Frame size (px)", 120, 480, 220, 20, key="run_size")
sound = c5.toggle("Alarm sound", key="run_sound")
full = st.selectbox("Open one full size", [NONE, *[pt.name for pt in all_types]], key="run_full")


def _header(header: q.RunHeader, now: datetime) -> None:
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


def _acknowledge(alarm_id: int) -> None:
    # a callback, so the acknowledgement is stored before the page is drawn again
    user = shell.current_user()
    try:
        with shell.session() as s:
            q.acknowledge_alarm(alarm_id, user_id=user.id if user else None, session=s)
    except (PermissionDenied, LookupError) as exc:
        st.session_state["run_ack_refused"] = f"Refused: {exc}"


def _alarms(alarms: list[q.AlarmView], now: datetime) -> None:
    for alarm in alarms:
        box = st.container(key=f"alarm_{alarm.id}")
        text, button = box.columns([6, 1])
        text.error(
            f"**ALARM** {alarm.plot_type}: {alarm.label} in run {alarm.run}, "
            f"{shell.age_text(now - alarm.created_at)} ago. {alarm.message}",
            icon=":material/warning:",
        )
        button.button("Acknowledge", key=f"ack_{alarm.id}", on_click=_acknowledge, args=(alarm.id,),
                      help="Needs a logged-in user")  # fmt: skip
    refused = st.session_state.pop("run_ack_refused", None)
    if refused:
        st.error(refused)
    new = [a.id for a in alarms if a.id not in st.session_state.setdefault("run_sounded", set())]
    if sound and new:
        st.audio(shell.beep_wav(), format="audio/wav", autoplay=True)
        st.session_state["run_sounded"].update(new)


def _style(frame: q.Frame, now: datetime) -> str:
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


def _caption(frame: q.Frame, now: datetime) -> str:
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


def _full_view(frame: q.Frame, now: datetime) -> None:
    with st.container(border=True, key="run_full_view"):
        st.subheader(f"{frame.plot_type} (full size)")
        data = shell.render_image(frame.image_path, frame.heatmap_path, opacity)
        if data is None:
            st.warning("The image file is no longer on disk.")
        else:
            st.image(data, caption=frame.image_path)
        st.markdown(_caption(frame, now))
        if frame.weights:
            st.dataframe(
                {"label": list(frame.weights), "weight": list(frame.weights.values())}, hide_index=True
            )


@st.fragment(run_every=cfg.app.refresh_s)
def live() -> None:
    now = utcnow()
    group_id = group_names.get(group)
    with shell.session() as s:
        header = q.run_header(session=s)
        alarms = q.open_alarms(session=s)
        frames = [f for f in q.run_frames(session=s, group_id=group_id) if f.plot_type not in hidden]
        legend = q.legend(session=s)
    _header(header, now)
    _alarms(alarms, now)
    shell.label_legend(legend, extra=[("no model", "#5a5a5a")])
    st.caption(
        f"Solid frame: confirmed; dashed: unconfirmed; faded: nothing new for {cfg.app.stale_after_min:g} min. "
        f"Refreshes every {cfg.app.refresh_s:g} s."
    )
    chosen = next((f for f in frames if f.plot_type == full), None)
    if chosen is not None:
        _full_view(chosen, now)
    if not frames:
        shell.empty_state(
            "Nothing to show.", "Every plot type of this group is hidden or the group is empty."
        )
        return
    st.html("<style>" + "\n".join(_style(f, now) for f in frames) + "</style>")
    with st.container(horizontal=True, gap="small", key="run_grid"):
        for frame in frames:
            with st.container(key=f"frame_{frame.plot_type_id}", width=size + 20):
                st.markdown(f"**{frame.plot_type}**")
                data = shell.render_image(frame.image_path, frame.heatmap_path, opacity, max_px=size)
                if data is not None:
                    st.image(data)
                elif frame.source != "none":
                    st.caption("image file no longer on disk")
                st.caption(_caption(frame, now))


live()
