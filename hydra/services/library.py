"""The Library's and the Training report's service layer.

A model's held-out verdicts (``ModelClassification``) are the data behind the
enhanced confusion matrix, the live precision/recall at chosen thresholds
(computed by :mod:`hydra.thresholds`, the same code training uses) and the
list of model-vs-human disagreements. Saving thresholds needs an expert with
the ``thresholds`` grant on the plot type (or an admin) and leaves a
``ThresholdChange`` row per edited label; activating a model needs the admin
role. Both are checked here (``hydra.auth.require``), whatever the page shows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from sqlmodel import Session, col, func, select

from hydra import thresholds as th
from hydra.auth import require
from hydra.db.models import (
    Image,
    Label,
    Model,
    ModelClassification,
    Threshold,
    ThresholdChange,
    TrainingSet,
    TrainingSetImage,
    User,
    utcnow,
)
from hydra.db.queries import activate_model, get_model, thresholds_of
from hydra.services.access import require_admin

if TYPE_CHECKING:
    from hydra.inference import ServingModel


class LibraryError(ValueError):
    """A threshold or model request that cannot be honoured; the message says why."""


@dataclass(frozen=True)
class ModelSummary:
    """One line of the Library's model table."""

    id: int
    head: str
    labels: list[str]
    sampling: str | None
    training_size: int
    label_counts: dict
    created_at: datetime
    metrics: dict
    active: bool
    path: str
    input_size: tuple[int, int]
    shadow: bool = False  # runs beside the active model in hydra-serve (see hydra.services.shadow)


@dataclass(frozen=True)
class Classification:
    """A model's verdict on one held-out image, with the human label it was trained against."""

    image_id: int
    human: str
    predicted: str
    weights: dict[str, float]

    @property
    def weight(self) -> float:
        """The output weight of the predicted label (what the threshold is compared with)."""
        return float(self.weights.get(self.predicted, 0.0))


@dataclass(frozen=True)
class Disagreement:
    """A held-out image where model and human disagree (Training report row)."""

    image_id: int
    path: str
    human: str
    predicted: str
    weight: float
    current_label: str | None
    weights: dict[str, float] = field(default_factory=dict)

    @property
    def fixed(self) -> bool:
        """Whether someone has since changed the human label."""
        return self.current_label is not None and self.current_label != self.human


def models_of(plot_type_id: int, *, session: Session) -> list[ModelSummary]:
    """The plot type's models, newest first, with their training-set facts."""
    models = session.exec(
        select(Model).where(Model.plot_type_id == plot_type_id).order_by(col(Model.created_at).desc())
    ).all()
    set_ids = [m.training_set_id for m in models if m.training_set_id is not None]
    sets: dict[int, TrainingSet] = {}
    sizes: dict[int, int] = {}
    if set_ids:
        sets = {
            t.id: t for t in session.exec(select(TrainingSet).where(col(TrainingSet.id).in_(set_ids))).all()
        }
        sizes = dict(
            session.exec(
                select(TrainingSetImage.training_set_id, func.count())
                .where(col(TrainingSetImage.training_set_id).in_(set_ids))
                .group_by(TrainingSetImage.training_set_id)
            ).all()
        )
    out = []
    for m in models:
        ts = sets.get(m.training_set_id) if m.training_set_id else None
        counts = dict(ts.label_counts) if ts else dict(m.metrics.get("label_counts", {}))
        size = sizes.get(m.training_set_id, 0) if ts else 0
        out.append(
            ModelSummary(
                id=m.id,
                head=m.head,
                labels=list(m.labels),
                sampling=ts.sampling if ts else None,
                training_size=size or int(sum(counts.values())),
                label_counts=counts,
                created_at=m.created_at,
                metrics=dict(m.metrics),
                active=m.active,
                path=m.path,
                input_size=(m.input_height, m.input_width),
                shadow=m.shadow,
            )
        )
    return out


def classifications(model_id: int, *, session: Session, split: str | None = None) -> list[Classification]:
    """The model's held-out verdicts (optionally one split)."""
    query = select(
        ModelClassification.image_id,
        ModelClassification.human_label,
        ModelClassification.predicted_label,
        ModelClassification.weights,
    ).where(ModelClassification.model_id == model_id)
    if split is not None:
        query = query.where(ModelClassification.split == split)
    return [Classification(i, h, p, dict(w)) for i, h, p, w in session.exec(query).all()]


