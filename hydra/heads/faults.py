"""Synthetic faults: Bad examples made from Good images, for every head that learns from them.

The Siamese head learns from Good images only with them; the classifier
adds them to its labelled examples (``synth_faults``).

Each fault mimics, at the image level, what goes wrong on a detector plot:
a dead strip or region (content replaced by the canvas colour), a hot
channel, a gain change, a shifted distribution, an empty plot, noise. They
act on float images in [0, 1], N×C×H×W, and never touch the Good views
(which only get brightness/noise jitter).

Two families follow how plots are drawn without knowing the plot type: on a
histogram, a gain change or a hot channel changes bar *heights*
(``bar_gain``, ``hot_bar``: columns stretched or squashed from the x axis);
on a colour map it changes *colours* (``map_gain``, ``hot_cell``,
``dead_cell``: pixels moved along the image's own colour scale, ranked by
brightness). A fault that leaves the image unchanged (a colour-map fault on
a one-colour histogram) is replaced by a dead region, so no synthetic
"fault" is a Good image in disguise.
"""

from __future__ import annotations

import torch

KINDS = (
    "dead_band",
    "hot_band",
    "dead_region",
    "gain",
    "shift",
    "empty",
    "noise",
    "bar_gain",
    "hot_bar",
    "map_gain",
    "hot_cell",
    "dead_cell",
)
_UNCHANGED = 4  # pixels that must change visibly for a fault to count


def background(x: torch.Tensor) -> torch.Tensor:
    """Per-image canvas colour N×C×1×1: the median of the four corner pixels."""
    corners = torch.stack([x[..., 0, 0], x[..., 0, -1], x[..., -1, 0], x[..., -1, -1]], dim=-1)
    return corners.median(dim=-1).values[..., None, None]


def _content_columns(img: torch.Tensor, bg: torch.Tensor) -> torch.Tensor:
    """Indices of columns where the plot differs from the canvas (where a fault shows)."""
    diff = (img - bg).abs().mean(dim=(0, 1))
    cols = torch.nonzero(diff > 0.02).flatten()
    return cols if cols.numel() else torch.arange(img.shape[-1], device=img.device)


def _rand(lo: float, hi: float, g: torch.Generator | None) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=g))


def _randint(lo: int, hi: int, g: torch.Generator | None) -> int:
    return int(torch.randint(lo, max(hi, lo + 1), (), generator=g))


