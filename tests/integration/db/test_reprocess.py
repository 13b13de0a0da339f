"""``hydra reprocess`` on both backends: every stored image scored once by the chosen model, resumable.

An interrupted run (Ctrl-C in the middle, a killed process, ``limit``) is
started again and carries on; at the end every stored image has exactly one
verdict of that model, the active model's rows, the Run page's window and
the alarms are as they were, and nothing was written twice.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image as PILImage
from sqlmodel import select

from hydra.config import load_config
from hydra.db import session_scope
from hydra.db.models import REPROCESS, Inference
from hydra.services import run
from hydra.services.reprocess import ReprocessError, ReprocessOptions, reprocess
from tests.helpers.serve import PLOT, ROOT, wait_until
from tests.helpers.shadow import add_constant_model, snapshot, store_images

pytestmark = pytest.mark.timeout(300)


class Interrupt(KeyboardInterrupt):
    """Ctrl-C, pressed from the progress callback."""


def _rows(engine, model_id: int) -> list[Inference]:
    with session_scope(engine) as s:
        return list(s.exec(select(Inference).where(Inference.model_id == model_id)).all())


def _setup(engine, tmp_path: Path, n: int = 14, kept_only: int = 4):
    cfg = load_config(None, home=tmp_path / "home")
    cfg.ensure_dirs()
    active = add_constant_model(engine, cfg.path("models"), PLOT, "Good", activate=True)
    candidate = add_constant_model(engine, cfg.path("models"), PLOT, "Bad", size=(40, 40))
    keys = store_images(engine, cfg.home, PLOT, active, n, kept_only=kept_only)
    return cfg, active, candidate, keys


def test_reprocess_resumes_without_duplicates(engine, tmp_path):
    cfg, active, candidate, keys = _setup(engine, tmp_path)
    before = snapshot(engine, active)
    missing_key, gone = before["rows"][13][1], Path(before["rows"][13][4])
    gone.unlink()  # one stored file went missing: counted, never stored
    opts = ReprocessOptions(PLOT, candidate, workers=1, batch_size=4, heatmaps="all")
    seen = []

    def press_ctrl_c(done: int, total: int) -> None:
        seen.append((done, total))
        if len(seen) == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        reprocess(cfg, engine, opts, progress=press_ctrl_c)
    first = _rows(engine, candidate)
    assert len(first) == 8 and seen == [(4, len(keys)), (8, len(keys))]  # two batches committed

    no_heat = ReprocessOptions(PLOT, candidate, workers=0, batch_size=3, limit=5, heatmaps="none")
    part = reprocess(cfg, engine, no_heat)
    assert (part.already, part.scored, part.left) == (8, 5, len(keys) - 13)

    rest = reprocess(cfg, engine, ReprocessOptions(PLOT, candidate, workers=2, batch_size=4, heatmaps="all"))
    assert rest.found == len(keys) and rest.already == 13
    assert rest.scored == len(keys) - 14 and rest.missing == 1 and rest.left == 0
    again = reprocess(cfg, engine, ReprocessOptions(PLOT, candidate, workers=1))
    assert (again.scored, again.already, again.missing) == (0, len(keys) - 1, 1)

    rows = _rows(engine, candidate)
    counts = Counter(r.source_key for r in rows)
    assert max(counts.values()) == 1 and len(rows) == len(keys) - 1
    assert set(counts) == set(keys) - {missing_key}
    assert {(r.label, r.origin, r.confirmed, r.is_problem) for r in rows} == {("Bad", REPROCESS, True, True)}
    assert all(Path(r.path).is_file() for r in rows)
    assert sum(r.kept_image_id is not None for r in rows) == 5 + 4  # every third live one, and the ingested
    heat = [r for r in rows if r.heatmap_path]
    assert len(heat) == len(rows) - 5  # all but the five scored without heat maps (heatmaps: none)
    with PILImage.open(heat[0].heatmap_path) as hm, PILImage.open(heat[0].path) as src:
        assert hm.size == src.size and hm.mode == "L"
    assert snapshot(engine, active) == before  # the active model's rows, RunTime and alarms untouched
    with session_scope(engine) as s:
        header, frames = run.run_header(session=s), run.run_frames(session=s)
        live = s.exec(select(Inference).where(Inference.model_id == active)).all()
    newest = max(live, key=lambda r: (r.created_at, r.id))
    assert header.run == newest.run and {f.label for f in frames if f.plot_type == PLOT} == {"Good"}
    stamps = {r.source_key: r.created_at for r in live}
    assert all(
        r.created_at == stamps[r.source_key] for r in rows if r.source_key in stamps
    )  # the image's time


def test_reprocess_refuses_a_model_of_another_plot_type(engine, tmp_path):
    cfg, active, candidate, _ = _setup(engine, tmp_path, n=2, kept_only=0)
    other = add_constant_model(engine, cfg.path("models"), "cdc_occupancy", "Good")
    with pytest.raises(ReprocessError, match="not a model of"):
        reprocess(cfg, engine, ReprocessOptions(PLOT, other, workers=0))
    assert not _rows(engine, other)


@pytest.mark.slow
def test_a_killed_reprocess_carries_on_when_started_again(sqlite_engine, tmp_path):
    """The CLI killed (SIGKILL, with its decoding processes) in the middle, then run again."""
    engine = sqlite_engine
    cfg, active, candidate, keys = _setup(engine, tmp_path, n=40, kept_only=0)
    before = snapshot(engine, active)
    env = dict(os.environ, HYDRA_HOME=str(cfg.home), HYDRA_DB_URL=str(engine.url))
    env.pop("HYDRA_CONFIG", None)
    argv = [sys.executable, "-m", "hydra.cli", "reprocess", "--plot-type", PLOT, "--model", str(candidate),
            "--workers", "1", "--batch-size", "2", "--heatmaps", "none", "--json"]  # fmt: skip
    shm_before = set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()
    proc = subprocess.Popen(argv, env=env, cwd=ROOT, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        wait_until(lambda: len(_rows(engine, candidate)) > 0 or proc.poll() is not None, 240, every=0.05,
                   what="the first committed batch")  # fmt: skip
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        # killing the whole group also kills multiprocessing's resource tracker, which would
        # have unlinked the pool's named semaphores: this test removes what it made leak
        for name in set(os.listdir("/dev/shm")) - shm_before if shm_before else ():
            if name.startswith("sem.mp-"):
                Path("/dev/shm", name).unlink(missing_ok=True)
    killed_at = len(_rows(engine, candidate))
    assert killed_at > 0, proc.stderr.read().decode(errors="replace")[-2000:]
    done = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = _rows(engine, candidate)
    counts = Counter(r.source_key for r in rows)
    assert sorted(counts) == sorted(keys) and max(counts.values()) == 1
    assert snapshot(engine, active) == before
    print(f"killed after {killed_at} of {len(keys)} images; the second run: {done.stdout.strip()}")
