"""Real browser: every page of ``hydra app`` renders, login and logout work, actions reach the database."""

from __future__ import annotations

import csv

import pytest

from hydra.db import make_engine, session_scope
from hydra.db.models import Alarm
from tests.helpers.browser import assert_no_exception, open_page, screenshot, wait_idle
from tests.helpers.seed import USERS

pytestmark = pytest.mark.browser

# (url path, screenshot name, text to wait for, Vega charts to wait for)
PAGES = [
    ("", "run", "Current run", 0),
    ("log", "log", "Confirmed problems", 0),
    ("status", "status", "Time per image, by stage", 3),
    ("trends", "trends", "thresholds (dashed)", 1),
]


@pytest.mark.parametrize(("path", "name", "expect", "charts"), PAGES, ids=[p[1] for p in PAGES])
def test_page_renders_without_exception(page, app_server, path, name, expect, charts):
    open_page(page, app_server, path, expect)
    if charts:
        page.locator(".vega-embed canvas, .vega-embed svg").nth(charts - 1).wait_for()
        wait_idle(page)
    assert_no_exception(page)
    assert page.locator('[data-testid="stSidebar"]').get_by_text("Serve processes").count() == 1
    screenshot(page, name)


def test_run_page_grid_frames(page, app_server):
    open_page(page, app_server, "", "Current run")
    frames = page.locator('[class*="st-key-frame_"]')
    assert frames.count() == 6
    first = frames.first.inner_text()
    assert "FCAL_occupancy" in first  # the confirmed problem is top left
    border = frames.first.evaluate("e => getComputedStyle(e).borderTopColor")
    assert border == "rgb(214, 39, 40)"  # the Bad label's colour


def log_in(page, name: str, password: str) -> None:
    bar = page.locator('[data-testid="stSidebar"]')
    bar.get_by_role("textbox", name="User name").fill(name)
    bar.get_by_role("textbox", name="Password").fill(password)
    bar.get_by_role("button", name="Log in").click()
    bar.get_by_text(f"Logged in as {name}").wait_for()


def test_login_acknowledge_and_logout(page, app_server):
    open_page(page, app_server, "", "Current run")
    bar = page.locator('[data-testid="stSidebar"]')
    bar.get_by_role("textbox", name="User name").fill("expert")
    bar.get_by_role("textbox", name="Password").fill("wrong")
    bar.get_by_role("button", name="Log in").click()
    bar.get_by_text("Wrong user name or password").wait_for()

    log_in(page, "expert", USERS["expert"].password)
    screenshot(page, "run-logged-in")
    alarm_id = app_server.seeded.open_alarm_ids[0]
    banner = page.locator(f".st-key-alarm_{app_server.seeded.plot_types['FCAL_occupancy']}_Bad")
    banner.get_by_role("button", name="Acknowledge").click()
    banner.wait_for(state="detached")
    wait_idle(page)
    assert_no_exception(page)
    eng = make_engine(f"sqlite:///{app_server.seeded.home / 'hydra.db'}")
    with session_scope(eng) as s:
        assert s.get(Alarm, alarm_id).acknowledged_by == app_server.seeded.users["expert"]
    eng.dispose()

    bar.get_by_role("button", name="Log out").click()
    bar.get_by_role("textbox", name="User name").wait_for()
    assert bar.get_by_text("Logged in as").count() == 0


def test_log_csv_download(page, app_server, tmp_path):
    open_page(page, app_server, "log", "Confirmed problems")
    with page.expect_download() as info:
        page.get_by_role("button", name="Download CSV").click()
    target = tmp_path / "log.csv"
    info.value.save_as(target)
    with target.open() as f:
        rows = list(csv.DictReader(f))
    assert rows and set(rows[0]) >= {
        "time_utc",
        "plot_type",
        "run",
        "label",
        "weight",
        "confirmed",
        "weights",
    }
    assert all(r["problem"] == "True" or r["confirmed"] == "False" for r in rows)
