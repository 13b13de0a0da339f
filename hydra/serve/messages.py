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
    >>> decode_message(encode_message(order)).pixels.shape
    (2, 2, 3)
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
from pydantic_core import PydanticSerializationError, from_json, to_json

ORDER = b"order"
REPORT = b"report"
ERROR = b"error"
REGISTER = b"register"
HEARTBEAT = b"hb"
EVENT = b"event"
READY = b"ready"
ALIVE = b"alive"
WELCOME = b"welcome"
RETRY = b"retry"


class Stamp:
    """The names of the timestamps an order collects in ``times`` (wall-clock seconds), by stage."""

    FILE = "file"  # Feeder: the file's modification time
    SEEN = "seen"  # Feeder: the file was seen complete
    FEED0 = "feed0"  # Feeder: reading starts
    FEED1 = "feed1"  # Feeder: the pixels are prepared
    BAL_IN = "bal_in"  # Balancer: received
    BAL_OUT = "bal_out"  # Balancer: passed on
    RECV = "recv"  # Predict: received
    PRED0 = "pred0"  # Predict: the batch's forward pass starts
    PRED1 = "pred1"  # Predict: ... and ends
    CAM0 = "cam0"  # Predict: Grad-CAM starts
    CAM1 = "cam1"  # Predict: ... and ends
    KEEP = "keep"  # Keeper: received


# The pipeline stages, in order, whose per-image durations the Keeper stores.
STAGES: tuple[str, ...] = ("feeder", "balancer", "queue", "predict", "cam", "keeper")
# Keys of the ``timings`` dict stored with each inference (milliseconds): the stages, plus
# ``wait`` (file written -> seen complete) and ``total`` (file written -> committed).
TIMING_KEYS: tuple[str, ...] = ("wait", *STAGES, "total")
# The durations measured between two stamps; ``keeper`` and ``total`` end at the commit.
SPANS: dict[str, tuple[str, str]] = {
    "wait": (Stamp.FILE, Stamp.SEEN),
    "feeder": (Stamp.FEED0, Stamp.FEED1),
    "balancer": (Stamp.BAL_IN, Stamp.BAL_OUT),
    "queue": (Stamp.RECV, Stamp.PRED0),
    "predict": (Stamp.PRED0, Stamp.PRED1),
    "cam": (Stamp.CAM0, Stamp.CAM1),
}


@dataclass
class InferenceOrder:
    """One prepared image on its way to a Predict worker.

    ``pixels`` is the model input, uint8 (H, W, C), already masked and resized.
    ``times`` collects the per-stage timestamps (:class:`Stamp`: ``file``,
    ``seen``, ``feed0``, ``feed1``, ``bal_in``, ``bal_out``, ``recv``, ``pred0``, ...).
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
    instance: str = ""
    image_width: int = 0  # the file's own size (0: unknown), for the heat map
    image_height: int = 0


@dataclass
class Report:
    """A Predict worker's verdict on one order, for the Keeper.

    ``heatmap`` (uint8 H x W x 1: the Grad-CAM map, 0..255, at the model's
    input size) travels only when one was computed; the Keeper upsamples it to
    the original image and writes it as a single-channel PNG. ``shadow``: the
    verdict of the plot type's shadow (candidate) model, sent after the active
    model's; the Keeper stores it and does nothing else on its account.
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
    instance: str = ""
    image_width: int = 0
    image_height: int = 0
    shadow: bool = False


@dataclass
class ErrorNotice:
    """A bad input (or a failed stage): the Keeper records it and quarantines the file."""

    path: str
    filename: str
    stage: str
    kind: str
    message: str
    source_key: str | None = None
    instance: str = ""


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
    instance: str = ""


@dataclass
class Retry:
    """A server fault (model not loadable, disk full): send the file again later, never quarantine it."""

    path: str
    filename: str
    stage: str
    reason: str
    instance: str = ""


@dataclass
class Pulse:
    """A stage's heartbeat: a sign of life, with its gauges (queue depths, counts)."""

    process: str
    pid: int
    host: str
    info: dict[str, Any] = field(default_factory=dict)
    instance: str = ""


@dataclass
class Event:
    """Something the supervisor wants counted (a restart), by name."""

    name: str
    process: str
    detail: str = ""
    instance: str = ""


_KINDS: dict[bytes, type] = {
    ORDER: InferenceOrder,
    REPORT: Report,
    ERROR: ErrorNotice,
    REGISTER: Registration,
    HEARTBEAT: Pulse,
    EVENT: Event,
    RETRY: Retry,
}
_TAGS = {cls: tag for tag, cls in _KINDS.items()}
_ARRAYS = ("pixels", "heatmap")

Message = InferenceOrder | Report | ErrorNotice | Registration | Pulse | Event | Retry

MAX_HEADER_BYTES = 1 << 20
ARRAY_DTYPES = ("uint8", "float32")
MAX_ARRAY_BYTES = 1 << 28


class MessageError(ValueError):
    """A multipart message that is not one of ours."""


