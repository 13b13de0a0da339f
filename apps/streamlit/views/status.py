"""Status: how long each stage of the pipeline takes, throughput and errors.

Histograms of the per-image time of every stage (feeder, balancer, queue,
predict, Grad-CAM, keeper) over the window, the mean per stage as a function
of run number, images per minute, and the error records.
"""

from __future__ import annotations

from datetime import timedelta

import altair as alt
import pandas as pd
import shell
import streamlit as st

from hydra.services import status

PALETTE = ["#1f77b4", "#9467bd", "#8c564b", "#ff7f0e", "#17becf", "#2ca02c"]
WINDOWS = {"1 hour": 1, "6 hours": 6, "24 hours": 24, "3 days": 72}

shell.page()
st.title("Status")
window = st.selectbox("Window", list(WINDOWS), index=2, key="status_window")
since = shell.utcnow() - timedelta(hours=WINDOWS[window])
with shell.session() as s:
    rows = status.timing_rows(session=s, since=since)
    errors = status.recent_errors(session=s, since=since)

if not rows:
    shell.empty_state(
        f"No inference in the last {window}.",
        "Start the pipeline with `hydra serve` and drop images in the input folder; their per-stage times "
        "appear here. The sidebar shows whether the serve processes are alive.",
    )
else:
    long = pd.DataFrame(
        [(r.created_at, r.run, stage, ms) for r in rows for stage, ms in r.stages.items()],
        columns=["time", "run", "stage", "ms"],
    )
    per_minute = (
        pd.Series(1, index=pd.DatetimeIndex([r.created_at for r in rows]).floor("min"))
        .groupby(level=0)
        .sum()
        .rename_axis("minute")
        .reset_index(name="images")
    )
    m1, m2, m3 = st.columns(3)
    m1.metric("Images in window", len(rows))
    m2.metric("Images per minute (mean of active minutes)", f"{per_minute['images'].mean():.1f}")
    m3.metric("Errors in window", len(errors))

    st.subheader("Time per image, by stage")
    if long.empty:
        st.info("The inferences in this window carry no per-stage timings.")
    else:
        order = [s for s in status.STAGES if s in set(long["stage"])]
        stages = long[long["stage"].isin(order)]
        # one chart per stage, each binned over its own range (0.01 ms balancer vs 600 ms predict)
        hist = alt.concat(
            *[
                alt.Chart(stages[stages["stage"] == stage], title=stage)
                .mark_bar()
                .encode(
                    x=alt.X("ms:Q", bin=alt.Bin(maxbins=40), title="ms"),
                    y=alt.Y("count():Q", title="images"),
                    color=alt.value(PALETTE[i % len(PALETTE)]),
                )
                .properties(width=230, height=150)
                for i, stage in enumerate(order)
            ],
            columns=3,
        )
        st.altair_chart(hist, key="status_hist", width="content")  # its own width: nothing cut off
        stats = long.groupby("stage")["ms"].describe(percentiles=[0.5, 0.95])[["count", "mean", "50%", "95%"]]
        every = [k for k in status.TIMING_KEYS if k in stats.index]
        st.dataframe(stats.reindex(every).round(3), key="status_stats")
        st.caption(
            "wait: file written until the feeder saw it complete; total: file written until committed."
        )

        st.subheader("Mean time per stage by run")
        by_run = stages.groupby(["run", "stage"], as_index=False)["ms"].mean()
        line = (
            alt.Chart(by_run)
            .mark_line(point=True)
            .encode(
                x=alt.X("run:O", title="run"),
                y=alt.Y("ms:Q", scale=alt.Scale(type="symlog"), title="mean ms"),
                color=alt.Color("stage:N", sort=order),
                tooltip=["run", "stage", alt.Tooltip("ms:Q", format=".3f")],
            )
            .properties(height=260)
        )
        st.altair_chart(line, key="status_by_run")

    st.subheader("Images per minute")
    st.altair_chart(
        alt.Chart(per_minute)
        .mark_bar()
        .encode(
            x=alt.X(
                "minute:T",
                title="time (UTC)",
                scale=alt.Scale(type="utc"),
                axis=alt.Axis(format="%H:%M" if WINDOWS[window] <= 24 else "%d %b %H:%M"),
            ),
            y=alt.Y("images:Q"),
            tooltip=[
                alt.Tooltip(
                    "utcyearmonthdatehoursminutes(minute):T", title="minute (UTC)", format="%Y-%m-%d %H:%M"
                ),
                "images:Q",
            ],
        )  # fmt: skip
        .properties(height=180),
        key="status_rate",
    )

st.subheader("Errors")
if not errors:
    st.success(f"No error records in the last {window}.")
else:
    st.dataframe(
        pd.DataFrame(
            {
                "time_utc": [e.created_at.strftime("%Y-%m-%d %H:%M:%S") for e in errors],
                "stage": [e.stage for e in errors],
                "kind": [e.kind for e in errors],
                "file": [e.filename for e in errors],
                "message": [e.message for e in errors],
                "quarantined_at": [e.quarantine_path or "" for e in errors],
            }
        ),
        hide_index=True,
        key="status_errors",
    )
