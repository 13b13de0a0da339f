"""Render ROOT histograms (TH1, TH2) to PNGs that Hydra can classify.

The paper's monitoring systems are ROOT based and their plot images are
drawn from histograms. This module lets a hall point Hydra at ROOT output
directly: every TH1/TH2 in a file becomes one PNG named by the naming
convention, drawn with one fixed style per plot type (same size, margins,
axis ranges and colour scale rules), because a model can only learn what
changes in the detector if nothing else in the picture changes.

Needs the optional extra ``root`` (uproot, mplhep, matplotlib); the imports
happen on first use so the rest of Hydra runs without it.

Example:
    >>> from hydra.data.root import render_file
    >>> render_file("hd_root_041230_003.root", "var/input", pattern="occupancy/*")  # doctest: +SKIP
    [RenderedPlot(source=..., histogram='occupancy/fcal', plot_type='occupancy_fcal', run=41230, chunk=3, ...)]
"""

from __future__ import annotations

import fnmatch
import io
import os
import queue
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hydra.data.naming import make_name

WIDTH_PX, HEIGHT_PX, DPI = 800, 600, 100
TH1_CLASSES = frozenset({"TH1F", "TH1D", "TH1I", "TH1S", "TH1C"})
TH2_CLASSES = frozenset({"TH2F", "TH2D", "TH2I", "TH2S", "TH2C"})
_INSTALL_HINT = "ROOT support needs the optional extra: pip install 'hydra-dqm[root]'"


class RootError(ValueError):
    """A ROOT file cannot be rendered; the message names the file and why."""


@dataclass(frozen=True)
class Histogram:
    """One histogram read from a file, without under/overflow bins.

    ``edges`` holds one array per axis; ``values`` has shape (nx,) or (nx, ny).
    """

    path: str
    classname: str
    title: str
    labels: tuple[str, ...]
    values: np.ndarray
    edges: tuple[np.ndarray, ...]

    @property
    def ndim(self) -> int:
        return len(self.edges)


@dataclass(frozen=True)
class RenderStyle:
    """How a histogram is drawn; one fixed style per plot type.

    The default is ``hydra render-root``'s: 800x600, a filled 1D histogram on a
    linear axis, a 2D map on a logarithmic viridis colour scale. Axes boxes
    are figure fractions (left, bottom, width, height) and never move, so a
    bin always lands on the same pixels (see :meth:`bin_box`).
    """

    width_px: int = WIDTH_PX
    height_px: int = HEIGHT_PX
    font_size: float = 13.0
    hist1d: str = "fill"  # fill | step | errorbar
    color: str = "#3060c0"
    log_y: bool = False
    cmap: str = "viridis"
    log_z: bool = True
    axes_1d: tuple[float, float, float, float] = (0.11, 0.11, 0.84, 0.81)
    axes_2d: tuple[float, float, float, float] = (0.11, 0.11, 0.72, 0.81)
    colorbar: tuple[float, float, float, float] = (0.86, 0.11, 0.03, 0.81)

    def axes_box(self, ndim: int) -> tuple[float, float, float, float]:
        return self.axes_1d if ndim == 1 else self.axes_2d

    def bin_box(
        self, hist: Histogram, x_range: tuple[int, int], y_range: tuple[int, int] | None = None
    ) -> tuple[float, float, float, float]:
        """Where bins ``[x0, x1)`` (and ``[y0, y1)`` on a 2D map) are drawn.

        Returns (x0, y0, x1, y1) in fractions of the image, y from the top.
        A 1D range covers the axes' whole height.
        """
        left, bottom, width, height = self.axes_box(hist.ndim)
        ex = hist.edges[0]
        span = float(ex[-1] - ex[0]) or 1.0
        fx0 = left + width * float(ex[x_range[0]] - ex[0]) / span
        fx1 = left + width * float(ex[x_range[1]] - ex[0]) / span
        if hist.ndim == 1 or y_range is None:
            return (fx0, 1.0 - bottom - height, fx1, 1.0 - bottom)
        ey = hist.edges[1]
        yspan = float(ey[-1] - ey[0]) or 1.0
        fy0 = bottom + height * float(ey[y_range[0]] - ey[0]) / yspan
        fy1 = bottom + height * float(ey[y_range[1]] - ey[0]) / yspan
        return (fx0, 1.0 - fy1, fx1, 1.0 - fy0)


