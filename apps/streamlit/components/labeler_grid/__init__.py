"""The Labeler's paint grid: a static bidirectional Streamlit component (no build step).

Painting, shift-click ranges, "paint all unpainted", accepting the model's
suggestions and the keyboard shortcuts (1-9 choose a label, A fills, S
accepts the suggestions, C clears, Space previews, Enter applies) all run in
the browser, so labeling a page costs no server round trip until Apply.
Apply returns ``{"event", "token", "labels": {image_id: label_id}}`` once;
the page must ignore an event id it has handled (the component keeps its
last value across reruns) and pass that id back as ``ack``.

The grid carries thumbnails only (:func:`thumbnail_uri`, at most 320 px), so
a page loads fast. Space previews the image under the mouse large: the
preview shows the thumbnail at once and asks Python for that one image with
``{"preview": image_id, "request", "token"}``; the page answers with
``preview={"id", "request", "src": full_uri(path)}``, the file at its full
resolution (at most 2048 px for a file over 4 MB), which replaces the
thumbnail (and stays cached in the browser for the page).
"""

from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import streamlit.components.v1 as components
from PIL import Image as PILImage

FRONTEND = Path(__file__).resolve().parent / "frontend"
RAW_LIMIT = 48_000  # embed small files as they are; shrink bigger ones
_component = components.declare_component("hydra_labeler_grid", path=str(FRONTEND))


def _data_uri(path: str, raw_limit: int, max_px: int, fmt: str) -> str:
    """The file as a data URI: as it is when a PNG or JPEG of at most ``raw_limit`` bytes, else
    re-encoded as ``fmt`` (JPEG or PNG) at most ``max_px`` on its longer side."""
    p = Path(path)
    data = p.read_bytes()
    suffix = p.suffix.lower()
    if len(data) <= raw_limit and suffix in (".png", ".jpg", ".jpeg"):
        mime = "image/png" if suffix == ".png" else "image/jpeg"
        return f"data:{mime};base64,{base64.b64encode(data).decode()}"
    with PILImage.open(io.BytesIO(data)) as img:
        img = img.convert("RGBA" if fmt == "PNG" and img.mode in ("RGBA", "LA", "P") else "RGB")
        img.thumbnail((max_px, max_px))
        out = io.BytesIO()
        img.save(out, format=fmt, **({"quality": 85} if fmt == "JPEG" else {}))
    return f"data:image/{fmt.lower()};base64,{base64.b64encode(out.getvalue()).decode()}"


@lru_cache(maxsize=4096)
def _thumbnail(path: str, mtime: float, max_px: int) -> str:
    return _data_uri(path, RAW_LIMIT, max_px, "JPEG")


# a preview larger than this (a plot is usually well under 1 MB) is sent at PREVIEW_MAX_PX instead:
# a 40-megapixel file would be ~70 MB of data URI through the websocket and in the cache below
PREVIEW_RAW_LIMIT = 4 << 20
PREVIEW_MAX_PX = 2048


@lru_cache(maxsize=16)
def _full(path: str, mtime: float) -> str:
    return _data_uri(path, PREVIEW_RAW_LIMIT, PREVIEW_MAX_PX, "PNG")


def full_uri(path: Path | None) -> str:
    """A data URI of the image at its full resolution (at most PREVIEW_MAX_PX for a file over
    PREVIEW_RAW_LIMIT), for the preview of one image; "" if unreadable."""
    if path is None:
        return ""
    try:
        return _full(str(path), path.stat().st_mtime)
    except (OSError, ValueError):
        return ""


def preview_request(value: Any) -> dict[str, Any] | None:
    """The grid's value when it asks for one image at full size (``{"preview", "request", "token"}``)."""
    if isinstance(value, dict) and isinstance(value.get("preview"), int) and value.get("request"):
        return value
    return None


def thumbnail_uri(path: Path | None, max_px: int = 320) -> str:
    """A data URI of the image, small enough for a grid cell; "" if the file is gone or unreadable."""
    if path is None:
        return ""
    try:
        return _thumbnail(str(path), path.stat().st_mtime, max_px)
    except (OSError, ValueError):
        return ""


def page_token(image_ids: Sequence[int], extra: str = "") -> str:
    """Identifies one page of images: a new token makes the grid drop its painting."""
    digest = hashlib.sha1((",".join(map(str, image_ids)) + "|" + extra).encode()).hexdigest()
    return digest[:16]


def labeler_grid(
    images: list[dict[str, Any]],
    labels: list[dict[str, Any]],
    *,
    token: str,
    columns: int = 8,
    tile_px: int | None = None,
    ack: str | None = None,
    hint: str | None = None,
    preview: dict[str, Any] | None = None,
    key: str = "labeler_grid",
) -> dict[str, Any] | None:
    """Draw the grid; returns its last value: an Apply event or a preview request (None before either).

    Args:
        images: ``{"id", "src", "caption", "title", "label_id", "suggested_label_id",
            "verdict"}`` per cell (``label_id``: the current label, shown in
            Editor mode; ``suggested_label_id``: the model's verdict, painted
            as a suggestion; ``verdict``: a line saying it, with its weight).
        labels: the palette, ``{"id", "name", "color"}`` in palette order.
        token: :func:`page_token` of the images shown.
        columns: cells per row (when ``tile_px`` is not given).
        tile_px: the smallest width of a cell; the grid fits as many as the width allows.
        ack: the id of the last event the page handled (ends "Applying…").
        hint: the line under the palette.
        preview: the answer to a :func:`preview_request`: ``{"id", "request", "src"}``
            with ``src`` from :func:`full_uri`.
        key: the widget key.
    """
    return _component(
        images=images,
        labels=labels,
        token=token,
        columns=int(columns),
        tile_px=int(tile_px) if tile_px else None,
        ack=ack,
        hint=hint,
        preview=preview,
        key=key,
        default=None,
    )
