"""Log: every confirmed problem and unconfirmed verdict of a time window.

The daily brief at run-coordination meetings: grouped by plot type and run,
newest first, with thumbnails, heat maps and weights, and a CSV export of
exactly what is shown. Filters: time window, plot types, detector groups, one
run or a run range (``?run=N`` in the URL preselects a run). A run or run
range is looked up in all time: the window applies only without one, so an
older run is found too.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pandas as pd
import shell
import streamlit as st

from hydra.services import log, run

WINDOWS = {"1 hour": 1, "6 hours": 6, "24 hours": 24, "3 days": 72, "7 days": 168, "30 days": 720}
THUMBS_PER_GROUP = 24

shell.page()
st.title("Log")
with shell.session() as s:
    types = run.plot_types(session=s)
    groups = {g.id: g.name for g in run.plot_groups(session=s)}

if "log_run" not in st.session_state and str(st.query_params.get("run", "")).isdigit():
    st.session_state["log_run"] = int(st.query_params["run"])
# a run or run range is looked up in all time: an older run must not read "nothing to report"
# (read from the widgets' state before they are drawn: the window above them is disabled by it)
by_run = any(st.session_state.get(k) is not None for k in ("log_run", "log_run_min", "log_run_max"))
c1, c2, c3, c4 = st.columns([1, 2, 1, 1])
window = c1.selectbox(
    "Window", list(WINDOWS), index=2, key="log_window", disabled=by_run,
    help="How far back to look. Not applied while a run or run range is given: runs are found in all time.",
)  # fmt: skip
chosen = c2.multiselect("Plot types (all when empty)", [pt.name for pt in types], key="log_types")
unconfirmed = c3.toggle("Include unconfirmed", value=True, key="log_unconfirmed")
heatmaps = c4.toggle("Heat maps", value=True, key="log_heatmaps")
f1, f2, f3, f4 = st.columns([2, 1, 1, 1])
chosen_groups = f1.multiselect("Detector groups (all when empty)", sorted(groups.values()), key="log_groups")
RUN_HELP = "Looked up in all time: the time window does not apply while a run is given"
one_run = f2.number_input(
    "Run", min_value=0, value=None, step=1, key="log_run", help="Only this run. " + RUN_HELP
)
run_from = f3.number_input(
    "Run from",
    min_value=0,
    value=None,
    step=1,
    key="log_run_min",
    disabled=one_run is not None,
    help=RUN_HELP,
)
run_to = f4.number_input(
    "Run to", min_value=0, value=None, step=1, key="log_run_max", disabled=one_run is not None, help=RUN_HELP
)
run_min, run_max = (one_run, one_run) if one_run is not None else (run_from, run_to)

now = shell.utcnow()
since = None if by_run else now - timedelta(hours=WINDOWS[window])
ids = [pt.id for pt in types if pt.name in chosen]
group_ids = [gid for gid, name in groups.items() if name in chosen_groups]
with shell.session() as s:
    entries = log.log_entries(
        session=s, since=since, plot_type_ids=ids or None, include_unconfirmed=unconfirmed,
        run_min=int(run_min) if run_min is not None else None, run_max=int(run_max) if run_max is not None else None,
        group_ids=group_ids or None,
    )  # fmt: skip
filters = []
if one_run is not None:
    filters.append(f"run {one_run}")
elif run_min is not None or run_max is not None:
    filters.append(
        f"runs {run_min if run_min is not None else '…'} to {run_max if run_max is not None else '…'}"
    )
if chosen_groups:
    filters.append("groups " + ", ".join(chosen_groups))
if by_run:
    filters.append("all time (the window does not apply to runs)")

if not entries:
    where = (
        f"for {'; '.join(filters)}."
        if by_run
        else f"in the last {window}" + (f" for {'; '.join(filters)}." if filters else ".")
    )
    shell.empty_state(
        f"Nothing to report {where}",
        "No confirmed problem" + (" and no unconfirmed verdict" if unconfirmed else "")
        + (" in these runs. Check the run numbers" if by_run else " in this window. Widen the window")
        + ", or check the Status page that the pipeline is processing images.",
    )  # fmt: skip
    st.stop()

group_of = {pt.name: groups.get(pt.group_id, "") for pt in types}
problems = sum(e.confirmed and e.is_problem for e in entries)
if filters:
    st.caption("Filtered: " + "; ".join(filters))
m1, m2, m3 = st.columns(3)
m1.metric("Confirmed problems", problems)
m2.metric("Unconfirmed", sum(not e.confirmed for e in entries))
m3.metric("Plot types", len({e.plot_type for e in entries}))

table = pd.DataFrame(
    {
        "time_utc": [e.created_at.strftime("%Y-%m-%d %H:%M:%S") for e in entries],
        "plot_type": [e.plot_type for e in entries],
        "run": [e.run for e in entries],
        "chunk": [e.chunk for e in entries],
        "label": [e.label for e in entries],
        "weight": [round(e.weight, 4) for e in entries],
        "group": [group_of.get(e.plot_type, "") for e in entries],
        "confirmed": [e.confirmed for e in entries],
        "problem": [e.is_problem for e in entries],
        "weights": [json.dumps(e.weights, sort_keys=True) for e in entries],
        "image": [e.image_path for e in entries],
        "heatmap": [e.heatmap_path or "" for e in entries],
    }
)
st.download_button(
    "Download CSV",
    table.to_csv(index=False),
    file_name=f"hydra-log-{now:%Y%m%d-%H%M}.csv",
    mime="text/csv",
    key="log_csv",
    icon=":material/download:",
)

grouped: dict[tuple[str, int], list[log.LogEntry]] = {}
for entry in entries:  # entries are newest first, so groups are too
    grouped.setdefault((entry.plot_type, entry.run), []).append(entry)

for i, ((plot_type, run_no), items) in enumerate(grouped.items()):
    bad = sum(e.confirmed and e.is_problem for e in items)
    title = f"{plot_type} · run {run_no} · {bad} confirmed problem{'s' if bad != 1 else ''}, {len(items) - bad} unconfirmed"
    if group_of.get(plot_type):
        title += f" · {group_of[plot_type]}"
    with st.expander(title, expanded=i < 3):
        st.page_link("views/trends.py", label=f"Trends of {plot_type}", query_params={"plot_type": plot_type})
        with st.container(horizontal=True, gap="small"):
            for e in items[:THUMBS_PER_GROUP]:
                with st.container(width=200):
                    data = shell.render_image(e.image_path, e.heatmap_path if heatmaps else None, 0.45, 180)
                    if data is not None:
                        st.image(data)
                    else:
                        st.caption("image file no longer on disk")
                    mark = "confirmed" if e.confirmed else "unconfirmed"
                    weights = ", ".join(f"{k} {v:.2f}" for k, v in e.weights.items())
                    st.caption(
                        f"chunk {e.chunk} · **{e.label}** {e.weight:.2f} ({mark}) · {e.created_at:%H:%M} UTC"
                    )
                    st.caption(weights)
        if len(items) > THUMBS_PER_GROUP:
            st.caption(f"and {len(items) - THUMBS_PER_GROUP} more (all are in the CSV)")
