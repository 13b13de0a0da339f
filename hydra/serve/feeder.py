"""The Feeder: turns complete files in the input directory into InferenceOrders.

The input directory is the durable queue: a file stays there until the Keeper
has committed its result and moved it. The Feeder remembers which files are
in flight (so none is sent twice at once) and sends a file again when its
deadline passes without the Keeper announcing it done (a worker died), which
makes delivery at-least-once; the Keeper's idempotent write makes the result
exactly-once. Bad files become :class:`ErrorNotice` and files of plot types
without an active model become :class:`Registration`; both go to the Keeper,
the only writer. When a later stage hits a fault of the server (a model that
cannot be loaded, a full disk) the Keeper announces ``retry`` and the file is
sent again after a backoff. At most ``serve.max_in_flight`` files are in
flight, so a Keeper that cannot commit (database down) holds a bounded
backlog. Announcements carry the instance in their topic, so the Feeder
hears only its own Keeper.
"""

from __future__ import annotations

import logging
import os
import queue
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import zmq

from hydra.config import HydraConfig
from hydra.data.images import ImageError, content_hash, decode_image, prepare, read_bytes, source_key
from hydra.data.naming import NamingError, parse_name
from hydra.db.engine import make_engine
from hydra.serve.catalog import ModelCatalog
from hydra.serve.instance import instance_id
from hydra.serve.messages import ErrorNotice, InferenceOrder, Message, Registration, Stamp, encode_message
from hydra.serve.stage import Addresses, Dropped, HeartbeatSender, StopFlag, make_socket, zmq_context
from hydra.serve.watch import Settler, ignored, observe, scan

log = logging.getLogger("hydra.serve.feeder")


@dataclass
class InFlight:
    deadline: float
    attempt: int


def deadline_s(cfg: HydraConfig, attempt: int) -> float:
    """Seconds an order may take: doubled per attempt (up to 8x), so a slow start is no storm."""
    return cfg.serve.order_deadline_s * 2 ** min(attempt - 1, 3)


RETRY_MAX_S = 5.0


def retry_delay_s(cfg: HydraConfig, attempt: int) -> float:
    """Backoff before sending again a file that met a server fault: 1, 2, 4, 5, 5 ... s (at most its deadline).

    Short, so that a fault that clears (the database is back, space is freed)
    is noticed within seconds; each retry of a file costs one read and one
    inference at most.
    """
    return min(2.0 ** (attempt - 1), RETRY_MAX_S, deadline_s(cfg, attempt))


def topics(instance: str) -> tuple[bytes, bytes]:
    """The Keeper's announcement topics for one instance: committed files, files to send again."""
    return f"done:{instance}".encode(), f"retry:{instance}".encode()


