"""One home, one instance, across real processes and sockets.

A home's lock is refused to another process; a stage ends when its parent is
killed, even one stuck where it never looks; CURVE on a real TCP socket lets
known clients in and no one else. The checks that need no process or server
are in tests/unit/serve/test_isolation.py.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time

import pytest

from hydra.serve.instance import HomeLock, InUseError
from hydra.serve.stage import StopFlag
from tests.helpers.serve import alive, cfg_at


def test_a_second_lock_on_a_home_is_refused_with_the_holder_named(tmp_path):
    cfg = cfg_at(tmp_path)
    with HomeLock(cfg):
        with pytest.raises(InUseError, match=r"already served by hydra-serve \(pid \d+\)"):
            HomeLock(cfg).__enter__()
        # another process too (flock is per open file, the kernel releases it when the holder dies)
        code = (
            "import sys; from hydra.config import load_config; from hydra.serve.instance import HomeLock\n"
            f"cfg = load_config(None, home={str(cfg.home)!r})\n"
            "try:\n    HomeLock(cfg).__enter__()\nexcept Exception as e:\n    print(e); sys.exit(3)\n"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert out.returncode == 3 and "already served" in out.stdout
        with HomeLock(cfg, "feeder"):  # a stage's own lock is another lock
            pass
    with HomeLock(cfg):
        pass


GRANDCHILD = """
import sys, time
from hydra.serve.stage import StopFlag
flag = StopFlag()
print("up", flush=True)
while not flag:
    time.sleep(0.05)
open(sys.argv[1], "w").write("stopped")
"""


def test_a_stage_stops_when_its_parent_is_killed(tmp_path, monkeypatch):
    monkeypatch.delenv("HYDRA_SERVE_PARENT", raising=False)
    assert StopFlag().parent is None  # started by hand: it may outlive its shell
    marker = tmp_path / "stopped"
    parent = subprocess.Popen(
        [sys.executable, "-c", "import os, subprocess, sys, time\n"
         "env = dict(os.environ, HYDRA_SERVE_PARENT=str(os.getpid()))\n"
         f"subprocess.Popen([sys.executable, '-c', {GRANDCHILD!r}, {str(marker)!r}], env=env)\ntime.sleep(120)"],
    )  # fmt: skip
    try:
        time.sleep(3)  # the grandchild imports and starts watching
        parent.kill()  # SIGKILL: no chance to stop its child
        parent.wait()
        end = time.monotonic() + 20
        while not marker.exists() and time.monotonic() < end:
            time.sleep(0.1)
        assert marker.read_text() == "stopped"
    finally:
        parent.kill()


STUCK = """
import os, sys, time
from hydra.serve.stage import StopFlag
flag = StopFlag(grace_s=1.0).install()
open(sys.argv[1], "w").write(str(os.getpid()))
time.sleep(600)  # a stage stuck where it never looks at the flag
"""


def test_a_stage_stuck_after_its_parent_died_is_ended_with_its_tracebacks(tmp_path):
    pid_file, err = tmp_path / "pid", tmp_path / "stderr"
    parent = subprocess.Popen(
        [sys.executable, "-c", "import os, subprocess, sys, time\n"
         "env = dict(os.environ, HYDRA_SERVE_PARENT=str(os.getpid()))\n"
         f"subprocess.Popen([sys.executable, '-c', {STUCK!r}, {str(pid_file)!r}], env=env,"
         f" stderr=open({str(err)!r}, 'w'))\ntime.sleep(120)"],
    )  # fmt: skip
    try:
        end = time.monotonic() + 30
        while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < end:
            time.sleep(0.1)
        pid = int(pid_file.read_text())
        parent.kill()
        parent.wait()
        end = time.monotonic() + 15
        while alive(pid) and time.monotonic() < end:
            time.sleep(0.1)
        assert not alive(pid), "the stuck stage outlived its parent"
        text = err.read_text()
        assert "is gone and this stage did not stop in 1 s; exiting" in text, text
        assert '"<string>", line 6 in <module>' in text, text  # the traceback shows where it was stuck
    finally:
        parent.kill()


def test_curve_refuses_unknown_clients_and_lets_known_ones_in(tmp_path):
    import zmq

    from hydra.serve.security import make_client_keys, needs_curve
    from hydra.serve.stage import make_socket, zmq_context

    assert needs_curve("tcp://0.0.0.0:5762") and needs_curve("tcp://10.0.0.5:5762")
    assert not needs_curve("tcp://127.0.0.1:5762") and not needs_curve("ipc:///x/y")
    server_cfg = cfg_at(tmp_path, "main")
    port = socket.socket()
    port.bind(("127.0.0.1", 0))
    address = f"tcp://0.0.0.0:{port.getsockname()[1]}"
    port.close()
    secret, _ = make_client_keys(server_cfg, "gpu1")
    remote_cfg = cfg_at(tmp_path, "gpu-host")
    (remote_cfg.home / "keys").mkdir(parents=True)
    (remote_cfg.home / "keys" / "server.key").write_bytes(
        (server_cfg.home / "keys" / "server.key").read_bytes()
    )
    (remote_cfg.home / "keys" / "client.key_secret").write_bytes(secret.read_bytes())
    with zmq_context(server_cfg) as ctx, zmq_context(remote_cfg) as rctx:
        pull = make_socket(ctx, zmq.PULL, address, bind=True)
        plain = ctx.socket(zmq.PUSH)  # no CURVE at all
        plain.connect(address.replace("0.0.0.0", "127.0.0.1"))
        stranger = ctx.socket(zmq.PUSH)  # CURVE, but a key nobody allowed
        public, private = zmq.curve_keypair()
        stranger.curve_serverkey = (
            (server_cfg.home / "keys" / "server.key").read_text().split('"')[1].encode()
        )
        stranger.curve_publickey, stranger.curve_secretkey = public, private
        stranger.connect(address.replace("0.0.0.0", "127.0.0.1"))
        for sock in (plain, stranger):
            with contextlib.suppress(zmq.Again):  # refused in the handshake: maybe not even queued
                sock.send(b"forged", flags=zmq.NOBLOCK)
        assert not pull.poll(1500)
        local = make_socket(ctx, zmq.PUSH, address, bind=False)  # the main host's own stages
        remote = make_socket(rctx, zmq.PUSH, address, bind=False)  # another host's keys
        local.send(b"local")
        remote.send(b"remote")
        got = set()
        while pull.poll(5000) and len(got) < 2:
            got.add(pull.recv())
        assert got == {b"local", b"remote"}
        for sock in (plain, stranger):
            sock.close(linger=0)
