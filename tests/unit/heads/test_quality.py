"""What the heads must show on generated plots: faults stay visible in every preset's input.

That a trained head finds them is in tests/integration/heads/test_quality.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from hydra.data.images import prepare
from hydra.heads.presets import read_preset


@pytest.mark.parametrize("preset", ["classifier-cpu", "siamese-cpu", "classifier-inception"])
def test_preset_keeps_a_one_bin_dead_strip_visible(preset):
    """An 800x600 histogram of 100 bins with one empty bin, resized to the preset's input."""
    _, kwargs = read_preset(preset)
    height, width = kwargs["input_size"]
    img = np.full((600, 800, 3), 255, np.uint8)
    left, right, top, bottom = 80, 780, 60, 540
    edges = np.linspace(left, right, 101).round().astype(int)
    dead = 47
    for i in range(100):
        if i != dead:
            img[top:bottom, edges[i] : edges[i + 1]] = (40, 70, 200)
    pixels = prepare(Image.fromarray(img), (height, width), kwargs.get("channels", 3)).astype(float)
    column = pixels[height // 4 : 3 * height // 4].mean(axis=(0, 2))
    x = (edges[dead] + edges[dead + 1]) / 2 / 800 * width
    strip = column[int(x)]
    neighbours = np.r_[column[int(x) - 6 : int(x) - 2], column[int(x) + 3 : int(x) + 7]]
    assert strip - neighbours.mean() > 40, (strip, neighbours)  # clearly brighter (white gap)
    assert neighbours.std() < 5
