"""Every ``hydra`` command the README and the docs show exists: its ``--help`` succeeds.

The ``hydra-serve`` commands, started as child processes: tests/integration/test_docs_commands.py.
"""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from hydra.cli import app
from tests.helpers.docs import doc_commands

ALL_COMMANDS = sorted(doc_commands())
COMMANDS = [c for c in ALL_COMMANDS if c[0] == "hydra"]


def test_docs_show_commands():
    assert ("hydra", "init") in ALL_COMMANDS


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
    path = _hydra_path(tuple(words))
    assert path or not words, f"'hydra {' '.join(words)}' is not a command"
    if words:
        assert path[0] == words[0], f"'hydra {words[0]}' is not a command"
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
