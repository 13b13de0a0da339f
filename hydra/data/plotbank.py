"""Made-up plot types for pretraining Hydra's shipped backbone.

Each plot type is a random histogram shape (1D: peaks on a background,
falling spectra, turn-ons, cutflows, channel occupancies, Landau-like
deposits; 2D: blobs, rings, bands, occupancy maps), drawn in a random style
(filled, step or error-bar histograms, linear or logarithmic axes and colour
scales, six colour maps, three canvas sizes) by :mod:`hydra.data.root`, the
renderer of ``hydra render-root``. Every image draws fresh Poisson
statistics (entries x0.6-1.6) and faults are injected into the histogram
with :func:`hydra.data.realbench.inject`, as the quality benchmark does.

No histogram comes from a file: the benchmark's real histograms are never
seen by the pretraining, so the benchmark still judges plots we did not draw.

Example:
    >>> from hydra.data.plotbank import render_type
    >>> bank = render_type(0, images=12, input_size=(120, 160))   # doctest: +SKIP
    >>> bank.pixels.shape, bank.labels[:4]                           # doctest: +SKIP
    ((12, 120, 160, 3), ['Good', 'Bad', 'Good', 'NoData'])
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from hydra.data.realbench import NODATA, expected_counts, inject, plan
from hydra.data.root import Histogram, RenderStyle

LABELS = ("Good", "Bad", "NoData")
_CMAPS = ("viridis", "plasma", "magma", "inferno", "cividis", "turbo")
_COLORS = ("#3060c0", "#b02020", "#208040", "#806000", "#303090", "black", "#7030a0", "#c06000")
_WORDS = ("hits", "energy", "time", "channel", "layer", "module", "eta", "phi", "pT", "ADC", "TDC", "mass")
_CANVASES = ((320, 240, 7.0), (400, 300, 8.0), (640, 480, 12.0))


@dataclass(frozen=True)
class TypeBank:
    """The rendered images of one made-up plot type, at a head's input size."""

    pixels: np.ndarray  # uint8 N x H x W x C
    labels: list[str]
    faults: list[str | None]


