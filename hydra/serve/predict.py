"""A Predict worker: micro-batches orders per model and sends Reports to the Keeper.

It runs exactly the inference code of ``hydra predict``: the same
:class:`hydra.inference.ServingModel` (same head loading, same output
weights, same threshold decision and the same Grad-CAM), so serving can
never disagree with offline prediction.

The worker asks the Balancer for work with credit (``READY n instance``) and
returns one credit per finished order, so at most a few batches wait in its
socket; an order waits at most ``max_wait_ms`` for its batch to fill. Every
couple of seconds it says ``ALIVE n instance`` with the credit it has free,
which a restarted Balancer takes as its credit. It learns its instance from
the Balancer's ``WELCOME`` (or ``--instance``; until it knows one it
announces an empty instance) and drops orders of any other instance and
anything malformed. A Balancer of another instance registers none of its
credit; a worker without ``--instance`` that is welcomed by one takes that
instance and announces its credit again. A model that cannot be loaded or run (the database is
down, the file is unreadable) is a fault of the server, not of the images:
their files are sent again later (:class:`Retry`), never quarantined.

A plot type's shadow (candidate) model, when it has one, runs on the same
batch right after the active model, and its verdicts go to the Keeper marked
``shadow`` (stored, never acted on); a shadow model that fails is skipped.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections import defaultdict
from typing import Any

import numpy as np
import zmq

from hydra.config import HydraConfig
from hydra.db.engine import make_engine
from hydra.serve.checks import Invalid, check_order_path, is_input_path
from hydra.serve.messages import (
    ALIVE,
    READY,
    WELCOME,
    InferenceOrder,
    MessageError,
    Report,
    Retry,
    Stamp,
    decode_message,
    encode_message,
)
from hydra.serve.model_cache import ModelCache
from hydra.serve.stage import Addresses, Dropped, HeartbeatSender, StopFlag, make_socket, zmq_context

log = logging.getLogger("hydra.serve.predict")

BALANCER_BEAT_S = 2.0


def set_threads(threads: int, device: str) -> None:
    """Pin torch's intra-op threads (0: leave torch's default); on CUDA, make ``device`` this process's GPU.

    On CUDA also cuDNN autotuning and TF32 for what stays in float32 (Grad-CAM).
    """
    import torch

    if threads > 0:
        torch.set_num_threads(threads)
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))  # pinned buffers, events and kernels on this GPU
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


class Worker:
    """One Predict process: its batches, its models and its sockets."""

    def __init__(
        self, cfg: HydraConfig, *, device: str, name: str, stop: StopFlag, instance: str | None = None
    ) -> None:
        self.cfg = cfg
        self.device = device
        self.name = name
        self.stop = stop
        self.fixed = bool(instance)
        self.instance = instance or ""
        self.input_dir = str(cfg.input_dir)  # resolved once: a shadow model reads only files in it
        self.dropped = Dropped()
        self.refund = 0  # credit of dropped orders, given back to the Balancer
        self.beat: HeartbeatSender | None = None
        self.models = ModelCache(
            make_engine(cfg.database_url), device, cfg.serve.model_refresh_s, cfg.path("models")
        )
        # orders by model and pixel shape: one odd order never spoils a batch of good ones
        self.pending: dict[tuple[int, tuple[int, ...]], list[InferenceOrder]] = defaultdict(list)
        self.window = max(2 * cfg.serve.max_batch, 4)
        self.done = 0
        self.batches = 0
        self.shadowed = 0  # verdicts of shadow (candidate) models sent
        self._shadow_warned: dict[int, float] = {}
        self._refused = ""  # the other instance a Balancer last welcomed this (fixed) worker to

    def run(self, addrs: Addresses) -> None:
        import hydra.heads.cam  # noqa: F401 - pay for torch and the heads before asking for work
        import hydra.inference  # noqa: F401

        with zmq_context(self.cfg) as ctx:
            ident = f"{self.name}@{socket.gethostname()}:{os.getpid()}".encode()
            work = make_socket(
                ctx, zmq.DEALER, addrs.backend, bind=False, hwm=self.window * 4, identity=ident
            )
            keeper = make_socket(ctx, zmq.PUSH, addrs.keeper, bind=False)
            self.beat = beat = HeartbeatSender(keeper, self.name, instance=self.instance)
            self._grant(work, self.window)
            last_ready = time.monotonic()
            log.info("%s on %s: backend %s, keeper %s", self.name, self.device, addrs.backend, addrs.keeper)
            while not self.stop:
                self._receive(work, self._poll_timeout_ms())
                if self.refund:
                    owed, self.refund = self.refund, 0
                    self._grant(work, owed)
                for key in self._due(flush=False):
                    self._grant(work, self._run_batch(key, keeper))
                    last_ready = time.monotonic()
                if time.monotonic() - last_ready > BALANCER_BEAT_S:
                    with contextlib.suppress(zmq.Again):  # a Balancer that takes nothing gets no keep-alive
                        work.send_multipart(
                            [ALIVE, str(self.free_credit()).encode(), self.instance.encode()],
                            flags=zmq.NOBLOCK,
                        )
                    last_ready = time.monotonic()
                beat.maybe_send(self.gauges())
            # finish what already arrived; the rest comes back through the Feeder's deadline
            self._receive(work, 0)
            for key in self._due(flush=True):
                self._run_batch(key, keeper)
            log.info("stopping: %d orders in %d batches", self.done, self.batches)

    def _grant(self, work: zmq.Socket, n: int) -> None:
        """Give the Balancer ``n`` more credit, never blocking.

        A Balancer that is gone, or a hub that refused this worker's key, takes
        no messages; a blocking send would then freeze the worker past SIGTERM.
        What cannot be sent now is owed and sent with the next grant.
        """
        try:
            work.send_multipart([READY, str(n).encode(), self.instance.encode()], flags=zmq.NOBLOCK)
        except zmq.Again:
            self.refund += n

    def free_credit(self) -> int:
        """Orders this worker can take now (what a Balancer that lost count should grant)."""
        return max(self.window - sum(len(v) for v in self.pending.values()), 0)

    def gauges(self) -> dict[str, Any]:
        return {
            **self.dropped.gauges(),
            "queue_pending": sum(len(v) for v in self.pending.values()),
            "done": self.done,
            "batches": self.batches,
            "shadow_done": self.shadowed,
            "models": len(self.models),
            "device": self.device,
        }

    def _poll_timeout_ms(self) -> int:
        oldest = min((v[0].times[Stamp.RECV] for v in self.pending.values() if v), default=None)
        if oldest is None:
            return 100
        left = self.cfg.serve.max_wait_ms / 1000.0 - (time.time() - oldest)
        return max(0, int(left * 1000))

    def _receive(self, sock: zmq.Socket, timeout_ms: int) -> None:
        if not sock.poll(timeout_ms):
            return
        while sock.poll(0):
            frames = sock.recv_multipart(copy=False)
            if len(frames) == 2 and bytes(frames[0].buffer) == WELCOME:
                self._welcome(bytes(frames[1].buffer).decode(errors="replace"))
                continue
            self.refund += 1  # taken back below once the order is accepted
            try:
                order = decode_message(frames)
            except MessageError as exc:
                self.dropped("malformed", f"from the Balancer: {exc}")
                continue
            if not isinstance(order, InferenceOrder):
                self.dropped("malformed", f"from the Balancer: a {type(order).__name__}, not an order")
                continue
            if not self.instance or order.instance != self.instance:
                self.dropped("foreign", f"an order of instance {order.instance[:40]!r}")
                continue
            try:
                check_order_path(order.path, order.filename)
            except Invalid as exc:
                self.dropped("malformed", f"order {order.order_id[:40]}: {exc}")
                continue
            px = order.pixels
            if px.dtype != np.uint8 or px.ndim != 3 or px.shape[2] not in (1, 3, 4):
                self.dropped("malformed", f"order {order.order_id[:40]}: pixels {px.dtype} {px.shape}")
                continue
            self.refund -= 1
            order.times[Stamp.RECV] = time.time()
            self.pending[(order.model_id, px.shape)].append(order)

    def _welcome(self, instance: str) -> None:
        """The Balancer says whose it is: take that instance unless one was given (``--instance``)."""
        if instance == self.instance:
            return
        if self.fixed:
            if instance != self._refused:  # said again with every keep-alive: logged once
                self._refused = instance
                log.error("the Balancer belongs to instance %r, this worker to %r: it gets no orders",
                          instance[:40], self.instance)  # fmt: skip
            return
        log.info("serving instance %s", instance[:40])
        if self.instance:  # that Balancer dropped the credit announced for the other instance
            self.refund += self.free_credit()
        self.instance = instance
        if self.beat is not None:
            self.beat.instance = instance

    def _due(self, *, flush: bool) -> list[tuple[int, tuple[int, ...]]]:
        """Models whose batch is full or whose oldest order has waited long enough."""
        now = time.time()
        wait = self.cfg.serve.max_wait_ms / 1000.0
        return [
            mid
            for mid, orders in self.pending.items()
            if orders
            and (
                flush or len(orders) >= self.cfg.serve.max_batch or now - orders[0].times[Stamp.RECV] >= wait
            )
        ]

    def _run_batch(self, key: tuple[int, tuple[int, ...]], keeper: zmq.Socket) -> int:
        model_id = key[0]
        orders = self.pending[key][: self.cfg.serve.max_batch]
        del self.pending[key][: len(orders)]
        try:
            reports = self.infer(model_id, orders)
        except Exception as exc:  # noqa: BLE001 - a broken model must not kill the worker
            # the server's fault (database down, model file unreadable): the files stay in the input
            # folder and come again after a backoff; nothing is quarantined for it
            reason = f"model {model_id}: {exc.__class__.__name__}: {exc}"[:500]
            log.error("%s; %d image(s) will be sent again", reason, len(orders))
            for o in orders:
                note = Retry(o.path, o.filename, "predict", reason, instance=o.instance)
                keeper.send_multipart(encode_message(note), copy=False)
            return len(orders)
        # the shadow model's input before the live reports leave: the files are still in the input folder
        shadow = self._shadow_orders(model_id, orders)
        for r in reports:
            keeper.send_multipart(encode_message(r), copy=False)
        if shadow is not None:
            self._run_shadow(*shadow, keeper)
        self.done += len(orders)
        self.batches += 1
        return len(orders)

    # ------------------------------------------------------------ the shadow (candidate) model
    def _shadow_orders(self, model_id: int, orders: list[InferenceOrder]) -> tuple[int, list] | None:
        """The batch again for its plot type's shadow model, or None when it has none.

        Same input shape as the active model: the very same pixels. Another
        shape: each image prepared again for the shadow model (:meth:`_shadow_pixels`).
        A shadow model that fails is logged and skipped; the live results never wait on it.
        """
        from dataclasses import replace

        shadow_id = self.models.shadow_of(orders[0].plot_type_id)
        if shadow_id is None or shadow_id == model_id:
            return None
        try:
            served, live = self.models.get(shadow_id), self.models.get(model_id)
            if (tuple(served.input_size), served.channels) == (tuple(live.input_size), live.channels):
                return shadow_id, [replace(o, model_id=shadow_id) for o in orders]
            return shadow_id, [
                replace(o, model_id=shadow_id, pixels=self._shadow_pixels(served, o)) for o in orders
            ]
        except Exception as exc:  # noqa: BLE001 - a broken candidate never touches the live results
            self._shadow_failed(shadow_id, exc)
            return None

    def _shadow_pixels(self, served: Any, order: InferenceOrder) -> np.ndarray:
        """An order's image prepared for a shadow model of another input shape.

        From the file (still in the input folder, the same content) when it
        is in this worker's input folder and readable; else (a worker on
        another host, whose input folder is not the hub's) the delivered
        pixels, already masked, resized to the shadow model's input. A path
        anywhere else is never opened.
        """
        from PIL import Image

        from hydra.data.images import ImageError, content_hash, decode_image, prepare, read_bytes

        s = self.cfg.serve
        if is_input_path(self.cfg, order.path, order.filename, self.input_dir):
            try:
                data = read_bytes(order.path, s.max_file_bytes)
                if not order.content_hash or content_hash(data) == order.content_hash:
                    return served.prepare(decode_image(data, order.filename, s.max_image_pixels))
            except (ImageError, OSError):
                pass
        px = order.pixels
        img = Image.fromarray(px[:, :, 0] if px.shape[2] == 1 else np.ascontiguousarray(px))
        return prepare(img, served.input_size, served.channels)

    def _run_shadow(self, shadow_id: int, orders: list[InferenceOrder], keeper: zmq.Socket) -> None:
        """The shadow model's verdicts, sent marked ``shadow`` (the Keeper only stores them)."""
        try:
            reports = self.infer(shadow_id, orders)
        except Exception as exc:  # noqa: BLE001 - a broken candidate never touches the live results
            self._shadow_failed(shadow_id, exc)
            return
        for r in reports:
            r.shadow = True
            keeper.send_multipart(encode_message(r), copy=False)
        self.shadowed += len(reports)

    def _shadow_failed(self, shadow_id: int, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._shadow_warned.get(shadow_id, -1e9) > 60.0:  # once a minute per model, not per batch
            self._shadow_warned[shadow_id] = now
            log.warning("shadow model %d skipped: %s: %s", shadow_id, exc.__class__.__name__, str(exc)[:300])

    def infer(self, model_id: int, orders: list[InferenceOrder]) -> list[Report]:
        """Weights, verdicts and (where needed) Grad-CAM for one batch of one model."""
        from hydra.heads.cam import heat_map
        from hydra.inference import needs_cam

        served = self.models.get(model_id)
        if self.cfg.serve.compile:
            served.compile()  # once per model; the cache folder was set in run()
        t0 = time.time()
        pixels = np.stack([o.pixels for o in orders])
        weights = np.asarray(served.weights(pixels), dtype=np.float64)
        t1 = time.time()
        verdicts = [served.decide(row) for row in weights]
        mode = self.cfg.serve.heatmaps_for
        cam_rows = [
            i for i, v in enumerate(verdicts) if mode == "all" or (mode == "problem" and needs_cam(v))
        ]
        cams: dict[int, np.ndarray] = {}
        c0 = c1 = None
        if cam_rows:
            c0 = time.time()
            idx = [served.labels.index(verdicts[i].label) for i in cam_rows]
            maps = np.asarray(served.cam(pixels[cam_rows], idx), dtype=np.float32)
            c1 = time.time()
            for i, m in zip(cam_rows, maps):
                cams[i] = heat_map(m)[:, :, None]  # the plain map; the Keeper sizes it to the image
        reports = []
        for i, (o, v) in enumerate(zip(orders, verdicts)):
            times = {**o.times, Stamp.PRED0: t0, Stamp.PRED1: t1}
            if i in cams:
                times.update({Stamp.CAM0: c0, Stamp.CAM1: c1})
            reports.append(
                Report(
                    order_id=o.order_id,
                    path=o.path,
                    filename=o.filename,
                    source_key=o.source_key,
                    plot_type=o.plot_type,
                    plot_type_id=o.plot_type_id,
                    run=o.run,
                    chunk=o.chunk,
                    model_id=model_id,
                    label=v.label,
                    weight=float(v.weight),
                    weights=served.weights_dict(weights[i]),
                    confirmed=bool(v.confirmed),
                    is_problem=bool(v.is_problem),
                    content_hash=o.content_hash,
                    worker=self.name,
                    times=times,
                    heatmap=cams.get(i),
                    instance=o.instance,
                    image_width=o.image_width,
                    image_height=o.image_height,
                )
            )
        return reports


def run(
    cfg: HydraConfig,
    addrs: Addresses,
    *,
    device: str | None = None,
    name: str | None = None,
    threads: int | None = None,
    stop: StopFlag | None = None,
    instance: str | None = None,
) -> None:
    """Run one Predict worker until SIGTERM/SIGINT (``instance``: serve only that one).

    ``device`` (default ``serve.device``): ``auto`` is ``cuda:0`` where a GPU
    is visible, else the CPU (:func:`hydra.serve.devices.resolve_device`).
    """
    from hydra.serve.devices import compile_cache_dir, resolve_device

    stop = stop if stop is not None else StopFlag().install()  # a StopFlag not set is falsy
    device = resolve_device(device or cfg.serve.device)
    if cfg.serve.compile:
        from hydra.inference import use_compile_cache

        use_compile_cache(compile_cache_dir(cfg))  # before torch compiles anything
    set_threads(threads if threads is not None else cfg.serve.torch_threads, device)
    name = name or f"predict@{socket.gethostname()}:{os.getpid()}"
    Worker(cfg, device=device, name=name, stop=stop, instance=instance).run(addrs)
