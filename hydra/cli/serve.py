"""``hydra serve``, ``hydra results`` and ``hydra errors``."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import typer

from hydra.cli.common import (
    ConfigOption,
    JsonOption,
    console,
    engine_for,
    fail,
    get_config,
    out,
    print_json_lines,
)

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """``90s``, ``15m``, ``1h``, ``2d``, ``1w`` (or plain seconds) as a timedelta."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text or "")
    if not match:
        raise ValueError(f"bad duration {text!r}; expected e.g. 30s, 15m, 1h, 2d")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2) or "s"])


def _since(text: str | None) -> datetime | None:
    from hydra.db.models import utcnow

    if not text:
        return None
    try:
        return utcnow() - parse_duration(text)
    except ValueError as exc:
        fail(str(exc))


def serve(
    action: str = typer.Argument(
        None, help="'keys': make the CURVE keys for sockets beyond loopback (nothing else is served)."
    ),
    workers: int = typer.Option(
        None, "--workers", help="CPU Predict workers (default: serve.workers; 0: none on this host)."
    ),
    policy: str = typer.Option(None, "--policy", help="least_loaded (default) or round_robin."),
    device: str = typer.Option(
        None, "--device", help="Device of the workers: auto (one per visible GPU), cpu, cuda, cuda:N."
    ),
    compile_: bool = typer.Option(
        False, "--compile", help="torch.compile the networks (cached in HYDRA_HOME/cache/torch-compile)."
    ),
    client: str = typer.Option(
        None, "--client", help="With 'keys': also a key pair for remote worker host NAME."
    ),
    config: str = ConfigOption,
) -> None:
    """Run the serve pipeline (same as the hydra-serve command): Feeder, Balancer, workers, Keeper.

    Each stage runs as its own process ('hydra-serve feeder|balancer|predict|keeper');
    a stage that dies is restarted; Ctrl-C stops them all cleanly. One HYDRA_HOME is
    served by one instance: a second one on the same home is refused.

    Example: hydra serve --workers 2
    Example: hydra serve --device auto
    Example: hydra serve keys --client gpu01
    """
    from hydra.serve.launcher import main

    if action not in (None, "keys"):
        fail(f"unknown action {action!r}; known: keys (or none, to serve)")
    argv = ["keys"] if action else []
    for flag, value in (
        ("--workers", workers),
        ("--policy", policy),
        ("--device", device),
        ("--client", client),
        ("--config", config),
    ):
        if value is not None and value != "":
            argv += [flag, str(value)]
    if compile_:
        argv.append("--compile")
    raise typer.Exit(main(argv))


def results(
    plot_type: str = typer.Option(None, "--plot-type", help="Only this plot type."),
    since: str = typer.Option(None, "--since", help="Only the last DURATION (30s, 15m, 1h, 2d)."),
    limit: int = typer.Option(1000, "--limit", help="At most this many, newest first."),
    json: bool = JsonOption,
    config: str = ConfigOption,
) -> None:
    """Print the stored inferences, newest first.

    Example: hydra results --plot-type fcal_occupancy --since 1h --json
    """
    from hydra.db.engine import session_scope
    from hydra.db.results import recent_results

    cfg = get_config(config)
    cutoff = _since(since)
    with session_scope(engine_for(cfg)) as s:
        rows = recent_results(session=s, plot_type=plot_type, since=cutoff, limit=limit)
    if json:
        print_json_lines(rows)
        return
    for r in rows:
        mark = "" if r["confirmed"] else " (unconfirmed)"
        out.print(
            f"{r['created_at']:%Y-%m-%d %H:%M:%S}  {r['plot_type']}  run {r['run']}  "
            f"{r['label']} {r['weight']:.3f}{mark}  model {r['model_id']}  {r['path']}",
            soft_wrap=True,
            markup=False,
        )
    console.print(f"{len(rows)} result(s)", style="dim")


def errors(
    since: str = typer.Option(None, "--since", help="Only the last DURATION (30s, 15m, 1h, 2d)."),
    limit: int = typer.Option(1000, "--limit", help="At most this many, newest first."),
    json: bool = JsonOption,
    config: str = ConfigOption,
) -> None:
    """Print the error records: rejected inputs (moved to quarantine) and failed stages.

    Example: hydra errors --since 1d --json
    """
    from hydra.db.engine import session_scope
    from hydra.services.status import recent_errors

    cfg = get_config(config)
    cutoff = _since(since)
    with session_scope(engine_for(cfg)) as s:
        rows = [
            {
                "path": e.path, "filename": e.filename, "stage": e.stage, "kind": e.kind, "message": e.message,
                "quarantine_path": e.quarantine_path,
                "created_at": e.created_at.replace(tzinfo=None),  # naive UTC as stored: --json output unchanged
            }
            for e in recent_errors(session=s, since=cutoff, limit=limit)
        ]  # fmt: skip
    if json:
        print_json_lines(rows)
        return
    for r in rows:
        where = f"  -> {r['quarantine_path']}" if r["quarantine_path"] else ""
        out.print(
            f"{r['created_at']:%Y-%m-%d %H:%M:%S}  {r['stage']}/{r['kind']}  {r['message']}{where}",
            soft_wrap=True,
            markup=False,
        )
    console.print(f"{len(rows)} error(s)", style="dim")


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("results")(results)
    app.command("errors")(errors)
