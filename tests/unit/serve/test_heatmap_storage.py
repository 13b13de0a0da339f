"""Heat maps are plain single-channel maps, resized as asked.

That the Keeper's store writes them at the original image's size, on both
database backends: tests/integration/db/test_heatmap_storage.py.
"""

from __future__ import annotations

import numpy as np

from hydra.heads.cam import heat_map


def test_heat_map_values_and_resize():
    cam = np.array([[0.0, 0.5], [1.0, np.nan]], np.float32)
    assert heat_map(cam).tolist() == [[0, 128], [255, 0]]
    assert heat_map(cam, (40, 30)).shape == (30, 40)
