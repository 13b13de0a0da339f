"""The app on a database ``hydra init`` has not made or not migrated: one message, no page."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_the_app_says_to_run_hydra_init_on_a_database_not_migrated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from alembic import command

    from hydra.config import load_config
    from hydra.db import make_engine, upgrade_to_head
    from hydra.db.migrate import alembic_config, head_revision, schema_problem
    from tests.helpers.apptest import open_page

    monkeypatch.setenv("HYDRA_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("HYDRA_DB_URL", raising=False)
    monkeypatch.delenv("HYDRA_CONFIG", raising=False)
    cfg = load_config()
    cfg.ensure_dirs()

    def shown() -> str:
        at = open_page("views/run.py")
        assert not at.exception, [e.value for e in at.exception]
        return " ".join(e.value for e in at.error)

    assert "no Hydra schema yet. Run `hydra init`" in shown()
    command.upgrade(alembic_config(cfg.database_url), "0006")  # a database an upgrade has not migrated
    assert f"at revision 0006 and this Hydra needs {head_revision()}. Run `hydra init`" in shown()
    engine = make_engine(cfg.database_url)
    upgrade_to_head(engine)
    assert schema_problem(engine) is None
    assert "hydra init" not in shown()
    engine.dispose()
