"""Archive reprocessing: a chosen model's verdicts on the images Hydra has stored.

``hydra reprocess --plot-type PT --model ID`` scores the plot type's stored
images (those kept for labeling or ingested, in ``kept/``, and those the
Keeper filed after scoring them live, in ``short_term/``) with model ID, at
pipeline speed: files are decoded and prepared (:meth:`ServingModel.prepare
<hydra.inference.ServingModel.prepare>`, the Feeder's preparation) in a pool of
processes while the model classifies the previous batch, and each batch's
rows are written in one transaction.

The rows are ordinary ``Inference`` rows of that model with ``origin``
``reprocess``, dated with their image's own time (when it was stored), so
they sit in the history where the image does and never crowd the newest
rows that the live pages read: the active model's rows are untouched, and
the Run page's window (RunTime), the alarms, the kept images and the files
are never touched. An image is named by its source key (file name and content), which
with the model id is the table's unique key, so a run that was interrupted
(Ctrl-C, a crash, ``limit``) starts again where it stopped: the images that
model has already scored are skipped, and a row can never be written twice.

Example:
    >>> result = reprocess(cfg, engine, ReprocessOptions("fcal_occupancy", 7, since=timedelta(days=30)))  # doctest: +SKIP
    >>> result.scored, result.already  # doctest: +SKIP
    (1200, 300)
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from hydra.data.images import source_key
from hydra.db import results
from hydra.db.engine import session_scope
from hydra.db.models import LIVE, REPROCESS, Image, Inference, utcnow
from hydra.db.queries import get_model, get_plot_type

if TYPE_CHECKING:
    from hydra.config import HydraConfig
    from hydra.inference import ServingModel

log = logging.getLogger("hydra.services.reprocess")

__all__ = [
    "ReprocessError",
    "ReprocessOptions",
    "ReprocessResult",
    "StoredImage",
    "reprocess",
    "stored_images",
]

HEATMAPS = ("problem", "all", "none")


class ReprocessError(ValueError):
    """A reprocessing request that cannot be honoured; the message says why."""


@dataclass
class ReprocessOptions:
    """What to reprocess, and how.

    Attributes:
        plot_type: the plot type's name.
        model_id: the model whose verdicts are wanted (any model of that plot type).
        since: only images stored within this long before now (None: all).
        workers: processes that decode and prepare files (0: in this process).
        device: torch device: ``cpu``, ``cuda``, ``cuda:1`` or ``auto`` (CUDA when there is one).
        batch_size: images per forward pass and per transaction.
        limit: score at most this many images in this run (the rest wait for the next one).
        heatmaps: ``problem`` | ``all`` | ``none``; None: ``serve.heatmaps_for``.
    """

    plot_type: str
    model_id: int
    since: timedelta | None = None
    workers: int = 2
    device: str = "cpu"
    batch_size: int = 64
    limit: int | None = None
    heatmaps: str | None = None


@dataclass
class ReprocessResult:
    """What a run did."""

    plot_type: str
    model_id: int
    device: str
    found: int = 0  # stored images of the plot type (in the window)
    already: int = 0  # of them, already scored by the model (an earlier run, serve, ...)
    scored: int = 0  # scored and stored by this run
    missing: int = 0  # their file is gone
    failed: int = 0  # their file cannot be read or decoded
    left: int = 0  # not scored this time because of ``limit``
    seconds: float = 0.0
    labels: dict[str, int] = field(default_factory=dict)  # verdicts of this run, by label

    @property
    def per_second(self) -> float:
        return self.scored / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "seconds": round(self.seconds, 3), "per_second": round(self.per_second, 1)}


@dataclass(frozen=True)
class StoredImage:
    """One stored image file, by its source key."""

    key: str
    path: str
    filename: str
    run: int
    chunk: int | None
    kept_image_id: int | None
    file_time: datetime | None
    stored_at: datetime


def stored_images(plot_type_id: int, *, session: Session, since: datetime | None = None) -> list[StoredImage]:
    """The plot type's stored images, oldest first, one per source key.

    Kept and ingested images (``Image`` rows) and the files of live results
    (``Inference`` rows of ``hydra-serve``'s active models, in short-term or
    kept storage); an image both know is listed once.
    """
    out: dict[str, StoredImage] = {}
    query = select(
        Image.id, Image.path, Image.filename, Image.run, Image.chunk, Image.content_hash, Image.created_at
    ).where(Image.plot_type_id == plot_type_id)
    if since is not None:
        query = query.where(Image.created_at >= since)
    for image_id, path, name, run, chunk, digest, at in session.exec(query).all():
        if digest:
            key = source_key(name, digest)
            out.setdefault(key, StoredImage(key, path, name, run, chunk, image_id, None, at))
    query = select(
        Inference.source_key, Inference.path, Inference.filename, Inference.run, Inference.chunk,
        Inference.kept_image_id, Inference.file_time, Inference.created_at,
    ).where(Inference.plot_type_id == plot_type_id, Inference.origin == LIVE)  # fmt: skip
    if since is not None:
        query = query.where(Inference.created_at >= since)
    for key, path, name, run, chunk, kept, file_time, at in session.exec(query).all():
        known = out.get(key)
        if known is None or known.file_time is None:
            out[key] = StoredImage(
                key, path, name, run, chunk, kept or (known.kept_image_id if known else None), file_time,
                known.stored_at if known else at,
            )  # fmt: skip
    return sorted(out.values(), key=lambda i: (_naive(i.stored_at), i.key))


def scored_keys(model_id: int, *, session: Session) -> set[str]:
    """The source keys the model has a stored verdict for (the ``(model_id, created_at)`` index)."""
    return set(session.exec(select(Inference.source_key).where(Inference.model_id == model_id)).all())


def _naive(dt: datetime) -> datetime:
    return dt.replace(tzinfo=None) if dt.tzinfo is not None else dt


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=timezone.utc)


def resolve_device(device: str) -> str:
    """``auto`` as ``cuda`` when torch sees a GPU, else ``cpu``; any other name as given."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


