"""``hydra demo`` for a short while in a temporary HYDRA_HOME, as a real process."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status
    except OSError:
        return 0


def _hydra_json(*args: str, env: dict) -> list[dict]:
    out = subprocess.run(
        [sys.executable, "-m", "hydra.cli", *args, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def test_demo_trains_serves_and_streams(tmp_path: Path):
    home = tmp_path / "home"
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYDRA_")}
    env.update(HYDRA_HOME=str(home), HYDRA_SERVE__METRICS_PORT="0", HYDRA_SERVE__WORKERS="1")
    for key, addr in (
        ("BALANCER_FRONTEND", 0),
        ("BALANCER_BACKEND", 1),
        ("KEEPER_ADDRESS", 2),
        ("CONTROL_ADDRESS", 3),
    ):
        env[f"HYDRA_SERVE__{key}"] = f"ipc://{tmp_path}/s{addr}"
    args = ["demo", "--port", str(port), "--images", "40", "--epochs", "2", "--rate", "4", "--duration", "45"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "hydra.cli", *args, "--burst-every", "10"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    app_status = 0
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and app_status != 200:
            app_status = _get(f"http://127.0.0.1:{port}/")
            time.sleep(1)
        assert app_status == 200, "the web app did not answer within a minute"
        out, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)
    assert proc.returncode == 0, out[-4000:]
    login = re.search(r"login: demo / (\S+)", out)
    assert login and login.group(1) != "demo" and len(login.group(1)) >= 16, "a random password is printed"
    assert f"http://localhost:{port}" in out

    models = _hydra_json("models", "list", env=env)
    active = {m["plot_type"] for m in models if m["active"]}
    assert active == {"cdc_occupancy", "fcal_occupancy", "bcal_timing", "tof_energy"}
    assert {m["head"] for m in models if m["plot_type"] == "tof_energy"} == {"siamese"}

    results = _hydra_json("results", env=env)
    assert len(results) >= 20, f"only {len(results)} streamed images got a result"
    assert {r["plot_type"] for r in results} == active
    assert all(abs(sum(r["weights"].values()) - 1) < 1e-4 for r in results)
    # the app is stopped with the demo, and nothing is left in the input directory but what was in flight
    assert _get(f"http://127.0.0.1:{port}/") == 0
    assert len(list((home / "input").glob("*.png"))) <= 8

    again = subprocess.run(
        [sys.executable, "-m", "hydra.cli", "demo", "--no-app", "--duration", "1", "--port", str(port)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "reusing them" in again.stderr + again.stdout