def _frame(img: torch.Tensor, bg: torch.Tensor, r0: int, r1: int, c0: int, c1: int) -> tuple[int, int]:
    """The rows inside the axes box: below its top edge, above the x axis (rows drawn across the width)."""
    h = img.shape[1]
    ink = ((img[:, :, c0:c1] - bg).abs().amax(dim=0) > 0.3).float().mean(dim=1)
    lower = torch.nonzero(ink[h // 2 :] > 0.6).flatten()
    upper = torch.nonzero(ink[: h // 2] > 0.6).flatten()
    base = int(lower.max()) + h // 2 if lower.numel() else r1
    top = int(upper.min()) + 1 if upper.numel() else r0
    return top, base


def _stretch_columns(
    img: torch.Tensor, bg: torch.Tensor, cols: slice, factor: float, top: int, base: int
) -> None:
    """Scale what is drawn in ``cols`` vertically by ``factor``, anchored at the x axis row ``base``."""
    rows = torch.arange(top, base, device=img.device)
    src = base - (base - rows).float() / factor
    valid = src >= top
    src_idx = src.clamp(top, base - 1).round().long()
    block = img[:, src_idx, cols].clone()
    block[:, ~valid, :] = bg.expand(-1, int((~valid).sum()), block.shape[-1])
    img[:, top:base, cols] = block


def _luminance(colours: torch.Tensor) -> torch.Tensor:
    """Perceived brightness of C×N colours (grey images: the value itself)."""
    if colours.shape[0] != 3:
        return colours.mean(dim=0)
    return 0.299 * colours[0] + 0.587 * colours[1] + 0.114 * colours[2]


def _palette(img: torch.Tensor, bg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The colours drawn in a region, sorted by brightness: (brightness N, colours C×N)."""
    flat = img.reshape(img.shape[0], -1)
    drawn = (flat - bg.reshape(-1, 1)).abs().amax(dim=0) > 0.05
    drawn &= (flat.amax(dim=0) - flat.amin(dim=0)) > 0.25  # colour-scale pixels, not ink or pale edges
    if int(drawn.sum()) < 16:
        return None
    colours = flat[:, drawn]
    light = _luminance(colours)
    order = torch.argsort(light)
    return light[order], colours[:, order]


def _move_along_palette(region: torch.Tensor, bg: torch.Tensor, palette, delta: float) -> torch.Tensor:
    """Each drawn pixel of ``region`` replaced by the colour ``delta`` (a rank fraction) brighter."""
    light, colours = palette
    flat = region.reshape(region.shape[0], -1)
    drawn = (flat - bg.reshape(-1, 1)).abs().amax(dim=0) > 0.05
    drawn &= (flat.amax(dim=0) - flat.amin(dim=0)) > 0.15
    n = light.numel()
    rank = torch.searchsorted(light, _luminance(flat).contiguous()).float() / n
    idx = ((rank + delta) * n).round().long().clamp(0, n - 1)
    out = flat.clone()
    out[:, drawn] = colours[:, idx[drawn]]
    return out.reshape(region.shape)


def apply_fault(img: torch.Tensor, kind: str, g: torch.Generator | None = None) -> torch.Tensor:
    """One fault of ``kind`` on one image C×H×W in [0, 1] (a new tensor)."""
    out = _apply(img, kind, g)
    if kind != "empty" and int(((out - img).abs().amax(dim=0) > 0.05).sum()) < _UNCHANGED:
        out = _apply(img, "dead_region", g)
    return out


def _apply(img: torch.Tensor, kind: str, g: torch.Generator | None) -> torch.Tensor:
    out = img.clone()
    _, h, w = out.shape
    bg = background(out[None])[0]
    r0, r1, c0, c1 = int(0.08 * h), int(0.92 * h), int(0.08 * w), int(0.92 * w)
    if kind in ("dead_band", "hot_band"):
        cols = _content_columns(out[:, r0:r1, c0:c1], bg) + c0
        col = int(cols[_randint(0, len(cols), g)])
        width = _randint(1, max(2, w // 50) + 1, g)
        if kind == "dead_band":
            if float(torch.rand((), generator=g)) < 0.3:  # a dead row (2D maps)
                row = _randint(r0, r1, g)
                out[:, row : row + width, c0:c1] = bg
            else:
                out[:, r0:r1, col : col + width] = bg
        else:
            top = _randint(r0, (r0 + r1) // 2, g)
            out[:, top:r1, col : col + width] = _rand(0.0, 0.35, g)
    elif kind == "dead_region":
        rh, rw = _randint(h // 6, h // 3, g), _randint(w // 6, w // 3, g)
        y, x = _randint(r0, r1 - rh, g), _randint(c0, c1 - rw, g)
        out[:, y : y + rh, x : x + rw] = bg.expand(-1, rh, rw)
    elif kind == "gain":
        gain = _rand(0.2, 0.6, g) if float(torch.rand((), generator=g)) < 0.5 else _rand(1.6, 3.0, g)
        x = _randint(c0, (c0 + c1) // 2, g)
        region = out[:, r0:r1, x:c1]
        out[:, r0:r1, x:c1] = (bg + (region - bg) * gain).clamp(0.0, 1.0)
    elif kind == "shift":
        step = _randint(w // 12, w // 5, g) * (1 if float(torch.rand((), generator=g)) < 0.5 else -1)
        out[:, r0:r1, c0:c1] = torch.roll(out[:, r0:r1, c0:c1], shifts=step, dims=-1)
    elif kind == "empty":
        out[:, r0:r1, c0:c1] = bg
    elif kind in ("bar_gain", "hot_bar"):
        top, base = _frame(out, bg, r0, r1, c0, c1)
        if kind == "bar_gain":
            factor = _rand(0.35, 0.7, g) if float(torch.rand((), generator=g)) < 0.5 else _rand(1.4, 2.5, g)
            width = _randint((c1 - c0) // 4, (c1 - c0) // 2, g)
        else:
            factor = _rand(2.0, 8.0, g)
            width = _randint(1, max(2, w // 60) + 1, g)
        cols = _content_columns(out[:, r0:r1, c0:c1], bg) + c0
        start = min(int(cols[_randint(0, len(cols), g)]), c1 - width)
        _stretch_columns(out, bg, slice(start, start + width), factor, top, base)
    elif kind in ("map_gain", "hot_cell", "dead_cell"):
        palette = _palette(out[:, r0:r1, c0:c1], bg)
        if palette is None:
            return out
        if kind == "map_gain":
            rh, rw = _randint((r1 - r0) // 4, (r1 - r0) // 2, g), _randint((c1 - c0) // 4, (c1 - c0) // 2, g)
            delta = _rand(0.12, 0.35, g) * (1 if float(torch.rand((), generator=g)) < 0.5 else -1)
        else:
            rh, rw = (
                _randint(max(1, h // 40), max(2, h // 15), g),
                _randint(max(1, w // 40), max(2, w // 15), g),
            )
            delta = 1.0 if kind == "hot_cell" else -1.0
        y, x = _randint(r0, r1 - rh, g), _randint(c0, c1 - rw, g)
        if kind == "dead_cell" and float(torch.rand((), generator=g)) < 0.5:
            out[:, y : y + rh, x : x + rw] = bg.expand(-1, rh, rw)
        else:
            out[:, y : y + rh, x : x + rw] = _move_along_palette(
                out[:, y : y + rh, x : x + rw], bg, palette, delta
            )
    elif kind == "noise":
        out = (out + _rand(0.08, 0.25, g) * torch.randn(out.shape, generator=g, device=out.device)).clamp(
            0, 1
        )
    else:
        raise ValueError(f"unknown fault {kind!r}; known: {', '.join(KINDS)}")
    return out


def make_faulty(x: torch.Tensor, g: torch.Generator | None = None) -> torch.Tensor:
    """A faulty copy of every image of the batch, one random fault each."""
    return make_faulty_with_kinds(x, g)[0]


def make_faulty_with_kinds(
    x: torch.Tensor, g: torch.Generator | None = None
) -> tuple[torch.Tensor, list[str]]:
    """A faulty copy of every image of the batch and the kind of fault each got."""
    picks = [KINDS[int(k)] for k in torch.randint(0, len(KINDS), (x.shape[0],), generator=g)]
    if not picks:
        return x.clone(), []
    return torch.stack([apply_fault(img, k, g) for img, k in zip(x, picks)]), picks
