"""Synthetic detector-monitoring plots with labelled faults, for tests, demos and benchmarks.

Each :class:`PlotSpec` is one kind of monitoring plot with its own physics
shape: per-channel occupancy (with a fixed pattern of channel efficiencies,
as a real detector has), timing peaks, energy spectra, and 2D occupancy maps.
Every image draws its own Poisson fluctuations and total statistics, so no
two Good images are alike, and a fault changes the expected counts the way a
real failure would: a dead channel or board, a hot channel, a gain or timing
shift, noisy electronics, low statistics, or an empty plot (``NoData``).

Rendering is numpy + PIL only (about a millisecond per image), drawn like a
ROOT canvas: a frame with ticks, a filled histogram or a colour map with a
colour bar, a title and an entries count.

Example:
    >>> import numpy as np
    >>> from hydra.data.synthetic import PLOT_SPECS, render
    >>> img = render(PLOT_SPECS[0], np.random.default_rng(1), fault="dead_channel")
    >>> img.size
    (640, 480)
"""

from __future__ import annotations

import csv
import os
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from hydra.data import plot_canvas as pc
from hydra.data.naming import DEFAULT_LABELS, make_name

LABELS = DEFAULT_LABELS  # the labels synthetic plots carry
CHANNEL_FAULTS = ("dead_channel", "dead_region", "hot_channel", "noise", "low_stats", "empty")
CHUNKS_PER_RUN = 20


@dataclass(frozen=True)
class PlotSpec:
    """One plot type: its physics model, binning, look and the faults it can show.

    Attributes:
        name: the plot type name (``^[A-Za-z0-9_]+$``), used in file names.
        kind: ``hist1d`` (filled histogram) or ``map2d`` (colour map).
        model: the expected-counts model: occupancy, timing, energy, fcal or bcal.
        bins: bins of a 1D plot, or (rows, columns) of a 2D map.
        entries: nominal number of entries of a Good image.
        faults: the faults this plot type can show (``empty`` gives NoData).
        size: (width, height) of the PNG.
    """

    name: str
    kind: Literal["hist1d", "map2d"]
    model: str
    title: str
    x_label: str
    bins: int | tuple[int, int]
    entries: int
    faults: tuple[str, ...]
    size: tuple[int, int] = (640, 480)
    color: tuple[int, int, int] = (70, 110, 200)
    x_range: tuple[float, float] = field(default=(0.0, 0.0))

    @property
    def x_axis(self) -> tuple[float, float]:
        if self.x_range != (0.0, 0.0):
            return self.x_range
        n = self.bins if isinstance(self.bins, int) else self.bins[1]
        return (0.0, float(n))


PLOT_SPECS: tuple[PlotSpec, ...] = (
    PlotSpec(
        "cdc_occupancy",
        "hist1d",
        "occupancy",
        "CDC straw occupancy",
        "straw ring/channel",
        100,
        40_000,
        CHANNEL_FAULTS,
    ),
    PlotSpec(
        "fcal_occupancy",
        "map2d",
        "fcal",
        "FCAL block occupancy",
        "column",
        (40, 40),
        120_000,
        CHANNEL_FAULTS,
        size=(640, 480),
    ),
    PlotSpec(
        "bcal_timing",
        "hist1d",
        "timing",
        "BCAL hit time - RF",
        "t - t_RF [ns]",
        100,
        30_000,
        ("timing_shift", "noise", "low_stats", "empty"),
        color=(200, 90, 60),
        x_range=(-20.0, 20.0),
    ),
    PlotSpec(
        "tof_energy",
        "hist1d",
        "energy",
        "TOF paddle energy deposit",
        "dE [MeV]",
        100,
        30_000,
        ("gain_shift", "noise", "low_stats", "empty"),
        size=(800, 600),
        color=(60, 150, 90),
        x_range=(0.0, 10.0),
    ),
    PlotSpec(
        "fdc_occupancy",
        "hist1d",
        "occupancy",
        "FDC wire occupancy",
        "wire",
        96,
        40_000,
        CHANNEL_FAULTS,
        size=(800, 600),
        color=(120, 80, 170),
    ),
    PlotSpec(
        "bcal_occupancy",
        "map2d",
        "bcal",
        "BCAL module occupancy",
        "module",
        (16, 48),
        80_000,
        CHANNEL_FAULTS,
        size=(800, 600),
    ),
    PlotSpec(
        "sc_timing",
        "hist1d",
        "timing",
        "Start counter time - RF",
        "t - t_RF [ns]",
        80,
        20_000,
        ("timing_shift", "noise", "low_stats", "empty"),
        color=(180, 60, 140),
        x_range=(-10.0, 10.0),
    ),
    PlotSpec(
        "fcal_energy",
        "hist1d",
        "energy",
        "FCAL cluster energy",
        "E [GeV]",
        120,
        40_000,
        ("gain_shift", "noise", "low_stats", "empty"),
        color=(200, 140, 40),
        x_range=(0.0, 6.0),
    ),
)
SPECS_BY_NAME = {spec.name: spec for spec in PLOT_SPECS}


