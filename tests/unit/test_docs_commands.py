"""Every command the README and the docs show exists: its ``--help`` succeeds."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hydra.cli import app

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_LINE = re.compile(r"^\s*(?:\$\s*)?(?:[A-Z_]+=\S+\s+)*(hydra(?:-serve)?)\s+(.*)$")


def _commands() -> set[tuple[str, ...]]:
    found: set[tuple[str, ...]] = set()
    for doc in DOCS:
        in_block = False
        for line in doc.read_text().splitlines():
            if line.strip().startswith("```"):
                in_block = not in_block
                continue
            if not in_block:
                continue
            m = _LINE.match(line.split(" #")[0])
            if not m:
                continue
            try:
                words = shlex.split(m.group(2))
            except ValueError:
                continue
            verbs = []
            for w in words:
                if w.startswith("-") or not re.fullmatch(r"[a-z][a-z-]*", w):
                    break
                verbs.append(w)
            found.add((m.group(1), *verbs[:2]))
    return found


COMMANDS = sorted(_commands())


def test_docs_show_commands():
    assert ("hydra", "init") in COMMANDS


def _hydra_path(words: tuple[str, ...]) -> list[str]:
    """Keep only the words that name (sub)commands, not arguments."""
    group = __import__("typer").main.get_command(app)
    path = []
    for w in words:
        cmds = getattr(group, "commands", None)
        if not cmds or w not in cmds:
            break
        path.append(w)
        group = cmds[w]
    return path


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_command_exists(command):
    prog, *words = command
    if prog == "hydra":
        path = _hydra_path(tuple(words))
        assert path or not words, f"'hydra {' '.join(words)}' is not a command"
        if words:
            assert path[0] == words[0], f"'hydra {words[0]}' is not a command"
        result = CliRunner().invoke(app, [*path, "--help"])
        assert result.exit_code == 0, result.output
    else:
        stage = [w for w in words[:1] if w in {"feeder", "balancer", "predict", "keeper"}]
        r = subprocess.run(
            [sys.executable, "-m", "hydra.serve.launcher", *stage, "--help"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 0, r.stderr
