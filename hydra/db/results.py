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

from sqlalchemy import Table, delete, insert
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col, select

from hydra.db.models import LIVE, ErrorRecord, Heartbeat, Image, Inference, PlotType, RunTime

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
    wanted = set(keys)
    # by source key alone, the unique index's first column: a plain IN list that every backend
    # looks up in the index (a row-value IN is not always one); the model ids are matched here
    conn = session.connection()  # Core: no ORM bookkeeping for plain columns (once per batch)
    for part in _chunks(sorted({k for k, _ in wanted})):
        rows = conn.execute(
            select(Inference.source_key, Inference.model_id, column).where(
                col(Inference.source_key).in_(list(part))
            )
        ).all()
        found.update({(sk, mid): value for sk, mid, value in rows if (sk, mid) in wanted})
    return found


def existing_inferences(keys: Sequence[tuple[str, int]], *, session: Session) -> dict[tuple[str, int], str]:
    """Of ``(source_key, model_id)`` pairs, those already stored, with their stored path."""
    return _by_inference_key(keys, Inference.path, session=session)


def inference_ids(keys: Sequence[tuple[str, int]], *, session: Session) -> dict[tuple[str, int], int]:
    """Of ``(source_key, model_id)`` pairs, those already stored, with their row id."""
    return _by_inference_key(keys, Inference.id, session=session)


def live_results(keys: Sequence[str], *, session: Session) -> dict[str, tuple[str, int | None]]:
    """Of source keys, those with a stored live inference: key -> (its file's path, its kept image id)."""
    found: dict[str, tuple[str, int | None]] = {}
    for part in _chunks(list(keys)):
        rows = session.exec(
            select(Inference.source_key, Inference.path, Inference.kept_image_id).where(
                col(Inference.source_key).in_(list(part)), Inference.origin == LIVE
            )
        ).all()
        found.update({sk: (path, kept) for sk, path, kept in rows})
    return found


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


def _driver_rows(
    session: Session, table: Table, columns: list[str], rows: list[dict[str, Any]], extra: dict[str, Any]
) -> list[tuple]:
    """``rows`` as the driver takes them, each value through its column type's bind processor.

    The very values SQLAlchemy would send (JSON serialised, datetimes in UTC and
    in the backend's stored form), without its per-row statement machinery:
    ``columns`` from each row, then the ``extra`` columns' constant values. A
    value repeated from the row before (a batch's ``created_at``) is processed once.
    """
    dialect = session.get_bind().dialect

    def processor(name: str) -> Any:
        return table.c[name].type.dialect_impl(dialect).bind_processor(dialect)

    procs = [processor(name) for name in columns]
    tail = tuple(p(v) if (p := processor(name)) is not None else v for name, v in extra.items())
    out = []
    last: list[Any] = [object()] * len(columns)
    done: list[Any] = [None] * len(columns)
    for row in rows:
        values = []
        for i, name in enumerate(columns):
            v = row[name]
            proc = procs[i]
            if proc is not None:
                if v is not last[i]:
                    last[i], done[i] = v, proc(v)
                v = done[i]
            values.append(v)
        out.append((*values, *tail))
    return out


def _columns(table: Table, row: dict[str, Any]) -> tuple[list[str], dict[str, Any]] | None:
    """The columns rows with ``row``'s keys give, and the constant defaults of those they leave out.

    What SQLAlchemy would fill in: a plain Python default (``origin``:
    ``live``); a column with none gets its server default. None if a column
    left out has a computed default (a function), which only SQLAlchemy fills in.
    """
    extra: dict[str, Any] = {}
    for c in table.columns:
        if c.name in row or c.default is None:
            continue
        if not c.default.is_scalar:
            return None
        extra[c.name] = c.default.arg
    return list(row), extra


def _insert_sql(session: Session, table: Table, columns: list[str], rows: int, returning: str = "") -> str:
    """``INSERT INTO table (columns) VALUES (...)`` with ``rows`` rows of placeholders."""
    dialect = session.get_bind().dialect
    quote = dialect.identifier_preparer.quote
    mark = "?" if dialect.paramstyle in ("qmark", "numeric") else "%s"
    one = "(" + ", ".join([mark] * len(columns)) + ")"
    names = ", ".join(quote(c) for c in columns)
    sql = f"INSERT INTO {quote(table.name)} ({names}) VALUES {', '.join([one] * rows)}"
    return f"{sql} RETURNING {returning}" if returning else sql


def insert_new(session: Session, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert rows known to be new (plain ``INSERT``: a unique key hit raises ``IntegrityError``).

    One driver ``executemany`` per chunk: SQLite's own loop, or pymysql's
    multi-row ``INSERT`` (one round trip per chunk).
    """
    if not rows:
        return
    plan = _columns(table, rows[0])
    if plan is None:
        session.execute(insert(table), rows)
        return
    columns, extra = plan
    conn = session.connection()
    sql = _insert_sql(session, table, [*columns, *extra], 1)
    for part in _chunks(rows, 1000):
        conn.exec_driver_sql(sql, _driver_rows(session, table, columns, list(part), extra))


def insert_new_inferences(rows: list[dict[str, Any]], *, session: Session) -> dict[tuple[str, int], int]:
    """Store inference rows known to be new (checked in this transaction); their ids by key.

    Where the backend has ``RETURNING`` (SQLite >= 3.35, MariaDB >= 10.5) one
    multi-row ``INSERT ... RETURNING`` per chunk: one round trip, no
    read-back query; elsewhere the insert, then a read-back. A row stored
    meanwhile after all fails the statement (``IntegrityError``, and with it
    the transaction) instead of being skipped: the Keeper then writes the
    batch item by item, and the check finds it. Every row has the same keys.
    """
    if not rows:
        return {}
    t = Inference.__table__
    plan = _columns(t, rows[0])
    if plan is None or not session.get_bind().dialect.insert_returning:
        insert_new(session, t, rows)
        return inference_ids([(r["source_key"], r["model_id"]) for r in rows], session=session)
    columns, extra = plan
    conn = session.connection()
    returning = "source_key, model_id, id"
    per = max(1, min(1000, 32000 // (len(columns) + len(extra))))  # SQLite takes at most 32766 parameters
    ids: dict[tuple[str, int], int] = {}
    for part in _chunks(rows, per):
        values = _driver_rows(session, t, columns, list(part), extra)
        sql = _insert_sql(session, t, [*columns, *extra], len(values), returning)
        flat = tuple(v for row in values for v in row)
        ids.update({(sk, mid): i for sk, mid, i in conn.exec_driver_sql(sql, flat)})
    return ids


def insert_images(rows: list[dict[str, Any]], *, session: Session) -> dict[str, int]:
    """Register kept images (an existing path is skipped); their ids by path."""
    insert_ignore(session, Image.__table__, rows)
    return {p: i for p, (i, _) in image_hashes([r["path"] for r in rows], session=session).items()}


def insert_runtime(rows: list[dict[str, Any]], *, session: Session) -> None:
    insert_ignore(session, RunTime.__table__, rows)


def insert_new_runtime(rows: list[dict[str, Any]], *, session: Session) -> None:
    """RunTime rows of inferences stored in this transaction (new by construction)."""
    insert_new(session, RunTime.__table__, rows)


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
            "origin": inf.origin,
            "heatmap_path": inf.heatmap_path,
            "created_at": inf.created_at,
            "timings": inf.timings,
        }
        for inf, name in session.exec(stmt).all()
    ]
