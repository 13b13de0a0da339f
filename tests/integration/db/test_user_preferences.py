"""user.preferences on SQLite and MariaDB: the heat-map opacity a user chose, and migration 0007."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import inspect

from hydra.auth import create_user
from hydra.db import make_engine, session_scope, upgrade_to_head
from hydra.db.migrate import alembic_config, current_revision
from hydra.services import run


def test_opacity_is_stored_per_user(engine):
    with session_scope(engine) as s:
        alice = create_user("alice", "alice-pw", session=s, role="expert").id
        bob = create_user("bob", "bob-pw", session=s, role="viewer").id
    with session_scope(engine) as s:
        assert run.heatmap_opacity(alice, session=s) == run.DEFAULT_OPACITY == 0.45
        assert run.set_heatmap_opacity(alice, 0.7, session=s) == 0.7
    fresh = make_engine(engine.url.render_as_string(hide_password=False))  # another process, say
    try:
        with session_scope(fresh) as s:
            assert run.heatmap_opacity(alice, session=s) == 0.7
            assert run.heatmap_opacity(bob, session=s) == 0.45
            assert run.heatmap_opacity(None, session=s) == 0.45
            run.set_heatmap_opacity(alice, 0.0, session=s)  # 0 (heat maps off) is a choice too
        with session_scope(fresh) as s:
            assert run.heatmap_opacity(alice, session=s) == 0.0
            with pytest.raises(ValueError, match="between 0 and 1"):
                run.set_heatmap_opacity(alice, 1.5, session=s)
            with pytest.raises(LookupError):
                run.set_heatmap_opacity(10_000, 0.5, session=s)
    finally:
        fresh.dispose()


def test_0007_downgrades_and_upgrades_with_users_in_place(engine):
    with session_scope(engine) as s:
        carol = create_user("carol", "carol-pw", session=s).id
        run.set_heatmap_opacity(carol, 0.3, session=s)
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0006")
    assert current_revision(engine) == "0006"
    assert "preferences" not in {c["name"] for c in inspect(engine).get_columns("user")}
    upgrade_to_head(engine)
    with session_scope(engine) as s:  # the column comes back empty: the default again, no error
        assert run.heatmap_opacity(carol, session=s) == run.DEFAULT_OPACITY
        run.set_heatmap_opacity(carol, 0.9, session=s)
    with session_scope(engine) as s:
        assert run.heatmap_opacity(carol, session=s) == 0.9
