"""The Log page's service: confirmed problems and unconfirmed verdicts of a time window or of runs.

:func:`log_entries` reads the live inferences (the active models' in
``hydra-serve``; never a shadow model's or a reprocessing's), joined to their plot type's name, and
returns plain :class:`LogEntry` dataclasses with aware UTC times, newest
first. It only reads; it takes a keyword-only ``session``.

Example:
    >>> with session_scope(engine) as session:  # doctest: +SKIP
    ...     entries = log_entries(session=session, since=utcnow() - timedelta(hours=24))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, and_, or_, select
from sqlmodel import Session, col

from hydra.db.models import LIVE, Inference, PlotType
from hydra.services._common import aware


@dataclass
class LogEntry:
    inference_id: int
    plot_type_id: int
    plot_type: str
    run: int
    chunk: int | None
    label: str
    weight: float
    confirmed: bool
    is_problem: bool
    weights: dict[str, float]
    image_path: str
    heatmap_path: str | None
    created_at: datetime


def log_entries(
    *,
    session: Session,
    since: datetime | None,
    until: datetime | None = None,
    plot_type_ids: Sequence[int] | None = None,
    include_unconfirmed: bool = True,
    run_min: int | None = None,
    run_max: int | None = None,
    group_ids: Sequence[int] | None = None,
    limit: int = 5000,
) -> list[LogEntry]:
    """Confirmed problems (and unconfirmed verdicts) in a time window, newest first.

    ``since=None`` reads all time: the Log page passes it when a run or run
    range is given, so an older run is found whatever the window says.
    ``run_min``/``run_max`` bound the run number (both: one run when equal);
    ``group_ids`` keeps the plot types of those detector groups.
    """
    wanted: ColumnElement[bool] = and_(
        col(Inference.confirmed).is_(True), col(Inference.is_problem).is_(True)
    )
    if include_unconfirmed:
        wanted = or_(wanted, col(Inference.confirmed).is_(False))
    query = (
        select(Inference, PlotType.name)
        .join(PlotType, PlotType.id == Inference.plot_type_id)
        .where(Inference.origin == LIVE, wanted)
    )
    if since is not None:
        query = query.where(Inference.created_at >= since)
    if until is not None:
        query = query.where(Inference.created_at < until)
    if plot_type_ids:
        query = query.where(col(Inference.plot_type_id).in_(plot_type_ids))
    if run_min is not None:
        query = query.where(Inference.run >= run_min)
    if run_max is not None:
        query = query.where(Inference.run <= run_max)
    if group_ids:
        query = query.where(col(PlotType.group_id).in_(group_ids))
    rows = session.execute(query.order_by(col(Inference.created_at).desc()).limit(limit)).all()
    return [
        LogEntry(
            i.id, i.plot_type_id, name, i.run, i.chunk, i.label, i.weight, i.confirmed, i.is_problem,
            dict(i.weights), i.path, i.heatmap_path, aware(i.created_at),
        )
        for i, name in rows
    ]  # fmt: skip
