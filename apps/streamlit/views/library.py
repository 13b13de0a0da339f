"""Library: a plot type's models, the enhanced confusion matrix and the thresholds.

Every cell of the confusion matrix (human label x model label) shows its
count and the histogram of the model's output weight for its images, with the
column label's threshold drawn in: moving a slider shows at once how many
images it would leave unconfirmed and what precision and recall become.
Saving needs the ``thresholds`` permission and activating a model the admin
role; both are checked again in ``hydra.services.library``.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import shell  # noqa: E402
import streamlit as st  # noqa: E402

from hydra.auth import can  # noqa: E402
from hydra.services import library, run  # noqa: E402
from hydra.thresholds import DEFAULT_THRESHOLD  # noqa: E402

BINS = 20
FLASH = "library_flash"

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
            "": "★" if m.active else "",
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
    st.button(
        f"Activate model {model.id} for {pt.name}",
        key="library_activate",
        on_click=act,
        args=(library.activate, user, model.id),
        kwargs={"done": f"Model {model.id} is now the active model of {pt.name}."},
    )
shell.show_outcome(FLASH)

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
