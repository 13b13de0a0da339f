"""``hydra app``: start the Streamlit web app on the deployment's database.

The app's files (``apps/streamlit/``) live in the repository next to the
``hydra`` package, not inside it, so this command finds them relative to the
package and says clearly when they are not there (a wheel install without the
repository). The config file and HYDRA_HOME reach the app through the
environment, the same way every other command reads them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from hydra.cli.common import ConfigOption, fail, get_config

APP_ENV = "HYDRA_APP_DIR"


def app_script() -> Path:
    """The entry file ``apps/streamlit/app.py`` (``$HYDRA_APP_DIR`` overrides the folder)."""
    override = os.environ.get(APP_ENV)
    folder = Path(override) if override else Path(__file__).resolve().parents[2] / "apps" / "streamlit"
    return folder / "app.py"


def streamlit_command(script: Path, port: int, address: str | None) -> list[str]:
    cmd = [
        sys.executable, "-m", "streamlit", "run", str(script),
        "--server.port", str(port),
        "--server.headless", "true",
        "--server.fileWatcherType", "none",
        "--server.runOnSave", "false",
        "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "viewer",
    ]  # fmt: skip
    if address:
        cmd += ["--server.address", address]
    return cmd


def register(app: typer.Typer) -> None:
    @app.command("app")
    def run_app(
        port: int = typer.Option(
            None, "--port", "-p", help="Port to serve on (default: app.port of the config, 8501)."
        ),
        address: str = typer.Option(None, "--address", help="Interface to listen on (default: all)."),
        config: str = ConfigOption,
    ) -> None:
        """Start the web app (Run, Log, Status, Trends and the expert pages).

        Example: hydra app --port 8501 --config /srv/hydra/hydra.yaml
        """
        cfg = get_config(config)
        script = app_script()
        if not script.is_file():
            fail(
                f"the web app's files are missing: expected {script}. They ship with the source "
                f"repository (apps/streamlit/), not the wheel; run from a checkout (pip install -e .) "
                f"or point ${APP_ENV} at the apps/streamlit folder."
            )
        try:
            import streamlit  # noqa: F401
        except ImportError:
            fail("streamlit is not installed; install the app extra: pip install 'hydra-dqm[app]'")
        env = dict(os.environ)
        env["HYDRA_HOME"] = str(cfg.home.resolve())
        if config:
            env["HYDRA_CONFIG"] = str(Path(config).resolve())
        port = port or cfg.app.port
        if not 1 <= port <= 65535:
            fail(f"--port must be between 1 and 65535, got {port}")
        typer.echo(
            f"Hydra app '{cfg.name}' on http://{address or 'localhost'}:{port} (Ctrl-C stops it)", err=True
        )
        # exec: signals (Ctrl-C, SIGTERM from a supervisor) go straight to Streamlit
        os.execve(sys.executable, streamlit_command(script, port, address), env)
