"""Training report: the labelled images where a model and the human disagree.

Every labelled image has an out-of-fold verdict (from the cross-validation
model that did not train on it), so the report covers all labels.

Ranked by how sure the model is, each image sits beside its Grad-CAM map
(computed on demand through ``hydra.inference`` and cached under the
heat-map folder). When the model is right and the human label wrong, one
click fixes the label; ``hydra.services.labeling`` checks the label permission and
keeps the old label in the history.
"""

from __future__ import annotations

import shell
import streamlit as st

from hydra.auth import can
from hydra.services import labeling, library, run

PER_PAGE = 10
FLASH = "report_flash"

shell.page(viewing=True)
st.title("Training report")
st.caption(
    "Labelled images where the model's out-of-fold verdict and the human label disagree, "
    "the most confident model first. Label errors of a few percent are normal; this is where they are found."
)
types = shell.plot_types_or_stop()
by_name = {pt.name: pt for pt in types}
c1, c2 = st.columns(2)
pt = by_name[c1.selectbox("Plot type", list(by_name), key="report_plot_type")]
with shell.session() as s:
    models = library.models_of(pt.id, session=s)
    labels = {lb.name: lb for lb in run.labels_of(pt.id, session=s)}
if not models:
    shell.empty_state(f"No model for {pt.name} yet.", f"Train one with `hydra train {pt.name}`.")
    st.stop()
names = {f"{'★ ' if m.active else ''}model {m.id} ({m.head}, {m.created_at:%Y-%m-%d})": m for m in models}
active = next((i for i, m in enumerate(models) if m.active), 0)
model = names[c2.selectbox("Model", list(names), index=active, key="report_model")]

with shell.session() as s:
    rows = library.disagreements(model.id, session=s)
    total = len(library.classifications(model.id, session=s))
if not rows:
    shell.empty_state(
        "No disagreements.",
        f"Model {model.id} agrees with the human label on all {total} checked images (or has none stored).",
    )
    st.stop()

user = shell.current_user()
with shell.session() as s:
    may_fix = can(user, "label", pt.id, session=s)
fixed = sum(d.fixed for d in rows)
noun = "disagreement" if len(rows) == 1 else "disagreements"
st.markdown(f"**{len(rows)}** {noun} among {total} checked images; {fixed} already fixed.")
if not may_fix:
    st.info("Fixing labels needs the label permission on this plot type (log in with it).")
show_cam = st.toggle("Grad-CAM heat maps", value=True, key="report_cam")
pages = (len(rows) + PER_PAGE - 1) // PER_PAGE
page_no = st.number_input("Page", 1, max(pages, 1), 1, key="report_page") if pages > 1 else 1
shown = rows[(page_no - 1) * PER_PAGE : page_no * PER_PAGE]


@st.cache_resource(max_entries=4, show_spinner="Loading the model for Grad-CAM...")
def _loaded(model_id: int):
    from hydra.inference import ServingModel

    with shell.session() as s:
        return ServingModel.load(s, model_id, shell.config().path("models"))


def heatmap(d: library.Disagreement) -> str | None:
    """The cached overlay of the model's label on the image, or a reason why there is none."""
    src = shell.resolve_path(d.path)
    if src is None or not src.is_file():
        return None
    cache = shell.config().path("heatmaps") / "report" / str(model.id) / f"{d.image_id}.png"
    try:
        return str(library.report_heatmap(_loaded(model.id), src, d.predicted, cache))  # the model's mask
    except Exception as exc:  # noqa: BLE001 - a missing or broken model file must not break the report
        st.caption(f"No heat map: {exc}")
        return None


def fix(image_id: int, label_id: int) -> None:
    """A fix button's callback; the refusal (if any) waits in the session state."""
    shell.run_service(labeling.relabel, user, image_id, label_id, source="report", outcome=FLASH)


shell.show_outcome(FLASH)
for d in shown:
    with st.container(border=True):
        left, mid, right = st.columns([1, 1, 1.2])
        img = shell.render_image(d.path, max_px=360)
        if img:
            left.image(img, caption=f"image #{d.image_id}")
        else:
            left.caption(f"image #{d.image_id}: file missing ({d.path})")
        if show_cam:
            with mid:
                path = heatmap(d)
                if path:
                    st.image(path, caption=f"Grad-CAM for {d.predicted}")
        right.markdown(
            f"Human: **{d.human}** · model: **{d.predicted}** ({d.weight:.2f})  \n"
            + " · ".join(f"{k} {v:.2f}" for k, v in d.weights.items())
        )
        if d.fixed:
            right.success(f"Fixed: now labeled {d.current_label}.")
        elif d.predicted in labels:
            right.button(
                f"Human label is wrong: set {d.predicted}",
                key=f"fix_{model.id}_{d.image_id}",
                on_click=fix,
                args=(d.image_id, labels[d.predicted].id),
            )
        else:
            right.caption(f"{d.predicted} is no longer a label of {pt.name}.")
