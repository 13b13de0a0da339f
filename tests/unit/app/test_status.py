"""The Status page: per-stage timing histograms, means per run, throughput, errors.

Its queries on both database backends are in tests/integration/db/test_status_queries.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from hydra.services import status
from tests.helpers.seed import STAGE_MS, prepare_home

APP = str(Path(__file__).resolve().parents[3] / "apps" / "streamlit" / "app.py")


def count(node, kind: str) -> int:
    children = getattr(node, "children", {}).values()
    return sum((getattr(c, "type", "") == kind) + count(c, kind) for c in children)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    return prepare_home(tmp_path_factory.mktemp("status") / "home")


def test_status_page_shows_timings_rate_and_errors(seeded, monkeypatch):
    monkeypatch.setenv("HYDRA_HOME", str(seeded.home))
    at = AppTest.from_file(APP, default_timeout=30).switch_page("views/status.py").run()
    assert not at.exception
    assert [m.value for m in at.metric][0] == str(seeded.inferences)
    assert at.metric[2].value == "3"
    assert count(at.main, "vega_lite_chart") == 3  # histograms, means by run, images per minute
    stats = at.dataframe[0].value
    assert list(stats.index) == ["wait", *status.STAGES, "total"]
    assert stats.loc["predict", "mean"] > stats.loc["feeder", "mean"]
    errors = at.dataframe[1].value
    assert sorted(errors["kind"]) == ["decode", "naming", "unknown_plot_type"]


def test_status_page_on_a_fresh_database(tmp_path, monkeypatch):
    prepare_home(tmp_path / "fresh", seed=False)
    monkeypatch.setenv("HYDRA_HOME", str(tmp_path / "fresh"))
    at = AppTest.from_file(APP, default_timeout=30).switch_page("views/status.py").run()
    assert not at.exception
    assert any("No inference in the last" in i.value for i in at.info)
    assert any("No error records" in s.value for s in at.success)


def test_stage_durations_reads_the_keepers_keys():
    got = status.stage_durations({"feeder": 21.5, "predict": 600, "cam": None, "bogus": 3, "total": 900.0})
    assert got == {"feeder": 21.5, "predict": 600.0, "total": 900.0}
    assert set(STAGE_MS) == set(status.TIMING_KEYS)


def test_stage_keys_match_the_serve_layer():
    messages = pytest.importorskip("hydra.serve.messages")
    assert tuple(messages.TIMING_KEYS) == status.TIMING_KEYS