# ---------------------------------------------------------------- decoding (in the pool's processes)
def _ignore_sigint() -> None:
    """Pool processes leave Ctrl-C to the parent, which stops them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _decode(
    paths: Sequence[str], size: tuple[int, int], channels: int, mask: list, max_pixels: int, max_bytes: int
) -> list[tuple[str, Any, int, int]]:
    """Read and prepare files as the Feeder does (its :func:`~hydra.serve.decode_pool.decode_file`).

    Per file ``(status, pixels|message, width, height)``; ``status``: ``ok``
    (pixels uint8 H x W x C), ``missing`` or ``failed``.
    """
    from hydra.serve.decode_pool import DecodeJob, decode_file

    out: list[tuple[str, Any, int, int]] = []
    for path in paths:
        res = decode_file(DecodeJob(path, max_bytes, max_pixels, size, channels, tuple(map(tuple, mask))))
        if res.status == "ok":
            out.append(("ok", res.pixels, *res.image_size))
        else:
            out.append(("missing" if res.status == "missing" else "failed", res.message, 0, 0))
    return out


class _InProcess(Executor):
    """An executor that runs each call at once (``workers=0``)."""

    def submit(self, fn, /, *args, **kwargs) -> Future:  # type: ignore[override]
        fut: Future = Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller through the future
            fut.set_exception(exc)
        return fut


def _pool(workers: int) -> Executor:
    if workers <= 0:
        return _InProcess()
    methods = multiprocessing.get_all_start_methods()
    # never fork a process that may hold CUDA and torch's threads
    ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    return ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_ignore_sigint)


# ---------------------------------------------------------------- the run
def reprocess(
    cfg: HydraConfig,
    engine: Engine,
    opts: ReprocessOptions,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> ReprocessResult:
    """Score the plot type's stored images that ``opts.model_id`` has not scored yet; store the verdicts.

    ``progress(done, total)`` is called after every committed batch (``done``
    counts the images handled: scored, missing or failed). An interruption
    (KeyboardInterrupt, an exception from ``progress``) stops the pool and
    propagates; every batch committed before it stays, and the next run
    carries on from there.

    Raises:
        ReprocessError: the model is not one of that plot type's, or a bad option.
        hydra.db.queries.NotFoundError: no such plot type or model.
    """
    t0 = time.perf_counter()
    heat_mode = opts.heatmaps or cfg.serve.heatmaps_for
    if heat_mode not in HEATMAPS:
        raise ReprocessError(f"heat maps: one of {', '.join(HEATMAPS)}, not {heat_mode!r}")
    if opts.batch_size < 1 or opts.workers < 0 or (opts.limit is not None and opts.limit < 0):
        raise ReprocessError("batch size must be at least 1; workers and limit not negative")
    device = resolve_device(opts.device)
    with session_scope(engine) as s:
        pt = get_plot_type(opts.plot_type, session=s)
        row = get_model(opts.model_id, session=s)
        if row.plot_type_id != pt.id:
            raise ReprocessError(f"model {row.id} is not a model of {pt.name}")
        since = utcnow() - opts.since if opts.since is not None else None
        images = stored_images(pt.id, session=s, since=since)
        done = scored_keys(row.id, session=s)
        todo = [im for im in images if im.key not in done]
        result = ReprocessResult(pt.name, row.id, device, found=len(images), already=len(images) - len(todo))
        if opts.limit is not None and len(todo) > opts.limit:
            result.left = len(todo) - opts.limit
            todo = todo[: opts.limit]
        if not todo:
            result.seconds = time.perf_counter() - t0
            return result
        from hydra.inference import ServingModel

        model = ServingModel.load(s, row, cfg.path("models"), device=device)
    log.info("reprocessing %d image(s) of %s with model %d on %s (%d already scored)",
             len(todo), pt.name, row.id, device, result.already)  # fmt: skip
    _run(cfg, engine, model, pt.id, pt.name, todo, opts, heat_mode, result, progress)
    result.seconds = time.perf_counter() - t0
    return result


def _run(
    cfg: HydraConfig,
    engine: Engine,
    model: ServingModel,
    plot_type_id: int,
    plot_type: str,
    todo: list[StoredImage],
    opts: ReprocessOptions,
    heat_mode: str,
    result: ReprocessResult,
    progress: Callable[[int, int], None] | None,
) -> None:
    """Decode batches in the pool (a few ahead), classify and store them in order."""
    batches = [todo[i : i + opts.batch_size] for i in range(0, len(todo), opts.batch_size)]
    parts = max(opts.workers, 1)
    args = (model.input_size, model.channels, list(model.mask or []),
            cfg.serve.max_image_pixels, cfg.serve.max_file_bytes)  # fmt: skip
    pool = _pool(opts.workers)
    ahead: deque[tuple[list[StoredImage], list[Future]]] = deque()
    handled = 0
    heat_dir = cfg.path("heatmaps") / plot_type

    def submit(batch: list[StoredImage]) -> None:
        step = -(-len(batch) // parts)
        chunks = [batch[i : i + step] for i in range(0, len(batch), step)]
        ahead.append((batch, [pool.submit(_decode, [im.path for im in c], *args) for c in chunks]))

    queue = iter(batches)
    try:
        for batch in queue:
            submit(batch)
            if len(ahead) > 2:  # keep the pool busy while the model works
                break
        while ahead:
            batch, futures = ahead.popleft()
            nxt = next(queue, None)
            if nxt is not None:
                submit(nxt)
            decoded = [item for fut in futures for item in fut.result()]
            rows = _score(model, plot_type_id, batch, decoded, heat_mode, heat_dir, result)
            if rows:
                with session_scope(engine) as s:
                    results.insert_inferences(rows, session=s)
            result.scored += len(rows)
            for r in rows:
                result.labels[r["label"]] = result.labels.get(r["label"], 0) + 1
            handled += len(batch)
            if progress is not None:
                progress(handled, len(todo))
    finally:
        for _, futures in ahead:
            for fut in futures:
                fut.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


def _score(
    model: ServingModel,
    plot_type_id: int,
    batch: list[StoredImage],
    decoded: list[tuple[str, Any, int, int]],
    heat_mode: str,
    heat_dir: Path,
    result: ReprocessResult,
) -> list[dict[str, Any]]:
    """The rows of one decoded batch: weights, verdicts and (where wanted) heat maps."""
    from hydra.inference import needs_cam

    good: list[tuple[StoredImage, np.ndarray, int, int]] = []
    for im, (status, value, w, h) in zip(batch, decoded):
        if status == "ok":
            good.append((im, value, w, h))
        elif status == "missing":
            result.missing += 1
        else:
            result.failed += 1
            log.warning("%s", value)
    if not good:
        return []
    pixels = np.stack([px for _, px, _, _ in good])
    t0 = time.perf_counter()
    weights = np.asarray(model.weights(pixels), dtype=np.float64)
    t1 = time.perf_counter()
    verdicts = [model.decide(row) for row in weights]
    cam_rows = [
        i for i, v in enumerate(verdicts) if heat_mode == "all" or (heat_mode == "problem" and needs_cam(v))
    ]
    heat: dict[int, str] = {}
    c0 = c1 = time.perf_counter()
    if cam_rows:
        idx = [model.labels.index(verdicts[i].label) for i in cam_rows]
        maps = np.asarray(model.cam(pixels[cam_rows], idx), dtype=np.float32)
        for i, cam in zip(cam_rows, maps):
            im, _, w, h = good[i]
            heat[i] = _write_heatmap(heat_dir, im, int(model.model_id), cam, (w, h))
        c1 = time.perf_counter()
    per = {"predict": round((t1 - t0) * 1000.0 / len(good), 3)}
    if cam_rows:
        per["cam"] = round((c1 - c0) * 1000.0 / len(cam_rows), 3)
    return [
        {
            "source_key": im.key,
            "path": im.path[:512],
            "filename": im.filename[:255],
            "plot_type_id": plot_type_id,
            "run": im.run,
            "chunk": im.chunk,
            "model_id": int(model.model_id),
            "label": v.label[:64],
            "weight": float(v.weight),
            "weights": model.weights_dict(weights[i]),
            "confirmed": bool(v.confirmed),
            "is_problem": bool(v.is_problem),
            "heatmap_path": heat.get(i),
            "kept_image_id": im.kept_image_id,
            "timings": per,
            "file_time": im.file_time,
            "created_at": _aware(im.stored_at),
            "origin": REPROCESS,
        }  # fmt: skip
        for i, ((im, _, _, _), v) in enumerate(zip(good, verdicts))
    ]


def _write_heatmap(
    heat_dir: Path, im: StoredImage, model_id: int, cam: np.ndarray, size: tuple[int, int]
) -> str:
    """The Grad-CAM map as the Keeper stores it: single-channel PNG at the image's own size; its path."""
    from PIL import Image as PILImage

    from hydra.heads.cam import heat_map

    stem = im.filename.rsplit(".", 1)[0]
    path = heat_dir / f"{stem}-{im.key[:8]}-m{model_id}.png"
    if path.parent != heat_dir or "/" in path.name:
        raise ReprocessError(f"heat map path {path} is outside {heat_dir}")
    heat_dir.mkdir(parents=True, exist_ok=True)
    fit = min(size) > 0 and size[0] * size[1] <= 64_000_000
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    PILImage.fromarray(heat_map(cam, size if fit else None)).save(tmp, format="PNG", compress_level=1)
    os.replace(tmp, path)
    return str(path)
