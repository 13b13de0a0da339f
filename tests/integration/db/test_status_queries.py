"""The Status page's queries on SQLite and MariaDB: per-stage timings and recent errors.

The page itself (AppTest) is in tests/unit/app/test_status.py.
"""

from __future__ import annotations

from datetime import timedelta

from hydra.db import session_scope
from hydra.services import status
from tests.helpers.seed import seed_database


def test_timing_rows_and_errors_queries(engine, tmp_path):
    seeded = seed_database(engine, tmp_path, history=6)
    with session_scope(engine) as s:
        rows = status.timing_rows(session=s, since=seeded.now - timedelta(days=1))
        errors = status.recent_errors(session=s, since=seeded.now - timedelta(days=1))
        newest = status.timing_rows(session=s, since=seeded.now - timedelta(minutes=5))
    assert len(rows) == seeded.inferences
    assert all("predict" in r.stages for r in rows)
    assert len(newest) == 3  # the last inference of the three fresh plot types
    assert len(errors) == 3 and errors[0].created_at > errors[-1].created_at
