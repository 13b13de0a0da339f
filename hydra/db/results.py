"""The serve layer's writes (the Keeper's batches) and the result queries.

Writes are multi-row ``INSERT``s that skip rows whose unique key already
exists (``INSERT ... ON CONFLICT DO NOTHING`` on SQLite, ``ON DUPLICATE KEY UPDATE
id = id`` on MySQL/MariaDB), so a report delivered twice is stored once. Ids of the rows
just written are read back by their unique keys in one query each. The
Keeper's live results, checked beforehand, take a faster path
(:func:`insert_new_results`): plain multi-row inserts, with pymysql the values
escaped a column at a time, and their RunTime rows copied by the database
(``INSERT ... SELECT``). None of these functions commits: the Keeper's ``session_scope`` makes one
transaction of a whole batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, CursorResult, Table, delete, insert
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
    keys: Sequence[tuple[str, int]], column: str, *, session: Session
) -> dict[tuple[str, int], Any]:
    """``column`` of the stored inferences among ``(source_key, model_id)`` pairs."""
    found: dict[tuple[str, int], Any] = {}
    wanted = set(keys)
    # by source key alone, the unique index's first column: a plain IN list that every backend
    # looks up in the index (a row-value IN is not always one); the model ids are matched here
    conn = session.connection()  # the Keeper's check, once per batch: no statement compiled per call
    quote = conn.dialect.identifier_preparer.quote
    head = f"SELECT source_key, model_id, {quote(column)} FROM {quote(Inference.__tablename__)} WHERE source_key "
    for part in _chunks(sorted({k for k, _ in wanted})):
        in_list, params = _in_list(conn, part)
        rows = _run(conn, head + in_list, params).all()
        found.update({(sk, mid): value for sk, mid, value in rows if (sk, mid) in wanted})
    return found


def existing_inferences(keys: Sequence[tuple[str, int]], *, session: Session) -> dict[tuple[str, int], str]:
    """Of ``(source_key, model_id)`` pairs, those already stored, with their stored path."""
    return _by_inference_key(keys, "path", session=session)


def inference_ids(keys: Sequence[tuple[str, int]], *, session: Session) -> dict[tuple[str, int], int]:
    """Of ``(source_key, model_id)`` pairs, those already stored, with their row id."""
    return _by_inference_key(keys, "id", session=session)


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


def _column_values(
    session: Session, table: Table, columns: list[str], rows: Sequence[dict[str, Any]], extra: dict[str, Any]
) -> list[Sequence[Any]]:
    """``rows`` column by column, each value as the driver takes it, then the ``extra`` columns.

    The very values SQLAlchemy would send (each through its column type's bind
    processor: JSON serialised, datetimes in UTC and in the backend's stored
    form), without its per-row statement machinery. A column whose values are
    all one object (a batch's ``created_at``) is processed once.
    """
    dialect = session.get_bind().dialect
    n = len(rows)
    if len(columns) == 1:
        values: list[Sequence[Any]] = [[row[columns[0]] for row in rows]]
    else:
        values = list(zip(*map(itemgetter(*columns), rows)))
    for i, name in enumerate([*columns, *extra]):
        proc = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        if i >= len(columns):
            v = extra[name]
            values.append([proc(v) if proc is not None else v] * n)
        elif proc is not None:
            first = values[i][0]
            if all(v is first for v in values[i]):
                values[i] = [proc(first)] * n
            else:
                values[i] = list(map(proc, values[i]))
    return values


def _is_pymysql(conn: Connection) -> bool:
    return conn.dialect.name in ("mysql", "mariadb") and conn.dialect.driver == "pymysql"


# pymysql's escapes (``escape_string``), the backslash first: the others bring in backslashes
_ESCAPES = (
    ("\\", "\\\\"),
    ("\0", "\\0"),
    ("\n", "\\n"),
    ("\r", "\\r"),
    ("\x1a", "\\Z"),
    ("'", "\\'"),
    ('"', '\\"'),
)
_SEP = "\x01"  # joins a column's values (it needs no escape)


def _strings(dbapi_conn: Any, values: list[str]) -> list[str]:
    """Strings as pymysql writes them into a statement: quoted, escaped as the server's SQL mode wants.

    A column at a time: its values joined, each character that needs an
    escape replaced once in the whole text (a JSON column has dozens per row,
    which ``escape_string`` replaces one value at a time, at ten times the
    cost), then split again. A column whose values hold the separator
    itself is escaped value by value.
    """
    from pymysql.constants.SERVER_STATUS import SERVER_STATUS_NO_BACKSLASH_ESCAPES
    from pymysql.converters import escape_string

    if dbapi_conn.server_status & SERVER_STATUS_NO_BACKSLASH_ESCAPES:
        return ["'" + v.replace("'", "''") + "'" for v in values]
    text = _SEP.join(values)
    if text.count(_SEP) != len(values) - 1:
        return ["'" + v + "'" for v in map(escape_string, values)]
    for char, escaped in _ESCAPES:
        if char in text:
            text = text.replace(char, escaped)
    return ("'" + text.replace(_SEP, "'" + _SEP + "'") + "'").split(_SEP)


def _literals(dbapi_conn: Any, values: Sequence[Any]) -> Sequence[str]:
    """One column's values as pymysql writes them into a statement (its escaping, not its dispatch).

    pymysql escapes each value through a chain of Python calls; a column
    holds one type, so it is written here a column at a time, and only
    values of other types (datetimes) go through pymysql's own ``escape``.
    """
    if not values:
        return []
    first = values[0]
    if all(v is first for v in values):  # a constant (created_at, origin): escaped once
        return [dbapi_conn.escape(first)] * len(values)
    kinds = set(map(type, values)) - {type(None)}
    if kinds == {str}:
        strings = iter(_strings(dbapi_conn, [v for v in values if v is not None]))
        return ["NULL" if v is None else next(strings) for v in values]
    if kinds == {int}:
        return ["NULL" if v is None else str(v) for v in values]
    if kinds == {bool}:
        return ["NULL" if v is None else ("1" if v else "0") for v in values]
    if kinds == {float}:
        from pymysql.converters import escape_float  # repr, marked a double; inf and nan refused

        return ["NULL" if v is None else escape_float(v) for v in values]
    if kinds == {datetime}:  # as pymysql's escape_datetime writes it (time zone ignored), 5x cheaper
        return ["NULL" if v is None else "'" + v.replace(tzinfo=None).isoformat(" ") + "'" for v in values]
    escape = dbapi_conn.escape
    return ["NULL" if v is None else escape(v) for v in values]


def _in_list(conn: Connection, values: Sequence[Any]) -> tuple[str, tuple | None]:
    """``IN (...)`` of ``values`` and its parameters: placeholders, or with pymysql the values written in."""
    if _is_pymysql(conn):
        return f"IN ({','.join(_literals(conn.connection.driver_connection, values))})", None
    mark = "?" if conn.dialect.paramstyle in ("qmark", "numeric") else "%s"
    return f"IN ({', '.join([mark] * len(values))})", tuple(values)


def _run(conn: Connection, sql: str, params: tuple | list | None) -> CursorResult:
    """Execute driver SQL; ``params`` None: the values are in ``sql`` (no %-formatting by pymysql)."""
    if params is None:
        return conn.exec_driver_sql(sql, execution_options={"no_parameters": True})
    return conn.exec_driver_sql(sql, params)


MAX_STATEMENT = 1_000_000  # characters of one multi-row INSERT (MariaDB's max_allowed_packet: 16 MiB)


def _insert_values(session: Session, table: Table, names: list[str], values: list[Sequence[Any]]) -> None:
    """``INSERT INTO table (names) VALUES ...`` of column-wise ``values``, in as few round trips as fit.

    With pymysql the rows are written into multi-row statements (up to
    ``MAX_STATEMENT`` characters each); elsewhere one driver ``executemany``
    (SQLite's own loop over one prepared statement).
    """
    conn = session.connection()
    quote = conn.dialect.identifier_preparer.quote
    head = f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in names)}) VALUES "
    if not _is_pymysql(conn):
        mark = "?" if conn.dialect.paramstyle in ("qmark", "numeric") else "%s"
        _run(conn, head + "(" + ", ".join([mark] * len(names)) + ")", list(zip(*values)))
        return
    dbapi_conn = conn.connection.driver_connection
    rows = ["(" + ",".join(row) + ")" for row in zip(*(_literals(dbapi_conn, col) for col in values))]
    start, size = 0, 0
    for i, row in enumerate(rows):
        if size and size + len(row) > MAX_STATEMENT:
            _run(conn, head + ",".join(rows[start:i]), None)
            start, size = i, 0
        size += len(row) + 1
    _run(conn, head + ",".join(rows[start:]), None)


def insert_new(session: Session, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert rows known to be new (plain ``INSERT``: a unique key hit raises ``IntegrityError``).

    Every row has the same keys.
    """
    if not rows:
        return
    plan = _columns(table, rows[0])
    if plan is None:
        session.execute(insert(table), rows)
        return
    columns, extra = plan
    _insert_values(session, table, [*columns, *extra], _column_values(session, table, columns, rows, extra))


# RunTime's columns, from the inference row each copies (every RunTime column but its id)
RUNTIME_FROM_INFERENCE = {
    "inference_id": "id", "plot_type_id": "plot_type_id", "run": "run", "chunk": "chunk", "label": "label",
    "weight": "weight", "confirmed": "confirmed", "is_problem": "is_problem", "image_path": "path",
    "heatmap_path": "heatmap_path", "created_at": "created_at",
}  # fmt: skip


def _copy_to_runtime(session: Session, keys: Sequence[tuple[str, int]]) -> None:
    """Copy the stored inferences of ``(source_key, model_id)`` pairs into the RunTime window.

    ``INSERT ... SELECT`` by the unique key, one key list per model: the
    database reads the rows it has just written, so no id comes back to Python.
    """
    by_model: dict[int, list[str]] = {}
    for sk, mid in keys:
        by_model.setdefault(mid, []).append(sk)
    conn = session.connection()
    quote = conn.dialect.identifier_preparer.quote
    target = ", ".join(quote(c) for c in RUNTIME_FROM_INFERENCE)
    source = ", ".join(quote(c) for c in RUNTIME_FROM_INFERENCE.values())
    where, params = [], []
    for mid, sks in by_model.items():
        in_list, values = _in_list(conn, sks)
        where.append(f"(model_id = {int(mid)} AND source_key {in_list})")
        params.extend(values or ())
    sql = (
        f"INSERT INTO {quote(RunTime.__tablename__)} ({target}) "
        f"SELECT {source} FROM {quote(Inference.__tablename__)} WHERE {' OR '.join(where)}"
    )
    _run(conn, sql, None if _is_pymysql(conn) else tuple(params))


def insert_new_results(rows: list[dict[str, Any]], *, session: Session) -> None:
    """Store live inference rows known to be new (checked in this transaction) and their RunTime rows.

    Per chunk one multi-row ``INSERT`` of the inferences and one ``INSERT ...
    SELECT`` that copies them into the RunTime window. A row stored meanwhile
    after all fails the statement (``IntegrityError``, and with it the
    transaction) instead of being skipped: the Keeper then writes the batch
    item by item, and the check finds it. Every row has the same keys.
    """
    for part in _chunks(rows):
        insert_new(session, Inference.__table__, list(part))
        _copy_to_runtime(session, [(r["source_key"], r["model_id"]) for r in part])


def insert_images(rows: list[dict[str, Any]], *, session: Session) -> dict[str, int]:
    """Register kept images (an existing path is skipped); their ids by path."""
    insert_ignore(session, Image.__table__, rows)
    return {p: i for p, (i, _) in image_hashes([r["path"] for r in rows], session=session).items()}


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
