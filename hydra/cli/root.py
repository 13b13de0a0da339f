"""``hydra render-root``: ROOT histograms in, naming-convention PNGs out."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from hydra.cli.common import JsonOption, console, fail, print_json_lines

if TYPE_CHECKING:
    from hydra.data.root import RenderedPlot, RootError


def render_root(
    files: list[Path] = typer.Argument(
        ..., help="ROOT files to render; with --watch, folders to watch for new ROOT files."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the PNGs (e.g. Hydra's input folder)."),
    hist: str = typer.Option(
        "*", "--hist", help="Glob over histogram paths in the file, e.g. 'occupancy/*'."
    ),
    run: int | None = typer.Option(
        None, "--run", min=0, help="Run number (default: digits of the file name)."
    ),
    chunk: int | None = typer.Option(
        None,
        "--chunk",
        min=0,
        help="Chunk number (default: the digits after the run in the file name, if any).",
    ),
    watch: bool = typer.Option(
        False, "--watch", help="Watch the folders and render each new ROOT file once complete."
    ),
    json_out: bool = JsonOption,
) -> None:
    """Render TH1/TH2 histograms of ROOT files to PNGs that follow the naming convention.

    Each histogram becomes PLOTTYPE-RUN[_CHUNK].png, the plot type being its path in the file with characters other than A-Z, a-z, 0-9 and _ replaced by '_'. Every plot type gets the same 800x600 style; 2D histograms use a log colour scale. A bad file is reported and the others carry on (exit code 1 at the end).

    Examples:
      hydra render-root hd_root_041230_003.root --out var/input
      hydra render-root run_5123.root --out var/input --hist 'occupancy/*' --run 5123
      hydra render-root /data/monitoring --out var/input --watch
    """
    failures: list[str] = []

    def on_error(path: Path, exc: RootError) -> None:
        failures.append(str(path))
        console.print(f"[bold red]error:[/] {exc}", highlight=False)

    on_render = partial(_print_plot, json_out=json_out)
    if watch:
        _watch(files, out, pattern=hist, run=run, chunk=chunk, on_render=on_render, on_error=on_error)
        return
    _render(files, out, pattern=hist, run=run, chunk=chunk, on_render=on_render, on_error=on_error)
    if failures:
        fail(f"{len(failures)} of {len(files)} file(s) not rendered: {', '.join(failures)}")


def _print_plot(plot: RenderedPlot, json_out: bool) -> None:
    """One line per rendered histogram: a JSON object, or ``source:histogram -> png``."""
    if json_out:
        row = {
            "source": str(plot.source),
            "histogram": plot.histogram,
            "plot_type": plot.plot_type,
            "run": plot.run,
            "chunk": plot.chunk,
            "path": str(plot.path),
        }
        print_json_lines([row])
    else:
        console.print(f"{plot.source}:{plot.histogram} -> {plot.path}", highlight=False)


def _watch(
    folders: list[Path],
    out: Path,
    *,
    pattern: str,
    run: int | None,
    chunk: int | None,
    on_render: Callable[[RenderedPlot], None],
    on_error: Callable[[Path, RootError], None],
) -> None:
    """Render each new ROOT file in ``folders`` once complete, until Ctrl-C or SIGTERM."""
    from hydra.data.root import RootError
    from hydra.data.root import watch as watch_folders

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):  # finish the file at hand, then stop
        signal.signal(sig, lambda *_: stop.set())
    console.print(f"watching {', '.join(map(str, folders))} for ROOT files (Ctrl-C stops)", highlight=False)
    try:
        watch_folders(
            folders,
            out,
            pattern=pattern,
            run=run,
            chunk=chunk,
            stop=stop,
            on_render=on_render,
            on_error=on_error,
        )
    except RootError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        stop.set()


def _render(
    files: list[Path],
    out: Path,
    *,
    pattern: str,
    run: int | None,
    chunk: int | None,
    on_render: Callable[[RenderedPlot], None],
    on_error: Callable[[Path, RootError], None],
) -> None:
    """Render the histograms of ``files`` (a bad file goes to ``on_error``, the others carry on)."""
    from hydra.data.root import render_files

    try:
        for plot in render_files(files, out, pattern=pattern, run=run, chunk=chunk, on_error=on_error):
            on_render(plot)
    except OSError as exc:
        fail(f"cannot write to {out}: {exc}")


def register(app: typer.Typer) -> None:
    app.command("render-root")(render_root)
