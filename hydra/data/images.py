"""Image loading, validation, masking and resizing: one path for every stage.

Training, evaluation, ``hydra predict`` and the Feeder all call
:func:`load_image` then :func:`prepare`, so a model never sees pixels that
were made differently from the ones it was trained on.

Decoding: Pillow reads the header (the size limit is checked before any
pixel is decoded), then plain 8-bit RGB, RGBA and grey PNGs are decoded by
pyspng (libspng), 15-20 % faster than Pillow here. Its pixels are
Pillow's, bit for bit (tests/unit/data/test_decoders.py). Everything else is
decoded by Pillow exactly as before: palette, 16-bit, grey with alpha,
animated PNGs, any PNG that pyspng refuses (truncated, damaged; so bad files
get the same errors), and JPEGs: simplejpeg decodes them faster into an
array, but not once the pixels are a Pillow image (docs/performance.md,
"Decoding", has the numbers of every decoder measured).

Example:
    >>> from hydra.data.images import load_image, prepare
    >>> img = load_image("fcal_occupancy-041230_0003.png")  # doctest: +SKIP
    >>> pixels = prepare(img, (128, 160), channels=3)        # doctest: +SKIP
    >>> pixels.shape, pixels.dtype                            # doctest: +SKIP
    ((128, 160, 3), dtype('uint8'))
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile

DEFAULT_MAX_PIXELS = 40_000_000
DEFAULT_MAX_BYTES = 50_000_000


class ImageError(ValueError):
    """An input image cannot be used; ``kind`` says why in one word."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def read_bytes(path: str | Path, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """Read a file whole, refusing empty and oversized files."""
    p = Path(path)
    try:
        fh = open(p, "rb")  # noqa: SIM115 - one open for the size check and the read
    except FileNotFoundError:
        raise ImageError("missing", f"{p.name}: file does not exist") from None
    with fh:
        size = os.fstat(fh.fileno()).st_size
        if size == 0:
            raise ImageError("empty", f"{p.name}: the file is empty (0 bytes)")
        if size > max_bytes:
            raise ImageError("too_large", f"{p.name}: {size} bytes is over the limit of {max_bytes} bytes")
        return fh.read()


def content_hash(data: bytes) -> str:
    """The SHA-256 of a file's bytes (hex), the image's identity."""
    return hashlib.sha256(data).hexdigest()


def source_key(filename: str, digest: str) -> str:
    """The key that names one input file (its name and content) in the results."""
    return hashlib.sha256(f"{filename}\0{digest}".encode()).hexdigest()


def open_image(data: bytes, name: str = "image", max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open image bytes lazily (header only) and check what the header declares.

    The one gate every image passes, in the Feeder (through :func:`decode_image`)
    and in ``hydra ingest``: same limits, same error kinds.

    Raises:
        ImageError: kind ``empty``, ``not_image`` or ``too_large``.
    """
    if not data:
        raise ImageError("empty", f"{name}: the file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():  # the size is judged just below, against our own limit
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ImageError("too_large", f"{name}: {exc}") from None
    except (Image.UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageError("not_image", f"{name}: not a readable image ({exc.__class__.__name__})") from None
    w, h = img.size
    if w * h > max_pixels:
        raise ImageError(
            "too_large", f"{name}: declared size {w}x{h} is over the limit of {max_pixels} pixels"
        )
    return img


def _pyspng() -> Callable[[bytes, str], np.ndarray] | None:
    try:
        import pyspng
    except ImportError:
        return None
    return lambda data, mode: pyspng.load(data, format=mode)


# format -> (bytes, mode) -> pixels (H, W[, C]) uint8; raises on anything it does not decode cleanly
FAST_DECODERS: dict[str, Callable[[bytes, str], np.ndarray]] = {
    fmt: fn for fmt, fn in (("PNG", _pyspng()),) if fn is not None
}
FAST_MODES = {"PNG": ("RGB", "RGBA", "L")}


def _png_chunks_complete(data: bytes) -> bool:
    """True if the chunks are plain: one run of IDAT chunks, then IEND, every chunk inside the file.

    Pillow reads the chunks after the image data too (text, for instance)
    and calls the file truncated if one is cut; a fast decoder may stop at
    the image's end. A file that is not this plain goes to Pillow, which
    judges it as before.
    """
    pos, end, in_idat = 8, len(data), False
    while pos + 8 <= end:
        length, cid = struct.unpack_from(">I4s", data, pos)
        pos += 12 + length
        if pos > end:
            return False
        if cid == b"IDAT":
            in_idat = True
        elif in_idat:
            return cid == b"IEND"
    return False


def _fast_decode(img: Image.Image, data: bytes) -> Image.Image | None:
    """``img`` (opened, header only) decoded by the fast decoder of its format, or None: Pillow decodes."""
    decode = FAST_DECODERS.get(img.format or "")
    if decode is None or img.mode not in FAST_MODES.get(img.format or "", ()):
        return None
    tile = img.tile
    args = tile[0][3] if len(tile) == 1 else None
    rawmode = args if isinstance(args, str) else args[0] if isinstance(args, tuple) and args else None
    if rawmode != img.mode or getattr(img, "n_frames", 1) != 1:
        return None  # 16-bit, 1/2/4-bit, an animation: Pillow's
    if Image.MAX_IMAGE_PIXELS and img.width * img.height > Image.MAX_IMAGE_PIXELS:
        return None  # Pillow's own bomb warning decides, as before
    if img.format == "PNG" and not _png_chunks_complete(data):
        return None
    try:
        arr = decode(data, img.mode)
    except Exception:  # noqa: BLE001 - damaged or unusual: Pillow decides, with its own error
        return None
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    expected = (img.height, img.width) if img.mode == "L" else (img.height, img.width, len(img.mode))
    if arr.dtype != np.uint8 or arr.shape != expected:
        return None
    out = Image.fromarray(np.ascontiguousarray(arr))
    out.info = dict(img.info)  # the header's chunks: transparency, dpi, ICC profile, text before the pixels
    out.format = img.format
    return out


def decode_image(data: bytes, name: str = "image", max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode image bytes fully, with clear errors for every way they can be bad.

    The header is read and judged first (:func:`open_image`: a decompression
    bomb is refused before any pixel is decoded); then the pixels come from
    pyspng for a plain PNG where it is installed, else from Pillow (see the
    module's docstring). Either way the result is the same image: mode,
    size, pixels and the header's ``info``.

    Raises:
        ImageError: kind ``empty``, ``not_image``, ``too_large`` or ``truncated``.
    """
    img = open_image(data, name, max_pixels)
    fast = _fast_decode(img, data)
    if fast is not None:
        img.close()
        return fast
    if ImageFile.LOAD_TRUNCATED_IMAGES:  # a library may have switched it on globally
        ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombWarning) as exc:
        kind = "truncated" if "truncated" in str(exc).lower() or isinstance(exc, OSError) else "not_image"
        raise ImageError(kind, f"{name}: image data is damaged or truncated ({exc})") from None
    return img


def load_image(
    path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS, max_bytes: int = DEFAULT_MAX_BYTES
) -> Image.Image:
    """Read and decode an image file."""
    return decode_image(read_bytes(path, max_bytes), Path(path).name, max_pixels)


def canvas_color(arr: np.ndarray) -> np.ndarray:
    """The colour of the plot's canvas: the most common pixel on the image's outer border."""
    if arr.shape[0] < 2 or arr.shape[1] < 2:
        return arr.reshape(-1, *arr.shape[2:])[0]
    border = np.concatenate([arr[0], arr[-1], arr[1:-1, 0], arr[1:-1, -1]])
    values, counts = np.unique(border.reshape(len(border), -1), axis=0, return_counts=True)
    return values[int(np.argmax(counts))].reshape(arr.shape[2:])


def apply_mask(arr: np.ndarray, mask: Sequence[Sequence[float]] | None) -> np.ndarray:
    """Fill the regions to ignore (rectangles in fractions of width/height) with the canvas colour.

    White on a white canvas, black on a dark one: a masked region looks like
    empty canvas, never like a bright block the model could learn from.
    """
    if not mask:
        return arr
    h, w = arr.shape[:2]
    fill = canvas_color(arr)
    out = arr.copy()
    for x0, y0, x1, y1 in mask:
        c0, c1 = sorted((int(round(x0 * w)), int(round(x1 * w))))
        r0, r1 = sorted((int(round(y0 * h)), int(round(y1 * h))))
        out[max(r0, 0) : min(r1, h), max(c0, 0) : min(c1, w)] = fill
    return out


def prepare(
    img: Image.Image,
    size: tuple[int, int],
    channels: int = 3,
    mask: Sequence[Sequence[float]] | None = None,
) -> np.ndarray:
    """Convert, mask and resize an image to a model's input: uint8 (H, W, C).

    Resizing uses box (area) filtering: every source pixel contributes, so a
    one-bin hot channel or dead strip survives a large reduction as a visible
    change of intensity instead of falling between sampled pixels.

    Args:
        img: a decoded image.
        size: (height, width) of the model input.
        channels: 1 (grey) or 3 (RGB).
        mask: rectangles [x0, y0, x1, y1] in fractions of the image to blank.
    """
    mode = "L" if channels == 1 else "RGB"
    if img.mode != mode:
        transparent = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
        if transparent and mode == "RGB":  # composite over white, as the plot is shown
            img = img.convert("RGBA")
            background = Image.new("RGBA", img.size, (255, 255, 255, 255))
            img = Image.alpha_composite(background, img)
        img = img.convert(mode)
    if mask:
        img = Image.fromarray(apply_mask(np.asarray(img), mask))
    height, width = size
    if img.size != (width, height):
        img = img.resize((width, height), Image.Resampling.BOX, reducing_gap=None)
    arr = np.asarray(img, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return np.ascontiguousarray(arr)
