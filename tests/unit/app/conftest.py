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
