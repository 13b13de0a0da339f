"""Masks are filled with the image's canvas colour, so a dark canvas stays dark."""

from __future__ import annotations

import numpy as np
from PIL import Image

from hydra.data.images import apply_mask, canvas_color, prepare


def test_mask_takes_the_canvas_colour_of_a_dark_plot():
    arr = np.full((40, 60, 3), (12, 12, 30), np.uint8)  # a dark canvas
    arr[10:30, 10:50] = (250, 200, 0)  # bright content in the middle
    out = apply_mask(arr, [[0.1, 0.2, 0.5, 0.6]])
    assert (out[10:20, 10:25] == (12, 12, 30)).all()  # masked content became canvas, not white
    assert (out[25:30, 40:50] == (250, 200, 0)).all()  # outside the mask untouched
    assert (arr[10:20, 10:25] == (250, 200, 0)).all()  # the input is not changed


def test_white_canvas_and_grey_images():
    grey = np.full((20, 20), 255, np.uint8)
    grey[5:15, 5:15] = 0
    assert canvas_color(grey) == 255
    pixels = prepare(Image.fromarray(grey), (20, 20), 1, [[0.0, 0.0, 1.0, 1.0]])
    assert (pixels == 255).all()
