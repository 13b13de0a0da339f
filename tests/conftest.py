"""Shared fixtures: a real database per test on SQLite and on MariaDB.

MariaDB is reached at ``HYDRA_TEST_MYSQL_URL`` (default
``mysql+pymysql://root@127.0.0.1:3306/test``); each test gets a database of
its own, dropped afterwards. Without a server the MariaDB cases skip with the
reason, except under ``CI=true`` where they fail (``tests/helpers/db.py``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.db import make_mysql_database


@pytest.fixture(scope="session", autouse=True)
def cheap_password_hashes():
    """New password hashes use cheap scrypt parameters while testing.

    Users are made in many tests, and a hash at the recommended cost takes
    about half a second; ``tests/unit/test_auth.py`` tests that cost itself
    (``hydra.auth.RECOMMENDED``). Processes the tests start use the real one.
    """
    from hydra import auth

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(auth, "SCRYPT", auth.ScryptParams(n=2**10, r=8, p=1))
        yield


@pytest.fixture(params=["sqlite", pytest.param("mariadb", marks=pytest.mark.mariadb)])
def db_url(request, tmp_path: Path):
    """A URL of an empty database, on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'hydra.db'}"
        return
    url, drop = make_mysql_database()
    try:
        yield url
    finally:
        drop()


@pytest.fixture
def engine(db_url):
    """An engine on a database migrated to head."""
    from hydra.db import make_engine, upgrade_to_head

    eng = make_engine(db_url)
    upgrade_to_head(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def sqlite_engine(tmp_path: Path):
    """An engine on a migrated SQLite database (for tests that need one backend only)."""
    from hydra.db import make_engine, upgrade_to_head

    eng = make_engine(f"sqlite:///{tmp_path / 'hydra.db'}")
    upgrade_to_head(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def hydra_home(tmp_path: Path, monkeypatch):
    """An empty HYDRA_HOME with its SQLite database initialised; env points at it."""
    home = tmp_path / "home"
    monkeypatch.setenv("HYDRA_HOME", str(home))
    monkeypatch.delenv("HYDRA_DB_URL", raising=False)
    monkeypatch.delenv("HYDRA_CONFIG", raising=False)
    from hydra.config import load_config
    from hydra.db import make_engine, upgrade_to_head

    cfg = load_config()
    cfg.ensure_dirs()
    eng = make_engine(cfg.database_url)
    upgrade_to_head(eng)
    eng.dispose()
    return home
