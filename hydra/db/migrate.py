"""Schema migrations with Alembic: ``hydra init`` upgrades any database to head.

The Alembic scripts (``migrations/``: env.py, the script template and
``versions/``) ship inside the package (see pyproject.toml) and are found
through it, so a wheel install migrates exactly like a checkout.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

MIGRATIONS = Path(str(resources.files("hydra.db") / "migrations"))  # an installed package is a real folder


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


@cache
def head_revision() -> str:
    """The newest migration shipped with this install (read from its scripts once per process)."""
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def schema_problem(engine: Engine) -> str | None:
    """Why this version of Hydra cannot use the database's schema as it is, or None.

    A database never initialised, or one an upgrade has not migrated yet,
    would only fail query by query; ``hydra init`` mends both. Raises what
    the driver raises for an unreachable database.
    """
    current, head = current_revision(engine), head_revision()
    if current == head:
        return None
    if current is None:
        return "The database has no Hydra schema yet. Run `hydra init` first"
    return f"The database schema is at revision {current} and this Hydra needs {head}. Run `hydra init` to upgrade it"


def upgrade_to_head(engine: Engine) -> tuple[str | None, str]:
    """Create or upgrade the schema; safe to run any number of times.

    Returns:
        The revision before and after.
    """
    before = current_revision(engine)
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    return before, head_revision()
