"""Hostile and broken peers: unauthenticated clients on CURVE sockets, malformed frames on every
socket, forged messages and a rogue worker that asks for everything. No stage dies, nothing forged
is acted on, every dropped message is counted in ``hydra_dropped_messages``, and every good image
still gets exactly one result; on SQLite and MariaDB. The metrics endpoint listens on loopback only.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import zmq
import zmq.auth
from prometheus_client.parser import text_string_to_metric_families

from hydra.serve.messages import ErrorNotice, Registration, Report, encode_message
from hydra.serve.stage import Addresses
from tests.helpers.faults import db_name, drained, good_images_done_once, measured
from tests.helpers.serve import PLOT, ROOT, Serve, add_model, drop_plots, stored, wait_until

pytestmark = pytest.mark.slow

MAX_BATCH = 4
CAP = 2 * max(2 * MAX_BATCH, 4)  # the Balancer's credit cap for one worker
RECOVERY_S = 45  # the rogue's orders come back after their 3 s deadline (6 s at the second attempt)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def curve_client(
    ctx: zmq.Context, kind: int, address: str, server_key: bytes, pair: tuple[bytes, bytes] | None
):
    sock = ctx.socket(kind)
    sock.linger = 0
    if pair is not None:
        sock.curve_serverkey = server_key
        sock.curve_publickey, sock.curve_secretkey = pair
    sock.connect(address)
    return sock


def send(sock: zmq.Socket, frames: list[bytes]) -> None:
    with contextlib.suppress(zmq.Again):  # a refused peer may not even queue it
        sock.send_multipart(frames, flags=zmq.NOBLOCK)


def report(dep, filename: str, instance: str, **kw) -> Report:
    base = dict(
        order_id="f", path=str(dep.cfg.input_dir / filename), filename=filename, source_key="f" * 64,
        plot_type=PLOT, plot_type_id=1, run=99999, chunk=1, model_id=1, label="Good", weight=0.99,
        weights={"Good": 0.99, "Bad": 0.01}, confirmed=True, is_problem=False, instance=instance,
    )  # fmt: skip
    base.update(kw)
    return Report(**base)


def dropped_metric(port: int) -> dict[tuple[str, str], float]:
    """``hydra_dropped_messages`` from the Keeper's metrics endpoint: (process, reason) -> count."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {
        (m.labels["process"], m.labels["reason"]): m.value
        for family in text_string_to_metric_families(text)
        if family.name == "hydra_dropped_messages"
        for m in family.samples
    }


# what the test sends that a stage must drop, by (process, reason); "predict": whichever worker got it
DROPS = {
    ("keeper", "malformed"): 6 + 5,  # 6 undecodable frames + 5 forged messages that fail the checks
    ("keeper", "foreign"): 1,  # a report of another instance
    ("balancer", "malformed"): 5 + 3,  # 5 on the backend, 3 on the frontend
    ("balancer", "foreign"): 1,  # an order of another instance on the frontend
    ("predict", "malformed"): 1,  # the order with complex128 pixels the Balancer passes on
}


def counted(into: dict, port: int) -> dict[tuple[str, str], int]:
    """The scraped counts that are not zero, the workers' summed as "predict" (also kept in ``into``)."""
    into.clear()
    for (process, reason), value in dropped_metric(port).items():
        if value:
            key = (process if process in ("keeper", "balancer", "feeder") else "predict", reason)
            into[key] = into.get(key, 0) + int(value)
    return dict(into)


def listening_on(port: int) -> set[str]:
    """The local addresses with a TCP socket listening on ``port`` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as fh:
            for line in fh.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                addr, hexport = local.rsplit(":", 1)
                if state == "0A" and int(hexport, 16) == port:  # 0A: LISTEN
                    if len(addr) == 8:  # IPv4, little-endian
                        found.add(socket.inet_ntop(socket.AF_INET, bytes.fromhex(addr)[::-1]))
                    else:
                        words = bytes.fromhex(addr)
                        raw = b"".join(words[i : i + 4][::-1] for i in range(0, 16, 4))
                        found.add(socket.inet_ntop(socket.AF_INET6, raw))
    return found


def other_addresses() -> set[str]:
    """This host's own IPv4 addresses that are not loopback (its "/32 host LOCAL" routes)."""
    try:
        lines = Path("/proc/net/fib_trie").read_text().splitlines()
    except OSError:
        return set()
    return {
        prev.split()[-1]
        for prev, line in zip(lines, lines[1:])
        if "/32 host LOCAL" in line and not prev.split()[-1].startswith("127.")
    }