def encode_message(msg: Message) -> list[Any]:
    """Frames for ``socket.send_multipart(frames, copy=False)``.

    Arrays go out as their own buffers (no copy); their dtype and shape ride
    in the header.
    """
    cls = type(msg)
    plain, with_arrays = _layout(cls)
    values = msg.__dict__
    header: dict[str, Any] = {name: values[name] for name in plain}
    frames: list[Any] = []
    arrays: list[list[Any]] = []
    for name in with_arrays:
        value = values[name]
        if value is not None:
            arr = np.ascontiguousarray(value)
            dtype = arr.dtype
            dname = _DTYPE_NAMES.get(dtype)
            if dname is None:
                dname = _DTYPE_NAMES[dtype] = str(dtype)
            arrays.append([name, dname, list(arr.shape)])
            frames.append(memoryview(arr).cast("B"))
    header["_arrays"] = arrays
    try:
        raw = to_json(header)  # compact JSON, as json.dumps(separators=(",", ":")) writes it, ~5x faster
    except PydanticSerializationError as exc:
        raise TypeError(f"{_TAGS[cls].decode()}: a field is not JSON serializable ({exc})") from None
    return [_TAGS[cls], raw, *frames]


_DTYPE_NAMES: dict[Any, str] = {}  # dtype -> its name (numpy finds a name slowly)
_LAYOUTS: dict[type, tuple[tuple[str, ...], tuple[str, ...]]] = {}