def get_spec(name: str) -> PlotSpec:
    """The spec called ``name``; the error lists the known ones."""
    try:
        return SPECS_BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown synthetic plot type {name!r}; known: {', '.join(SPECS_BY_NAME)}") from None


def fault_label(fault: str | None) -> str:
    """The human label a fault earns: Good (none), NoData (empty) or Bad."""
    return "Good" if fault is None else "NoData" if fault == "empty" else "Bad"


# ---------------------------------------------------------------- expected counts


@lru_cache(maxsize=64)
def _channel_pattern(name: str, shape: tuple[int, ...]) -> np.ndarray:
    """A fixed per-channel efficiency pattern: the same detector in every image."""
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    return np.clip(rng.normal(1.0, 0.06, size=shape), 0.8, 1.2)


def _expected(spec: PlotSpec, rng: np.random.Generator, fault: str | None, drift: float) -> np.ndarray:
    """Expected counts per bin (before Poisson), normalised to sum 1 where non-empty."""
    if spec.model in ("occupancy", "timing", "energy"):
        n = int(spec.bins)  # type: ignore[arg-type]
        x = (np.arange(n) + 0.5) / n
        if spec.model == "occupancy":
            mu = (0.35 + np.exp(-2.0 * x) + 0.15 * np.sin(6 * np.pi * x) ** 2) * _channel_pattern(
                spec.name, (n,)
            )
            mu[int(0.75 * n) :] *= 1.0 - np.clip(drift, 0.0, 1.0)
        elif spec.model == "timing":
            t0 = 0.5 + rng.normal(0, 0.004) + 0.1 * drift
            if fault == "timing_shift":
                t0 += rng.choice([-1, 1]) * rng.uniform(0.12, 0.25)
            sigma = 0.05 * rng.uniform(0.9, 1.1)
            mu = np.exp(-0.5 * ((x - t0) / sigma) ** 2) + 0.04
        else:
            gain = rng.normal(1.0, 0.015) * (1.0 - 0.5 * drift)
            if fault == "gain_shift":
                gain *= rng.choice([rng.uniform(0.55, 0.75), rng.uniform(1.35, 1.6)])
            lam = (x / gain - 0.35) / 0.05
            mu = 1.2 * np.exp(-0.5 * (lam + np.exp(-lam))) + 0.6 * np.exp(-x / (0.12 * gain))
    else:
        rows, cols = spec.bins  # type: ignore[misc]
        yy, xx = np.mgrid[0:rows, 0:cols]
        if spec.model == "fcal":
            r = np.hypot(yy - (rows - 1) / 2, xx - (cols - 1) / 2)
            mu = np.where((r < rows / 2) & (r > 2.2), 1.0 / np.maximum(r, 1.0) ** 1.3, 0.0)
        else:
            mu = 1.0 + 0.8 * np.exp(-yy / (rows / 3)) + 0.1 * np.cos(2 * np.pi * xx / cols)
        mu = mu * _channel_pattern(spec.name, (rows, cols))
        mu[:, int(0.75 * cols) :] *= 1.0 - np.clip(drift, 0.0, 1.0)
    mu = mu.astype(np.float64)
    _apply_channel_fault(mu, rng, fault)
    return mu / mu.sum()


