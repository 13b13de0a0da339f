"""The Trends page's query on SQLite and MariaDB: weights of every label over time with the thresholds.

The page itself (AppTest) is in tests/unit/app/test_trends.py.
"""

from __future__ import annotations

from datetime import timedelta

from hydra.db import session_scope
from hydra.services import trends
from tests.helpers.seed import THRESHOLDS, seed_database


def test_weight_series_query(engine, tmp_path):
    seeded = seed_database(engine, tmp_path, history=12)
    pt = seeded.plot_types["FCAL_occupancy"]
    with session_scope(engine) as s:
        series = trends.weight_series(pt, session=s, since=seeded.now - timedelta(days=1))
        recent = trends.weight_series(pt, session=s, since=seeded.now - timedelta(minutes=30))
    assert len(series.points) == 12 and len(recent.points) == 3
    assert [p.created_at for p in series.points] == sorted(p.created_at for p in series.points)
    assert [lb.name for lb in series.labels] == ["Good", "Bad", "NoData"]
    assert series.thresholds == {seeded.models["FCAL_occupancy"]: THRESHOLDS}
    goods = [p.weights["Bad"] for p in series.points if p.label == "Good"]
    assert goods[-1] > goods[0]  # the seeded slow drift of the Bad weight
