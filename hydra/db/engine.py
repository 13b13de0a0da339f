"""One engine factory for every backend, and the session context manager."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from pydantic_core import to_json
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session, create_engine


def json_text(value: object) -> str:
    """A JSON column's value as stored: compact, UTF-8, a non-finite number as null (always valid JSON).

    pydantic-core writes it several times faster than ``json.dumps``; the
    Keeper writes two such columns per inference.
    """
    return to_json(value, inf_nan_mode="null").decode()


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """Create an engine tuned for its backend.

    SQLite gets WAL journaling and a busy timeout so that the Keeper writes
    while the app reads; MySQL/MariaDB gets pre-ping and connection recycling
    so that a restarted server or an idle timeout costs a retry, not a crash.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            echo=echo,
            json_serializer=json_text,
            connect_args={"check_same_thread": False, "timeout": 30},
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    connect_args = {}
    if parsed.get_backend_name() in ("mysql", "mariadb"):
        connect_args = {"charset": "utf8mb4", "connect_timeout": 5}
    return create_engine(
        url,
        echo=echo,
        json_serializer=json_text,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args=connect_args,
    )


@lru_cache(maxsize=8)
def get_engine(url: str) -> Engine:
    """The process-wide engine for ``url`` (created once)."""
    return make_engine(url)


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits on success and rolls back on any error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