def heartbeats(dep) -> set[str]:
    from sqlmodel import select

    from hydra.db import session_scope
    from hydra.db.models import Heartbeat

    with session_scope(dep.engine) as s:
        return set(s.exec(select(Heartbeat.process)).all())


def test_unauthenticated_malformed_forged_and_greedy_peers_change_nothing(deployment_factory, tmp_path, db):
    back_port, keeper_port, metrics_port = free_port(), free_port(), free_port()
    dep = deployment_factory(
        db, metrics_port=metrics_port, workers=1, max_batch=MAX_BATCH, order_deadline_s=3, balancer_frontend="", control_address="",
        balancer_backend=f"tcp://0.0.0.0:{back_port}", keeper_address=f"tcp://0.0.0.0:{keeper_port}",
    )  # fmt: skip
    add_model(dep.engine, dep.dir("models"), PLOT, thresholds=0.0)
    keys = subprocess.run(
        [sys.executable, "-m", "hydra.serve.launcher", "keys", "--client", "tester"],
        env=dep.env, capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert keys.returncode == 0, keys.stderr
    assert "client tester: allowed in" in keys.stdout
    kdir = dep.home / "keys"
    server_key = zmq.auth.load_certificate(kdir / "server.key")[0]
    tester = zmq.auth.load_certificate(kdir / "clients" / "tester.key_secret")
    victim = tmp_path / "elsewhere" / f"{PLOT}-000001_0001.png"
    victim.parent.mkdir()
    victim.write_bytes(b"not yours")
    backend, keeper = f"tcp://127.0.0.1:{back_port}", f"tcp://127.0.0.1:{keeper_port}"
    # a worker "on another host": its own home with only the server's public key and its client pair
    remote_home = tmp_path / "gpu-host"
    (remote_home / "keys").mkdir(parents=True)
    (remote_home / "keys" / "server.key").write_bytes((kdir / "server.key").read_bytes())
    (remote_home / "keys" / "client.key_secret").write_bytes(
        (kdir / "clients" / "tester.key_secret").read_bytes()
    )
    remote_env = dict(dep.env, HYDRA_HOME=str(remote_home))
    with Serve(dep) as srv, zmq.Context() as ctx:
        remote_log = (tmp_path / "remote.log").open("wb")
        remote = subprocess.Popen(
            [sys.executable, "-m", "hydra.serve.launcher", "predict", "--connect", f"tcp://0.0.0.0:{back_port}",
             "--keeper", f"tcp://0.0.0.0:{keeper_port}", "--name", "gpu-remote", "--threads", "1"],
            env=remote_env, stdout=remote_log, stderr=remote_log, cwd=ROOT,
        )  # fmt: skip
        srv.wait_ready()
        pids = srv.children()
        instance = (dep.home / "run" / "instance").read_text().strip()
        # the metrics endpoint (serve.metrics_bind left at its default) listens on loopback only
        assert listening_on(metrics_port) == {"127.0.0.1"}, listening_on(metrics_port)
        for addr in other_addresses():
            with pytest.raises(OSError), socket.create_connection((addr, metrics_port), timeout=2):
                pass
        assert not any(dropped_metric(metrics_port).values()), "drops counted before any garbage"
        # 1. no CURVE at all, and CURVE with a key nobody allowed: refused in the handshake
        strangers = []
        for pair in (None, zmq.curve_keypair()):
            d = curve_client(ctx, zmq.DEALER, backend, server_key, pair)
            send(d, [b"ready", b"1000000"])
            p = curve_client(ctx, zmq.PUSH, keeper, server_key, pair)
            send(p, encode_message(report(dep, f"{PLOT}-099999_0001.png", instance)))
            strangers.append(d)

        # 2. an allowed client that sends garbage to the Balancer and the Keeper
        garbage = curve_client(ctx, zmq.DEALER, backend, server_key, tester)
        for frames in ([b"READY abc"], [b"ready", b"abc"], [b"ready", b"-5"], [b"\xff\xfe"], [b"alive"]):
            send(garbage, frames)
        push = curve_client(ctx, zmq.PUSH, keeper, server_key, tester)
        heat = np.zeros((8, 8, 1), np.uint8)
        bad_order = json.dumps({"_arrays": [["pixels", "complex128", [2, 2, 3]]]}).encode()
        for frames in (
            [b"report", b"\xff\xfe not utf-8"],
            [b"report", b"{not json"],
            [b"report", b"[1, 2, 3]"],
            [b"order", bad_order, b"x" * 192],
            [b"report"],
            [b"hb", b'{"process": ["x"], "pid": 1, "host": "h"}'],
            encode_message(report(dep, victim.name, instance, path=str(victim))),
            encode_message(report(dep, "../" + victim.name, instance)),
            encode_message(
                report(dep, f"{PLOT}-099999_0002.png", instance, plot_type="../../x", heatmap=heat)
            ),
            encode_message(
                ErrorNotice(str(victim), victim.name, "feeder", "empty", "forged", None, instance)
            ),
            encode_message(
                Registration(
                    str(dep.cfg.input_dir / "regdir-000001.png"),
                    "regdir-000001.png",
                    "../../../regdir",
                    1,
                    None,
                    "h" * 64,
                    "k" * 64,
                    instance,
                )  # fmt: skip
            ),
            encode_message(report(dep, f"{PLOT}-099999_0003.png", "another-instance")),
        ):
            send(push, frames)

        # 3. garbage and foreign orders into the Balancer's frontend (the home's private ipc socket)
        front = ctx.socket(zmq.PUSH)
        front.linger = 0
        front.connect(Addresses.from_config(dep.cfg).frontend)
        odd_dtype = json.dumps(
            {"instance": instance, "deadline": 9e12, "_arrays": [["pixels", "complex128", [2, 2, 3]]]}
        ).encode()
        foreign = json.dumps({"instance": "another", "deadline": 9e12, "_arrays": []}).encode()
        for frames in ([b"order", b"\xff"], [b"order", b"[1]", b"x"], [b"order"], [b"order", odd_dtype, b"x" * 192],
                       [b"order", foreign, b"x"]):  # fmt: skip
            send(front, frames)

        # every dropped frame is counted: the Keeper's drops at once, the others' in their heartbeats;
        # counted before the rogue comes, which would otherwise take the odd order and never answer
        drops = {}
        with contextlib.suppress(AssertionError):
            wait_until(lambda: counted(drops, metrics_port) == DROPS, 20, what="the drops counted")
        assert counted(drops, metrics_port) == DROPS, drops

        # 4. an allowed worker that asks for a million orders and never answers
        rogue = curve_client(ctx, zmq.DEALER, backend, server_key, tester)
        rogue.send_multipart([b"ready", b"1000000"])

        names = drop_plots(dep.cfg.input_dir, 16)
        recovery = drained(dep, srv, RECOVERY_S, "every good image despite the rogue")
        taken = 0
        while rogue.poll(200):
            if rogue.recv_multipart()[0] == b"order":
                taken += 1
        assert 0 < taken <= CAP, taken
        assert not any(s.poll(0) for s in strangers), "an unauthenticated client got a message"
        assert srv.children() == pids, "a stage died"
        assert counted(drops, metrics_port) == DROPS, drops  # the rogue's credit asks drop nothing
        # the remote worker learnt the instance from the Balancer and reached the Keeper over CURVE
        wait_until(lambda: "gpu-remote" in heartbeats(dep), 120, what=f"the remote worker; {srv.tail()}")
        remote.terminate()
        assert remote.wait(timeout=60) == 0
        remote_log.close()
        log = srv.log.read_text()
        assert srv.stop() == 0
    good_images_done_once(dep, names)
    assert "exited with status" not in log
    log += (tmp_path / "remote.log").read_text()  # the odd order may have gone to either worker
    for stage in ("balancer", "keeper", "predict"):
        assert re.search(rf"{stage}\[\d+\] WARNING dropped a malformed message", log), stage
    assert "serving instance" in log and "gpu-remote" in log
    assert re.search(r"WARNING dropped a foreign message", log)
    assert "refused a connection with an unknown CURVE key" in log
    assert victim.read_bytes() == b"not yours"
    inferences, _ = stored(dep)
    assert {i.filename for i in inferences} == set(names)  # no forged result
    assert not list(tmp_path.rglob("regdir*")) and not (dep.home.parent / "x").exists()
    measured(
        f"hostile peers (unauthenticated, malformed, forged, greedy; {db_name(db)})",
        images=16,
        rogue_orders=taken,
        credit_cap=CAP,
        recovery_s=recovery,
        stage_restarts=0,
        dropped={f"{p}/{r}": v for (p, r), v in sorted(drops.items())},
    )
