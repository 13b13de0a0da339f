"""The Log page: confirmed problems and unconfirmed verdicts of a window, grouped, exportable."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from streamlit.testing.v1 import AppTest

from hydra.db import make_engine, session_scope
from hydra.services import log, run
from tests.helpers.seed import prepare_home, seed_database

APP = str(Path(__file__).resolve().parents[3] / "apps" / "streamlit" / "app.py")


def open_log() -> AppTest:
    return AppTest.from_file(APP, default_timeout=30).switch_page("views/log.py").run()


def test_log_groups_and_exports(cloned):
    at = open_log()
    assert not at.exception
    problems, unconfirmed, types = (int(m.value) for m in at.metric)
    assert problems > 0 and unconfirmed > 0 and types == 4
    titles = [e.label for e in at.expander]
    assert titles[0].startswith("FCAL_occupancy · run") or titles[0].startswith("BCAL_energy · run")
    assert all(" · run " in t for t in titles)
    button = at.get("download_button")[0]
    assert button.proto.label == "Download CSV" and button.proto.url  # served as a media file
    eng = make_engine(f"sqlite:///{cloned.home / 'hydra.db'}")
    with session_scope(eng) as s:
        entries = log.log_entries(session=s, since=cloned.now - timedelta(hours=24, minutes=5))
    assert len(entries) == problems + unconfirmed


def test_window_and_confirmed_only(cloned):
    at = open_log()
    all_count = sum(int(m.value) for m in at.metric[:2])
    at.toggle(key="log_unconfirmed").set_value(False).run()
    assert int(at.metric[1].value) == 0
    at.selectbox(key="log_window").select("1 hour").run()
    shown = sum(int(m.value) for m in at.metric[:2]) if at.metric else 0
    assert shown < all_count


def test_empty_window_explains(tmp_path, monkeypatch):
    prepare_home(tmp_path / "fresh", seed=False)
    monkeypatch.setenv("HYDRA_HOME", str(tmp_path / "fresh"))
    at = open_log()
    assert not at.exception
    assert any("Nothing to report" in i.value for i in at.info)


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


def test_filters_by_run_range_and_group(cloned):
    from tests.helpers.seed import FIRST_RUN

    at = open_log()
    runs = {t.label.split(" · run ")[1].split(" ")[0] for t in at.expander}
    assert len(runs) > 1
    at.number_input(key="log_run").set_value(FIRST_RUN + 1).run()
    assert not at.exception
    assert {t.label.split(" · run ")[1].split(" ")[0] for t in at.expander} == {str(FIRST_RUN + 1)}
    assert any(f"run {FIRST_RUN + 1}" in c.value for c in at.caption)
    at.number_input(key="log_run").set_value(None).run()
    at.number_input(key="log_run_min").set_value(FIRST_RUN + 2).run()
    assert {int(t.label.split(" · run ")[1].split(" ")[0]) for t in at.expander} >= {FIRST_RUN + 2}
    assert min(int(t.label.split(" · run ")[1].split(" ")[0]) for t in at.expander) >= FIRST_RUN + 2
    at.number_input(key="log_run_min").set_value(None)
    at.multiselect(key="log_groups").select("BCAL").run()
    assert {t.label.split(" · ")[0] for t in at.expander} == {"BCAL_energy"}


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
