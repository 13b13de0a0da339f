"""Synthetic faults: Bad examples made from Good images, for every head that learns from them.

The Siamese head learns from Good images only with them; the classifier
adds them to its labelled examples (``synth_faults``).

Each fault mimics, at the image level, what goes wrong on a detector plot:
a dead strip or region (content replaced by the canvas colour), a hot
channel, a gain change, a shifted distribution, an empty plot, noise. They
act on float images in [0, 1], N×C×H×W, and never touch the Good views
(which only get brightness/noise jitter).
"""

from __future__ import annotations

import torch

KINDS = ("dead_band", "hot_band", "dead_region", "gain", "shift", "empty", "noise")


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


def apply_fault(img: torch.Tensor, kind: str, g: torch.Generator | None = None) -> torch.Tensor:
    """One fault of ``kind`` on one image C×H×W in [0, 1] (a new tensor)."""
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
