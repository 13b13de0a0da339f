"""Library: a plot type's models, the enhanced confusion matrix and the thresholds.

Every cell of the confusion matrix (human label x model label) shows its
count and the histogram of the model's output weight for its images, with the
column label's threshold drawn in: moving a slider shows at once how many
images it would leave unconfirmed and what precision and recall become.
Saving needs the ``thresholds`` permission and activating a model the admin
role; both are checked again in ``hydra.services.library``.

"Candidate vs active" sets another model (the one picked, else the plot
type's shadow model) against the active one on every image both scored, live
in ``hydra-serve`` (as a shadow) or with ``hydra reprocess``: agreement, the
images where they disagree with both heat maps, the candidate's enhanced
confusion matrix on labelled images, and one click to activate it
(``hydra.services.shadow``; making a shadow and activating need the admin role).
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import shell  # noqa: E402
import streamlit as st  # noqa: E402

from hydra.auth import can  # noqa: E402
from hydra.services import library, run, shadow  # noqa: E402
from hydra.thresholds import DEFAULT_THRESHOLD  # noqa: E402

BINS = 20
FLASH = "library_flash"
PAIRS_SHOWN = 12  # disagreements drawn with both heat maps (the table lists more)

shell.page(viewing=True)
st.title("Library")
types = shell.plot_types_or_stop()
by_name = {pt.name: pt for pt in types}
pt = by_name[st.selectbox("Plot type", list(by_name), key="library_plot_type")]
with shell.session() as s:
    models = library.models_of(pt.id, session=s)
    colors = {lb.name: shell.safe_color(lb.color) for lb in run.labels_of(pt.id, session=s)}
if not models:
    shell.empty_state(
        f"No model for {pt.name} yet.",
        f"Label some images on the Labeler page, then train one: `hydra train {pt.name}`.",
    )
    st.stop()

table = pd.DataFrame(
    [
        {
            "": "★" if m.active else ("◐" if m.shadow else ""),
            "Model": m.id,
            "Head": m.head,
            "Sampling": m.sampling or "-",
            "Training images": m.training_size,
            "Label counts": " · ".join(f"{k} {v:,}" for k, v in m.label_counts.items()),
            "Input": f"{m.input_size[0]}x{m.input_size[1]}",
            "Trained (UTC)": f"{m.created_at:%Y-%m-%d %H:%M}",
            "Metrics": " · ".join(
                f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                for k, v in m.metrics.items()
                if not isinstance(v, (dict, list))
            ),
        }
        for m in models
    ]
)
st.dataframe(
    table,
    hide_index=True,
    width="stretch",
    column_config={"Label counts": st.column_config.TextColumn(width="medium"),
                   "Metrics": st.column_config.TextColumn(width="large")},
)  # fmt: skip
active = next((m for m in models if m.active), models[0])
# the shadow mark stays out of the names: making a model a shadow must not change the selected name
names = {f"{'★ ' if m.active else ''}model {m.id} ({m.head}, {m.created_at:%Y-%m-%d})": m for m in models}
model = names[
    st.selectbox("Model", list(names), index=list(names.values()).index(active), key="library_model")
]
user = shell.current_user()


def act(fn, *args, done: str, **kwargs) -> None:
    """A button's callback: run a service call; its outcome waits in the session state."""
    shell.run_service(
        fn, *args, outcome=FLASH, done=lambda result: done.format(result=result, s="" if result == 1 else "s"),
        **kwargs,
    )  # fmt: skip


def save() -> None:
    current = {lb: float(st.session_state[f"th_{model.id}_{lb}"]) for lb in model.labels}
    act(
        library.save_thresholds,
        user,
        model.id,
        current,
        done=f"Saved {{result}} threshold{{s}} of model {model.id}.",
    )


if not model.active:
    b1, b2 = st.columns(2)
    b1.button(
        f"Activate model {model.id} for {pt.name}",
        key="library_activate",
        on_click=act,
        args=(library.activate, user, model.id),
        kwargs={"done": f"Model {model.id} is now the active model of {pt.name}."},
    )
    if model.shadow:
        b2.button(
            f"Stop model {model.id} running as a shadow",
            key="library_unshadow",
            on_click=act,
            args=(shadow.clear_shadow, user, pt.id),
            kwargs={"done": f"Model {model.id} no longer runs beside the active model."},
        )
    else:
        b2.button(
            f"Run model {model.id} as a shadow",
            key="library_shadow",
            help="hydra-serve then scores every image with it too; its verdicts are stored, never acted on.",
            on_click=act,
            args=(shadow.set_shadow, user, model.id),
            kwargs={"done": f"Model {model.id} now runs beside the active model of {pt.name}."},
        )
shell.show_outcome(FLASH)


