"""Image validation and preparation: every bad input gets its own clear error."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from hydra.data.images import ImageError, decode_image, load_image, prepare, read_bytes


def _png(w=80, h=60) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _bomb_png(w: int, h: int) -> bytes:
    """A tiny PNG whose header declares a huge image."""

    def chunk(tag, data):
        return (
            struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 10))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"", "empty"),
        (b"this is not a png at all", "not_image"),
        (_png()[: len(_png()) // 2], "truncated"),
        (_bomb_png(100_000, 100_000), "too_large"),
    ],
)
def test_bad_inputs(data, kind):
    with pytest.raises(ImageError) as err:
        decode_image(data, "x.png")
    assert err.value.kind == kind
    assert "x.png" in str(err.value)


def test_file_limits(tmp_path):
    (tmp_path / "zero.png").write_bytes(b"")
    with pytest.raises(ImageError, match="empty"):
        read_bytes(tmp_path / "zero.png")
    (tmp_path / "big.png").write_bytes(b"0" * 2000)
    with pytest.raises(ImageError, match="over the limit"):
        read_bytes(tmp_path / "big.png", max_bytes=1000)
    with pytest.raises(ImageError, match="does not exist"):
        read_bytes(tmp_path / "nope.png")


def test_prepare_shapes_and_mask(tmp_path):
    arr = np.zeros((600, 800, 3), np.uint8)  # a dark canvas
    arr[100:500, 100:300] = 255  # bright content in the left half
    (tmp_path / "a.png").write_bytes(b"")
    Image.fromarray(arr).save(tmp_path / "a.png")
    img = load_image(tmp_path / "a.png")
    out = prepare(img, (96, 128), channels=3)
    assert out.shape == (96, 128, 3) and out.dtype == np.uint8
    assert out[:, :60].max() == 255
    grey = prepare(img, (96, 128), channels=1, mask=[[0.0, 0.0, 0.5, 1.0]])
    assert grey.shape == (96, 128, 1)
    assert grey.max() == 0  # the masked half is filled with the canvas colour (dark), not white


def test_one_bin_dead_strip_survives_resize():
    """A one-bin dead strip of a 100-bin histogram stays visible at 128 px wide."""
    arr = np.full((600, 800, 3), 255, np.uint8)
    arr[100:550, 0:800] = (30, 60, 200)  # filled bars
    arr[100:550, 400:408] = 255  # bin 50 is dead
    out = prepare(Image.fromarray(arr), (96, 128), channels=1)[:, :, 0].astype(float)
    cols = out[30:80].mean(axis=0)
    assert cols[64] - np.median(cols[50:60]) > 40
