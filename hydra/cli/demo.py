"""``hydra demo``: the whole system in one command."""

from __future__ import annotations

import typer

from hydra.cli.common import ConfigOption, get_config


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
    config: str = ConfigOption,
) -> None:
    """Generate plots, train a model per plot type, start hydra-serve and the web app, stream plots.

    Everything lives in HYDRA_HOME (default ./var) on SQLite. A second run
    reuses the models it finds. Ctrl-C stops everything cleanly.

    Example: HYDRA_HOME=/tmp/hydra-demo hydra demo --port 8502
    """
    from hydra.demo import DemoOptions, run_demo

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
        ),
    )


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