@st.cache_data(max_entries=64, show_spinner=False)
def matrix_png(model_id: int, cells_key: tuple, thresholds: tuple, colors: tuple) -> bytes:
    """The enhanced confusion matrix as PNG: small multiples, one histogram per cell."""
    import io

    cells = dict(cells_key)
    labels = [t[0] for t in thresholds]
    humans = list(dict.fromkeys(h for (h, _), _w in cells_key))
    th = dict(thresholds)
    color = dict(colors)
    fig, axes = plt.subplots(
        len(humans), len(labels), figsize=(2.3 * len(labels) + 0.8, 1.7 * len(humans) + 0.8), squeeze=False
    )
    for i, h in enumerate(humans):
        for j, p in enumerate(labels):
            ax = axes[i][j]
            weights = cells.get((h, p), ())
            ax.hist(weights, bins=BINS, range=(0, 1), color=color.get(p, "#888888"), alpha=0.85)
            ax.axvline(th[p], color="black", lw=1, ls="--")
            if not weights:  # an empty cell: no histogram, no axis of -0.04..0.04
                ax.set_ylim(0, 1)
                ax.set_yticks([])
                ax.text(0.5, 0.5, "none", ha="center", va="center", color="#999999", fontsize=9)
            above = sum(w > th[p] for w in weights)
            ax.set_title(
                f"{len(weights)}  ({above} confirmed)", fontsize=9, fontweight="bold" if h == p else None
            )
            ax.set_xlim(0, 1)
            ax.tick_params(labelsize=7)
            if j == 0:
                ax.set_ylabel(f"human: {h}", fontsize=9)
            if i == len(humans) - 1:
                ax.set_xlabel(f"model: {p}  (weight)", fontsize=9)
            if h == p:
                for spine in ax.spines.values():
                    spine.set_linewidth(2)
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=90)
    plt.close(fig)
    return out.getvalue()


def pair_tile(where, path: str, heatmap: str | None, opacity: float, caption: str) -> None:
    png = shell.render_image(path, heatmap, opacity, max_px=360)
    if png is None:
        where.caption(f"{caption} (the file is gone)")
    else:
        where.image(png, caption=caption + ("" if heatmap else " · no heat map"))


def verdict_text(label: str, weight: float, confirmed: bool) -> str:
    return f"{label} {weight:.2f}{'' if confirmed else ' (unconfirmed)'}"


@st.cache_data(ttl=30, max_entries=16, show_spinner=False)
def comparison(database: str, candidate_id: int, active_id: int, labels: tuple) -> tuple:
    """The comparison and the candidate's thresholds, read at most every 30 s (sliders rerun the page)."""
    with shell.session() as s:
        cmp = shadow.compare(candidate_id, session=s)
        th = (
            library.default_thresholds(candidate_id, cmp.labelled, list(labels), session=s)
            if cmp.labelled
            else {}
        )
    return cmp, th


def candidate_section(candidate, active) -> None:
    """Candidate vs active: agreement, disagreements with both heat maps, the matrix, activate."""
    database = shell.engine().url.render_as_string(hide_password=True)
    cmp, th = comparison(database, candidate.id, active.id, tuple(candidate.labels))
    st.subheader(f"Candidate vs active: model {candidate.id} vs model {active.id}")
    st.caption(
        "Every image both models scored: live (the candidate as a shadow in hydra-serve, "
        "`hydra models shadow ID`) and reprocessed (`hydra reprocess`). A shadow model's verdicts are "
        "stored only: they never raise an alarm or reach the Run page."
    )
    overall = cmp.overall
    live = cmp.agreement.get(shadow.LIVE_IMAGES, shadow.Agreement(0, 0))
    again = cmp.agreement.get(shadow.REPROCESSED, shadow.Agreement(0, 0))
    c1, c2, c3 = st.columns(3)
    for where, name, a in ((c1, "Agreement", overall), (c2, "Agreement, live images", live),
                           (c3, "Agreement, reprocessed images", again)):  # fmt: skip
        where.metric(
            name, "-" if a.rate is None else f"{a.rate:.1%}", help=f"{a.agree:,} of {a.images:,} images"
        )
    if not overall.images:
        shell.empty_state(
            "No image scored by both models yet.",
            f"Run model {candidate.id} beside the active one (`hydra models shadow {candidate.id}`) or score "
            f"stored images with it (`hydra reprocess --plot-type {pt.name} --model {candidate.id}`).",
        )
    if cmp.disagreements:
        st.markdown(f"**Where they disagree** (the newest {len(cmp.disagreements)})")
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "Image": d.filename, "Run": d.run, "Scored": d.kind,
                        f"Candidate {candidate.id}": verdict_text(d.candidate_label, d.candidate_weight,
                                                                  d.candidate_confirmed),
                        f"Active {active.id}": verdict_text(d.active_label, d.active_weight, d.active_confirmed),
                        "When (UTC)": f"{d.created_at:%Y-%m-%d %H:%M}",
                    }
                    for d in cmp.disagreements
                ]
            ),
            hide_index=True,
        )  # fmt: skip
        opacity = st.slider("Heat map opacity", 0.0, 1.0, 0.5, 0.05, key="library_candidate_opacity")
        for d in cmp.disagreements[:PAIRS_SHOWN]:
            st.caption(f"{d.filename} · run {d.run} · {d.kind}")
            left, right = st.columns(2)
            pair_tile(left, d.path, d.candidate_heatmap, opacity,
                      f"candidate {candidate.id}: " + verdict_text(d.candidate_label, d.candidate_weight,
                                                                   d.candidate_confirmed))  # fmt: skip
            pair_tile(right, d.path, d.active_heatmap, opacity,
                      f"active {active.id}: " + verdict_text(d.active_label, d.active_weight,
                                                             d.active_confirmed))  # fmt: skip
    if cmp.labelled:
        m1, m2 = st.columns(2)
        m1.metric(f"Candidate {candidate.id} on labelled images", f"{library.accuracy(cmp.labelled):.1%}",
                  help=f"accuracy on the {len(cmp.labelled)} labelled images both models scored")  # fmt: skip
        m2.metric(f"Active {active.id} on the same images", f"{library.accuracy(cmp.active_labelled):.1%}")
        cells = library.confusion_cells(cmp.labelled, candidate.labels)
        st.image(
            matrix_png(
                candidate.id,
                tuple((k, tuple(sorted(v))) for k, v in cells.items()),
                tuple((lb, round(th.get(lb, DEFAULT_THRESHOLD), 2)) for lb in candidate.labels),
                tuple(sorted(colors.items())),
            ),
            caption=f"candidate {candidate.id}: enhanced confusion matrix on {len(cmp.labelled)} labelled images",
        )
    else:
        st.caption("No labelled image has been scored by both models yet: no confusion matrix.")
    st.button(
        f"Activate candidate model {candidate.id}",
        key="library_activate_candidate",
        type="primary",
        on_click=act,
        args=(library.activate, user, candidate.id),
        kwargs={"done": f"Model {candidate.id} is now the active model of {pt.name}."},
    )


