"""Good views: a Good plot redrawn as a few more or fewer entries would draw it, still Good."""

from __future__ import annotations

import numpy as np
import torch

from hydra.heads.faults import background, good_view
from tests.helpers.heads import histogram_plot

H, W = 120, 160


def _unit(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(img).permute(2, 0, 1).float() / 255.0


def _bar_heights(x: torch.Tensor) -> np.ndarray:
    """Per column inside the box, how many pixels are drawn in the bar colour."""
    blue = (x[2] > 0.6) & (x[0] < 0.3)
    return blue.sum(dim=0).numpy()


def test_bars_grow_or_shrink_together_and_the_axes_stay():
    img = _unit(histogram_plot(H, W, np.random.default_rng(0)))
    before = _bar_heights(img)
    g = torch.Generator().manual_seed(1)
    ratios = []
    for _ in range(8):
        view = good_view(img, g)
        after = _bar_heights(view)
        tall = before > 20
        ratios.append(float(np.median(after[tall] / before[tall])))
        # one factor for every bar: tall bars keep their order of heights
        assert np.corrcoef(before[tall], after[tall])[0, 1] > 0.99
        # the axes and everything left of the y axis (tick labels) are untouched
        left = int(0.10 * W)
        assert torch.equal(view[:, :, : left + 1], img[:, :, : left + 1])
        assert torch.equal(view[:, int(0.88 * H) :, :], img[:, int(0.88 * H) :, :])
    assert min(ratios) < 0.97 and max(ratios) > 1.03 and 0.8 < min(ratios) and max(ratios) < 1.2


def test_a_colour_map_keeps_its_palette_and_its_empty_cells():
    rng = np.random.default_rng(2)
    # a 2D map: cells coloured along a dark-to-bright scale, some cells empty (canvas white)
    scale = np.stack([np.linspace(0.1, 0.95, 64), np.linspace(0.0, 0.8, 64), np.linspace(0.3, 0.2, 64)], 1)
    img = np.ones((H, W, 3), np.float32)
    for r in range(12, 108, 6):
        for c in range(16, 144, 8):
            if rng.random() < 0.85:
                img[r : r + 6, c : c + 8] = scale[int(rng.integers(0, 64))]
    x = torch.from_numpy(img).permute(2, 0, 1)
    g = torch.Generator().manual_seed(3)
    changed = 0
    for _ in range(6):
        view = good_view(x, g)
        bg = background(x[None])[0]
        empty = ((x - bg).abs().amax(dim=0) < 0.05)
        assert torch.equal(view[:, empty], x[:, empty])  # an empty cell stays empty
        drawn = view[:, ~empty].T.numpy()
        # every drawn pixel is a colour of the map's own scale
        nearest = np.abs(drawn[:, None, :] - scale[None, :, :]).sum(-1).min(axis=1)
        assert float(nearest.max()) < 1e-5
        changed += int(not torch.equal(view, x))
    assert changed >= 5
