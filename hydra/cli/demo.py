"""``hydra demo``: the whole system in one command."""

from __future__ import annotations

import typer

from hydra.cli.common import ConfigOption, fail, get_config


def demo(
    port: int = typer.Option(8501, "--port", help="Port of the web app."),
    images: int = typer.Option(160, "--images", min=40, help="Training images generated per plot type."),
    epochs: int = typer.Option(20, "--epochs", min=1, help="Training epochs per model."),
    rate: float = typer.Option(
        2.0, "--rate", min=0.1, help="Plots per second streamed into the input directory."
    ),
    duration: float = typer.Option(
        0.0, "--duration", min=0, help="Stop after this many seconds of streaming (0: run until Ctrl-C)."
    ),
    burst_every: float = typer.Option(
        180.0, "--burst-every", min=10, help="Seconds between bursts of bad plots that raise an alarm."
    ),
    app: bool = typer.Option(True, "--app/--no-app", help="Start the web app."),
    seed: int = typer.Option(0, "--seed", help="Seed of the synthetic plots."),
    address: str = typer.Option(
        "127.0.0.1", "--address", help="Interface the web app listens on (0.0.0.0: every interface)."
    ),
    password: str = typer.Option(
        None,
        "--password",
        envvar="HYDRA_DEMO_PASSWORD",
        show_envvar=True,
        help="Password of the demo admin (default: a new random one each start, printed).",
    ),
    config: str = ConfigOption,
) -> None:
    """Generate plots, train a model per plot type, start hydra-serve and the web app, stream plots.

    Everything lives in HYDRA_HOME (default ./var) on its own SQLite database
    (a configured HYDRA_DB_URL is refused). A second run reuses the models it
    finds. The app listens on 127.0.0.1 and the login (user demo, an admin) gets
    a random password, printed, unless --address / --password say otherwise.
    Ctrl-C stops everything cleanly.

    Example: HYDRA_HOME=/tmp/hydra-demo hydra demo --port 8502
    """
    from hydra.demo import DemoError, DemoOptions, run_demo

    if password is not None and not password:
        fail("--password must not be empty")
    try:
        run_demo(
            get_config(config),
            DemoOptions(
                port=port,
                images=images,
                epochs=epochs,
                rate=rate,
                duration=duration,
                burst_every=burst_every,
                app=app,
                seed=seed,
                address=address,
                password=password,
            ),
        )
    except DemoError as exc:
        fail(str(exc))


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
