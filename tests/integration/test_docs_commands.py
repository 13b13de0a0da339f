"""Every ``hydra-serve`` command the README and the docs show exists: its ``--help`` succeeds in a child process.

The ``hydra`` commands are checked in-process in tests/unit/test_docs_commands.py.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers.docs import doc_commands

COMMANDS = sorted(c for c in doc_commands() if c[0] == "hydra-serve")


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_serve_command_exists(command):
    prog, *words = command
    stage = [w for w in words[:1] if w in {"feeder", "balancer", "predict", "keeper"}]
    r = subprocess.run(
        [sys.executable, "-m", "hydra.serve.launcher", *stage, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
