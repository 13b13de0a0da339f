"""kill -9 of every stage, the Balancer included, under both policies: nothing lost, nothing twice."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.helpers.faults import Stream, db_name, drained, good_images_done_once, measured
from tests.helpers.serve import PLOT, Serve, add_model, drop_plots, input_files, wait_until

pytestmark = pytest.mark.slow

# The Balancer under both policies (it lost everyone's credit) and the Keeper (the one database
# writer) on both databases; the Feeder and the workers once each.
VICTIMS = {
    ("least_loaded", "sqlite"): ("balancer", "keeper", "feeder", "predict-0"),
    ("round_robin", "mariadb"): ("balancer", "keeper", "predict-1"),
    ("least_loaded", "mariadb"): ("balancer", "keeper"),
}
RECOVERY_S = 60  # order deadline 3 s (x2 per attempt) + a restart that imports torch on a busy host


@pytest.mark.parametrize(
    "policy,db_url",
    [
        ("least_loaded", "sqlite"),
        pytest.param("round_robin", "mariadb", marks=pytest.mark.mariadb),
        pytest.param("least_loaded", "mariadb", marks=pytest.mark.mariadb),
    ],
    indirect=["db_url"],
)
def test_kill_9_of_each_stage_loses_nothing_and_recovers(policy, db, deployment_factory):
    victims = VICTIMS[policy, db_name(db)]
    dep = deployment_factory(db, policy=policy, max_batch=4, order_deadline_s=3)
    add_model(dep.engine, dep.dir("models"), PLOT, thresholds=0.0)
    inp = dep.cfg.input_dir
    with Serve(dep) as srv:
        srv.wait_ready()
        names = drop_plots(inp, 8)
        drained(dep, srv, 120, "the first images")
        for i, stage in enumerate(victims):
            victim = srv.children()[stage]
            stream = Stream(inp, 30, start=8 + 30 * i)  # 30 images over 1.5 s
            stream.start()
            time.sleep(0.5)  # mid-stream: some stored, some in every stage, more to come
            os.kill(victim, signal.SIGKILL)
            t0 = time.monotonic()
            in_flight = len(input_files(dep))
            stream.join()
            names += stream.names
            wait_until(lambda: not input_files(dep), RECOVERY_S, every=0.1, what=f"recovery from {stage}")
            recovery = round(time.monotonic() - t0, 1)
            restarted = lambda s=stage, v=victim: srv.children().get(s) not in (None, v)  # noqa: E731
            wait_until(restarted, 60, what=f"{stage} restarted")
            measured(
                f"kill -9 {stage} ({policy}, {db_name(db)})",
                images=30,
                in_flight=in_flight,
                recovery_s=recovery,
            )
        assert srv.stop() == 0
    good_images_done_once(dep, names)
    log = srv.log.read_text()
    for stage in victims:
        assert f"{stage} exited with status -9" in log
