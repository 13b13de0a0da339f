"""Trends: the output weight of every label over time for one plot type.

The Grafana-style view: a slow rise of the Bad weight has preceded detector
failures, so the lines use the labels' colours and the dashed rules show the
confirmation thresholds of the model that made the newest inference.
``?plot_type=NAME`` in the URL preselects a plot type (the Log page links here).
"""

from __future__ import annotations

from datetime import timedelta

import altair as alt
import pandas as pd
import shell
import streamlit as st

from hydra.services import trends

WINDOWS = {"1 hour": 1, "6 hours": 6, "24 hours": 24, "3 days": 72, "7 days": 168, "30 days": 720}

shell.page()
st.title("Trends")
types = shell.plot_types_or_stop("Create plot types and run the pipeline; their weights appear here.")

names = [pt.name for pt in types]
wanted = st.query_params.get("plot_type")
c1, c2 = st.columns([2, 1])
name = c1.selectbox(
    "Plot type", names, index=names.index(wanted) if wanted in names else 0, key="trends_plot"
)
window = c2.selectbox("Window", list(WINDOWS), index=2, key="trends_window")
plot_type = next(pt for pt in types if pt.name == name)

with shell.session() as s:
    series = trends.weight_series(
        plot_type.id, session=s, since=shell.utcnow() - timedelta(hours=WINDOWS[window])
    )

if not series.points:
    shell.empty_state(
        f"No inference of {name} in the last {window}.",
        "Widen the window; a plot type without an active model has no weights (see the Library page).",
    )
    st.stop()

long = pd.DataFrame(
    [(p.created_at, p.run, p.chunk, label, w) for p in series.points for label, w in p.weights.items()],
    columns=["time", "run", "chunk", "label", "weight"],
)
label_names = [lb.name for lb in series.labels] or sorted(long["label"].unique())
colors = [shell.safe_color(lb.color) for lb in series.labels] or None
color_scale = alt.Scale(domain=label_names, range=colors) if colors else alt.Scale(domain=label_names)
shown = st.multiselect("Labels", label_names, default=label_names, key="trends_labels")
long = long[long["label"].isin(shown)]

# 24-hour UTC on the axis and in the tooltip, whatever the browser's time zone
time_format = "%H:%M" if WINDOWS[window] <= 24 else "%d %b %H:%M"
lines = (
    alt.Chart(long)
    .mark_line(point=alt.OverlayMarkDef(size=18))
    .encode(
        x=alt.X("time:T", title="time (UTC)", scale=alt.Scale(type="utc"), axis=alt.Axis(format=time_format)),
        y=alt.Y("weight:Q", scale=alt.Scale(domain=[0, 1]), title="output weight"),
        color=alt.Color("label:N", scale=color_scale),
        tooltip=[
            alt.Tooltip("utcyearmonthdatehoursminutesseconds(time):T", title="time (UTC)", format="%Y-%m-%d %H:%M:%S"),
            "run:Q", "chunk:Q", "label:N", alt.Tooltip("weight:Q", format=".3f"),
        ],
    )
)  # fmt: skip
newest_model = series.points[-1].model_id
thresholds = series.thresholds.get(newest_model, {})
rules_df = pd.DataFrame([(k, v) for k, v in thresholds.items() if k in shown], columns=["label", "threshold"])
chart = lines
if not rules_df.empty:
    rules = (
        alt.Chart(rules_df)
        .mark_rule(strokeDash=[6, 4])
        .encode(
            y="threshold:Q", color=alt.Color("label:N", scale=color_scale), tooltip=["label", "threshold"]
        )
    )
    chart = lines + rules
st.altair_chart(chart.properties(height=380).interactive(bind_y=False), key="trends_chart")

models = sorted({p.model_id for p in series.points})
note = f"{len(series.points)} inferences; thresholds (dashed) of model {newest_model}"
if len(models) > 1:
    note += f"; the window spans models {', '.join(map(str, models))}"
st.caption(note)
last = series.points[-1]
st.markdown(
    f"Newest: run {last.run}, chunk {last.chunk}: **{last.label}** "
    f"({'confirmed' if last.confirmed else 'unconfirmed'}) at {last.created_at:%Y-%m-%d %H:%M:%S} UTC"
)
