"""Queries of training: labelled images, training sets, models, evaluations.

Like :mod:`hydra.db.queries`, every function takes a keyword-only ``session``
and none commits, so ``hydra train`` records a model, its evaluation and its
thresholds (written by :func:`hydra.services.library.write_thresholds`) in one
transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlmodel import Session, col, select

from hydra.data.sampling import Candidate, TrainingPlan
from hydra.db.models import (
    Image,
    Label,
    Model,
    ModelClassification,
    PlotType,
    TrainingSet,
    TrainingSetImage,
)


def labelled_images(plot_type_id: int, *, session: Session) -> list[Candidate]:
    """Every image of a plot type that has a human label, oldest first."""
    rows = session.exec(
        select(Image.id, Label.name, Image.train_weight, Image.created_at, Image.path)
        .join(Label, col(Label.id) == col(Image.label_id))
        .where(Image.plot_type_id == plot_type_id)
        .order_by(col(Image.created_at), col(Image.id))
    ).all()
    return [Candidate(int(i), str(lab), float(w), t, str(p)) for i, lab, w, t, p in rows]


def label_ids(plot_type_id: int, *, session: Session) -> dict[str, int]:
    rows = session.exec(select(Label.name, Label.id).where(Label.plot_type_id == plot_type_id)).all()
    return {str(name): int(i) for name, i in rows}


def record_training_set(
    plot_type_id: int, plan: TrainingPlan, params: Mapping[str, Any], *, session: Session
) -> TrainingSet:
    """Store a training set and one TrainingSetImage per image (split, label, weight, copies)."""
    ids = label_ids(plot_type_id, session=session)
    ts = TrainingSet(
        plot_type_id=plot_type_id, sampling=plan.method, params=dict(params), label_counts=plan.label_counts()
    )
    session.add(ts)
    session.flush()
    for m in plan.members:
        session.add(
            TrainingSetImage(
                training_set_id=ts.id,
                image_id=m.image_id,
                split=m.split,
                label_id=ids[m.label],
                weight=m.weight,
                copies=m.copies,
            )
        )
    session.flush()
    return ts


def register_model(
    *,
    session: Session,
    plot_type_id: int,
    head: str,
    path: str,
    config: Mapping[str, Any],
    input_size: Sequence[int],
    channels: int,
    labels: Sequence[str],
    training_set_id: int | None,
    parent_id: int | None = None,
    metrics: Mapping[str, Any] | None = None,
) -> Model:
    """Add a (not yet active) model row; the caller activates it if asked."""
    model = Model(
        plot_type_id=plot_type_id,
        head=head,
        path=path,
        config=dict(config),
        input_height=int(input_size[0]),
        input_width=int(input_size[1]),
        channels=int(channels),
        labels=list(labels),
        training_set_id=training_set_id,
        parent_id=parent_id,
        metrics=dict(metrics or {}),
    )
    session.add(model)
    session.flush()
    return model


def store_classifications(
    model_id: int,
    rows: Iterable[tuple[int, str, str, Mapping[str, float]]],
    *,
    session: Session,
    split: str = "test",
) -> int:
    """One ModelClassification per (image id, human label, predicted label, weights)."""
    n = 0
    for image_id, human, predicted, weights in rows:
        session.add(
            ModelClassification(
                model_id=model_id,
                image_id=image_id,
                split=split,
                human_label=human,
                predicted_label=predicted,
                weights={k: float(v) for k, v in weights.items()},
            )
        )
        n += 1
    session.flush()
    return n


def list_models(*, session: Session, plot_type: str | None = None) -> list[tuple[Model, str]]:
    """Models with their plot type name, newest first (optionally of one plot type)."""
    query = select(Model, PlotType.name).join(PlotType, col(PlotType.id) == col(Model.plot_type_id))
    if plot_type is not None:
        query = query.where(PlotType.name == plot_type)
    rows = session.exec(query.order_by(col(Model.id).desc())).all()
    return [(m, str(name)) for m, name in rows]
