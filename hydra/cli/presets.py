"""``hydra presets list|show``: the head presets ``hydra train`` can use, and where each is found."""

from __future__ import annotations

from pathlib import Path

import typer

from hydra.cli.common import JsonOption, fail, out, print_json_lines

presets_app = typer.Typer(
    help="Head presets (head name plus its arguments) for 'hydra train --head/--config'.",
    no_args_is_help=True,
)


def _head_of(path: Path) -> str:
    """The preset's ``head:`` without checking it against the head (no torch import)."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        return f"(unreadable: {type(exc).__name__})"
    if not isinstance(data, dict) or "head" not in data:
        return "(no head key)"
    return str(data["head"])


def _where(path: Path, packaged: Path) -> str:
    return "hydra (packaged)" if path.parent == packaged else f"site ({path.parent})"


@presets_app.command("list")
def presets_list(json: bool = JsonOption) -> None:
    """List the presets by name: the head each is for, and the file it is read from.

    A preset in ./configs/heads/ of the working directory wins over Hydra's own of the same name.

    Example: hydra presets list
    """
    from hydra.heads.presets import PresetError, packaged_dir, preset_files

    try:
        files = preset_files()
        packaged = packaged_dir().resolve()
    except PresetError as exc:
        fail(str(exc))
    rows = [
        {"name": name, "head": _head_of(path), "source": _where(path, packaged), "path": str(path)}
        for name, path in files.items()
    ]
    if json:
        print_json_lines(rows)
        return
    from rich.table import Table

    table = Table(title="head presets")
    for col in ("name", "head", "source", "path"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], r["head"], r["source"], r["path"])
    out.print(table)


@presets_app.command("show")
def presets_show(
    name: str = typer.Argument(..., help="A preset name (see 'hydra presets list') or a YAML path."),
) -> None:
    """Print a preset's YAML (to copy it into ./configs/heads/ and change it).

    Example: hydra presets show classifier-cpu > configs/heads/classifier-wide.yaml
    """
    from hydra.heads.presets import PresetError, find_preset

    try:
        path = find_preset(name)
    except (FileNotFoundError, PresetError) as exc:
        fail(str(exc))
    typer.echo(f"# {path}", err=True)
    typer.echo(path.read_text(), nl=False)


def register(app: typer.Typer) -> None:
    app.add_typer(presets_app, name="presets")
