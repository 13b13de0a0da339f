"""A MariaDB outage with a Predict worker restarted during it: nothing quarantined, all done after.

While the Keeper's backlog is full the Feeder sends nothing (the Keeper's ``hold``), and it
sends again once the database is back and the backlog committed.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.helpers.faults import drained, good_images_done_once, measured
from tests.helpers.mariadb_server import PrivateMariaDB
from tests.helpers.serve import PLOT, Serve, add_model, drop_plots, input_files, stored, wait_until

pytestmark = pytest.mark.slow

OUTAGE_S = 30  # as long as the hall's database may be away in a restart
RECOVERY_S = 60


def test_database_outage_with_a_worker_restarted_during_it(deployment_factory, tmp_path):
    db = PrivateMariaDB(tmp_path / "mariadb")
    try:
        # a Keeper backlog of 6 results at most, so the bound is reached during the outage
        dep = deployment_factory(
            db.url, workers=2, keeper_flush_ms=20, keeper_max_pending=6, order_deadline_s=3
        )
        add_model(dep.engine, dep.dir("models"), PLOT, thresholds=0.0)
        inp = dep.cfg.input_dir
        with Serve(dep) as srv:
            srv.wait_ready()
            names = drop_plots(inp, 6)
            drained(dep, srv, 120, "the first images")
            db.stop()
            down = time.monotonic()
            # predict-0 restarted: it cannot load its model while the database is down (a retry, not
            # model_error); predict-1 has its model and scores its share, which fills the backlog
            victim = srv.children()["predict-0"]
            os.kill(victim, signal.SIGKILL)

            def rejoined() -> bool:
                pid = srv.children().get("predict-0", victim)
                return pid != victim and f":{pid} joined" in srv.log.read_text()

            wait_until(rejoined, 120, what=f"predict-0 back; {srv.tail()}")
            names += drop_plots(inp, 12, start=6)
            wait_until(
                lambda: "predict fault" in srv.log.read_text(), 90, what=f"a model load retried; {srv.tail()}"
            )
            # the Keeper holds 6, drops the rest (their files stay) and holds the Feeder
            wait_until(lambda: "wait for the database" in srv.log.read_text(), 60, what="a full backlog")
            wait_until(
                lambda: "the Keeper's backlog is full: sending paused" in srv.log.read_text(),
                10,
                what=f"the Feeder paused; {srv.tail()}",
            )
            time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down)))
            assert len(input_files(dep)) == 12, (
                "a file left the input folder while nothing could be committed"
            )
            outage = round(time.monotonic() - down, 1)
            so_far = srv.log.read_text()
            assert "sending resumed" not in so_far.split("sending paused")[-1], "resumed during the outage"
            before = len(so_far)
            db.start()
            recovery = drained(dep, srv, RECOVERY_S, "everything after the outage")
            assert srv.stop() == 0
        good_images_done_once(dep, names)
        log = srv.log.read_text()
        assert "database write failed" in log and "model_error" not in log
        assert "the Keeper takes results again: sending resumed" in log[before:]
        measured(
            "database outage + worker restart",
            outage_s=outage,
            images=12,
            recovery_s=recovery,
            stored=len(stored(dep)[0]),
            quarantined=0,
        )
    finally:
        db.close()