DEFAULT_STYLE = RenderStyle()


@dataclass(frozen=True)
class RenderedPlot:
    source: Path
    histogram: str
    plot_type: str
    run: int
    chunk: int | None
    path: Path


def _require(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise RootError(f"{_INSTALL_HINT} (cannot import {module}: {exc})") from exc


def plot_type_for(hist_path: str) -> str:
    """The plot type of a histogram: its path in the file reduced to ``[A-Za-z0-9_]``.

    The folder is kept (``occupancy/fcal`` -> ``occupancy_fcal``) because halls
    reuse a short histogram name in many directories.
    """
    name = re.sub(r"[^A-Za-z0-9_]+", "_", hist_path.split(";")[0]).strip("_")
    return re.sub(r"_+", "_", name) or "hist"


def run_and_chunk_from_name(path: str | Path) -> tuple[int, int | None]:
    """Run and chunk from a ROOT file name's digits.

    The longest group of digits is the run (the first one on a tie); a group
    right after it is the chunk, as in GlueX's ``hd_root_041230_003.root``.

    Raises:
        RootError: the name has no digits; pass the run explicitly.
    """
    groups = re.findall(r"\d+", Path(path).stem)
    if not groups:
        raise RootError(f"{path}: no run number in the file name; give it with --run N")
    best = max(range(len(groups)), key=lambda i: (len(groups[i]), -i))
    chunk = int(groups[best + 1]) if best + 1 < len(groups) else None
    return int(groups[best]), chunk


def _axis_label(hist: Any, axis: str, fallback: str) -> str:
    try:
        title = hist.member(f"f{axis}axis").member("fTitle")
    except Exception:  # noqa: BLE001 - a stripped-down streamer has no axis title
        title = ""
    return str(title or fallback)


def _to_histogram(path: str, classname: str, obj: Any) -> Histogram:
    # ROOT splits "title;x;y;z" into axis titles; files written elsewhere may keep it whole
    parts = str(obj.member("fTitle") or "").split(";")
    title = parts[0]
    ndim = 1 if classname in TH1_CLASSES else 2
    axes = ("X", "Y", "Z")[: ndim + 1]
    default = [*parts[1:], "", "", ""]
    labels = tuple(_axis_label(obj, a, default[i]) for i, a in enumerate(axes))
    if ndim == 1 and not labels[1]:
        labels = (labels[0], "Entries")
    values = np.asarray(obj.values(flow=False), dtype=np.float64)
    edges = tuple(np.asarray(obj.axis(i).edges(flow=False), dtype=np.float64) for i in range(ndim))
    return Histogram(path, classname, title, labels, values, edges)


def read_histograms(path: str | Path, pattern: str = "*") -> list[Histogram]:
    """Every TH1/TH2 in a file (recursing into TDirectories) whose path matches ``pattern``.

    ``pattern`` is a glob over the path inside the file, e.g. ``occupancy/*``.

    Raises:
        RootError: not a ROOT file, truncated, or nothing matches; names the file.
    """
    uproot = _require("uproot")
    path = Path(path)
    if not path.is_file():
        raise RootError(f"{path}: no such file")
    try:
        with uproot.open(path) as f:
            classes = f.classnames(recursive=True, cycle=False)
            wanted = sorted(
                (name, cls)
                for name, cls in classes.items()
                if cls in TH1_CLASSES | TH2_CLASSES and fnmatch.fnmatchcase(name, pattern)
            )
            hists = [_to_histogram(name, cls, f[name]) for name, cls in wanted]
    except RootError:
        raise
    except Exception as exc:  # noqa: BLE001 - uproot raises many kinds for damaged files
        why = " ".join(str(exc).split())
        raise RootError(f"{path}: not a readable ROOT file ({type(exc).__name__}: {why})") from exc
    if not hists:
        found = sorted(n for n, c in classes.items() if c in TH1_CLASSES | TH2_CLASSES)
        shown = ", ".join(found[:10]) + (" ..." if len(found) > 10 else "")
        raise RootError(
            f"{path}: no TH1/TH2 histogram matches {pattern!r}"
            + (f" (it has: {shown})" if found else " (it holds no TH1/TH2 histograms)")
        )
    return hists


def draw_png(hist: Histogram, style: RenderStyle = DEFAULT_STYLE) -> bytes:
    """The PNG bytes of one histogram drawn in ``style`` (what :func:`render_histogram` writes)."""
    os.environ.setdefault("MPLBACKEND", "Agg")  # never open a window, even with a display
    mpl = _require("matplotlib")
    mplhep = _require("mplhep")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import LogNorm, Normalize
    from matplotlib.figure import Figure

    fs = style.font_size
    with mpl.rc_context({"font.size": fs, "axes.titlesize": fs + 1, "axes.labelsize": fs}):
        fig = Figure(figsize=(style.width_px / DPI, style.height_px / DPI), dpi=DPI)
        FigureCanvasAgg(fig)
        # fixed axes boxes, never tight_layout: a plot must sit at the same pixels in every image
        ax = fig.add_axes(style.axes_box(hist.ndim))
        if hist.ndim == 1:
            values = hist.values
            if style.hist1d == "errorbar":
                centres = 0.5 * (hist.edges[0][1:] + hist.edges[0][:-1])
                ax.errorbar(
                    centres, values, yerr=np.sqrt(np.clip(values, 0, None)), fmt="o", ms=2.0,
                    color=style.color, elinewidth=0.8,
                )  # fmt: skip
            else:
                mplhep.histplot(
                    values, hist.edges[0], ax=ax, histtype=style.hist1d, color=style.color, flow=None
                )
            top = float(values.max()) if values.size else 0.0
            if style.log_y:
                ax.set_yscale("log")
                ax.set_ylim(0.5, top * 3 if top > 0.5 else 10.0)
            else:
                ax.set_ylim(min(0.0, float(values.min())), top * 1.1 if top > 0 else 1.0)
        else:
            cax = fig.add_axes(style.colorbar)
            positive = hist.values[hist.values > 0]
            if positive.size and style.log_z:
                lo, hi = float(positive.min()), float(positive.max())
                norm = LogNorm(vmin=lo, vmax=hi if hi > lo else lo * 10)
            elif positive.size:
                norm = Normalize(vmin=0.0, vmax=float(positive.max()))
            else:
                norm = Normalize(vmin=0.0, vmax=1.0)
            art = mplhep.hist2dplot(
                hist.values,
                hist.edges[0],
                hist.edges[1],
                ax=ax,
                cbar=False,
                norm=norm,
                cmap=style.cmap,
                flow=None,
            )
            fig.colorbar(art.pcolormesh, cax=cax, label=hist.labels[2] or None)
        ax.set_ylabel(hist.labels[1])
        ax.set_xlim(float(hist.edges[0][0]), float(hist.edges[0][-1]))
        ax.set_xlabel(hist.labels[0])
        ax.set_title(hist.title or hist.path, loc="left")
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def render_histogram(hist: Histogram, dest: str | Path, style: RenderStyle = DEFAULT_STYLE) -> Path:
    """Draw one histogram to ``dest`` (a PNG, 800x600 by default), atomically: tmp file + rename.

    A watcher of the output folder therefore never sees a half-written image.
    """
    dest = Path(dest)
    png = draw_png(hist, style)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(png)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def render_file(
    path: str | Path,
    out_dir: str | Path,
    *,
    pattern: str = "*",
    run: int | None = None,
    chunk: int | None = None,
) -> list[RenderedPlot]:
    """Render every matching histogram of one ROOT file into ``out_dir``.

    Args:
        path: the ROOT file.
        out_dir: where the PNGs go (created if missing), e.g. Hydra's input folder.
        pattern: glob over histogram paths inside the file.
        run: the run number; by default parsed from the file name.
        chunk: the chunk number; by default the digits after the run in the name, if any.

    Raises:
        RootError: the file cannot be read, has no matching histogram, or no run number.
    """
    path = Path(path)
    hists = read_histograms(path, pattern)
    if run is None:
        run, parsed_chunk = run_and_chunk_from_name(path)
        chunk = parsed_chunk if chunk is None else chunk
    if run < 0 or (chunk is not None and chunk < 0):
        raise RootError(f"{path}: run and chunk must be >= 0 (got run={run}, chunk={chunk})")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    done = []
    for hist in hists:
        plot_type = plot_type_for(hist.path)
        dest = render_histogram(hist, out / make_name(plot_type, run, chunk))
        done.append(RenderedPlot(path, hist.path, plot_type, run, chunk, dest))
    return done


def render_files(
    paths: Iterable[str | Path],
    out_dir: str | Path,
    *,
    pattern: str = "*",
    run: int | None = None,
    chunk: int | None = None,
    on_error: Callable[[Path, RootError], None] | None = None,
) -> Iterator[RenderedPlot]:
    """Render several files; a bad file goes to ``on_error`` and the others carry on."""
    for p in paths:
        try:
            yield from render_file(p, out_dir, pattern=pattern, run=run, chunk=chunk)
        except RootError as exc:
            if on_error is None:
                raise
            on_error(Path(p), exc)


_MOVED_IN_GRACE_S = 0.5


def _root_file_events(folder: Path, events: queue.Queue[tuple[str, Path]]) -> Any:
    """Start a watchdog observer that queues ("created" | "opened" | "complete", path) for .root files."""
    from watchdog.events import (
        FileClosedEvent,
        FileCreatedEvent,
        FileMovedEvent,
        FileOpenedEvent,
        FileSystemEventHandler,
    )
    from watchdog.observers import Observer

    kinds = ((FileClosedEvent, "complete"), (FileOpenedEvent, "opened"), (FileCreatedEvent, "created"))
    here = folder.resolve()

    class _Handler(FileSystemEventHandler):
        def on_any_event(self, event: Any) -> None:
            if isinstance(event, FileMovedEvent):  # renamed inside the folder
                kind, target = "complete", event.dest_path
            else:
                kind = next((k for cls, k in kinds if isinstance(event, cls)), None)
                target = event.src_path
            path = Path(os.fsdecode(target))
            if kind and path.suffix == ".root" and path.parent.resolve() == here:
                events.put((kind, path))

    observer = Observer()
    observer.schedule(_Handler(), str(folder), recursive=False)
    observer.start()
    return observer


def watch(
    folders: Iterable[str | Path],
    out_dir: str | Path,
    *,
    pattern: str = "*",
    run: int | None = None,
    chunk: int | None = None,
    stop: threading.Event | None = None,
    on_render: Callable[[RenderedPlot], None] | None = None,
    on_error: Callable[[Path, RootError], None] | None = None,
) -> None:
    """Render each new ROOT file in ``folders`` once it is complete, until ``stop`` is set.

    A file written in place is complete when its writer closes it (inotify
    close-after-write); a file renamed into the folder is complete on arrival
    (it appears without ever being opened there). A file still being written
    is therefore never read. A file is rendered again only if it is
    rewritten (new size or mtime).
    """
    stop = stop or threading.Event()
    events: queue.Queue[tuple[str, Path]] = queue.Queue()
    dirs = [Path(f) for f in folders]
    for d in dirs:
        if not d.is_dir():
            raise RootError(f"{d}: not a folder to watch")
    observers = [_root_file_events(d, events) for d in dirs]
    fresh: dict[Path, float] = {}  # created, not (yet) opened: renamed in, or about to be written
    seen: set[tuple[str, int, int]] = set()

    def render(path: Path) -> None:
        try:
            st = path.stat()
        except FileNotFoundError:
            return
        key = (str(path), st.st_mtime_ns, st.st_size)
        if key in seen:
            return
        seen.add(key)
        for plot in render_files([path], out_dir, pattern=pattern, run=run, chunk=chunk, on_error=on_error):
            if on_render is not None:
                on_render(plot)

    try:
        while not stop.is_set():
            try:
                kind, path = events.get(timeout=0.1)
            except queue.Empty:
                kind, path = "", None
            if kind == "created":
                fresh[path] = time.monotonic()
            elif kind == "opened":
                fresh.pop(path, None)
            elif kind == "complete":
                fresh.pop(path, None)
                render(path)
            now = time.monotonic()
            for moved_in in [p for p, t in fresh.items() if now - t > _MOVED_IN_GRACE_S]:
                del fresh[moved_in]
                render(moved_in)
    finally:
        for obs in observers:
            obs.stop()
        for obs in observers:
            obs.join(timeout=5)
