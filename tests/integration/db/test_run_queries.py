"""The Run page's queries on SQLite and MariaDB: grid order, fallbacks, alarms and who may acknowledge them.

The page itself (AppTest) is in tests/unit/app/test_run.py.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import delete, select

from hydra.auth import PermissionDenied
from hydra.db import session_scope
from hydra.db.models import Alarm, RunTime
from hydra.services import run
from tests.helpers.seed import USERS, seed_database


def test_run_queries_fall_back_order_and_acknowledge(engine, tmp_path):
    cloned = seed_database(engine, tmp_path, history=8)
    with session_scope(engine) as s:
        frames = {f.plot_type: f for f in run.run_frames(session=s)}
        order = [f.plot_type for f in run.run_frames(session=s)]
    assert order[:2] == ["FCAL_occupancy", "BCAL_energy"]
    assert frames["FCAL_occupancy"].source == "runtime" and frames["FCAL_occupancy"].rank == 0
    assert frames["CDC_hits"].source == "history" and frames["CDC_hits"].is_stale(15)
    assert frames["CDC_pedestal"].source == "image" and not frames["CDC_pedestal"].has_model
    assert frames["TOF_rates"].source == "none"
    assert frames["FCAL_occupancy"].color == "#d62728"
    with session_scope(engine) as s:  # RunTime pruned: the newest inference takes over
        s.exec(delete(RunTime).where(RunTime.plot_type_id == cloned.plot_types["FCAL_timing"]))
    with session_scope(engine) as s:
        timing = next(f for f in run.run_frames(session=s) if f.plot_type == "FCAL_timing")
        header = run.run_header(session=s)
    assert timing.source == "history" and timing.run == cloned.current_run
    assert header.run == cloned.current_run
    assert abs(header.last_update - (cloned.now - timedelta(minutes=1))) < timedelta(seconds=1)
    # acknowledging is refused without a (real) user, on every backend
    alarm_id = cloned.open_alarm_ids[0]
    with session_scope(engine) as s:
        assert [a.id for a in run.open_alarms(session=s)] == [alarm_id]
        assert [(g.plot_type, g.ids) for g in run.alarm_groups(session=s)] == [("FCAL_occupancy", [alarm_id])]
        with pytest.raises(PermissionDenied):
            run.acknowledge_alarms(user_id=None, session=s)
        with pytest.raises(PermissionDenied):
            run.acknowledge_alarm(alarm_id, user_id=None, session=s)
        with pytest.raises(PermissionDenied):
            run.acknowledge_alarm(alarm_id, user_id=99999, session=s)
        with pytest.raises(LookupError):
            run.acknowledge_alarm(424242, user_id=cloned.users["expert"], session=s)
        run.acknowledge_alarm(alarm_id, user_id=cloned.users["expert"], session=s)
    with session_scope(engine) as s:
        assert run.open_alarms(session=s) == []
        assert (
            s.exec(select(Alarm.acknowledged_by).where(Alarm.id == alarm_id)).one() == cloned.users["expert"]
        )
    assert USERS["expert"].role == "expert"
