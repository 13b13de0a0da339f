"""The ``hydra`` command line as a real process: a bad config and database failures end in one line."""

from __future__ import annotations

import subprocess
import sys


def test_bad_config_fails_at_start(tmp_path):
    import os

    cfg = tmp_path / "hydra.yaml"
    cfg.write_text("serve:\n  workers: -3\n")
    r = subprocess.run(
        [sys.executable, "-m", "hydra.cli", "init", "--config", str(cfg)],
        capture_output=True,
        text=True,
        env=dict(os.environ, HYDRA_HOME=str(tmp_path)),
        timeout=120,
    )
    assert r.returncode == 1 and "serve.workers" in r.stderr


def test_database_failures_are_one_line_not_a_traceback(tmp_path):
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("HYDRA_")}
    env["HYDRA_HOME"] = str(tmp_path / "never-initialised")
    r = subprocess.run(
        [sys.executable, "-m", "hydra.cli", "plot-type", "list"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "no such table" in lines[0] and "run 'hydra init'" in lines[0], r.stderr
