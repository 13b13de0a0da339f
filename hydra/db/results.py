"""The serve layer's writes (the Keeper's batches) and the result queries.

Writes are multi-row ``INSERT``s that skip rows whose unique key already
exists (``INSERT ... ON CONFLICT DO NOTHING`` on SQLite, ``ON DUPLICATE KEY UPDATE
id = id`` on MySQL/MariaDB), so a report delivered twice is stored once. Ids of the rows
just written are read back by their unique keys in one query each. None of
these functions commits: the Keeper's ``session_scope`` makes one
transaction of a whole batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Table, delete, insert, tuple_
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col, select

from hydra.db.models import ErrorRecord, Heartbeat, Image, Inference, PlotType, RunTime

CHUNK = 500  # rows per IN (...) list and per INSERT statement


def _chunks(items: Sequence[Any], n: int = CHUNK) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def insert_ignore(session: Session, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows``, silently skipping those that hit a unique key."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    for part in _chunks(rows):
        if dialect == "sqlite":
            stmt = sqlite_insert(table).on_conflict_do_nothing()
        elif dialect in ("mysql", "mariadb"):
            # not INSERT IGNORE: that would also swallow foreign-key and data errors
            pk = next(iter(table.primary_key.columns))
            stmt = mysql_insert(table).on_duplicate_key_update({pk.name: pk})
        else:
            stmt = insert(table)
        session.execute(stmt, list(part))


def _by_inference_key(
    keys: Sequence[tuple[str, int]], column, *, session: Session
) -> dict[tuple[str, int], Any]:
    """``column`` of the stored inferences among ``(source_key, model_id)`` pairs."""
    found: dict[tuple[str, int], Any] = {}
    for part in _chunks(list(keys)):
        rows = session.exec(
            select(Inference.source_key, Inference.model_id, column).where(
                tuple_(col(Inference.source_key), col(Inference.model_id)).in_(list(part))
            )
        ).all()
        found.update({(sk, mid): value for sk, mid, value in rows})
    return found


def existing_inferences(keys: Sequence[tuple[str, int]], *, session: Session) -> dict[tuple[str, int], str]:
    """Of ``(source_key, model_id)`` pairs, those already stored, with their stored path."""
    return _by_inference_key(keys, Inference.path, session=session)


def inference_ids(keys: Sequence[tuple[str, int]], *, session: Session) -> dict[tuple[str, int], int]:
    """Of ``(source_key, model_id)`` pairs, those already stored, with their row id."""
    return _by_inference_key(keys, Inference.id, session=session)


def image_hashes(paths: Sequence[str], *, session: Session) -> dict[str, tuple[int, str]]:
    """Of image paths, those already registered: path -> (id, content hash)."""
    out: dict[str, tuple[int, str]] = {}
    for part in _chunks(list(paths)):
        rows = session.exec(
            select(Image.path, Image.id, Image.content_hash).where(col(Image.path).in_(list(part)))
        ).all()
        out.update({p: (i, h) for p, i, h in rows})
    return out


def insert_inferences(rows: list[dict[str, Any]], *, session: Session) -> dict[tuple[str, int], int]:
    """Store inference rows (duplicates skipped); their ids by (source_key, model_id)."""
    insert_ignore(session, Inference.__table__, rows)
    return inference_ids([(r["source_key"], r["model_id"]) for r in rows], session=session)


def insert_images(rows: list[dict[str, Any]], *, session: Session) -> dict[str, int]:
    """Register kept images (an existing path is skipped); their ids by path."""
    insert_ignore(session, Image.__table__, rows)
    return {p: i for p, (i, _) in image_hashes([r["path"] for r in rows], session=session).items()}


def insert_runtime(rows: list[dict[str, Any]], *, session: Session) -> None:
    insert_ignore(session, RunTime.__table__, rows)


def insert_errors(rows: list[dict[str, Any]], *, session: Session) -> None:
    for part in _chunks(rows):
        session.execute(insert(ErrorRecord.__table__), list(part))


def prune_runtime(before: datetime, *, session: Session) -> int:
    """Drop the RunTime rows older than ``before``; how many went."""
    result = session.execute(delete(RunTime).where(col(RunTime.created_at) < before))
    return int(result.rowcount or 0)


def upsert_heartbeats(beats: Sequence[dict[str, Any]], *, session: Session) -> None:
    """One Heartbeat row per process name, updated in place."""
    if not beats:
        return
    names = [b["process"] for b in beats]
    rows = {
        h.process: h for h in session.exec(select(Heartbeat).where(col(Heartbeat.process).in_(names))).all()
    }
    for b in beats:
        row = rows.get(b["process"]) or Heartbeat(process=b["process"])
        row.pid, row.host, row.info, row.last_seen = b["pid"], b["host"][:128], b["info"], b["last_seen"]
        session.add(row)


def recent_results(
    *, session: Session, plot_type: str | None = None, since: datetime | None = None, limit: int = 1000
) -> list[dict[str, Any]]:
    """Stored inferences, newest first, as the dicts ``hydra results`` prints."""
    stmt = select(Inference, PlotType.name).join(PlotType, col(PlotType.id) == col(Inference.plot_type_id))
    if plot_type:
        stmt = stmt.where(PlotType.name == plot_type)
    if since is not None:
        stmt = stmt.where(col(Inference.created_at) >= since)
    stmt = stmt.order_by(col(Inference.created_at).desc(), col(Inference.id).desc()).limit(limit)
    return [
        {
            "path": inf.path,
            "plot_type": name,
            "run": inf.run,
            "chunk": inf.chunk,
            "label": inf.label,
            "weight": inf.weight,
            "weights": inf.weights,
            "confirmed": inf.confirmed,
            "is_problem": inf.is_problem,
            "model_id": inf.model_id,
            "heatmap_path": inf.heatmap_path,
            "created_at": inf.created_at,
            "timings": inf.timings,
        }
        for inf, name in session.exec(stmt).all()
    ]
