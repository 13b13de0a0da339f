"""The Log page: confirmed problems and unconfirmed verdicts of a window, grouped, exportable."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from streamlit.testing.v1 import AppTest

from hydra.db import make_engine, session_scope
from hydra.db import pages as q
from tests.helpers.seed import prepare_home, seed_database

APP = str(Path(__file__).resolve().parents[3] / "apps" / "streamlit" / "app.py")


def open_log() -> AppTest:
    return AppTest.from_file(APP, default_timeout=30).switch_page("pages/log.py").run()


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
        entries = q.log_entries(session=s, since=cloned.now - timedelta(hours=24, minutes=5))
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
        every = q.log_entries(session=s, since=since)
        confirmed_only = q.log_entries(session=s, since=since, include_unconfirmed=False)
        fcal = q.log_entries(session=s, since=since, plot_type_ids=[cloned.plot_types["FCAL_occupancy"]])
    assert every and all((e.confirmed and e.is_problem) or not e.confirmed for e in every)
    assert confirmed_only and all(e.confirmed and e.is_problem for e in confirmed_only)
    assert {e.plot_type for e in fcal} == {"FCAL_occupancy"}
    assert [e.created_at for e in every] == sorted((e.created_at for e in every), reverse=True)
