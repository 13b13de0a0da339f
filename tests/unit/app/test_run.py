"""The Run page: grid order, fallbacks, filters, alarms and who may acknowledge them.

Its queries on both database backends are in tests/integration/db/test_run_queries.py.
"""

from __future__ import annotations

from pathlib import Path

from sqlmodel import select
from streamlit.testing.v1 import AppTest

from hydra.db import make_engine, session_scope
from hydra.db.models import Alarm, RunTime
from hydra.services import run
from tests.helpers.seed import prepare_home

APP = str(Path(__file__).resolve().parents[3] / "apps" / "streamlit" / "app.py")


def open_run(**state) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=30).switch_page("views/run.py")
    for key, value in state.items():
        at.session_state[key] = value
    return at.run()


def count(node, kind: str) -> int:
    """How many elements of a kind (image, audio, ...) are under ``node``."""
    children = getattr(node, "children", {}).values()
    return sum((getattr(c, "type", "") == kind) + count(c, kind) for c in children)


def frame_titles(at: AppTest) -> list[str]:
    return [m.value.strip("*") for m in at.main.markdown if m.value.startswith("**") and "_" in m.value]


def test_grid_puts_problems_and_unconfirmed_first(cloned):
    at = open_run()
    assert not at.exception
    assert frame_titles(at) == [
        "FCAL_occupancy", "BCAL_energy", "CDC_hits", "FCAL_timing", "CDC_pedestal", "TOF_rates"
    ]  # fmt: skip
    assert [m.value for m in at.metric][:2] == [str(cloned.current_run), "1 min ago"]
    captions = [c.value for c in at.main.caption]
    assert any("**Bad** 0." in c and "(unconfirmed)" in c for c in captions)
    assert any("2 h ago" in c and "STALE" in c for c in captions)  # CDC_hits stopped arriving
    assert "no image yet" in captions
    tiles = [m.value for m in at.main.markdown if "hydra-tile" in m.value]
    assert len(tiles) == 5  # TOF_rates has no image
    # the heat map is on by default: the problem and the unconfirmed tile carry it
    assert sum("hydra-tile heat" in t for t in tiles) == 2
    assert at.slider(key="run_opacity").value > 0


def test_group_filter_and_hiding(cloned):
    at = open_run()
    at.selectbox(key="run_group").select("CDC").run()
    assert frame_titles(at) == ["CDC_hits", "CDC_pedestal"]
    at.multiselect(key="run_hidden").select("CDC_hits").run()
    assert frame_titles(at) == ["CDC_pedestal"]


def test_open_one_full_size(cloned):
    at = open_run()
    at.button(key=f"open_{cloned.plot_types['FCAL_occupancy']}").click().run()
    assert not at.exception
    assert any("FCAL_occupancy (full size)" in h.value for h in at.subheader)
    at.button(key="run_full_close").click().run()
    assert not any("(full size)" in h.value for h in at.subheader)


def test_group_summary_counts_and_filters(cloned):
    at = open_run()
    summary = {b.key: b.label for b in at.button if b.key.startswith("run_sum_")}
    assert "1 problem" in summary["run_sum_FCAL"] and "1 Good" in summary["run_sum_FCAL"]
    assert "1 unconfirmed" in summary["run_sum_BCAL"]
    assert "1 stale" in summary["run_sum_CDC"]
    at.button(key="run_sum_FCAL").click().run()
    assert frame_titles(at) == ["FCAL_occupancy", "FCAL_timing"]


def test_order_is_stable_when_a_verdict_repeats(cloned):
    eng = make_engine(f"sqlite:///{cloned.home / 'hydra.db'}")
    with session_scope(eng) as s:
        before = [f.plot_type for f in run.run_frames(session=s)]
        newest = s.exec(select(RunTime).where(RunTime.plot_type_id == cloned.plot_types["FCAL_timing"])
                        .order_by(RunTime.created_at.desc())).first()  # fmt: skip
        newest.weight, newest.chunk, newest.created_at = 0.99, 99, cloned.now  # a new image, still Good
        s.add(newest)
    with session_scope(eng) as s:
        assert [f.plot_type for f in run.run_frames(session=s)] == before
    eng.dispose()


def alarm_key(cloned, plot_type: str = "FCAL_occupancy", label: str = "Bad") -> str:
    return f"{cloned.plot_types[plot_type]}_{label}"


def test_anonymous_acknowledge_is_refused(cloned):
    at = open_run()
    assert any("FCAL_occupancy" in e.value and "Bad confirmed" in e.value for e in at.error)
    at.button(key=f"ack_{alarm_key(cloned)}").click().run()
    assert any("Refused" in e.value and "logged-in user" in e.value for e in at.error)
    eng = make_engine(f"sqlite:///{cloned.home / 'hydra.db'}")
    with session_scope(eng) as s:
        assert s.get(Alarm, cloned.open_alarm_ids[0]).acknowledged_at is None


