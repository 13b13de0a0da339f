"""The browser suite's helpers: ``hydra app`` as a process, and waiting on Streamlit in Chromium.

``hydra app`` runs as a real process (the ``hydra`` console script) on a free
port; Playwright's sync API drives Debian's ``/usr/bin/chromium``.
Screenshots go to ``test-artifacts/screenshots/``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers.seed import Seeded

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
IN_CI = os.environ.get("CI", "").lower() == "true"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def hydra_executable() -> str:
    local = Path(sys.executable).with_name("hydra")
    found = str(local) if local.exists() else shutil.which("hydra")
    if not found:
        pytest.fail("the 'hydra' console script is not installed (pip install -e .)")
    return found


@dataclass
class RunningApp:
    url: str
    seeded: Seeded
    log: Path


def wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"hydra app exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"hydra app did not become healthy in {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def open_page(page, app: RunningApp, path: str, expect: str) -> None:
    """Go to a page and wait until it has drawn ``expect`` and Streamlit is idle."""
    page.goto(f"{app.url}/{path}")
    page.get_by_text(expect, exact=False).first.wait_for()
    wait_idle(page)


# Where a skeleton still stands: the element it stands for, for the failure message.
_SKELETONS = """() => [...document.querySelectorAll('[data-testid="stSkeleton"]')].map(e => {
    const box = e.closest('[data-testid="stElementContainer"]');
    return (box ? box.className : 'no element container') + ' | ' + e.parentElement.outerHTML.slice(0, 300);
})"""


def wait_idle(page) -> None:
    from playwright.sync_api import TimeoutError as PageTimeout

    # the status widget (running man, "Stop") is only there while a script runs
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=30_000
    )
    # lazily loaded elements (charts, tables, component frames) show a skeleton until their
    # code has arrived or the frame said it is ready; a loaded 2-core machine can take a while
    try:
        page.wait_for_function(
            "() => !document.querySelector('[data-testid=\"stSkeleton\"]')", timeout=60_000
        )
    except PageTimeout as exc:  # name what is still loading, not just "timeout"
        raise AssertionError(f"still loading after 60 s: {page.evaluate(_SKELETONS)}") from exc
    # charts draw after the script finished: wait until every Vega chart has its canvas or svg
    page.wait_for_function(
        "() => [...document.querySelectorAll('.vega-embed')].every(e => e.querySelector('canvas, svg'))",
        timeout=30_000,
    )


def assert_no_exception(page) -> None:
    shown = page.locator('[data-testid="stException"]')
    assert shown.count() == 0, f"Streamlit showed an exception: {shown.first.inner_text()[:2000]}"


def screenshot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
