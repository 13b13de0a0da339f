"""Database layer: tables, engine, migrations and the queries serve and app use."""

from hydra.db.engine import get_engine, make_engine, session_scope
from hydra.db.migrate import upgrade_to_head

__all__ = ["get_engine", "make_engine", "session_scope", "upgrade_to_head"]
