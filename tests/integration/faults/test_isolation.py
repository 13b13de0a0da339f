"""Two instances on one host: one per home, never cross-wired, and no stage outlives its supervisor."""

from __future__ import annotations

import socket
import subprocess
import time

import pytest

from hydra.serve.stage import ORPHAN_GRACE_S
from tests.helpers.faults import drained, good_images_done_once, measured
from tests.helpers.serve import HYDRA_SERVE, PLOT, ROOT, Serve, add_model, alive, drop_plots, wait_until

pytestmark = pytest.mark.slow

OTHER = "cdc_occupancy"
DEFAULTS = {"balancer_frontend": "", "balancer_backend": "", "keeper_address": "", "control_address": ""}


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def serve_once(env: dict[str, str]) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.monotonic()
    out = subprocess.run([str(HYDRA_SERVE)], env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)
    return out, round(time.monotonic() - t0, 1)


def test_two_homes_never_meet_a_home_is_served_once_and_no_stage_outlives_its_supervisor(deployment_factory):
    ports = free_ports(4)
    tcp = dict(zip(DEFAULTS, (f"tcp://127.0.0.1:{p}" for p in ports)))
    a = deployment_factory(workers=1, order_deadline_s=3, **tcp)  # loopback TCP ports, as the demo once had
    b = deployment_factory(
        workers=1, order_deadline_s=3, **DEFAULTS
    )  # the default: sockets private to its home
    add_model(a.engine, a.dir("models"), PLOT, thresholds=0.0)
    add_model(b.engine, b.dir("models"), OTHER, thresholds=0.0)
    with Serve(a) as sa, Serve(b) as sb:
        sa.wait_ready()
        sb.wait_ready()

        # the same home again: refused at once, one line, no restart loop
        out, took = serve_once(b.env)
        assert out.returncode == 78, out.stderr
        assert f"already served by hydra-serve (pid {sb.proc.pid})" in out.stderr
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr
        measured("second hydra-serve on the same home", refused_in_s=took, exit_status=78)

        # another home configured onto ports that are taken: refused before anything starts
        c = deployment_factory(workers=1, **tcp)
        out, took = serve_once(c.env)
        assert out.returncode == 78 and "cannot be bound" in out.stderr, out.stderr
        assert "serve.balancer_frontend" in out.stderr and len(out.stderr.strip().splitlines()) == 1
        measured("second instance on taken ports", refused_in_s=took, exit_status=78)

        names_a = drop_plots(a.cfg.input_dir, 12)
        names_b = drop_plots(b.cfg.input_dir, 12, plot=OTHER)
        drained(a, sa, 90, "home a")
        drained(b, sb, 90, "home b")

        # kill -9 of a supervisor: every stage it started goes too
        children = sb.children()
        assert len(children) == 4
        sb.proc.kill()
        t0 = time.monotonic()
        try:  # each stage stops by itself, or its watcher ends it after ORPHAN_GRACE_S
            wait_until(lambda: not any(alive(p) for p in children.values()), ORPHAN_GRACE_S + 15)
        except AssertionError:
            states = {name: alive(p) for name, p in children.items()}
            raise AssertionError(f"orphans {states}; log:\n{sb.log.read_text()[-6000:]}") from None
        measured(
            "kill -9 of the supervisor",
            stages=len(children),
            all_gone_s=round(time.monotonic() - t0, 1),
            ended_by_watcher=sb.log.read_text().count("did not stop in"),
        )
        assert sa.stop() == 0
    good_images_done_once(a, names_a)
    good_images_done_once(b, names_b)
    for dep, plot in ((a, PLOT), (b, OTHER)):  # each stored only its own plot type's images
        from sqlmodel import select

        from hydra.db import session_scope
        from hydra.db.models import PlotType

        with session_scope(dep.engine) as s:
            assert [p.name for p in s.exec(select(PlotType)).all()] == [plot]
