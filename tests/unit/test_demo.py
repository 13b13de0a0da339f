"""``hydra demo``'s safety: loopback by default, a random password, never a configured database.

(The demo itself, training and streaming, runs as a real process in tests/integration/test_demo.py.)
"""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from hydra.auth import authenticate, get_user
from hydra.cli import app
from hydra.config import load_config
from hydra.db import make_engine, session_scope
from hydra.demo import DEMO_USER, DemoOptions, app_command, app_url, demo_password, ensure_user


def test_the_app_listens_on_loopback_unless_told():
    cmd = app_command(["hydra"], DemoOptions(port=8600))
    assert cmd[cmd.index("--address") + 1] == "127.0.0.1"
    assert app_url(DemoOptions(port=8600)) == "http://localhost:8600"
    wide = app_command(["hydra"], DemoOptions(port=8600, address="0.0.0.0"))
    assert wide[wide.index("--address") + 1] == "0.0.0.0"


def test_random_password_unless_given(monkeypatch):
    monkeypatch.delenv("HYDRA_DEMO_PASSWORD", raising=False)
    first, second = demo_password(DemoOptions()), demo_password(DemoOptions())
    assert first != second and len(first) >= 16 and "demo" not in (first, second)
    assert demo_password(DemoOptions(password="chosen")) == "chosen"
    monkeypatch.setenv("HYDRA_DEMO_PASSWORD", "from-env")
    assert demo_password(DemoOptions()) == "from-env"


def test_each_start_gives_the_demo_admin_its_password(hydra_home: Path):
    engine = make_engine(load_config().database_url)
    ensure_user(engine, "first-pw")
    ensure_user(engine, "second-pw")
    with session_scope(engine) as s:
        assert get_user(DEMO_USER, session=s).role == "admin"
        assert authenticate(DEMO_USER, "first-pw", session=s) is None
        assert authenticate(DEMO_USER, "second-pw", session=s) is not None
        assert authenticate(DEMO_USER, "demo", session=s) is None
    engine.dispose()


def test_a_configured_database_is_refused(tmp_path, monkeypatch):
    other = tmp_path / "production.db"
    monkeypatch.setenv("HYDRA_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HYDRA_DB_URL", f"sqlite:///{other}")
    result = CliRunner().invoke(app, ["demo", "--no-app", "--duration", "1"])
    assert result.exit_code == 1
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "runs on the embedded SQLite database of HYDRA_HOME only" in lines[0]
    assert not other.exists() and not (tmp_path / "home").exists()
