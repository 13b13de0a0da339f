"""The Trends page: weights of every label over time with the thresholds.

Its query on both database backends is in tests/integration/db/test_trends_queries.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.helpers.seed import prepare_home

APP = str(Path(__file__).resolve().parents[3] / "apps" / "streamlit" / "app.py")


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    return prepare_home(tmp_path_factory.mktemp("trends") / "home")


@pytest.fixture
def app(seeded, monkeypatch):
    monkeypatch.setenv("HYDRA_HOME", str(seeded.home))
    return AppTest.from_file(APP, default_timeout=30).switch_page("views/trends.py")


def test_trends_from_the_log_link(app, seeded):
    app.query_params["plot_type"] = "FCAL_occupancy"
    at = app.run()
    assert not at.exception
    assert at.selectbox(key="trends_plot").value == "FCAL_occupancy"
    assert any(
        f"thresholds (dashed) of model {seeded.models['FCAL_occupancy']}" in c.value for c in at.caption
    )
    spec = at.get("vega_lite_chart")[0].proto.spec
    for label in ("Good", "Bad", "NoData"):
        assert label in spec
    assert "#d62728" in spec  # the Bad label's colour
    import json

    x = json.loads(spec)["encoding"]["x"] if "encoding" in json.loads(spec) else None
    x = x or next(layer["encoding"]["x"] for layer in json.loads(spec)["layer"])
    assert x["scale"]["type"] == "utc" and x["axis"]["format"] == "%H:%M"  # 24-hour UTC


def test_plot_type_without_inferences(app):
    at = app.run()
    at.selectbox(key="trends_plot").select("TOF_rates").run()
    assert not at.exception
    assert any("No inference of TOF_rates" in i.value for i in at.info)
