"""What every CLI module shares: config, database, JSON lines, clean errors."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import typer
from rich.console import Console

from hydra.config import ConfigError, HydraConfig, load_config

console = Console(stderr=True)  # messages and progress
# tables and lines a person (or grep) reads: stdout, never wrapped when piped
out = Console(highlight=False, width=None if sys.stdout.isatty() else 10_000)
ConfigOption = typer.Option(
    None,
    "--config",
    "-c",
    help="Deployment YAML (default: $HYDRA_CONFIG, $HYDRA_HOME/hydra.yaml, ./configs/hydra.yaml).",
)
JsonOption = typer.Option(False, "--json", help="Print one JSON object per line.")


def get_config(path: str | None = None) -> HydraConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        fail(str(exc))


def engine_for(cfg: HydraConfig):
    from hydra.db.engine import get_engine

    return get_engine(cfg.database_url)


def fail(message: str, code: int = 1) -> None:
    """Print an error (no traceback) and exit non-zero."""
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _default(obj: Any) -> Any:
    if isinstance(obj, datetime):
        return obj.isoformat()
    return str(obj)


def print_json_lines(rows: Iterable[dict]) -> None:
    out = sys.stdout
    for row in rows:
        out.write(json.dumps(row, default=_default) + "\n")
    out.flush()
