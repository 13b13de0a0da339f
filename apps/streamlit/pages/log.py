"""Log: every confirmed problem and unconfirmed verdict of a time window.

The daily brief at run-coordination meetings: grouped by plot type and run,
newest first, with thumbnails, heat maps and weights, and a CSV export of
exactly what is shown.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pandas as pd
import shell
import streamlit as st

from hydra.db import pages as q
from hydra.db.models import utcnow

WINDOWS = {"1 hour": 1, "6 hours": 6, "24 hours": 24, "3 days": 72, "7 days": 168}
THUMBS_PER_GROUP = 24

shell.page()
st.title("Log")
with shell.session() as s:
    types = q.plot_types(session=s)
    groups = {g.id: g.name for g in q.plot_groups(session=s)}

c1, c2, c3, c4 = st.columns([1, 2, 1, 1])
window = c1.selectbox("Window", list(WINDOWS), index=2, key="log_window")
chosen = c2.multiselect("Plot types (all when empty)", [pt.name for pt in types], key="log_types")
unconfirmed = c3.toggle("Include unconfirmed", value=True, key="log_unconfirmed")
heatmaps = c4.toggle("Heat maps", value=True, key="log_heatmaps")

now = utcnow()
since = now - timedelta(hours=WINDOWS[window])
ids = [pt.id for pt in types if pt.name in chosen]
with shell.session() as s:
    entries = q.log_entries(
        session=s, since=since, plot_type_ids=ids or None, include_unconfirmed=unconfirmed
    )

if not entries:
    shell.empty_state(
        f"Nothing to report in the last {window}.",
        "No confirmed problem" + (" and no unconfirmed verdict" if unconfirmed else "") + " in this window. "
        "Widen the window, or check the Status page that the pipeline is processing images.",
    )
    st.stop()

problems = sum(e.confirmed and e.is_problem for e in entries)
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

grouped: dict[tuple[str, int], list[q.LogEntry]] = {}
for entry in entries:  # entries are newest first, so groups are too
    grouped.setdefault((entry.plot_type, entry.run), []).append(entry)
group_of = {pt.name: groups.get(pt.group_id, "") for pt in types}

for i, ((plot_type, run), items) in enumerate(grouped.items()):
    bad = sum(e.confirmed and e.is_problem for e in items)
    title = f"{plot_type} · run {run} · {bad} confirmed problem(s), {len(items) - bad} unconfirmed"
    if group_of.get(plot_type):
        title += f" · {group_of[plot_type]}"
    with st.expander(title, expanded=i < 3):
        st.page_link("pages/trends.py", label=f"Trends of {plot_type}", query_params={"plot_type": plot_type})
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
                        f"chunk {e.chunk} · **{e.label}** {e.weight:.2f} ({mark}) · {e.created_at:%H:%M}"
                    )
                    st.caption(weights)
        if len(items) > THUMBS_PER_GROUP:
            st.caption(f"and {len(items) - THUMBS_PER_GROUP} more (all are in the CSV)")