def _layout(cls: type) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(header fields, array fields) of a message class, in field order (found once per class)."""
    layout = _LAYOUTS.get(cls)
    if layout is None:
        names = [f.name for f in fields(cls)]
        layout = _LAYOUTS[cls] = (
            tuple(n for n in names if n not in _ARRAYS),
            tuple(n for n in names if n in _ARRAYS),
        )
    return layout


def _bytes(frame: Any) -> bytes:
    if type(frame) is bytes:  # what recv_multipart(copy=True) gives: the usual case
        return frame
    return bytes(frame.buffer if hasattr(frame, "buffer") else frame)


def _buffer(frame: Any) -> Any:
    return frame.buffer if hasattr(frame, "buffer") else frame


def decode_message(frames: list[Any]) -> Message:
    """The message held by ``frames`` (bytes or ``zmq.Frame``); arrays view the frames.

    Anything that is not one of our messages, field by field (a non-JSON or
    non-UTF-8 header, a header that is not an object, a field of the wrong
    type or an unknown one, an array in the header, an unknown dtype, a frame
    count or size that does not match) raises :class:`MessageError` and
    nothing else, so a stage can count and drop it.
    """
    if len(frames) < 2:
        raise MessageError(f"expected at least 2 frames, got {len(frames)}")
    tag = _bytes(frames[0])
    cls = _KINDS.get(tag)
    if cls is None:
        raise MessageError(f"unknown message kind {tag[:32]!r}; known: {sorted(k.decode() for k in _KINDS)}")
    raw = _bytes(frames[1])
    if len(raw) > MAX_HEADER_BYTES:
        raise MessageError(f"{tag.decode()}: header of {len(raw)} bytes")
    try:
        # strict UTF-8, numbers of at most 4300 digits, nesting bounded: all a ValueError. Field
        # names are cached (every header repeats them); values are not (paths and source keys never
        # repeat, and caching them cost more than it saved)
        header = from_json(raw, cache_strings="keys")
    except ValueError as exc:
        raise MessageError(f"{tag.decode()}: header is not JSON ({str(exc)[:120]})") from None
    if type(header) is not dict:
        raise MessageError(f"{tag.decode()}: header is a JSON {type(header).__name__}, not an object")
    arrays = header.pop("_arrays", [])
    if type(arrays) is not list or len(arrays) != len(frames) - 2:
        n = len(arrays) if type(arrays) is list else "no list of"
        raise MessageError(f"{tag.decode()}: header names {n} arrays but {len(frames) - 2} frames came")
    kw = _fields(tag, cls, header)
    for spec, frame in zip(arrays, frames[2:]):
        name, array = _array(tag, spec, _buffer(frame))
        if name in kw:
            raise MessageError(f"{tag.decode()}: {name} twice")
        kw[name] = array
    try:
        return cls(**kw)
    except TypeError as exc:
        raise MessageError(f"{tag.decode()}: bad header ({exc})") from None


_DTYPES = {name: np.dtype(name) for name in ARRAY_DTYPES}


def _array(tag: bytes, spec: Any, buf: Any) -> tuple[str, np.ndarray]:
    if not (type(spec) is list and len(spec) == 3 and spec[0] in _ARRAYS and spec[1] in ARRAY_DTYPES):
        raise MessageError(f"{tag.decode()}: bad array description {str(spec)[:80]}")
    name, dtype, shape = spec
    if not (type(shape) is list and 1 <= len(shape) <= 4):
        raise MessageError(f"{tag.decode()}: bad array shape {str(shape)[:80]}")
    dtype = _DTYPES[dtype]
    size = dtype.itemsize
    for n in shape:  # a plain product: np.prod costs more than the rest of the decode
        if type(n) is not int or not 0 < n <= 1 << 16:
            raise MessageError(f"{tag.decode()}: bad array shape {str(shape)[:80]}")
        size *= n
    if size > MAX_ARRAY_BYTES or size != memoryview(buf).nbytes:
        raise MessageError(f"{tag.decode()}: {name} of shape {shape} does not match its frame")
    return name, np.frombuffer(buf, dtype=dtype).reshape(shape)


MAX_STR = 4096  # characters of a str field
MAX_ITEMS = 256  # entries of a dict field
_FLOAT_MAX = sys.float_info.max  # an int beyond it is no finite float


def _is_str(v: Any) -> bool:
    return type(v) is str and len(v) <= MAX_STR


def _is_int(v: Any) -> bool:
    """A 64-bit integer (the values are JSON's, so ``type(v) is int`` is exact: a bool is no int here)."""
    return type(v) is int and -(2**63) <= v < 2**63


def _is_float(v: Any) -> bool:
    """A finite number (the JSON for 2.0 may be 2)."""
    if type(v) is float:
        return v - v == 0.0  # not inf or nan
    return type(v) is int and -_FLOAT_MAX <= v <= _FLOAT_MAX


def _is_float_dict(v: Any) -> bool:
    if type(v) is not dict or len(v) > MAX_ITEMS:
        return False
    for x in v.values():  # noqa: SIM110 - a loop, not all(generator): per report; JSON keys are str
        if not (x - x == 0.0 if type(x) is float else _is_float(x)):  # the usual float inline: per report
            return False
    return True


# Every field type a header may hold and its check; a message class with any other (arrays
# aside) fails at import.
_CHECKS: dict[str, Any] = {
    "str": _is_str,
    "str | None": lambda v: v is None or _is_str(v),
    "int": _is_int,
    "int | None": lambda v: v is None or _is_int(v),
    "float": _is_float,
    "bool": lambda v: type(v) is bool,
    "dict[str, float]": _is_float_dict,
    "dict[str, Any]": lambda v: type(v) is dict and len(v) <= MAX_ITEMS,
}


def _field_checks(cls: type) -> tuple[tuple[str, Any], ...]:
    """``(name, check)`` of every header field of ``cls`` (computed once per class)."""
    out = []
    for f in fields(cls):
        if f.name not in _ARRAYS:
            if str(f.type) not in _CHECKS:
                raise TypeError(f"{cls.__name__}.{f.name}: a header cannot carry a {f.type}")
            out.append((f.name, _CHECKS[str(f.type)]))
    return tuple(out)


def _fields(tag: bytes, cls: type, header: dict[str, Any]) -> dict[str, Any]:
    """The header's fields, each checked against its type: numbers finite, ints 64-bit, strings
    and dicts bounded; a field the class lacks (an array among them) is refused.

    The result is keyed by the class's own (interned) names, which makes
    ``cls(**kwargs)`` four times cheaper than with the parser's keys. A
    missing field is left to the constructor to name.
    """
    get = header.get
    kw: dict[str, Any] = {}
    for name, ok in _FIELD_CHECKS[cls]:
        v = get(name, _ABSENT)
        if v is _ABSENT:
            continue
        if not ok(v):
            raise MessageError(f"{tag.decode()}: field {name} is not a valid {_TYPE_OF[cls][name]}")
        kw[name] = v
    if len(kw) != len(header):
        extra = sorted(str(k)[:40] for k in header if k not in kw)[:5]
        raise MessageError(f"{tag.decode()}: bad header (no such fields in its header: {extra})")
    return kw


_ABSENT = object()

_FIELD_CHECKS = {cls: _field_checks(cls) for cls in _KINDS.values()}
_TYPE_OF = {cls: {f.name: str(f.type) for f in fields(cls)} for cls in _KINDS.values()}


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
    out: dict[str, float] = {}
    get = times.get
    for key, a, b in _TIMING_PLAN:  # in TIMING_KEYS order; a plain loop: the Keeper's hot path
        start = get(a)
        end = get(b) if b else committed
        if start is None or end is None:
            continue
        d = end - start
        if 0 < d < 1e9:  # to the µs as round(d * 1000, 3) has it, at a third of its cost
            out[key] = round(d * 1e6) / 1000.0
        else:  # none, or a forged stamp's (round(inf) would raise)
            out[key] = round(d * 1000.0, 3) if d > 0 else 0.0
    return out


# (key, from stamp, to stamp or "" for the commit) of each stored duration, in TIMING_KEYS order
_TIMING_PLAN: tuple[tuple[str, str, str], ...] = tuple(
    (k, *SPANS[k]) if k in SPANS else (k, Stamp.KEEP if k == "keeper" else Stamp.FILE, "")
    for k in TIMING_KEYS
    if k in SPANS or k in ("keeper", "total")
)