def test_viewer_may_not_acknowledge(cloned):
    at = open_run(hydra_user_id=cloned.users["viewer"])
    at.button(key=f"ack_{alarm_key(cloned)}").click().run()
    assert any("Refused" in e.value and "the viewer role cannot acknowledge" in e.value for e in at.error)
    eng = make_engine(f"sqlite:///{cloned.home / 'hydra.db'}")
    with session_scope(eng) as s:
        assert s.get(Alarm, cloned.open_alarm_ids[0]).acknowledged_at is None


def test_granted_expert_acknowledges(cloned):
    at = open_run(hydra_user_id=cloned.users["expert"])
    at.button(key=f"ack_{alarm_key(cloned)}").click().run()
    assert not at.exception
    assert not any("confirmed" in e.value for e in at.error)
    eng = make_engine(f"sqlite:///{cloned.home / 'hydra.db'}")
    with session_scope(eng) as s:
        alarm = s.get(Alarm, cloned.open_alarm_ids[0])
        assert alarm.acknowledged_by == cloned.users["expert"]


def test_alarms_collapse_per_condition_and_acknowledge_all(cloned):
    eng = make_engine(f"sqlite:///{cloned.home / 'hydra.db'}")
    with session_scope(eng) as s:
        for run_no in (71010, 71011, 71011, 71012):  # the same condition again and again
            s.add(Alarm(plot_type_id=cloned.plot_types["FCAL_occupancy"], run=run_no, label="Bad",
                        message=f"FCAL_occupancy: 3 confirmed Bad in a row (run {run_no})"))  # fmt: skip
        for name in ("BCAL_energy", "CDC_hits", "FCAL_timing", "TOF_rates"):
            s.add(Alarm(plot_type_id=cloned.plot_types[name], run=71013, label="Bad", message="x"))
    at = open_run(hydra_user_id=cloned.users["admin"])
    banners = [e.value for e in at.error if "confirmed ·" in e.value]
    assert len(banners) == 5  # one per condition, the first three shown, the rest in an expander
    more = [x for x in at.expander if "more condition" in x.label]
    assert len(more) == 1 and more[0].label.startswith("2 more")
    fcal = next(b for b in [e.value for e in at.error] if b.startswith("**FCAL_occupancy**"))
    assert "5 alarms" in fcal and "runs 71012, 71011, 71010" in fcal and fcal.count("FCAL_occupancy") == 1
    assert any("9 open alarms** on 5 conditions" in m.value for m in at.main.markdown)
    at.button(key="ack_all").click().run()
    assert not at.exception
    assert not [e.value for e in at.error if "confirmed ·" in e.value]
    with session_scope(eng) as s:
        assert run.open_alarms(session=s) == []
        assert {a.acknowledged_by for a in s.exec(select(Alarm)).all() if a.raised} == {cloned.users["admin"]}
    eng.dispose()


def test_alarm_sound_plays_once(cloned):
    at = open_run()
    at.toggle(key="run_sound").set_value(True).run()
    assert count(at.main, "audio") == 1
    at.run()
    assert count(at.main, "audio") == 0, "an alarm already sounded must not beep on every refresh"


def test_empty_database_explains_what_to_do(tmp_path, monkeypatch):
    prepare_home(tmp_path / "fresh", seed=False)
    monkeypatch.setenv("HYDRA_HOME", str(tmp_path / "fresh"))
    at = open_run()
    assert not at.exception
    assert any("No plot types yet" in i.value for i in at.info)


def test_opacity_is_remembered_per_user(cloned):
    import streamlit as st

    expert, viewer = cloned.users["expert"], cloned.users["viewer"]
    at = open_run(hydra_user_id=expert)
    assert at.slider(key="run_opacity").value == 0.45  # visible from the start
    at.slider(key="run_opacity").set_value(0.8).run()
    assert not at.exception
    again = open_run(hydra_user_id=expert)  # a new session of the same user
    assert again.slider(key="run_opacity").value == 0.8
    other = open_run(hydra_user_id=viewer)
    assert other.slider(key="run_opacity").value == 0.45
    # an app restart forgets everything held in the process; the choice is in the database
    st.cache_resource.clear()
    st.cache_data.clear()
    assert open_run(hydra_user_id=expert).slider(key="run_opacity").value == 0.8
    eng = make_engine(f"sqlite:///{cloned.home / 'hydra.db'}")
    with session_scope(eng) as s:
        assert run.heatmap_opacity(expert, session=s) == 0.8
        assert run.heatmap_opacity(viewer, session=s) == run.DEFAULT_OPACITY
    eng.dispose()
