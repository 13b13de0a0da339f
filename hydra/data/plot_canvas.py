"""Fast ROOT-like plot drawing with numpy + PIL, for the synthetic generator.

Images are drawn as palette (``P``) images: one byte per pixel makes both the
drawing and the PNG encoding several times faster than RGB, which matters
when thousands of plots are written for a benchmark. Readers see ordinary
PNGs; :func:`hydra.data.images.prepare` converts them like any other.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

WHITE, BLACK, GREY, FILL, LINE = 0, 1, 2, 3, 4
LUT_START, LUT_LEVELS = 5, 250

_VIRIDIS = np.array(
    [
        [68, 1, 84],
        [72, 40, 120],
        [62, 74, 137],
        [49, 104, 142],
        [38, 130, 142],
        [31, 158, 137],
        [53, 183, 121],
        [109, 205, 89],
        [180, 222, 44],
        [253, 231, 37],
    ],
    dtype=np.float64,
)


@lru_cache(maxsize=32)
def palette(color: tuple[int, int, int]) -> list[int]:
    """White, black, grey, the fill and a darker outline, then a viridis colour map.

    The fill is strong so that a one-bin gap (a dead channel) keeps its contrast
    after a model input is reduced several times from the PNG.
    """
    rgb = np.array(color, dtype=np.float64)
    head = [(255, 255, 255), (0, 0, 0), (70, 70, 70), tuple(rgb * 0.85 + 255 * 0.15), tuple(rgb * 0.55)]
    steps = np.linspace(0, 9, LUT_LEVELS)
    lut = np.stack([np.interp(steps, np.arange(10), _VIRIDIS[:, c]) for c in range(3)], 1)
    entries = np.vstack([np.array(head), lut]).round().astype(np.uint8)
    return entries.ravel().tolist()


@lru_cache(maxsize=8)
def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def nice(v: float) -> str:
    """A short axis label."""
    if abs(v) >= 10_000:
        return f"{v / 1000:.0f}k"
    return f"{v:.0f}" if abs(v) >= 10 or v == int(v) else f"{v:.1f}"


def fill_1d(canvas: np.ndarray, box: tuple[int, int, int, int], counts: np.ndarray, ymax: float) -> None:
    """A filled histogram with its outline (top edges and vertical steps)."""
    x0, y0, x1, y1 = box
    pw, ph = x1 - x0, y1 - y0
    col_bin = (np.arange(pw) * counts.size) // pw
    tops = ph - np.round(counts[col_bin] / ymax * ph).astype(np.int64)
    tops = np.clip(tops, 0, ph - 1)
    area = (np.arange(ph, dtype=np.int64)[:, None] >= tops[None, :]).view(np.uint8) * np.uint8(FILL)
    area[tops, np.arange(pw)] = LINE
    for c in np.flatnonzero(np.diff(tops)) + 1:  # vertical steps between bins
        lo, hi = sorted((int(tops[c - 1]), int(tops[c])))
        area[lo : hi + 1, c] = LINE
    canvas[y0:y1, x0:x1] = area


def fill_2d(canvas: np.ndarray, box: tuple[int, int, int, int], counts: np.ndarray, vmax: float) -> None:
    """A colour map; empty cells stay white as in ROOT's COLZ."""
    x0, y0, x1, y1 = box
    rows, cols = counts.shape
    ri = ((np.arange(y1 - y0) * rows) // (y1 - y0))[::-1]
    ci = (np.arange(x1 - x0) * cols) // (x1 - x0)
    level = LUT_START + np.clip(counts / vmax * (LUT_LEVELS - 1), 0, LUT_LEVELS - 1).astype(np.uint8)
    level[counts <= 0] = WHITE
    canvas[y0:y1, x0:x1] = level[ri][:, ci]


def colour_bar(canvas: np.ndarray, x0: int, x1: int, y0: int, y1: int) -> None:
    canvas[y0:y1, x0:x1] = (LUT_START + np.linspace(LUT_LEVELS - 1, 0, y1 - y0)).astype(np.uint8)[:, None]


def frame(canvas: np.ndarray, box: tuple[int, int, int, int]) -> None:
    x0, y0, x1, y1 = box
    canvas[y0 - 1 : y1 + 1, [x0 - 1, x1]] = BLACK
    canvas[[y0 - 1, y1], x0 - 1 : x1 + 1] = BLACK


def to_image(canvas: np.ndarray, color: tuple[int, int, int]) -> Image.Image:
    img = Image.fromarray(canvas, mode="P")
    img.putpalette(palette(color))
    return img


def annotate(
    img: Image.Image,
    box: tuple[int, int, int, int],
    *,
    title: str,
    info: str,
    x_label: str,
    x_range: tuple[float, float],
    y_max: float,
    z_max: float | None = None,
) -> None:
    """Title, entries/run, ticks with labels, and the colour bar's scale for maps."""
    draw = ImageDraw.Draw(img)
    x0, y0, x1, y1 = box
    width, height = img.size
    small, big = font(max(10, height // 40)), font(max(12, height // 28))
    draw.text((x0, y0 // 3), title, fill=BLACK, font=big)
    draw.text((x1 - int(draw.textlength(info, font=small)), y0 // 3 + 4), info, fill=GREY, font=small)
    lo, hi = x_range
    for i in range(6):
        x = x0 + (x1 - x0) * i // 5
        draw.line([(x, y1), (x, y1 + 6)], fill=BLACK)
        draw.text((x - 8, y1 + 9), nice(lo + (hi - lo) * i / 5), fill=BLACK, font=small)
        y = y1 - (y1 - y0) * i // 5
        draw.line([(x0 - 6, y), (x0, y)], fill=BLACK)
        draw.text((4, y - 7), nice(y_max * i / 5), fill=BLACK, font=small)
    draw.text(((x0 + x1) // 2 - 40, int(y1 + 0.07 * height)), x_label, fill=BLACK, font=small)
    if z_max is not None:
        bx = int(width * 0.905)
        for i in range(5):
            draw.text((bx, y1 - (y1 - y0) * i // 4 - 7), nice(z_max * i / 4), fill=BLACK, font=small)
