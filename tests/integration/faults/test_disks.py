"""A full heat-map disk and a read-only kept/ folder: images wait in the input folder, never quarantine.

The test mounts two small tmpfs file systems over the home's ``heatmaps/``
and ``kept/`` folders (root only), fills the first and makes the second
read-only, streams images, then frees the space and makes ``kept/`` writable
again.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers.faults import drained, good_images_done_once, measured
from tests.helpers.serve import PLOT, Serve, add_model, drop_plots, input_files, stored, wait_until

pytestmark = pytest.mark.slow

RECOVERY_S = 45


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


@pytest.fixture
def small_disks(deployment_factory):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (run the suite as root, e.g. in CI's container)")
    dep = deployment_factory(workers=1, heatmaps_for="all", order_deadline_s=3)
    heat, kept = dep.dir("heatmaps"), dep.dir("kept")
    mounted = []
    try:
        for folder in (heat, kept):
            mount(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(folder)])
            mounted.append(folder)
    except OSError as exc:
        for folder in mounted:
            subprocess.run(["umount", "-l", str(folder)], check=False)
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    try:
        yield dep
    finally:
        for folder in mounted:
            subprocess.run(["umount", "-l", str(folder)], check=False)


def test_full_heatmap_disk_and_read_only_kept_folder_are_retried_never_quarantined(small_disks):
    dep = small_disks
    heat, kept = dep.dir("heatmaps"), dep.dir("kept")
    add_model(dep.engine, dep.dir("models"), PLOT, thresholds=0.999)  # all unconfirmed: kept, with a heat map
    filler = fill(heat)
    mount(["mount", "-o", "remount,ro", str(kept)])
    with Serve(dep) as srv:
        srv.wait_ready()
        keeper = srv.children()["keeper"]
        names = drop_plots(dep.cfg.input_dir, 10)
        wait_until(
            lambda: "heat map not written" in srv.log.read_text(), 90, what=f"a full disk; {srv.tail()}"
        )
        time.sleep(3)
        assert len(input_files(dep)) == 10 and stored(dep) == ([], [])

        filler.unlink()  # space is back: results commit, but kept/ is still read-only
        t0 = time.monotonic()
        wait_until(
            lambda: len(stored(dep)[0]) == 10, RECOVERY_S, what=f"results after space came back; {srv.tail()}"
        )
        heat_recovery = round(time.monotonic() - t0, 1)
        time.sleep(2)
        assert len(input_files(dep)) == 10, "a file left the input folder without a place in kept/"
        assert "it stays in the input directory" in srv.log.read_text()

        mount(["mount", "-o", "remount,rw", str(kept)])
        kept_recovery = drained(dep, srv, RECOVERY_S, "the moves once kept/ is writable")
        assert srv.children()["keeper"] == keeper, "the Keeper crashed"
        assert srv.stop() == 0
    good_images_done_once(dep, names)
    inferences, _ = stored(dep)
    assert all(Path(i.heatmap_path).is_file() and str(kept) in i.path for i in inferences)
    measured("heat-map disk full", images=10, recovery_s=heat_recovery, quarantined=0)
    measured("kept/ read-only", images=10, recovery_s=kept_recovery, quarantined=0)