def _apply_channel_fault(mu: np.ndarray, rng: np.random.Generator, fault: str | None) -> None:
    """Dead, hot and noisy channels act on the expected counts in place."""
    live = np.flatnonzero(mu.ravel() > 0.3 * mu.max())
    flat = mu.reshape(-1)
    if fault == "dead_channel":
        flat[rng.choice(live)] = 0.0
    elif fault == "hot_channel":
        flat[rng.choice(live)] *= rng.uniform(4.0, 10.0)
    elif fault == "noise":
        flat *= rng.lognormal(0.0, 0.45, size=flat.shape)
        flat += (flat > 0) * rng.uniform(0.1, 0.3) * flat.mean()
    elif fault == "dead_region":
        if mu.ndim == 1:
            width = int(rng.integers(6, 13))
            start = int(rng.integers(0, mu.size - width))
            mu[start : start + width] = 0.0
        else:
            rows, cols = mu.shape
            h, w = int(rng.integers(3, 7)), int(rng.integers(3, 7))
            r0, c0 = np.unravel_index(rng.choice(live), mu.shape)
            r0, c0 = min(int(r0), rows - h), min(int(c0), cols - w)
            mu[r0 : r0 + h, c0 : c0 + w] = 0.0


def sample_counts(
    spec: PlotSpec, rng: np.random.Generator, fault: str | None = None, drift: float = 0.0
) -> np.ndarray:
    """One image's histogram contents: Poisson counts around the expected shape."""
    if fault is not None and fault not in spec.faults:
        raise ValueError(f"plot type {spec.name!r} has no fault {fault!r}; it has: {', '.join(spec.faults)}")
    mu = _expected(spec, rng, fault, drift)
    total = spec.entries * rng.uniform(0.6, 1.4)
    if fault == "low_stats":
        total /= rng.uniform(40.0, 120.0)
    elif fault == "empty":
        total = 0.0
    return rng.poisson(mu * total).astype(np.float64)


# ---------------------------------------------------------------- drawing


def render(
    spec: PlotSpec,
    rng: np.random.Generator,
    fault: str | None = None,
    drift: float = 0.0,
    *,
    run: int | None = None,
) -> Image.Image:
    """Draw one plot image of ``spec`` with its own fluctuations (and ``fault`` if given).

    Args:
        spec: the plot type.
        rng: the random source (seed it for reproducible images).
        fault: one of ``spec.faults`` or None for a Good plot.
        drift: 0..1, a slow degradation (gain loss, timing walk, fading
            region) that stays below a fault for small values.
        run: printed in the corner like a monitoring canvas does.
    """
    counts = sample_counts(spec, rng, fault, drift)
    width, height = spec.size
    is_map = spec.kind == "map2d"
    box = (int(0.11 * width), int(0.11 * height), int(width * (0.84 if is_map else 0.96)), int(0.87 * height))
    canvas = np.zeros((height, width), dtype=np.uint8)
    top = float(counts.max())
    vmax = (top if is_map else 1.1 * top) if top > 0 else 1.0
    if is_map:
        pc.fill_2d(canvas, box, counts, vmax)
        pc.colour_bar(canvas, int(width * 0.87), int(width * 0.895), box[1], box[3])
        x_range, y_max = (0.0, float(spec.bins[1])), float(spec.bins[0])  # type: ignore[index]
    else:
        pc.fill_1d(canvas, box, counts, vmax)
        x_range, y_max = spec.x_axis, vmax
    pc.frame(canvas, box)
    img = pc.to_image(canvas, spec.color)
    info = f"Entries {int(counts.sum())}" + (f"   Run {run}" if run is not None else "")
    pc.annotate(
        img,
        box,
        title=spec.title,
        info=info,
        x_label=spec.x_label,
        x_range=x_range,
        y_max=y_max,
        z_max=vmax if is_map else None,
    )
    return img


