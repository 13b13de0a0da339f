"""Full and read-only disks under the heat maps and the storage: images wait in the input folder, never
quarantine, and are all stored once the space or the permission is back.

The test mounts two small tmpfs file systems over the home's ``heatmaps/``
and ``kept/`` folders (the storage of every image the model doubts; root
only). Round one fills ``heatmaps/`` and makes ``kept/`` read-only; round two
makes ``heatmaps/`` read-only and fills ``kept/``. In each round images
stream in, the heat-map fault is lifted first (results commit, files cannot
move), then the storage fault (files move, the input folder drains).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers.db import IN_CI
from tests.helpers.faults import db_name, drained, good_images_done_once, measured
from tests.helpers.serve import PLOT, Serve, add_model, drop_plots, input_files, stored, wait_until

pytestmark = pytest.mark.slow

RECOVERY_S = 45
IMAGES = 10  # per round


def mount(cmd: list[str]) -> None:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        raise OSError(out.stderr.strip() or f"{' '.join(cmd)} failed")


def fill(folder: Path) -> Path:
    """A file that takes every free byte of ``folder``'s file system."""
    filler = folder / ".filler"
    with filler.open("wb") as fh, contextlib.suppress(OSError):
        while True:
            fh.write(b"\0" * 65536)
            fh.flush()
    return filler


def cannot(reason: str) -> None:
    """Skip with the reason, or fail under ``CI=true``: the disk cases must run in CI."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: the disk cases must run)")
    pytest.skip(reason)


@pytest.fixture
def small_disks(deployment_factory, db):
    if os.geteuid() != 0:
        cannot("mounting a small tmpfs needs root (run the suite as root, e.g. in CI's container)")
    dep = deployment_factory(db, workers=1, heatmaps_for="all", order_deadline_s=3)
    heat, kept = dep.dir("heatmaps"), dep.dir("kept")
    mounted = []
    try:
        for folder in (heat, kept):
            mount(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(folder)])
            mounted.append(folder)
    except OSError as exc:
        for folder in mounted:
            subprocess.run(["umount", "-l", str(folder)], check=False)
        cannot(f"cannot mount a tmpfs here: {exc}")
    try:
        yield dep
    finally:
        for folder in mounted:
            subprocess.run(["umount", "-l", str(folder)], check=False)


class Log:
    """The serve log from a mark on: what one round wrote."""

    def __init__(self, srv: Serve) -> None:
        self.srv, self.start = srv, len(srv.log.read_bytes())

    def text(self) -> str:
        return self.srv.log.read_bytes()[self.start :].decode(errors="replace")


def test_full_and_read_only_heatmap_and_storage_disks_are_retried_never_quarantined(small_disks, db):
    dep = small_disks
    heat, kept = dep.dir("heatmaps"), dep.dir("kept")
    inp = dep.cfg.input_dir
    add_model(dep.engine, dep.dir("models"), PLOT, thresholds=0.999)  # all unconfirmed: kept, with a heat map
    with Serve(dep) as srv:
        srv.wait_ready()
        keeper = srv.children()["keeper"]

        # round one: the heat-map disk full, kept/ read-only
        filler = fill(heat)
        mount(["mount", "-o", "remount,ro", str(kept)])
        log = Log(srv)
        names = drop_plots(inp, IMAGES)
        wait_until(lambda: "No space left" in log.text(), 90, what=f"a full heat-map disk; {srv.tail()}")
        time.sleep(3)
        assert len(input_files(dep)) == IMAGES and stored(dep) == ([], [])
        filler.unlink()  # space is back: results commit, but kept/ is still read-only
        t0 = time.monotonic()
        wait_until(lambda: len(stored(dep)[0]) == IMAGES, RECOVERY_S, what=f"results; {srv.tail()}")
        heat_full = round(time.monotonic() - t0, 1)
        time.sleep(2)
        assert len(input_files(dep)) == IMAGES, "a file left the input folder without a place in kept/"
        assert "Read-only file system" in log.text() and "it stays in the input directory" in log.text()
        mount(["mount", "-o", "remount,rw", str(kept)])
        kept_ro = drained(dep, srv, RECOVERY_S, "the moves once kept/ is writable")

        # round two: the heat-map folder read-only, the storage disk (kept/) full
        mount(["mount", "-o", "remount,ro", str(heat)])
        filler = fill(kept)
        log = Log(srv)
        names += drop_plots(inp, IMAGES, start=IMAGES)
        wait_until(
            lambda: "heat map not written" in log.text() and "Read-only file system" in log.text(),
            90,
            what=f"a read-only heat-map folder; {srv.tail()}",
        )
        time.sleep(3)
        assert len(input_files(dep)) == IMAGES and len(stored(dep)[0]) == IMAGES
        mount(["mount", "-o", "remount,rw", str(heat)])  # writable again: results commit, kept/ is full
        t0 = time.monotonic()
        wait_until(lambda: len(stored(dep)[0]) == 2 * IMAGES, RECOVERY_S, what=f"results; {srv.tail()}")
        heat_ro = round(time.monotonic() - t0, 1)
        time.sleep(2)
        assert len(input_files(dep)) == IMAGES, "a file left the input folder without a place in kept/"
        assert "No space left" in log.text() and "it stays in the input directory" in log.text()
        filler.unlink()
        kept_full = drained(dep, srv, RECOVERY_S, "the moves once kept/ has space")

        assert srv.children()["keeper"] == keeper, "the Keeper crashed"
        assert srv.stop() == 0
    good_images_done_once(dep, names)
    inferences, _ = stored(dep)
    assert all(Path(i.heatmap_path).is_file() and str(kept) in i.path for i in inferences)
    from PIL import Image

    for i in inferences:  # a copy cut short by the full disk was made again, not left half-written
        with Image.open(i.path) as im:
            im.load()
    on = db_name(db)
    measured(f"heat-map disk full ({on})", images=IMAGES, recovery_s=heat_full, quarantined=0)
    measured(f"kept/ read-only ({on})", images=IMAGES, recovery_s=kept_ro, quarantined=0)
    measured(f"heat-map folder read-only ({on})", images=IMAGES, recovery_s=heat_ro, quarantined=0)
    measured(f"storage (kept/) disk full ({on})", images=IMAGES, recovery_s=kept_full, quarantined=0)