def _shape_1d(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    family = rng.choice(["peaks", "falling", "turn_on", "cutflow", "channels", "landau"])
    n = int(rng.integers(8, 21)) if family == "cutflow" else int(rng.integers(20, 151))
    x = np.linspace(0.0, 1.0, n, endpoint=False) + 0.5 / n
    if family == "peaks":
        y = rng.uniform(0, 0.3) * np.exp(-x / rng.uniform(0.2, 2.0))
        for _ in range(int(rng.integers(1, 4))):
            y = y + rng.uniform(0.3, 1.0) * np.exp(
                -0.5 * ((x - rng.uniform(0.1, 0.9)) / rng.uniform(0.02, 0.2)) ** 2
            )
    elif family == "falling":
        y = (
            np.exp(-x / rng.uniform(0.05, 0.6))
            if rng.random() < 0.5
            else (x + rng.uniform(0.02, 0.2)) ** -rng.uniform(1, 4)
        )
    elif family == "turn_on":
        y = (
            1
            / (1 + np.exp(-(x - rng.uniform(0.05, 0.4)) / rng.uniform(0.01, 0.08)))
            * np.exp(-x / rng.uniform(0.2, 1.5))
        )
    elif family == "cutflow":
        y = np.cumprod(np.concatenate([[1.0], rng.uniform(0.3, 0.97, n - 1)]))
    elif family == "channels":
        y = rng.uniform(0.7, 1.3, n) * (1 + rng.uniform(-0.5, 0.5) * x)
    else:
        mpv, width = rng.uniform(0.1, 0.5), rng.uniform(0.02, 0.1)
        lam = (x - mpv) / width
        y = np.exp(-0.5 * (lam + np.exp(-lam)))
    edges = np.linspace(0.0, float(rng.choice([1.0, 10.0, 100.0, 500.0])), n + 1)
    return np.clip(y, 0.0, None), edges


def _shape_2d(rng: np.random.Generator) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    family = rng.choice(["blobs", "occupancy", "ring", "band", "falling"])
    nx, ny = int(rng.integers(12, 65)), int(rng.integers(12, 65))
    gx, gy = np.meshgrid(np.linspace(-1, 1, nx), np.linspace(-1, 1, ny), indexing="ij")
    if family == "blobs":
        z = np.full((nx, ny), rng.uniform(0, 0.05))
        for _ in range(int(rng.integers(1, 4))):
            cx, cy, sx, sy = (
                rng.uniform(-0.6, 0.6),
                rng.uniform(-0.6, 0.6),
                rng.uniform(0.1, 0.6),
                rng.uniform(0.1, 0.6),
            )
            rho = rng.uniform(-0.7, 0.7)
            u, v = (gx - cx) / sx, (gy - cy) / sy
            z = z + rng.uniform(0.3, 1.0) * np.exp(-(u * u - 2 * rho * u * v + v * v) / (2 * (1 - rho * rho)))
    elif family == "occupancy":
        z = rng.uniform(0.6, 1.4, (nx, ny)) * np.exp(-np.hypot(gx, gy) / rng.uniform(0.5, 5.0))
    elif family == "ring":
        r = np.hypot(gx / rng.uniform(0.7, 1.3), gy)
        z = np.exp(-0.5 * ((r - rng.uniform(0.3, 0.8)) / rng.uniform(0.05, 0.2)) ** 2) + rng.uniform(0, 0.05)
    elif family == "band":
        curve = rng.uniform(-0.8, 0.8) * gx + rng.uniform(-0.5, 0.5) * gx**2
        z = np.exp(-0.5 * ((gy - curve) / rng.uniform(0.05, 0.3)) ** 2) + rng.uniform(0, 0.03)
    else:
        z = np.exp(-(gx + 1) / rng.uniform(0.2, 2.0) - (gy + 1) / rng.uniform(0.2, 2.0))
    return np.clip(z, 0.0, None), (np.linspace(-5.0, 5.0, nx + 1), np.linspace(0.0, 3.0, ny + 1))


def _style(rng: np.random.Generator) -> RenderStyle:
    w, h, fs = _CANVASES[int(rng.choice(3, p=[0.6, 0.2, 0.2]))]
    left, bottom = rng.uniform(0.11, 0.17), rng.uniform(0.11, 0.17)
    top = rng.uniform(0.08, 0.13)
    box1d = (left, bottom, 0.95 - left, 1 - bottom - top)
    box2d = (left, bottom, 0.81 - left, 1 - bottom - top)
    return RenderStyle(
        width_px=w, height_px=h, font_size=fs,
        hist1d=str(rng.choice(["fill", "step", "errorbar"], p=[0.45, 0.35, 0.2])),
        color=str(rng.choice(_COLORS)), log_y=bool(rng.random() < 0.3),
        cmap=str(rng.choice(_CMAPS)), log_z=bool(rng.random() < 0.5),
        axes_1d=box1d, axes_2d=box2d, colorbar=(0.84, bottom, 0.03, 1 - bottom - top),
    )  # fmt: skip


def random_type(seed: int) -> tuple[Histogram, RenderStyle, float]:
    """A made-up plot type: its histogram shape, its style and the entries of a populated bin."""
    rng = np.random.default_rng([7919, seed])
    if rng.random() < 0.55:
        values, edges = _shape_1d(rng)
        edges_t, labels, cls = (edges,), (str(rng.choice(_WORDS)), "Entries"), "TH1D"
    else:
        values, edges_t = _shape_2d(rng)
        labels, cls = (str(rng.choice(_WORDS)), str(rng.choice(_WORDS)), "Entries"), "TH2D"
    title = f"{rng.choice(_WORDS)} {rng.choice(_WORDS)} {int(rng.integers(1, 40))}"
    hist = Histogram(f"bank{seed}", cls, title, labels, values, edges_t)
    mean_count = float(np.exp(rng.uniform(np.log(20.0), np.log(2000.0))))
    return hist, _style(rng), mean_count


def render_type(
    seed: int, images: int = 48, input_size: tuple[int, int] = (120, 160), channels: int = 3
) -> TypeBank:
    """Render ``images`` labelled images of made-up plot type ``seed`` (half Good), prepared for a head."""
    from hydra.data.images import decode_image, prepare
    from hydra.data.root import draw_png

    shape, style, mean_count = random_type(seed)
    rng = np.random.default_rng([104729, seed])
    pixels, labels, faults = [], [], []
    for kind, subtle in plan(images, rng):
        lam = expected_counts(shape.values, mean_count, rng)
        if kind is not None:
            lam, _ = inject(lam, kind, subtle, rng)
        counts = rng.poisson(np.clip(lam, 0.0, None)).astype(np.float64)
        png = draw_png(replace(shape, values=counts), style)
        pixels.append(prepare(decode_image(png, f"{shape.path}.png"), input_size, channels))
        labels.append("Good" if kind is None else ("NoData" if kind == NODATA else "Bad"))
        faults.append(kind)
    return TypeBank(np.stack(pixels), labels, faults)
