"""The ``hydra`` command line in-process: help for every verb, and the foundation verbs end to end.

Started as a real process (a bad config, a database never initialised): tests/integration/test_cli.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import typer.main
from PIL import Image
from typer.testing import CliRunner

from hydra.cli import app

runner = CliRunner()


def _all_commands(group, prefix=()):
    yield prefix
    if hasattr(group, "commands"):
        for name, cmd in group.commands.items():
            yield from _all_commands(cmd, (*prefix, name))


COMMANDS = list(_all_commands(typer.main.get_command(app)))


def test_expected_verbs_exist():
    names = {" ".join(c) for c in COMMANDS}
    for verb in [
        "init",
        "plot-type add",
        "plot-type list",
        "user add",
        "user grant",
        "user role",
        "user password",
        "ingest",
        "images list",
        "presets list",
        "presets show",
    ]:
        assert verb in names


@pytest.mark.parametrize("words", COMMANDS, ids=lambda c: " ".join(c) or "hydra")
def test_help_for_every_verb(words):
    result = runner.invoke(app, [*words, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output
    if words:  # every verb explains itself
        assert len(result.output.strip().splitlines()) > 3


def test_train_help_states_the_ensemble_size_training_uses():
    from hydra.cli.ml_train import _ENSEMBLE
    from hydra.services.training import ENSEMBLE_MIN_IMAGES

    # the CLI module does not import the training service (a slow import); the two must agree
    assert f"with {ENSEMBLE_MIN_IMAGES} labelled images or more" in _ENSEMBLE.help


class _Result:
    def __init__(self, result):
        self.returncode = result.exit_code
        self.stdout = result.stdout
        self.stderr = result.stderr


def hydra(*args: str, stdin: str | None = None, env=None) -> _Result:
    """Run the real CLI in-process (the environment is the test's)."""
    return _Result(runner.invoke(app, list(args), input=stdin))


def test_foundation_flow(hydra_home: Path, tmp_path, monkeypatch):
    import os

    env = dict(os.environ)
    assert hydra("init", env=env).returncode == 0
    again = hydra("init", env=env)
    assert again.returncode == 0 and "up to date" in again.stderr
    r = hydra(
        "plot-type",
        "add",
        "fcal_occupancy",
        "--labels",
        "Good,Bad,NoData",
        "--problem",
        "Bad",
        "--group",
        "FCAL",
        env=env,
    )
    assert r.returncode == 0, r.stderr
    dup = hydra("plot-type", "add", "fcal_occupancy", env=env)
    assert dup.returncode == 1 and "already exists" in dup.stderr
    bad = hydra("plot-type", "add", "x", "--labels", "Good,Bad", "--problem", "Broken", env=env)
    assert bad.returncode == 1 and "not among the labels" in bad.stderr
    listed = [json.loads(line) for line in hydra("plot-type", "list", "--json", env=env).stdout.splitlines()]
    assert listed[0]["name"] == "fcal_occupancy" and listed[0]["group"] == "FCAL"
    assert listed[0]["problem_labels"] == ["Bad"]

    assert hydra("user", "add", "alice", "--password-stdin", stdin="pw\n", env=env).returncode == 0
    assert hydra("user", "grant", "alice", "fcal_occupancy", "--thresholds", env=env).returncode == 0
    nope = hydra("user", "grant", "bob", "fcal_occupancy", env=env)
    assert nope.returncode == 1 and "unknown user 'bob'" in nope.stderr
    users = [json.loads(x) for x in hydra("user", "list", "--json", env=env).stdout.splitlines()]
    assert users == [
        {"name": "alice", "role": "labeler", "label": ["fcal_occupancy"], "thresholds": ["fcal_occupancy"]}
    ]

    plots = tmp_path / "plots"
    plots.mkdir()
    for i in range(4):
        Image.fromarray(np.full((20, 20, 3), i * 40, np.uint8)).save(
            plots / f"fcal_occupancy-000100_{i:04d}.png"
        )
    (plots / "labels.csv").write_text("filename,label\nfcal_occupancy-000100_0000.png,Bad\n")
    r = hydra("ingest", str(plots), "--labels", str(plots / "labels.csv"), env=env)
    assert r.returncode == 0 and "4 images added" in r.stderr, r.stderr
    images = [json.loads(x) for x in hydra("images", "list", "--json", env=env).stdout.splitlines()]
    assert len(images) == 4
    unlabeled = hydra("images", "list", "--unlabeled", "--json", env=env).stdout.splitlines()
    assert len(unlabeled) == 3
    (plots / "bad.csv").write_text(
        "filename,label\nfcal_occupancy-000100_0001.png,Good\nmissing-000001.png,Good\n"
    )
    r = hydra("ingest", str(plots), "--labels", str(plots / "bad.csv"), env=env)
    assert r.returncode == 1 and "line 3" in r.stderr and "nothing was written" in r.stderr


def _one_line_error(r: _Result, *needles: str) -> None:
    assert r.returncode == 1, r.stdout + r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_cli_refuses_bad_names_and_inputs_in_one_line(hydra_home: Path, tmp_path, monkeypatch):
    for name in ("../../x", "a/b", "fcal occupancy", "x" * 200):
        _one_line_error(hydra("plot-type", "add", name), "is not valid")
    # what MariaDB would refuse with a traceback (too long, odd characters) is refused first, in one line
    _one_line_error(hydra("plot-type", "add", "fcal", "--labels", "Good," + "B" * 100), "label name")
    _one_line_error(
        hydra("plot-type", "add", "fcal", "--labels", "Good,Bad;", "--problem", "Bad;"), "label name"
    )
    _one_line_error(
        hydra("plot-type", "add", "fcal", "--labels", "Good,Bad", "--colors", "#00ff00,red"), "#rrggbb"
    )
    _one_line_error(hydra("plot-type", "add", "fcal", "--group", "G" * 65), "1 to 64 characters")
    listed = hydra("plot-type", "list", "--json").stdout.splitlines()
    assert listed == []

    plots = tmp_path / "plots"
    plots.mkdir()
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(plots / "fcal_occupancy-000100_0001.png")
    (tmp_path / "fcal_occupancy-000100_0002.png").write_bytes(
        (plots / "fcal_occupancy-000100_0001.png").read_bytes()
    )
    rows = {
        "dotdot.csv": "../fcal_occupancy-000100_0002.png",
        "abs.csv": str(tmp_path / "fcal_occupancy-000100_0002.png"),
        "run.csv": "fcal_occupancy-100000000000000000000000.png",
    }
    for csv_name, row in rows.items():
        (plots / csv_name).write_text(f"filename,label\n{row},Good\n")
        r = hydra("ingest", str(plots), "--labels", str(plots / csv_name))
        _one_line_error(r, f"{csv_name} line 2", "nothing was written")
    (plots / "binary.csv").write_bytes(b"\xff\xfe\x00garbage")
    _one_line_error(
        hydra("ingest", str(plots), "--labels", str(plots / "binary.csv")), "not a UTF-8 text file"
    )
    _one_line_error(hydra("ingest", str(plots), "--plot-type", "../x"), "plot type name '../x' is not valid")
    assert hydra("images", "list", "--json").stdout.strip() == ""

    # ingest takes its image limits from the serve section of the config, as the Feeder does
    monkeypatch.setenv("HYDRA_SERVE__MAX_IMAGE_PIXELS", "1000")
    _one_line_error(
        hydra("ingest", str(plots)), "40x30 is over the limit of 1000 pixels", "nothing was written"
    )
    monkeypatch.delenv("HYDRA_SERVE__MAX_IMAGE_PIXELS")
    r = hydra("ingest", str(plots))
    assert r.returncode == 0 and "1 images added" in r.stderr, r.stderr


def test_user_roles_passwords_and_grants(hydra_home: Path):
    from hydra import auth
    from hydra.config import load_config
    from hydra.db import make_engine, session_scope

    assert hydra("plot-type", "add", "fcal_occupancy").returncode == 0
    assert hydra("user", "add", "root", "--admin", "--password-stdin", stdin="pw\n").returncode == 0
    assert hydra("user", "add", "alice", "--role", "viewer", "--password-stdin", stdin="pw\n").returncode == 0
    _one_line_error(
        hydra("user", "add", "bob", "--role", "god", "--password-stdin", stdin="pw\n"), "unknown role"
    )
    _one_line_error(hydra("user", "add", "bob", "--password-stdin", stdin="\n"), "must not be empty")

    r = hydra("user", "grant", "alice", "fcal_occupancy", "--thresholds")
    assert (
        r.returncode == 0 and "alice is a viewer" in r.stderr and "hydra user role alice expert" in r.stderr
    )
    assert hydra("user", "role", "alice", "expert").returncode == 0
    r = hydra("user", "grant", "alice", "fcal_occupancy", "--thresholds")
    assert r.returncode == 0 and "note:" not in r.stderr
    _one_line_error(hydra("user", "role", "alice", "king"), "unknown role 'king'")
    _one_line_error(hydra("user", "role", "root", "viewer"), "last admin")
    _one_line_error(hydra("user", "role", "nobody", "viewer"), "unknown user 'nobody'")
    users = {
        u["name"]: u["role"] for u in map(json.loads, hydra("user", "list", "--json").stdout.splitlines())
    }
    assert users == {"alice": "expert", "root": "admin"}

    engine = make_engine(load_config().database_url)
    for _ in range(auth.MAX_FAILURES_PER_USER):
        with session_scope(engine) as s:
            auth.authenticate("alice", "guess", session=s)
    with pytest.raises(auth.LoginThrottled), session_scope(engine) as s:
        auth.authenticate("alice", "pw", session=s)
    assert hydra("user", "password", "alice", "--password-stdin", stdin="n3w\n").returncode == 0
    with session_scope(engine) as s:  # the new password works at once: the lockout is lifted
        assert auth.authenticate("alice", "n3w", session=s) is not None
        assert auth.authenticate("alice", "pw", session=s) is None
    engine.dispose()
    _one_line_error(hydra("user", "password", "nobody", "--password-stdin", stdin="x\n"), "unknown user")
