"""Nothing lost: a shutdown in the middle (killed stages and outages: tests/integration/faults/)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlmodel import select

from hydra.db import session_scope
from hydra.db.models import Inference
from tests.helpers.serve import (
    PLOT,
    Serve,
    add_model,
    check_exactly_once,
    drop_plots,
    input_files,
    stored,
    wait_until,
)

pytestmark = pytest.mark.slow


def test_sigterm_mid_run_leaves_nothing_half_done_and_a_restart_finishes(deployment_factory):
    dep = deployment_factory()
    add_model(dep.engine, dep.dir("models"), PLOT, thresholds=0.999)
    names = []
    with Serve(dep) as srv:
        srv.wait_ready()
        pids = srv.children()
        names = drop_plots(dep.cfg.input_dir, 150)
        wait_until(lambda: len(stored(dep)[0]) >= 5, 300, what=f"first results; log:\n{srv.tail()}")
        assert srv.stop() == 0
    for pid in pids.values():
        stat = Path(f"/proc/{pid}/stat")
        assert not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"
    waiting = set(input_files(dep))
    with session_scope(dep.engine) as s:
        rows = list(s.exec(select(Inference)).all())
    done = {r.filename for r in rows}
    assert not waiting & done, "a file with a committed result stayed in the input directory"
    assert waiting | done == set(names), "a file vanished without a result"
    assert all(os.path.isfile(r.path) and os.path.isfile(r.heatmap_path) for r in rows)
    with Serve(dep):
        wait_until(lambda: not input_files(dep), 300, what="the rest after a restart")
    check_exactly_once(dep, names, {})
