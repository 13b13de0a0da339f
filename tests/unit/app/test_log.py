"""The Log page: confirmed problems and unconfirmed verdicts of a window, grouped, exportable.

Its queries on both database backends are in tests/integration/db/test_log_queries.py.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from streamlit.testing.v1 import AppTest

from hydra.db import make_engine, session_scope
from hydra.services import log
from tests.helpers.seed import prepare_home

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


def test_a_run_older_than_the_window_is_found(cloned):
    """The default 24 h window must not hide a run: a run (or run range) is looked up in all time."""
    from hydra.db.models import Inference, utcnow

    old_run = 70_001
    eng = make_engine(f"sqlite:///{cloned.home / 'hydra.db'}")
    with session_scope(eng) as s:
        s.add(Inference(
            source_key="old" * 16, path=str(cloned.home / "old.png"), filename="old.png",
            plot_type_id=cloned.plot_types["FCAL_occupancy"], run=old_run, model_id=cloned.models["FCAL_occupancy"],
            label="Bad", weight=0.97, weights={"Bad": 0.97, "Good": 0.03}, confirmed=True, is_problem=True,
            created_at=utcnow() - timedelta(days=10),
        ))  # fmt: skip
    with session_scope(eng) as s:  # the window alone misses it; the run alone finds it
        day = utcnow() - timedelta(hours=24)
        assert log.log_entries(session=s, since=day, run_min=old_run, run_max=old_run) == []
        found = log.log_entries(session=s, since=None, run_min=old_run, run_max=old_run)
        assert [(e.run, e.label, e.confirmed) for e in found] == [(old_run, "Bad", True)]
    eng.dispose()
    at = open_log()
    assert at.selectbox(key="log_window").value == "24 hours"
    at.number_input(key="log_run").set_value(old_run).run()
    assert not at.exception
    assert not any("Nothing to report" in i.value for i in at.info)
    assert [int(m.value) for m in at.metric] == [1, 0, 1]
    assert [e.label.split(" · ")[:2] for e in at.expander] == [["FCAL_occupancy", f"run {old_run}"]]
    assert any("all time" in c.value for c in at.caption)
    assert at.selectbox(key="log_window").disabled  # and the page says why in its help
    assert "all time" in at.number_input(key="log_run").help
    # a range that reaches the old run finds it too
    at.number_input(key="log_run").set_value(None).run()
    at.number_input(key="log_run_min").set_value(old_run - 1)
    at.number_input(key="log_run_max").set_value(old_run + 1).run()
    assert [e.label.split(" · ")[1] for e in at.expander] == [f"run {old_run}"]
    # without a run the window applies again
    at.number_input(key="log_run_min").set_value(None)
    at.number_input(key="log_run_max").set_value(None).run()
    assert not at.selectbox(key="log_window").disabled
    assert all(f"run {old_run}" not in e.label for e in at.expander)
