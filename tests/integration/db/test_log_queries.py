"""The Log page's queries on SQLite and MariaDB: problems and unconfirmed verdicts of a window, filtered.

The page itself (AppTest) is in tests/unit/app/test_log.py.
"""

from __future__ import annotations

from datetime import timedelta

from hydra.db import session_scope
from hydra.services import log, run
from tests.helpers.seed import seed_database


def test_log_entries_selects_problems_and_unconfirmed(engine, tmp_path):
    cloned = seed_database(engine, tmp_path, history=12)
    with session_scope(engine) as s:
        since = cloned.now - timedelta(days=1)
        every = log.log_entries(session=s, since=since)
        confirmed_only = log.log_entries(session=s, since=since, include_unconfirmed=False)
        fcal = log.log_entries(session=s, since=since, plot_type_ids=[cloned.plot_types["FCAL_occupancy"]])
    assert every and all((e.confirmed and e.is_problem) or not e.confirmed for e in every)
    assert confirmed_only and all(e.confirmed and e.is_problem for e in confirmed_only)
    assert {e.plot_type for e in fcal} == {"FCAL_occupancy"}
    assert [e.created_at for e in every] == sorted((e.created_at for e in every), reverse=True)


def test_log_entries_filters(engine, tmp_path):
    seeded = seed_database(engine, tmp_path, history=12)
    from tests.helpers.seed import FIRST_RUN

    with session_scope(engine) as s:
        since = seeded.now - timedelta(days=1)
        one = log.log_entries(session=s, since=since, run_min=FIRST_RUN + 1, run_max=FIRST_RUN + 1)
        later = log.log_entries(session=s, since=since, run_min=FIRST_RUN + 1)
        groups = {g.name: g.id for g in run.plot_groups(session=s)}
        fcal = log.log_entries(session=s, since=since, group_ids=[groups["FCAL"]])
    assert one and {e.run for e in one} == {FIRST_RUN + 1}
    assert later and min(e.run for e in later) == FIRST_RUN + 1
    assert fcal and {e.plot_type for e in fcal} <= {"FCAL_occupancy", "FCAL_timing"}


def test_log_entries_of_a_run_in_all_time(engine, tmp_path):
    """``since=None`` (the page's choice when a run is given) finds a run older than any window."""
    from hydra.db.models import Inference

    seeded = seed_database(engine, tmp_path, history=4)
    with session_scope(engine) as s:
        s.add(Inference(
            source_key="o" * 64, path="/old.png", filename="old.png", plot_type_id=seeded.plot_types["BCAL_energy"],
            run=12, model_id=seeded.models["BCAL_energy"], label="Bad", weight=0.6, confirmed=False,
            created_at=seeded.now - timedelta(days=400),
        ))  # fmt: skip
    with session_scope(engine) as s:
        windowed = log.log_entries(session=s, since=seeded.now - timedelta(days=30), run_max=12)
        every = log.log_entries(session=s, since=None, run_max=12)
    assert windowed == []
    assert [(e.run, e.plot_type, e.confirmed) for e in every] == [(12, "BCAL_energy", False)]
