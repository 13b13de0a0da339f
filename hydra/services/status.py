"""Pipeline health: serve heartbeats, per-stage timings and error records.

Read by the Status page, the app's sidebar (heartbeats) and ``hydra errors``
(:func:`recent_errors`). Every function that reads takes a keyword-only
``session`` and returns plain dataclasses with aware UTC times; none of them
writes.

Example:
    >>> with session_scope(engine) as session:  # doctest: +SKIP
    ...     rows = timing_rows(session=session, since=utcnow() - timedelta(hours=1))
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlmodel import Session, col

from hydra.db.models import LIVE, ErrorRecord, Heartbeat, Inference

# STAGES: the pipeline stages, in order, whose per-image durations (ms) the Keeper stores in
# Inference.timings; TIMING_KEYS: those keys plus "wait" and "total". Defined once, with the
# messages that carry the timestamps; the Status page reads them from here.
from hydra.serve.messages import STAGES, TIMING_KEYS  # noqa: F401
from hydra.services._common import aware


@dataclass
class HeartbeatView:
    process: str
    pid: int
    host: str
    info: dict[str, Any]
    last_seen: datetime


def heartbeats(*, session: Session) -> list[HeartbeatView]:
    """The last sign of life of every serve process, by process name."""
    rows = session.scalars(select(Heartbeat).order_by(Heartbeat.process))
    return [HeartbeatView(h.process, h.pid, h.host, dict(h.info), aware(h.last_seen)) for h in rows]


def stage_durations(timings: dict[str, Any]) -> dict[str, float]:
    """Milliseconds per stage (and wait/total) from one Inference.timings dict; other keys ignored."""
    return {k: float(v) for k in TIMING_KEYS if isinstance(v := timings.get(k), int | float)}


@dataclass
class TimingRow:
    created_at: datetime
    run: int
    plot_type_id: int
    stages: dict[str, float]


def timing_rows(*, session: Session, since: datetime, limit: int = 50_000) -> list[TimingRow]:
    """Per-stage durations of the newest inferences since ``since`` (capped at ``limit``)."""
    rows = session.execute(
        select(Inference.created_at, Inference.run, Inference.plot_type_id, Inference.timings)
        .where(Inference.created_at >= since, Inference.origin == LIVE)
        .order_by(col(Inference.created_at).desc())
        .limit(limit)
    ).all()
    return [TimingRow(aware(t), run, pt, stage_durations(timings or {})) for t, run, pt, timings in rows]


@dataclass
class ErrorView:
    created_at: datetime
    stage: str
    kind: str
    filename: str
    message: str
    quarantine_path: str | None
    path: str


def recent_errors(*, session: Session, since: datetime | None = None, limit: int = 500) -> list[ErrorView]:
    """Error records (since ``since``, when given), newest first, at most ``limit``."""
    query = select(ErrorRecord)
    if since is not None:
        query = query.where(col(ErrorRecord.created_at) >= since)
    rows = session.scalars(
        query.order_by(col(ErrorRecord.created_at).desc(), col(ErrorRecord.id).desc()).limit(limit)
    )
    return [
        ErrorView(aware(e.created_at), e.stage, e.kind, e.filename, e.message, e.quarantine_path, e.path)
        for e in rows
    ]
