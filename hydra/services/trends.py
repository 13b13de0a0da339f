"""The Trends page's service: one plot type's output weights over a time window.

:func:`weight_series` returns the inferences' weights oldest first, with the
plot type's labels (ORM rows, in label order) and the stored thresholds of
every model that made one of them. It only reads; it takes a keyword-only
``session``.

Example:
    >>> with session_scope(engine) as session:  # doctest: +SKIP
    ...     series = weight_series(plot_type_id, session=session, since=utcnow() - timedelta(days=1))
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlmodel import Session, col

from hydra.db.models import LIVE, Inference, Label
from hydra.db.queries import thresholds_of
from hydra.services._common import aware


@dataclass
class WeightPoint:
    created_at: datetime
    run: int
    chunk: int | None
    model_id: int
    label: str
    confirmed: bool
    weights: dict[str, float]


@dataclass
class WeightSeries:
    points: list[WeightPoint]
    labels: list[Label]
    thresholds: dict[int, dict[str, float]]  # model id -> label -> value


def weight_series(
    plot_type_id: int,
    *,
    session: Session,
    since: datetime,
    until: datetime | None = None,
    limit: int = 20_000,
) -> WeightSeries:
    """Output weights of one plot type over a window, with its labels and thresholds.

    At most ``limit`` points: the newest ones, returned oldest first.
    """
    query = select(Inference).where(
        Inference.plot_type_id == plot_type_id, Inference.created_at >= since, Inference.origin == LIVE
    )
    if until is not None:
        query = query.where(Inference.created_at < until)
    rows = session.scalars(query.order_by(col(Inference.created_at).desc()).limit(limit))
    points = [
        WeightPoint(aware(i.created_at), i.run, i.chunk, i.model_id, i.label, i.confirmed, dict(i.weights))
        for i in rows
    ]
    points.reverse()
    model_ids = sorted({p.model_id for p in points})
    labels = list(
        session.scalars(select(Label).where(Label.plot_type_id == plot_type_id).order_by(Label.ordinal))
    )
    return WeightSeries(points, labels, {m: thresholds_of(m, session=session) for m in model_ids})
