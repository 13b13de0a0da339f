"""The fast decoder gives Pillow's image, bit for bit, and bad files Pillow's errors.

``decode_image`` hands plain PNGs to pyspng where it is installed;
everything else, every file it refuses, and JPEGs (Pillow is the faster
there once the pixels are an image: docs/performance.md, "Decoding") to
Pillow. Each case here is decoded twice, with the fast decoders and with
Pillow alone, and the two must agree: the same mode, size, pixels and
header info, or the same ImageError (kind and message). The JPEG cases keep
that promise for any JPEG decoder added later.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from hydra.data import images
from hydra.data.images import ImageError, decode_image, prepare
from hydra.data.synthetic import get_spec, render

RNG = np.random.default_rng(7)
W, H = 97, 61  # odd sizes: partial JPEG blocks, edge upsampling


def _noise(channels: int) -> np.ndarray:
    shape = (H, W) if channels == 1 else (H, W, channels)
    smooth = np.linspace(0, 255, W, dtype=np.float32)[None, :] * np.ones((H, 1), np.float32)
    arr = RNG.integers(0, 255, shape).astype(np.float32) * 0.4
    arr += smooth[..., None] * 0.6 if channels > 1 else smooth * 0.6
    return arr.astype(np.uint8)


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    out, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        out.append((data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return out


def _png_from(chunks: list[tuple[bytes, bytes]]) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + b"".join(_chunk(t, d) for t, d in chunks)


def _with_chunk_after_ihdr(data: bytes, tag: bytes, payload: bytes) -> bytes:
    chunks = _chunks(data)
    return _png_from([chunks[0], (tag, payload), *chunks[1:]])


def _plot_png() -> bytes:
    img = render(get_spec("fcal_occupancy"), np.random.default_rng(1), run=7)
    return _save(img.convert("RGB"), "PNG")


def _png_cases() -> dict[str, bytes]:
    rgb, rgba, grey = _noise(3), _noise(4), _noise(1)
    rgba[..., 3] = np.linspace(0, 255, W, dtype=np.uint8)[None, :]
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", "ROOT")
    cases = {
        "rgb": _save(Image.fromarray(rgb), "PNG"),
        "rgb_level0": _save(Image.fromarray(rgb), "PNG", compress_level=0),
        "rgb_level9": _save(Image.fromarray(rgb), "PNG", compress_level=9),
        "rgb_text": _save(Image.fromarray(rgb), "PNG", pnginfo=info),
        "rgb_trns": _save(Image.fromarray(rgb), "PNG", transparency=(0, 0, 0)),
        "rgb_gamma": _with_chunk_after_ihdr(
            _save(Image.fromarray(rgb), "PNG"), b"gAMA", struct.pack(">I", 45455)
        ),
        "rgba": _save(Image.fromarray(rgba), "PNG"),
        "grey": _save(Image.fromarray(grey), "PNG"),
        "grey_trns": _save(Image.fromarray(grey), "PNG", transparency=0),
        "grey_alpha": _save(Image.fromarray(rgba).convert("LA"), "PNG"),
        "palette": _save(Image.fromarray(rgb).convert("P"), "PNG"),
        "palette_trns": _save(Image.fromarray(rgb).convert("P"), "PNG", transparency=3),
        "bilevel": _save(Image.fromarray(grey).convert("1"), "PNG"),
        "grey16": _save(Image.fromarray(grey.astype(np.uint16) * 257), "PNG"),
        "plot_rgb": _plot_png(),
        "plot_palette": _save(render(get_spec("cdc_occupancy"), np.random.default_rng(2)), "PNG"),
        "big_many_idat": _save(Image.fromarray(np.tile(rgb, (12, 10, 1))), "PNG"),
    }
    try:
        import pyspng

        cases["rgb_interlaced"] = pyspng.encode(rgb, progressive=pyspng.ProgressiveMode.INTERLACED)
    except (ImportError, AttributeError, TypeError):
        pass
    return cases


def _jpeg_cases() -> dict[str, bytes]:
    rgb, grey = Image.fromarray(_noise(3)), Image.fromarray(_noise(1))
    return {
        "q90_420": _save(rgb, "JPEG", quality=90),
        "q75_422": _save(rgb, "JPEG", quality=75, subsampling=1),
        "q95_444": _save(rgb, "JPEG", quality=95, subsampling=0),
        "progressive": _save(rgb, "JPEG", quality=85, progressive=True),
        "optimized": _save(rgb, "JPEG", quality=85, optimize=True),
        "grey": _save(grey, "JPEG", quality=90),
        "cmyk": _save(rgb.convert("CMYK"), "JPEG", quality=90),
        "plot": _save(render(get_spec("fcal_occupancy"), np.random.default_rng(3)).convert("RGB"), "JPEG"),
    }


PNGS = _png_cases()
JPEGS = _jpeg_cases()


def pillow_only(data: bytes, monkeypatch: pytest.MonkeyPatch, name: str = "x.png") -> Image.Image:
    with monkeypatch.context() as m:
        m.setattr(images, "FAST_DECODERS", {})
        return decode_image(data, name)


def assert_same_image(got: Image.Image, ref: Image.Image) -> None:
    assert (got.mode, got.size) == (ref.mode, ref.size)
    assert np.array_equal(np.asarray(got), np.asarray(ref))
    assert got.info.get("transparency") == ref.info.get("transparency")
    assert got.getpalette() == ref.getpalette()
    for size in ((12, 16), (299, 299)):
        for channels in (1, 3):
            assert np.array_equal(prepare(got, size, channels), prepare(ref, size, channels))


@pytest.mark.parametrize("case", sorted(PNGS))
def test_png_decodes_as_pillow_decodes(case, monkeypatch):
    data = PNGS[case]
    assert_same_image(decode_image(data, "x.png"), pillow_only(data, monkeypatch))


@pytest.mark.parametrize("case", sorted(JPEGS))
def test_jpeg_decodes_as_pillow_decodes(case, monkeypatch):
    data = JPEGS[case]
    assert_same_image(decode_image(data, "x.jpg"), pillow_only(data, monkeypatch))


def _fast(data: bytes) -> bool:
    with Image.open(io.BytesIO(data)) as img:
        return images._fast_decode(img, data) is not None


def test_plain_pngs_take_the_fast_decoder_and_the_rest_pillow():
    pytest.importorskip("pyspng")
    fast = {c for c, d in PNGS.items() if _fast(d)}
    plain = {"rgb", "rgb_level0", "rgb_level9", "rgb_text", "rgb_trns", "rgb_gamma", "rgba", "grey"}
    assert plain | {"grey_trns", "plot_rgb", "big_many_idat"} <= fast
    assert not fast & {"grey_alpha", "palette", "palette_trns", "bilevel", "grey16", "plot_palette"}


def test_jpegs_are_pillows():
    assert not {c for c, d in JPEGS.items() if _fast(d)}


# ---------------------------------------------------------------- bad files: Pillow's verdict


def _cut(data: bytes, at: float) -> bytes:
    return data[: int(len(data) * at)]


def _flip_idat(data: bytes, fix_crc: bool) -> bytes:
    """Damage the compressed pixels in the middle of the first IDAT chunk."""
    chunks = _chunks(data)
    i = next(k for k, (t, _) in enumerate(chunks) if t == b"IDAT")
    payload = bytearray(chunks[i][1])
    for k in range(len(payload) // 2, len(payload) // 2 + 8):
        payload[k] ^= 0x5A
    chunks[i] = (b"IDAT", bytes(payload))
    out = _png_from(chunks)
    if fix_crc:
        return out
    pos = out.index(b"IDAT") + 4 + len(payload)  # the CRC after the payload
    return out[:pos] + bytes(b ^ 0xFF for b in out[pos : pos + 4]) + out[pos + 4 :]


def _text_after_idat(data: bytes, cut: bool) -> bytes:
    chunks = _chunks(data)
    out = _png_from([*chunks[:-1], (b"tEXt", b"Comment\0written after the pixels")])
    return out[:-10] if cut else out + _chunk(b"IEND", b"")


def _damage_jpeg_scan(data: bytes) -> bytes:
    out = bytearray(data)
    for k in range(len(out) // 2, len(out) // 2 + 6):
        out[k] = 0xFF if k % 2 == 0 else 0xD9 - 0x10
    return bytes(out)


BAD = {
    "png_half": _cut(PNGS["rgb"], 0.5),
    "png_no_iend": PNGS["rgb"][:-12],
    "png_cut_in_last_crc": PNGS["rgb"][:-14],
    "png_idat_crc": _flip_idat(PNGS["rgb"], fix_crc=False),
    "png_idat_data": _flip_idat(PNGS["rgb"], fix_crc=True),
    "png_text_after_idat": _text_after_idat(PNGS["rgb"], cut=False),
    "png_text_after_idat_cut": _text_after_idat(PNGS["rgb"], cut=True),
    "png_many_idat_cut": _cut(PNGS["big_many_idat"], 0.7),
    "png_header_only": PNGS["rgb"][:33],
    "jpeg_half": _cut(JPEGS["q90_420"], 0.5),
    "jpeg_no_eoi": JPEGS["q90_420"][:-2],
    "jpeg_progressive_cut": _cut(JPEGS["progressive"], 0.6),
    "jpeg_damaged_scan": _damage_jpeg_scan(JPEGS["q90_420"]),
    "jpeg_grey_cut": _cut(JPEGS["grey"], 0.8),
    "not_an_image": b"GIF? no: just text" * 20,
}


def _outcome(data: bytes) -> tuple:
    try:
        img = decode_image(data, "bad.img")
    except ImageError as exc:
        return ("error", exc.kind, str(exc))
    return ("image", img.mode, img.size, np.asarray(img).tobytes(), img.info.get("transparency"))


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_files_get_pillows_verdict(case, monkeypatch):
    data = BAD[case]
    got = _outcome(data)
    with monkeypatch.context() as m:
        m.setattr(images, "FAST_DECODERS", {})
        expected = _outcome(data)
    assert got == expected


def test_truncated_files_are_errors_of_their_own_kind():
    for case in (
        "png_half",
        "png_many_idat_cut",
        "jpeg_half",
        "jpeg_progressive_cut",
        "png_text_after_idat_cut",
    ):
        with pytest.raises(ImageError) as err:
            decode_image(BAD[case], "bad.img")
        assert err.value.kind == "truncated", case
        assert "bad.img" in str(err.value)


def test_the_size_limit_is_judged_before_any_pixel_is_decoded(monkeypatch):
    calls = []
    monkeypatch.setattr(images, "FAST_DECODERS", {k: lambda d, m: calls.append(1) for k in ("PNG", "JPEG")})
    with pytest.raises(ImageError) as err:
        decode_image(PNGS["rgb"], "x.png", max_pixels=W * H - 1)
    assert err.value.kind == "too_large" and f"{W}x{H}" in str(err.value)
    assert calls == []
