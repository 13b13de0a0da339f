"""Heat maps are stored as plain single-channel maps at the original image's size (blended once, by the page)."""

from __future__ import annotations

import numpy as np
from PIL import Image as PILImage

from hydra.heads.cam import heat_map
from tests.helpers.store import make_report, make_store


def test_heat_map_is_single_channel_and_scaled_to_the_source(engine, tmp_path):
    cfg, store, (pt_id, model_id) = make_store(engine, tmp_path)
    r = make_report(cfg, "fcal-000007_0003.png", pt_id, model_id, label="Bad", heat=True)
    r.image_width, r.image_height = 320, 240  # the original plot (the Feeder's), larger than the model input
    cam = np.zeros((8, 8), np.float32)
    cam[2:4, 5:7] = 1.0  # a hot spot up and to the right
    r.heatmap = heat_map(cam)[:, :, None]
    with PILImage.open(store._heatmap(r)) as written:
        assert written.mode == "L" and written.size == (320, 240)
        pixels = np.asarray(written)
    assert pixels[90, 230] > 200 and pixels[200, 40] == 0  # the spot lands where it was, scaled up
