"""The messages that travel between the serve stages, and their one codec.

Every message is a ZeroMQ multipart message ``[kind, header, *frames]``:
``kind`` is a short ASCII tag, ``header`` a JSON object, and the remaining
frames are raw arrays (pixels, heat maps) sent without copying. Only this
module knows the layout, so a stage never parses bytes itself.

Timestamps in headers are wall-clock seconds (``time.time()``) so that stages
on different hosts can be compared; the Keeper turns them into the per-stage
durations stored with every inference (see :func:`stage_timings`).

Example:
    >>> import numpy as np
    >>> order = InferenceOrder(order_id="a", path="/in/x-1.png", filename="x-1.png",
    ...     source_key="k", plot_type="x", plot_type_id=1, run=1, chunk=None,
    ...     model_id=2, deadline=0.0, pixels=np.zeros((2, 2, 3), np.uint8))
    >>> decode(encode(order)).pixels.shape
    (2, 2, 3)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

ORDER = b"order"
REPORT = b"report"
ERROR = b"error"
REGISTER = b"register"
HEARTBEAT = b"hb"
EVENT = b"event"
READY = b"ready"

# Keys of the ``timings`` dict stored with each inference (milliseconds).
TIMING_KEYS = ("wait", "feeder", "balancer", "queue", "predict", "cam", "keeper", "total")


@dataclass
class InferenceOrder:
    """One prepared image on its way to a Predict worker.

    ``pixels`` is the model input, uint8 (H, W, C), already masked and resized.
    ``times`` collects the per-stage timestamps (``file``, ``seen``,
    ``feed0``, ``feed1``, ``bal_in``, ``bal_out``, ``recv``, ``pred0``, ...).
    """

    order_id: str
    path: str
    filename: str
    source_key: str
    plot_type: str
    plot_type_id: int
    run: int
    chunk: int | None
    model_id: int
    deadline: float
    pixels: np.ndarray
    content_hash: str = ""
    attempt: int = 1
    times: dict[str, float] = field(default_factory=dict)


@dataclass
class Report:
    """A Predict worker's verdict on one order, for the Keeper.

    ``heatmap`` (uint8 H x W x 3: the Grad-CAM overlaid on the model input)
    travels only when one was computed; the Keeper writes it as a PNG.
    """

    order_id: str
    path: str
    filename: str
    source_key: str
    plot_type: str
    plot_type_id: int
    run: int
    chunk: int | None
    model_id: int
    label: str
    weight: float
    weights: dict[str, float]
    confirmed: bool
    is_problem: bool
    content_hash: str = ""
    worker: str = ""
    times: dict[str, float] = field(default_factory=dict)
    heatmap: np.ndarray | None = None


@dataclass
class ErrorNotice:
    """A bad input (or a failed stage): the Keeper records it and quarantines the file."""

    path: str
    filename: str
    stage: str
    kind: str
    message: str
    source_key: str | None = None


@dataclass
class Registration:
    """A valid image of a plot type with no active model: kept for labeling."""

    path: str
    filename: str
    plot_type: str
    run: int
    chunk: int | None
    content_hash: str
    source_key: str


@dataclass
class Heartbeat:
    """A sign of life from a stage, with its gauges (queue depths, counts)."""

    process: str
    pid: int
    host: str
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Event:
    """Something the supervisor wants counted (a restart), by name."""

    name: str
    process: str
    detail: str = ""


_KINDS: dict[bytes, type] = {
    ORDER: InferenceOrder,
    REPORT: Report,
    ERROR: ErrorNotice,
    REGISTER: Registration,
    HEARTBEAT: Heartbeat,
    EVENT: Event,
}
_TAGS = {cls: tag for tag, cls in _KINDS.items()}
_ARRAYS = ("pixels", "heatmap")

Message = InferenceOrder | Report | ErrorNotice | Registration | Heartbeat | Event


class MessageError(ValueError):
    """A multipart message that is not one of ours."""


def encode(msg: Message) -> list[Any]:
    """Frames for ``socket.send_multipart(frames, copy=False)``.

    Arrays go out as their own buffers (no copy); their dtype and shape ride
    in the header.
    """
    header: dict[str, Any] = {}
    frames: list[Any] = []
    arrays: list[list[Any]] = []
    for f in fields(msg):
        value = getattr(msg, f.name)
        if f.name in _ARRAYS:
            if value is not None:
                arr = np.ascontiguousarray(value)
                arrays.append([f.name, str(arr.dtype), list(arr.shape)])
                frames.append(memoryview(arr).cast("B"))
            continue
        header[f.name] = value
    header["_arrays"] = arrays
    return [_TAGS[type(msg)], json.dumps(header, separators=(",", ":")).encode(), *frames]


def decode(frames: list[Any]) -> Message:
    """The message held by ``frames`` (bytes or ``zmq.Frame``); arrays view the frames."""
    if len(frames) < 2:
        raise MessageError(f"expected at least 2 frames, got {len(frames)}")
    tag = bytes(frames[0].buffer if hasattr(frames[0], "buffer") else frames[0])
    cls = _KINDS.get(tag)
    if cls is None:
        raise MessageError(f"unknown message kind {tag!r}; known: {sorted(k.decode() for k in _KINDS)}")
    raw = frames[1].buffer if hasattr(frames[1], "buffer") else frames[1]
    header = json.loads(bytes(raw))
    arrays = header.pop("_arrays", [])
    if len(arrays) != len(frames) - 2:
        raise MessageError(
            f"{tag.decode()}: header names {len(arrays)} arrays but {len(frames) - 2} frames came"
        )
    for (name, dtype, shape), frame in zip(arrays, frames[2:]):
        buf = frame.buffer if hasattr(frame, "buffer") else frame
        header[name] = np.frombuffer(buf, dtype=dtype).reshape(shape)
    try:
        return cls(**header)
    except TypeError as exc:
        raise MessageError(f"{tag.decode()}: bad header ({exc})") from None


def to_dict(msg: Message) -> dict[str, Any]:
    """A message's fields without its arrays (for logs and tests)."""
    d = asdict(msg)
    for name in _ARRAYS:
        d.pop(name, None)
    return d


def stage_timings(times: dict[str, float], committed: float) -> dict[str, float]:
    """Per-stage durations in ms from the timestamps an order collected.

    ``wait``: file written -> seen complete; ``feeder``: read, decode, resize;
    ``balancer``: its own time; ``queue``: waiting in the worker for a batch;
    ``predict``: the batch's forward pass; ``cam``: Grad-CAM; ``keeper``:
    received -> committed; ``total``: file written -> committed.
    """

    def span(a: str, b: str) -> float | None:
        if a in times and b in times:
            return round(max(times[b] - times[a], 0.0) * 1000.0, 3)
        return None

    out = {
        "wait": span("file", "seen"),
        "feeder": span("feed0", "feed1"),
        "balancer": span("bal_in", "bal_out"),
        "queue": span("recv", "pred0"),
        "predict": span("pred0", "pred1"),
        "cam": span("cam0", "cam1"),
    }
    if "keep" in times:
        out["keeper"] = round(max(committed - times["keep"], 0.0) * 1000.0, 3)
    if "file" in times:
        out["total"] = round(max(committed - times["file"], 0.0) * 1000.0, 3)
    return {k: v for k, v in out.items() if v is not None}
