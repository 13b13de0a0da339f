"""Shadow models: a candidate served beside the active model, and how the two compare.

A plot type may have one shadow model (``Model.shadow``). ``hydra-serve``'s
Predict workers run it on the same images as the active model and the Keeper
stores its verdicts (``Inference.origin`` ``shadow``) and does nothing else on
their account: no alarm, no Run page row, no kept image, no file moved.
``hydra reprocess`` adds a model's verdicts on stored images (``origin``
``reprocess``). :func:`compare` sets a candidate against the plot type's
active model on every image both have scored (live and reprocessed): how
often they agree, the images where they disagree (with both heat maps), and
the candidate's verdicts on labelled images for the enhanced confusion matrix
(:func:`hydra.services.library.confusion_cells`). Activating the candidate is
:func:`hydra.services.library.activate` (an activated model is a shadow no
more). Making or clearing a shadow needs the admin role (or the CLI's operator).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import and_, case, func
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from hydra.data.images import source_key
from hydra.db.models import REPROCESS, Image, Inference, Label, Model, PlotType
from hydra.db.queries import active_model, get_model, shadow_model
from hydra.services._common import aware
from hydra.services.access import require_admin
from hydra.services.library import Classification

__all__ = [
    "Agreement",
    "Comparison",
    "Pair",
    "ShadowError",
    "clear_shadow",
    "compare",
    "set_shadow",
    "shadow_of",
]

# what the comparison calls the candidate's rows: scored in hydra-serve, or by hydra reprocess
LIVE_IMAGES = "live"
REPROCESSED = "reprocessed"


class ShadowError(ValueError):
    """A shadow request that cannot be honoured; the message says why."""


def shadow_of(plot_type_id: int, *, session: Session) -> Model | None:
    """The plot type's shadow model, or None."""
    return shadow_model(plot_type_id, session=session)


def set_shadow(user: object, model_id: int, *, session: Session) -> Model:
    """Run ``model_id`` as its plot type's shadow (the plot type's previous shadow stops).

    Admin only (or the CLI's operator). ``hydra-serve`` picks it up within
    ``serve.model_refresh_s`` seconds, without a restart.

    Raises:
        ShadowError: the model is the active one.
    """
    model = get_model(model_id, session=session)
    require_admin(user, model.plot_type_id, session=session)
    if model.active:
        raise ShadowError(f"model {model_id} is the active model of its plot type; a shadow runs beside it")
    for other in session.exec(
        select(Model).where(Model.plot_type_id == model.plot_type_id, col(Model.shadow).is_(True))
    ).all():
        if other.id != model.id:
            other.shadow = False
            session.add(other)
    model.shadow = True
    session.add(model)
    session.flush()
    return model


def clear_shadow(user: object, plot_type_id: int, *, session: Session) -> Model | None:
    """Stop the plot type's shadow model; the model that was (None if there was none). Admin only."""
    require_admin(user, plot_type_id, session=session)
    model = shadow_model(plot_type_id, session=session)
    if model is not None:
        model.shadow = False
        session.add(model)
        session.flush()
    return model


@dataclass(frozen=True)
class Agreement:
    """How often candidate and active model give the same label, on one kind of image."""

    images: int
    agree: int

    @property
    def rate(self) -> float | None:
        return self.agree / self.images if self.images else None


@dataclass(frozen=True)
class Pair:
    """One image both models scored, with both verdicts and heat maps (None where none was made)."""

    source_key: str
    path: str
    filename: str
    run: int
    chunk: int | None
    kind: str  # LIVE_IMAGES or REPROCESSED: how the candidate scored it
    created_at: datetime
    candidate_label: str
    candidate_weight: float
    candidate_confirmed: bool
    candidate_heatmap: str | None
    active_label: str
    active_weight: float
    active_confirmed: bool
    active_heatmap: str | None


@dataclass
class Comparison:
    """A candidate against its plot type's active model (see :func:`compare`)."""

    candidate_id: int
    active_id: int
    labels: list[str]
    agreement: dict[str, Agreement] = field(default_factory=dict)  # LIVE_IMAGES, REPROCESSED, "all"
    disagreements: list[Pair] = field(default_factory=list)
    labelled: list[Classification] = field(default_factory=list)  # the candidate's, on labelled images
    active_labelled: list[Classification] = field(default_factory=list)  # the active model's, same images

    @property
    def overall(self) -> Agreement:
        return self.agreement.get("all", Agreement(0, 0))


