"""Fixtures of the AppTest suites: a seeded deployment in HYDRA_HOME."""

from __future__ import annotations

import pytest


@pytest.fixture
def seeded(hydra_home):
    """An engine on the seeded database of ``hydra_home`` and what was seeded."""
    from hydra.config import load_config
    from hydra.db import make_engine
    from tests.helpers.seed import seed_database

    eng = make_engine(load_config().database_url)
    try:
        yield eng, seed_database(eng, hydra_home, history=6)
    finally:
        eng.dispose()


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A seeded HYDRA_HOME made once per module; tests get copies of it."""
    from tests.helpers.seed import prepare_home

    return prepare_home(tmp_path_factory.mktemp("app") / "home")


@pytest.fixture
def cloned(template, tmp_path, monkeypatch):
    """A private copy of the module's seeded HYDRA_HOME; the environment points at it."""
    from tests.helpers.seed import clone_home

    seeded = clone_home(template, tmp_path / "home")
    monkeypatch.setenv("HYDRA_HOME", str(seeded.home))
    monkeypatch.delenv("HYDRA_DB_URL", raising=False)
    monkeypatch.delenv("HYDRA_CONFIG", raising=False)
    return seeded
