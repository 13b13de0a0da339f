"""Predict workers on other hosts: two remote workers join one ``hydra-serve`` over TCP with CURVE.

The hub runs the Feeder, Balancer and Keeper with no local worker (``serve.workers: 0``) and
binds the Balancer's backend and the Keeper's inbox on ``tcp://0.0.0.0``: beyond loopback, so
CURVE is on (loopback addresses stay plain). Each "remote" worker is a separate
``hydra-serve predict --connect ... --keeper ...`` process with a home of its own that holds
only the hub's public key and its own client pair, as docs/deployment.md ("Two nodes") says;
it connects through 127.0.0.1 with the CURVE of the configured address. Every image is stored
exactly once, both workers took orders, and a worker whose key the hub never allowed, or one
without keys, gets nothing.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import zmq.auth
from sqlmodel import select

from hydra.db import session_scope
from hydra.db.models import Heartbeat
from tests.helpers.serve import (
    HYDRA_SERVE,
    PLOT,
    ROOT,
    Serve,
    add_model,
    check_exactly_once,
    drop_plots,
    stored,
    wait_until,
)

pytestmark = pytest.mark.slow

IMAGES = 40


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def beats(dep) -> dict[str, dict]:
    """Process name -> the info of its last heartbeat."""
    with session_scope(dep.engine) as s:
        return {h.process: dict(h.info or {}) for h in s.exec(select(Heartbeat)).all()}


def remote_home(tmp_path: Path, name: str, hub_keys: Path, client: str | None) -> Path:
    """A worker host's home: the hub's public key and the client pair ``client`` (None: a stranger's)."""
    keys = tmp_path / name / "keys"
    keys.mkdir(parents=True, mode=0o700)
    shutil.copy(hub_keys / "server.key", keys / "server.key")
    if client is None:  # a pair the hub never allowed
        zmq.auth.create_certificates(keys, "client")
    else:
        shutil.copy(hub_keys / "clients" / f"{client}.key_secret", keys / "client.key_secret")
    return keys.parent


class Remote:
    """``hydra-serve predict`` on "another host": its own home and log, the hub's TCP addresses."""

    def __init__(self, dep, home: Path, name: str, back: str, keeper: str) -> None:
        self.name = name
        self.log = home / "predict.log"
        # the hub's settings (batching) and database, but none of its addresses: only the options
        addresses = {f"HYDRA_SERVE__{k}" for k in ("BALANCER_FRONTEND", "BALANCER_BACKEND", "KEEPER_ADDRESS",
                                                    "CONTROL_ADDRESS")}  # fmt: skip
        env = {k: v for k, v in dep.env.items() if k not in addresses}
        # the models folder at the same path as on the hub (a mount on a real GPU host)
        env.update(HYDRA_HOME=str(home), HYDRA_STORAGE__MODELS=str(dep.dir("models")))
        self.argv = [str(HYDRA_SERVE), "predict", "--connect", back, "--keeper", keeper,
                     "--device", "auto", "--threads", "1", "--name", name]  # fmt: skip
        self.env = env
        self.proc: subprocess.Popen | None = None

    def start(self) -> Remote:
        with self.log.open("ab") as fh:
            self.proc = subprocess.Popen(self.argv, env=self.env, stdout=fh, stderr=fh, cwd=ROOT)
        return self

    def stop(self, timeout: float = 60) -> int | None:
        """SIGTERM; the exit status, or None if it had to be killed."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.terminate()
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def test_two_remote_workers_share_the_work_over_curve_and_strangers_get_nothing(deployment_factory, tmp_path):
    back_port, keeper_port = free_port(), free_port()
    back, keeper = f"tcp://0.0.0.0:{back_port}", f"tcp://0.0.0.0:{keeper_port}"
    # node A: Feeder, Balancer and Keeper only; every worker joins over TCP
    dep = deployment_factory(workers=0, max_batch=4, balancer_backend=back, keeper_address=keeper)
    add_model(dep.engine, dep.dir("models"), PLOT, thresholds=0.0)
    for client in ("gpu01", "gpu02"):
        made = subprocess.run(
            [str(HYDRA_SERVE), "keys", "--client", client],
            env=dep.env, capture_output=True, text=True, timeout=120, cwd=ROOT,
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
        assert f"client {client}: allowed in" in made.stdout
    hub_keys = dep.home / "keys"

    # node B (twice over): the hub's public key and its own client pair, nothing else
    workers = [
        Remote(dep, remote_home(tmp_path, f"node-{c}", hub_keys, c), f"predict-{c}", back, keeper)
        for c in ("gpu01", "gpu02")
    ]
    stranger = Remote(dep, remote_home(tmp_path, "node-x", hub_keys, None), "predict-stranger", back, keeper)
    keyless_home = tmp_path / "node-nokeys"
    keyless_home.mkdir()
    keyless = Remote(dep, keyless_home, "predict-nokeys", back, keeper)

    with Serve(dep) as srv:
        try:
            for w in (*workers, stranger):
                w.start()
            srv.wait_ready()  # keeper, balancer, feeder: no local worker
            assert not any(name.startswith("predict-") for name in srv.children())

            def joined() -> bool:
                seen = beats(dep)
                return all(w.name in seen for w in workers)

            wait_until(joined, 300, what=f"both remote workers' heartbeats; hub log:\n{srv.tail()}")

            # a worker without any key stops at once, naming the missing file
            lone = subprocess.run(keyless.argv, env=keyless.env, capture_output=True, text=True, timeout=300,
                                  cwd=ROOT)  # fmt: skip
            assert lone.returncode == 78, lone.stderr
            assert "no CURVE" in lone.stderr and "keys" in lone.stderr

            names = drop_plots(dep.cfg.input_dir, IMAGES)
            wait_until(lambda: len(stored(dep)[0]) >= IMAGES, 300, what=f"{IMAGES} results; {srv.tail()}")

            def counted() -> bool:  # the heartbeats (every 5 s) catch up with the results
                seen = beats(dep)
                return sum(int(seen[w.name].get("done", 0)) for w in workers) >= IMAGES

            wait_until(counted, 60, what="the workers' heartbeats to count every image")
            seen = beats(dep)
            done = {w.name: int(seen[w.name]["done"]) for w in workers}
            assert all(n > 0 for n in done.values()), f"a remote worker took no order: {done}"
            assert all(seen[w.name].get("device") in ("cpu", "cuda:0") for w in workers)  # auto
            assert stranger.name not in seen, "a worker with a key nobody allowed reached the Keeper"
            assert stranger.proc.poll() is None  # refused, not crashed: it keeps knocking
        finally:
            codes = {w.name: w.stop() for w in workers}
            stranger.stop(timeout=20)
        hub_log = srv.log.read_text(errors="replace")
        assert srv.stop() == 0
    assert codes == {w.name: 0 for w in workers}, codes
    check_exactly_once(dep, names, {})

    for w in workers:
        log = w.text()
        assert "serving instance" in log, log[-2000:]
        took = re.search(r"stopping: (\d+) orders in \d+ batches", log)
        assert took and int(took.group(1)) > 0, log[-2000:]
    assert "serving instance" not in stranger.text()
    assert "refused a connection with an unknown CURVE key" in hub_log
    assert "exited with status" not in hub_log