def compare(candidate_id: int, *, session: Session, limit: int = 60) -> Comparison:
    """The candidate against its plot type's active model, on every image both scored.

    ``agreement``: images scored by both and how many got the same label, by
    how the candidate scored them (``live``: as a shadow in ``hydra-serve``,
    or while it was active; ``reprocessed``: ``hydra reprocess``) and in all.
    ``disagreements``: the newest ``limit`` images where the labels differ.
    ``labelled`` / ``active_labelled``: each model's verdicts on the plot
    type's labelled images that both scored, as :class:`Classification`
    rows for the enhanced confusion matrix.

    Raises:
        ShadowError: the plot type has no active model, or the candidate is it.
    """
    cand = get_model(candidate_id, session=session)
    active = active_model(cand.plot_type_id, session=session)
    if active is None:
        name = session.get(PlotType, cand.plot_type_id).name
        raise ShadowError(f"plot type {name!r} has no active model to compare model {cand.id} with")
    if active.id == cand.id:
        raise ShadowError(f"model {cand.id} is the active model; a candidate is another model")
    out = Comparison(candidate_id=cand.id, active_id=active.id, labels=list(cand.labels))
    a, b = aliased(Inference), aliased(Inference)
    joined = and_(b.source_key == a.source_key, b.model_id == active.id)
    kind = case((a.origin == REPROCESS, REPROCESSED), else_=LIVE_IMAGES)
    counts = session.execute(
        select(kind, func.count(), func.sum(case((a.label == b.label, 1), else_=0)))
        .select_from(a)
        .join(b, joined)
        .where(a.model_id == cand.id)
        .group_by(kind)
    ).all()
    for name, n, agree in counts:
        out.agreement[name] = Agreement(int(n), int(agree or 0))
    out.agreement["all"] = Agreement(
        sum(x.images for x in out.agreement.values()), sum(x.agree for x in out.agreement.values())
    )
    rows = session.execute(
        select(
            a.source_key,
            a.path,
            a.filename,
            a.run,
            a.chunk,
            a.origin,
            a.created_at,
            a.label,
            a.weight,
            a.confirmed,
            a.heatmap_path,
            b.label,
            b.weight,
            b.confirmed,
            b.heatmap_path,
        )  # fmt: skip
        .select_from(a)
        .join(b, joined)
        .where(a.model_id == cand.id, a.label != b.label)
        .order_by(col(a.created_at).desc(), col(a.id).desc())
        .limit(limit)
    ).all()
    out.disagreements = [
        Pair(
            sk,
            path,
            name,
            run,
            chunk,
            REPROCESSED if origin == REPROCESS else LIVE_IMAGES,
            aware(at),
            cl,
            float(cw),
            bool(cc),
            ch,
            al,
            float(aw),
            bool(ac),
            ah,
        )  # fmt: skip
        for sk, path, name, run, chunk, origin, at, cl, cw, cc, ch, al, aw, ac, ah in rows
    ]
    out.labelled, out.active_labelled = _labelled(cand, active, session=session)
    return out


def _labelled(
    cand: Model, active: Model, *, session: Session, chunk: int = 500
) -> tuple[list[Classification], list[Classification]]:
    """Both models' verdicts on the plot type's labelled images that both have scored."""
    images = session.execute(
        select(Image.id, Image.filename, Image.content_hash, Label.name)
        .join(Label, Label.id == Image.label_id)
        .where(Image.plot_type_id == cand.plot_type_id, col(Image.label_id).is_not(None))
    ).all()
    keys = {source_key(name, digest): (image_id, human) for image_id, name, digest, human in images if digest}
    found: dict[int, dict[str, tuple[str, dict]]] = {cand.id: {}, active.id: {}}
    wanted = list(keys)
    for i in range(0, len(wanted), chunk):
        part = wanted[i : i + chunk]
        for sk, model_id, label, weights in session.execute(
            select(Inference.source_key, Inference.model_id, Inference.label, Inference.weights).where(
                col(Inference.source_key).in_(part), col(Inference.model_id).in_([cand.id, active.id])
            )
        ).all():
            found[model_id][sk] = (label, dict(weights or {}))
    both = sorted(set(found[cand.id]) & set(found[active.id]), key=lambda k: keys[k][0])

    def rows(model_id: int) -> list[Classification]:
        return [Classification(keys[k][0], keys[k][1], *found[model_id][k]) for k in both]

    return rows(cand.id), rows(active.id)


def plot_type_name(plot_type_id: int, *, session: Session) -> str:
    pt = session.get(PlotType, plot_type_id)
    return pt.name if pt is not None else str(plot_type_id)