def confusion_cells(rows: list[Classification], labels: list[str]) -> dict[tuple[str, str], list[float]]:
    """``(human, predicted) -> output weights`` for every cell of the enhanced confusion matrix.

    Every pair of the model's labels is present (empty cells have an empty
    list); a human label the model does not know gets its own row.
    """
    humans = list(labels) + sorted({r.human for r in rows} - set(labels))
    cells: dict[tuple[str, str], list[float]] = {(h, p): [] for h in humans for p in labels}
    for r in rows:
        cells.setdefault((r.human, r.predicted), []).append(r.weight)
    return cells


@dataclass(frozen=True)
class LiveMetrics:
    """What a set of thresholds does on the held-out images (the sliders' live readout)."""

    per_label: dict[str, dict[str, float]]
    unconfirmed: int
    total: int


def as_arrays(rows: list[Classification], labels: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """N x L weights and N human label indices; images whose human label the model lacks are left out."""
    index = {lb: i for i, lb in enumerate(labels)}
    kept = [r for r in rows if r.human in index]
    weights = np.array([[float(r.weights.get(lb, 0.0)) for lb in labels] for r in kept], dtype=np.float64)
    truth = np.array([index[r.human] for r in kept], dtype=np.int64)
    return weights.reshape(len(kept), len(labels)), truth


def live_metrics(
    rows: list[Classification], labels: list[str], thresholds: Mapping[str, float]
) -> LiveMetrics:
    """Precision, recall, F1 per label and the unconfirmed count at ``thresholds``."""
    weights, truth = as_arrays(rows, labels)
    return LiveMetrics(
        per_label=th.label_metrics(weights, truth, labels, thresholds),
        unconfirmed=th.unconfirmed_count(weights, labels, thresholds) if len(truth) else 0,
        total=len(truth),
    )


def accuracy(rows: list[Classification]) -> float | None:
    """The share of verdicts that match the human label (None without any)."""
    return sum(r.human == r.predicted for r in rows) / len(rows) if rows else None


def default_thresholds(
    model_id: int, rows: list[Classification], labels: list[str], *, session: Session
) -> dict[str, float]:
    """The stored thresholds, with any missing label filled by its max-F1 value on ``rows``."""
    stored = thresholds_of(model_id, session=session)
    missing = [lb for lb in labels if lb not in stored]
    if missing:
        weights, truth = as_arrays(rows, labels)
        best = th.max_f1_thresholds(weights, truth, labels)
        stored.update({lb: best[lb].value for lb in missing})
    return {lb: stored[lb] for lb in labels}


def save_thresholds(
    user: User | None, model_id: int, values: Mapping[str, float], *, session: Session, method: str = "manual"
) -> int:
    """Store per-label thresholds of a model; returns how many changed.

    Needs the ``thresholds`` permission on the model's plot type. Each changed
    label updates its ``Threshold`` (who, when, method) and adds a
    ``ThresholdChange`` with the old and new value.
    """
    model = get_model(model_id, session=session)
    require(user, "thresholds", model.plot_type_id, session=session)
    return write_thresholds(model_id, values, session=session, method=method, set_by=user.id)


def write_thresholds(
    model_id: int,
    values: Mapping[str, float],
    *,
    session: Session,
    method: str = "manual",
    methods: Mapping[str, str] | None = None,
    set_by: int | None = None,
) -> int:
    """The one threshold write: store per-label thresholds of a model; returns how many changed.

    Checks no permission: :func:`save_thresholds` does for a user's edit, and
    ``hydra train`` (:mod:`hydra.services.training`) records a new model's
    thresholds with it. Values are rounded to 4 decimals; an unchanged label is
    left alone. Each changed label updates its ``Threshold`` (who, when,
    method: ``methods[label]``, else ``method``) and adds a ``ThresholdChange``
    with the old and new value.

    Raises:
        LibraryError: a label the model lacks, or a value outside 0..1.
    """
    model = get_model(model_id, session=session)
    unknown = set(values) - set(model.labels)
    if unknown:
        raise LibraryError(
            f"label(s) {sorted(unknown)} are not labels of model {model_id}: {list(model.labels)}"
        )
    bad = {k: v for k, v in values.items() if not 0.0 <= float(v) <= 1.0}
    if bad:
        raise LibraryError(f"thresholds are between 0 and 1; got {bad}")
    current = {
        t.label: t for t in session.exec(select(Threshold).where(Threshold.model_id == model_id)).all()
    }
    now = utcnow()
    changed = 0
    for label, value in values.items():
        value = round(float(value), 4)
        how = (methods or {}).get(label, method)
        row = current.get(label)
        old = row.value if row else None
        if old is not None and abs(old - value) < 1e-9:
            continue
        row = row or Threshold(model_id=model_id, label=label, value=value)
        row.value, row.method, row.set_by, row.set_at = value, how, set_by, now
        session.add(row)
        session.add(
            ThresholdChange(
                model_id=model_id,
                label=label,
                old_value=old,
                new_value=value,
                method=how,
                set_by=set_by,
                set_at=now,
            )
        )
        changed += 1
    session.flush()
    return changed


def threshold_changes(
    model_id: int, *, session: Session, limit: int = 20
) -> list[tuple[str, float | None, float, str, datetime]]:
    """The newest threshold edits of a model: (label, old, new, who, when)."""
    rows = session.exec(
        select(
            ThresholdChange.label,
            ThresholdChange.old_value,
            ThresholdChange.new_value,
            User.name,
            ThresholdChange.set_at,
        )
        .join(User, User.id == ThresholdChange.set_by, isouter=True)
        .where(ThresholdChange.model_id == model_id)
        .order_by(col(ThresholdChange.set_at).desc(), col(ThresholdChange.id).desc())
        .limit(limit)
    ).all()
    return [(lb, old, new, who or "-", at) for lb, old, new, who, at in rows]


def activate(user: User | None, model_id: int, *, session: Session) -> Model:
    """Make the model its plot type's active one (admin only, or the CLI's operator).

    A shadow model activated so (the Library's "Activate candidate") is a shadow no more.
    """
    model = get_model(model_id, session=session)
    require_admin(user, model.plot_type_id, session=session)
    return activate_model(model_id, session=session)


def disagreements(model_id: int, *, session: Session, limit: int = 500) -> list[Disagreement]:
    """Held-out images where the model and the human disagree, the most confident model first.

    Label errors of a few percent are normal; the top of this list is where
    they are found.
    """
    rows = session.exec(
        select(
            ModelClassification.image_id,
            Image.path,
            ModelClassification.human_label,
            ModelClassification.predicted_label,
            ModelClassification.weights,
            Label.name,
        )
        .join(Image, Image.id == ModelClassification.image_id)
        .join(Label, Label.id == Image.label_id, isouter=True)
        .where(
            ModelClassification.model_id == model_id,
            ModelClassification.human_label != ModelClassification.predicted_label,
        )
    ).all()
    out = [
        Disagreement(i, path, h, p, float(dict(w).get(p, 0.0)), cur, dict(w))
        for i, path, h, p, w, cur in rows
    ]
    out.sort(key=lambda d: (-d.weight, d.image_id))
    return out[:limit]


def report_heatmap(
    loaded: ServingModel,
    image_path: str | Path,
    label: str,
    cache_path: Path,
    *,
    mask: list | None = None,
) -> Path:
    """The image with the Grad-CAM map of ``label`` blended in, computed once and cached as PNG.

    Goes through the model's own preparation and Grad-CAM
    (:meth:`hydra.inference.ServingModel.prepare` and ``cam``) on the pixels
    the model saw, so the map explains the verdict the report shows.
    ``mask`` replaces the model's mask (its plot type's) when given.
    """
    if cache_path.is_file():
        return cache_path
    from dataclasses import replace

    from PIL import Image as PILImage

    from hydra.data.images import load_image, prepare
    from hydra.heads.cam import overlay

    if label not in loaded.labels:
        raise LibraryError(f"label {label!r} is not one of the model's labels {loaded.labels}")
    model = loaded if mask is None else replace(loaded, mask=[list(r) for r in mask])
    img = load_image(image_path)
    cam = model.cam(model.prepare(img)[None], [model.labels.index(label)])[0]
    rgb = overlay(prepare(img, (img.height, img.width), 3, model.mask or None), cam)
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache_path.with_suffix(".tmp.png")
    PILImage.fromarray(rgb).save(tmp)
    tmp.replace(cache_path)
    return cache_path