active_model = next((m for m in models if m.active), None)
candidate = model if not model.active else next((m for m in models if m.shadow), None)
if active_model is not None and candidate is not None:
    candidate_section(candidate, active_model)
elif active_model is not None and len(models) > 1:
    st.caption(
        "Compare another model with the active one: pick it above, or run it as a shadow "
        "(`hydra models shadow ID`) and it shows here."
    )

with shell.session() as s:
    rows = library.classifications(model.id, session=s)
    defaults = library.default_thresholds(model.id, rows, model.labels, session=s) if model.labels else {}
    may_save = can(user, "thresholds", pt.id, session=s)
if not rows:
    shell.empty_state(
        f"Model {model.id} has no stored verdicts.",
        "Training stores the model's verdicts on its test images; without them there is no confusion matrix.",
    )
    st.stop()

st.subheader("Thresholds")
st.caption(
    "A verdict is confirmed only when its weight is above the label's threshold; the rest are kept for "
    "labeling. Defaults maximise F1 per label on the out-of-fold verdicts of all labelled images."
)
values: dict[str, float] = {}
slider_cols = st.columns(len(model.labels))
for col, label in zip(slider_cols, model.labels):
    values[label] = col.slider(
        label,
        0.0,
        1.0,
        float(defaults.get(label, DEFAULT_THRESHOLD)),
        0.01,
        key=f"th_{model.id}_{label}",
    )
live = library.live_metrics(rows, model.labels, values)
m1, m2, m3 = st.columns(3)
m1.metric("Held-out images", live.total)
m2.metric("Unconfirmed at these thresholds", live.unconfirmed)
m3.metric("Unconfirmed fraction", f"{live.unconfirmed / max(live.total, 1):.1%}")
st.dataframe(
    pd.DataFrame(
        [
            {
                "Label": label,
                "Threshold": v["threshold"],
                "Precision": round(v["precision"], 3),
                "Recall": round(v["recall"], 3),
                "F1": round(v["f1"], 3),
                "Images": v["support"],
            }
            for label, v in live.per_label.items()
        ]
    ),
    hide_index=True,
)
changed = {k: v for k, v in values.items() if abs(v - defaults.get(k, -1)) > 1e-9}
if not may_save:
    st.caption("Saving thresholds needs the thresholds permission on this plot type.")
st.button(
    f"Save thresholds ({len(changed)} changed)", key="library_save", disabled=not changed, on_click=save
)


st.subheader("Enhanced confusion matrix")
st.caption(
    "Rows: the human label; columns: the model's label. Each cell: how many labelled images (out-of-fold verdicts), and the "
    "distribution of the model's output weight for them; the dashed line is the column label's threshold."
)
cells = library.confusion_cells(rows, model.labels)
cells_key = tuple((k, tuple(sorted(v))) for k, v in cells.items())
st.image(
    matrix_png(
        model.id,
        cells_key,
        tuple((lb, round(values[lb], 2)) for lb in model.labels),
        tuple(sorted(colors.items())),
    ),
    caption=f"model {model.id}: {live.total} checked images",
)

with shell.session() as s:
    history = library.threshold_changes(model.id, session=s)
if history:
    st.subheader("Threshold changes")
    st.dataframe(
        pd.DataFrame(
            [(lb, old, new, who, f"{at:%Y-%m-%d %H:%M}") for lb, old, new, who, at in history],
            columns=["Label", "Old", "New", "By", "When (UTC)"],
        ),
        hide_index=True,
    )
