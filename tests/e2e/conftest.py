"""Browser fixtures: ``hydra app`` on a seeded SQLite database, driven by Debian's Chromium.

The app runs as a real process (the ``hydra`` console script) on a free port
chosen at run time and is stopped at the end; Playwright's sync API drives
``/usr/bin/chromium``. Without that browser the tests skip, except under
``CI=true`` where they fail. Screenshots go to ``test-artifacts/screenshots/``.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    IN_CI,
    RunningApp,
    free_port,
    hydra_executable,
    wait_healthy,
)
from tests.helpers.seed import prepare_home


@pytest.fixture(scope="session")
def app_server(tmp_path_factory) -> Iterator[RunningApp]:
    """``hydra app`` serving a seeded database; stopped after the session."""
    home = tmp_path_factory.mktemp("e2e") / "home"
    seeded = prepare_home(home)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYDRA_")}
    env["HYDRA_HOME"] = str(home)
    log = home / "app.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [hydra_executable(), "app", "--port", str(port), "--address", "127.0.0.1"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=home,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, log)
        yield RunningApp(url, seeded, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        if IN_CI:
            pytest.fail(f"{CHROMIUM} is missing (CI=true: browser tests must run)")
        pytest.skip(f"Debian's Chromium is not installed at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1600, "height": 1000}, accept_downloads=True)
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    try:
        yield pg
    finally:
        context.close()
