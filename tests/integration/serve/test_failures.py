"""Nothing lost: a killed worker, a database outage, a shutdown in the middle."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from sqlmodel import select

from hydra.db import session_scope
from hydra.db.models import Inference

from .conftest import Serve, add_model, wait_until
from .mariadb_server import PrivateMariaDB
from .test_end_to_end import PLOT, check_exactly_once, drop_plots, input_files, stored

pytestmark = pytest.mark.slow


def test_kill_9_of_a_worker_loses_nothing(deployment_factory):
    dep = deployment_factory(policy="round_robin", max_batch=4, order_deadline_s=4)
    add_model(dep.engine, dep.dir("models"), PLOT, thresholds=0.0)
    with Serve(dep) as srv:
        srv.wait_ready()
        names = drop_plots(dep.cfg.input_dir, 60)
        wait_until(lambda: len(stored(dep)[0]) >= 8, 300, what=f"first results; log:\n{srv.tail()}")
        victim = srv.children()["predict-0"]
        os.kill(victim, signal.SIGKILL)
        names += drop_plots(dep.cfg.input_dir, 60, start=60)
        wait_until(lambda: not input_files(dep), 300, what=f"an empty input dir; log:\n{srv.tail()}")
        wait_until(lambda: srv.children().get("predict-0") not in (None, victim), 60, what="the restart")
    check_exactly_once(dep, names, {})
    log = srv.log.read_text()
    assert "predict-0 exited with status -9" in log


def test_database_outage_loses_nothing(deployment_factory, tmp_path):
    db = PrivateMariaDB(tmp_path / "mariadb")
    try:
        dep = deployment_factory(db.url, keeper_flush_ms=20)
        add_model(dep.engine, dep.dir("models"), PLOT, thresholds=0.0)
        with Serve(dep) as srv:
            srv.wait_ready()
            names = drop_plots(dep.cfg.input_dir, 40)
            wait_until(lambda: not input_files(dep), 300, what=f"the first images; log:\n{srv.tail()}")
            db.stop()
            names += drop_plots(dep.cfg.input_dir, 40, start=40)
            time.sleep(8)
            # results cannot be committed, so every new file is still in the input directory
            assert len(input_files(dep)) == 40
            db.start()
            wait_until(lambda: not input_files(dep), 300, what=f"an empty input dir; log:\n{srv.tail()}")
        assert "database write failed" in srv.log.read_text()
        check_exactly_once(dep, names, {})
    finally:
        db.close()


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