def examine(
    path: str, cfg: HydraConfig, catalog: ModelCatalog, *, seen: float, attempt: int = 1
) -> Message | None:
    """Read, check and prepare one file; the message to send, or None if it vanished.

    Runs in decoder threads (Pillow releases the GIL while decoding and resizing).
    """
    t0 = time.time()
    name = os.path.basename(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    try:
        parsed = parse_name(name, cfg.naming_regex)
    except NamingError as exc:
        return ErrorNotice(path, name, "feeder", "bad_name", str(exc))
    try:
        data = read_bytes(path, cfg.serve.max_file_bytes)
    except ImageError as exc:
        if exc.kind == "missing":
            return None
        return ErrorNotice(path, name, "feeder", exc.kind, str(exc))
    digest = content_hash(data)
    key = source_key(name, digest)
    try:
        img = decode_image(data, name, cfg.serve.max_image_pixels)
        target = catalog.lookup(parsed.plot_type)
        if target.plot_type_id is None:
            target = catalog.recheck(parsed.plot_type)
        if target.plot_type_id is None and not cfg.serve.onboard_new_plot_types:
            return ErrorNotice(
                path,
                name,
                "feeder",
                "unknown_plot_type",
                unknown_plot_type(parsed.plot_type, catalog.names()),
                key,
            )
        if target.model_id is None:
            return Registration(path, name, parsed.plot_type, parsed.run, parsed.chunk, digest, key)
        pixels = prepare(img, (target.height, target.width), target.channels, target.mask or None)
    except ImageError as exc:
        return ErrorNotice(path, name, "feeder", exc.kind, str(exc), key)
    except Exception as exc:  # noqa: BLE001 - any other decoder failure is a bad input too
        return ErrorNotice(path, name, "feeder", "not_image", f"{name}: cannot be prepared ({exc})", key)
    now = time.time()
    return InferenceOrder(
        order_id=uuid.uuid4().hex[:16],
        path=path,
        filename=name,
        source_key=key,
        plot_type=parsed.plot_type,
        plot_type_id=int(target.plot_type_id or 0),
        run=parsed.run,
        chunk=parsed.chunk,
        model_id=int(target.model_id),
        deadline=now + deadline_s(cfg, attempt),
        pixels=pixels,
        content_hash=digest,
        attempt=attempt,
        times={Stamp.FILE: st.st_mtime, Stamp.SEEN: seen, Stamp.FEED0: t0, Stamp.FEED1: now},
        image_width=img.size[0],
        image_height=img.size[1],
    )


def unknown_plot_type(name: str, known: list[str]) -> str:
    """The message for a file of a plot type not in the database, with the likely intended one."""
    import difflib

    same = [k for k in known if k.lower() == name.lower()]
    close = same or difflib.get_close_matches(name, known, n=2, cutoff=0.8)
    hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
    return (
        f"unknown plot type {name!r}{hint}; add it with 'hydra plot-type add {name}' "
        "or set serve.onboard_new_plot_types"
    )


class Feeder:
    """The Feeder's state: candidates, files in flight and decoder threads."""

    def __init__(
        self,
        cfg: HydraConfig,
        addrs: Addresses,
        *,
        decoders: int,
        stop: StopFlag,
        instance: str | None = None,
    ) -> None:
        self.cfg = cfg
        self.instance = instance or instance_id(cfg)
        self.addrs = addrs
        self.stop = stop
        self.input_dir = cfg.input_dir
        self.engine = make_engine(cfg.database_url)
        self.catalog = ModelCatalog(self.engine, cfg.serve.model_refresh_s)
        self.settler = Settler(cfg.serve.settle_ms)
        self.events: queue.SimpleQueue = queue.SimpleQueue()
        self.ready: dict[str, float] = {}  # complete files waiting for a decoder -> when seen
        self.in_flight: dict[str, InFlight] = {}
        self.busy: dict[str, Future] = {}
        self._attempts: dict[str, int] = {}
        self.decoders = max(1, decoders)
        self.sent = 0
        self.resent = 0
        self.retries = 0
        self.dropped = Dropped()

    def run(self) -> None:
        self.input_dir.mkdir(parents=True, exist_ok=True)
        with (
            zmq_context(self.cfg) as ctx,
            ThreadPoolExecutor(self.decoders, thread_name_prefix="decode") as pool,
            observe(self.input_dir, polling=self.cfg.serve.polling, events=self.events),
        ):
            out = make_socket(ctx, zmq.PUSH, self.addrs.frontend, bind=False)
            keeper = make_socket(ctx, zmq.PUSH, self.addrs.keeper, bind=False)
            done = make_socket(ctx, zmq.SUB, self.addrs.control, bind=False)
            for topic in topics(self.instance):
                done.setsockopt(zmq.SUBSCRIBE, topic)
            beat = HeartbeatSender(keeper, "feeder", instance=self.instance)
            next_scan = 0.0
            next_expiry = time.monotonic() + 1.0
            log.info(
                "watching %s (polling=%s, %d decoders)", self.input_dir, self.cfg.serve.polling, self.decoders
            )
            while not self.stop:
                self.catalog.refresh()
                self._take_events(timeout=0.002 if self.busy else 0.02)
                self._take_done(done)
                now = time.monotonic()
                if now >= next_scan:
                    next_scan = now + self.cfg.serve.rescan_interval_s
                    for path in scan(self.input_dir):
                        self._candidate(path, complete=False)
                if now >= next_expiry:
                    next_expiry = now + 0.5
                    self._expire()
                for path in self.settler.settled():
                    self._complete(path)
                if self.catalog.ready:
                    self._dispatch(pool)
                self._collect(out, keeper)
                beat.maybe_send(self.gauges())
            log.info("stopping: %d sent, %d re-sent, %d in flight stay in the input directory",
                     self.sent, self.resent, len(self.in_flight))  # fmt: skip
            for fut in self.busy.values():
                fut.cancel()

    def gauges(self) -> dict[str, int]:
        return {
            "queue_ready": len(self.ready),
            "queue_settling": len(self.settler),
            "in_flight": len(self.in_flight),
            "decoding": len(self.busy),
            "sent": self.sent,
            "resent": self.resent,
            "retries": self.retries,
            **self.dropped.gauges(),
        }

    def _candidate(self, path: str, *, complete: bool) -> None:
        if ignored(os.path.basename(path)) or os.path.dirname(path) != str(self.input_dir):
            return
        if path in self.in_flight or path in self.busy or path in self.ready:
            return
        if complete:
            self.settler.discard(path)
            self._complete(path)
        else:
            self.settler.add(path)

    def _complete(self, path: str) -> None:
        if path not in self.in_flight and path not in self.busy:
            self.ready.setdefault(path, time.time())

    def _take_events(self, timeout: float) -> None:
        try:
            path, complete = self.events.get(timeout=timeout)
        except queue.Empty:
            return
        self._candidate(path, complete=complete)
        while True:
            try:
                path, complete = self.events.get_nowait()
            except queue.Empty:
                return
            self._candidate(path, complete=complete)

    def _take_done(self, sock: zmq.Socket) -> None:
        done, retry = topics(self.instance)
        while sock.poll(0):
            frames = sock.recv_multipart()
            if len(frames) != 2:
                self.dropped("malformed", f"announcement of {len(frames)} frames")
                continue
            topic, raw = frames
            path = raw.decode(errors="replace")
            if topic == done:
                self.in_flight.pop(path, None)
            elif topic != retry:
                self.dropped("malformed", f"announcement {topic[:40]!r}")
            elif path in self.in_flight:
                entry = self.in_flight[path]
                entry.deadline = min(entry.deadline, time.time() + retry_delay_s(self.cfg, entry.attempt))
                self.retries += 1

    def _expire(self) -> None:
        """Forget files the Keeper moved; send again those past their deadline."""
        now = time.time()
        for path, entry in list(self.in_flight.items()):
            if not os.path.exists(path):
                del self.in_flight[path]
            elif now > entry.deadline:
                del self.in_flight[path]
                self.resent += 1
                log.warning("%s: no result before its deadline (attempt %d); sending again",
                            os.path.basename(path), entry.attempt)  # fmt: skip
                self.ready[path] = now
                self.settler.discard(path)
                self._attempts[path] = entry.attempt + 1

    def _dispatch(self, pool: ThreadPoolExecutor) -> None:
        limit = 4 * self.decoders
        cap = self.cfg.serve.max_in_flight
        while self.ready and len(self.busy) < limit and len(self.in_flight) < cap:
            path, seen = next(iter(self.ready.items()))
            del self.ready[path]
            attempt = self._attempts.pop(path, 1)
            self.busy[path] = pool.submit(examine, path, self.cfg, self.catalog, seen=seen, attempt=attempt)
            self.in_flight[path] = InFlight(time.time() + deadline_s(self.cfg, attempt), attempt)

    def _collect(self, out: zmq.Socket, keeper: zmq.Socket) -> None:
        for path, fut in list(self.busy.items()):
            if not fut.done():
                continue
            del self.busy[path]
            try:
                msg = fut.result()
            except Exception:  # noqa: BLE001 - a bug must not stop the feeder
                log.exception("%s: unexpected failure while reading", path)
                self.in_flight.pop(path, None)
                continue
            if msg is None:
                self.in_flight.pop(path, None)
                continue
            msg.instance = self.instance
            if isinstance(msg, InferenceOrder):
                out.send_multipart(encode_message(msg), copy=False)
                self.sent += 1
                if msg.attempt > 1:
                    log.info("%s: re-sent (attempt %d)", msg.filename, msg.attempt)
            else:
                if isinstance(msg, ErrorNotice):
                    log.warning("%s: %s (%s)", msg.filename, msg.message, msg.kind)
                keeper.send_multipart(encode_message(msg), copy=False)


def run(
    cfg: HydraConfig,
    addrs: Addresses,
    *,
    decoders: int | None = None,
    stop: StopFlag | None = None,
    instance: str | None = None,
) -> None:
    """Run the Feeder until SIGTERM/SIGINT."""
    stop = stop or StopFlag().install()
    decoders = decoders or min(4, os.cpu_count() or 1)
    Path(cfg.input_dir).mkdir(parents=True, exist_ok=True)
    Feeder(cfg, addrs, decoders=decoders, stop=stop, instance=instance).run()