# ---------------------------------------------------------------- files


def _atomic_save(img: Image.Image, path: Path) -> Path:
    """Write under a name the naming convention rejects, then rename into place."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    img.save(tmp, format="PNG", compress_level=1)
    os.replace(tmp, path)
    return path


def write_plot(
    directory: str | Path,
    spec: PlotSpec | str,
    run: int,
    chunk: int | None,
    fault: str | None = None,
    drift: float = 0.0,
    *,
    seed: int | None = None,
) -> Path:
    """Write one plot atomically into ``directory`` (as monitoring systems should).

    The file appears complete under its final name or not at all, so a
    watcher never reads a half-written PNG. Returns the final path.
    """
    spec = get_spec(spec) if isinstance(spec, str) else spec
    rng = np.random.default_rng(
        seed if seed is not None else (zlib.crc32(spec.name.encode()), run, chunk or 0)
    )
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    return _atomic_save(
        render(spec, rng, fault, drift, run=run), directory / make_name(spec.name, run, chunk)
    )


def choose_fault(spec: PlotSpec, rng: np.random.Generator, fault_rate: float) -> str | None:
    """A fault with probability ``fault_rate`` (uniform over the spec's faults), else None."""
    return str(rng.choice(spec.faults)) if rng.random() < fault_rate else None


def generate(
    out_dir: str | Path,
    plot_types: int | Sequence[str] = 1,
    images: int = 100,
    seed: int = 0,
    fault_rate: float = 0.5,
    run_start: int = 1000,
) -> Path:
    """Write ``images`` labelled plots for each plot type, plus ``labels.csv``.

    Args:
        out_dir: where the PNGs and ``labels.csv`` go (created).
        plot_types: how many of :data:`PLOT_SPECS` (the first N), or their names.
        images: images per plot type.
        seed: the same seed gives the same files.
        fault_rate: probability of a fault per image (``empty`` ones are NoData).
        run_start: the first run number; each run holds up to 20 chunks.

    Returns:
        The path of ``labels.csv`` (columns filename, label, fault, plot_type;
        file names relative to ``out_dir``).

    Example:
        >>> generate("/tmp/synth", plot_types=2, images=50, seed=3)  # doctest: +SKIP
        PosixPath('/tmp/synth/labels.csv')
    """
    if isinstance(plot_types, int):
        if not 1 <= plot_types <= len(PLOT_SPECS):
            raise ValueError(f"plot_types must be between 1 and {len(PLOT_SPECS)}, got {plot_types}")
        specs = list(PLOT_SPECS[:plot_types])
    else:
        specs = [get_spec(name) for name in plot_types]
    if images < 1:
        raise ValueError(f"images must be at least 1, got {images}")
    if not 0.0 <= fault_rate <= 1.0:
        raise ValueError(f"fault_rate must be between 0 and 1, got {fault_rate}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, str, str, str]] = []
    for k, spec in enumerate(specs):
        rng = np.random.default_rng([seed, k])
        for i in range(images):
            fault = choose_fault(spec, rng, fault_rate)
            run, chunk = run_start + i // CHUNKS_PER_RUN, i % CHUNKS_PER_RUN
            path = _atomic_save(render(spec, rng, fault, run=run), out / make_name(spec.name, run, chunk))
            rows.append((path.name, fault_label(fault), fault or "", spec.name))
    labels = out / "labels.csv"
    with labels.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["filename", "label", "fault", "plot_type"])
        writer.writerows(rows)
    return labels
