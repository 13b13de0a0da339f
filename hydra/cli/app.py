"""``hydra app``: start the Streamlit web app on the deployment's database.

The app's files live in ``apps/streamlit/`` of the repository; a wheel carries
them as the package data folder ``hydra/webapp/`` (see pyproject.toml), so
this command finds them in the installed package first, then in the checkout
next to the package (``pip install -e``); ``$HYDRA_APP_DIR`` overrides both.
The config file and HYDRA_HOME reach the app through the environment, the
same way every other command reads them.
"""

from __future__ import annotations

import os
import sys
from importlib import resources
from pathlib import Path

import typer

from hydra.cli.common import ConfigOption, fail, get_config

APP_ENV = "HYDRA_APP_DIR"


def app_dirs() -> list[Path]:
    """Where ``app.py`` is looked for, in order: ``$HYDRA_APP_DIR``, else the wheel's, then the checkout's."""
    override = os.environ.get(APP_ENV)
    if override:
        return [Path(override)]
    packaged = Path(str(resources.files("hydra"))) / "webapp"  # an installed package is a real folder
    checkout = Path(__file__).resolve().parents[2] / "apps" / "streamlit"
    return [packaged, checkout]


def app_script() -> Path:
    """The entry file ``app.py`` of the first folder of :func:`app_dirs` that has one."""
    dirs = app_dirs()
    for folder in dirs:
        if (folder / "app.py").is_file():
            return folder / "app.py"
    return dirs[0] / "app.py"


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
            looked = " or ".join(str(d / "app.py") for d in app_dirs())
            fail(
                f"the web app's files are missing: no {looked}. Point ${APP_ENV} at a folder "
                f"holding app.py (apps/streamlit/ of the repository), or reinstall hydra-dqm, "
                f"whose wheel carries them in hydra/webapp/."
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
