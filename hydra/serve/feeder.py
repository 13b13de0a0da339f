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
flight, and while the Keeper's backlog is full (the database is down) the
Keeper announces ``hold`` and the Feeder sends nothing new, sending nothing
again past a deadline either: the files wait in the input directory and the
ready queue, so no inference is spent on results the Keeper would drop. It
resumes when the Keeper announces the release, or ``HOLD_S`` after the last
hold (a lost release cannot hold it forever). Announcements carry the
instance in their topic, so the Feeder hears only its own Keeper. Files are
read, decoded and prepared in decode processes (:mod:`hydra.serve.decode_pool`,
``serve.decoders`` of them), so decoding scales with the cores.
"""

from __future__ import annotations

import logging
import os
import queue
import time
from dataclasses import dataclass
from pathlib import Path

import zmq

from hydra.config import HydraConfig
from hydra.data.naming import NamingError, ParsedName, parse_name
from hydra.db.engine import make_engine
from hydra.serve.catalog import ModelCatalog, Target
from hydra.serve.decode_pool import Decoded, DecodeJob, DecodePool, decode_file, default_decoders
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
HOLD_S = 5.0  # a hold not announced again within this ends by itself


def retry_delay_s(cfg: HydraConfig, attempt: int) -> float:
    """Backoff before sending again a file that met a server fault: 1, 2, 4, 5, 5 ... s (at most its deadline).

    Short, so that a fault that clears (the database is back, space is freed)
    is noticed within seconds; each retry of a file costs one read and one
    inference at most.
    """
    return min(2.0 ** (attempt - 1), RETRY_MAX_S, deadline_s(cfg, attempt))


def topics(instance: str) -> tuple[bytes, bytes, bytes]:
    """The Keeper's announcement topics for one instance: committed files, files to send again, hold."""
    return f"done:{instance}".encode(), f"retry:{instance}".encode(), f"hold:{instance}".encode()


@dataclass
class Planned:
    """A file that passed the Feeder's own checks and waits for its decode: what to make of the result."""

    path: str
    name: str
    parsed: ParsedName
    target: Target
    job: DecodeJob
    seen: float
    attempt: int
    mtime: float


def plan(
    path: str, cfg: HydraConfig, catalog: ModelCatalog, *, seen: float, attempt: int = 1
) -> Message | Planned | None:
    """The checks that need no decode (name, plot type): a message at once, the decode to do, or None.

    Runs in the Feeder's loop; the decode (:func:`~hydra.serve.decode_pool.decode_file`)
    runs in a decode process, and :func:`finish` turns its result into the message.
    """
    name = os.path.basename(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    try:
        parsed = parse_name(name, cfg.naming_regex)
    except NamingError as exc:
        return ErrorNotice(path, name, "feeder", "bad_name", str(exc))
    target = catalog.lookup(parsed.plot_type)
    if target.plot_type_id is None:
        target = catalog.recheck(parsed.plot_type)
    size = (target.height, target.width) if target.model_id is not None else None
    job = DecodeJob(
        path, cfg.serve.max_file_bytes, cfg.serve.max_image_pixels, size, target.channels, target.mask
    )
    return Planned(path, name, parsed, target, job, seen, attempt, st.st_mtime)


def finish(p: Planned, res: Decoded, cfg: HydraConfig, catalog: ModelCatalog) -> Message | None:
    """The message for a decoded file: a bad input's notice first, then the plot type's verdict.

    Raises:
        RuntimeError: the decode failed for a reason that is no fault of the file.
    """
    path, name, parsed, target = p.path, p.name, p.parsed, p.target
    if res.status == "missing":
        return None
    if res.status == "failed":
        raise RuntimeError(res.message)
    if res.status != "ok":  # error, crashed
        return ErrorNotice(path, name, "feeder", res.kind, res.message, res.key or None)
    if target.plot_type_id is None and not cfg.serve.onboard_new_plot_types:
        message = unknown_plot_type(parsed.plot_type, catalog.names())
        return ErrorNotice(path, name, "feeder", "unknown_plot_type", message, res.key)
    if target.model_id is None:
        return Registration(path, name, parsed.plot_type, parsed.run, parsed.chunk, res.digest, res.key)
    now = time.time()
    return InferenceOrder(
        order_id=os.urandom(8).hex(),  # 16 hex digits, as uuid4().hex[:16] but cheaper
        path=path,
        filename=name,
        source_key=res.key,
        plot_type=parsed.plot_type,
        plot_type_id=int(target.plot_type_id or 0),
        run=parsed.run,
        chunk=parsed.chunk,
        model_id=int(target.model_id),
        deadline=now + deadline_s(cfg, p.attempt),
        pixels=res.pixels,
        content_hash=res.digest,
        attempt=p.attempt,
        times={Stamp.FILE: p.mtime, Stamp.SEEN: p.seen, Stamp.FEED0: res.started, Stamp.FEED1: now},
        image_width=res.image_size[0],
        image_height=res.image_size[1],
    )


def examine(
    path: str, cfg: HydraConfig, catalog: ModelCatalog, *, seen: float, attempt: int = 1
) -> Message | None:
    """Read, check and prepare one file in this process; the message to send, or None if it vanished.

    The Feeder does the same in three steps (:func:`plan`, then
    :func:`~hydra.serve.decode_pool.decode_file` in a decode process, then
    :func:`finish`); this is the one-call form for tests and tools.
    """
    planned = plan(path, cfg, catalog, seen=seen, attempt=attempt)
    if not isinstance(planned, Planned):
        return planned
    return finish(planned, decode_file(planned.job), cfg, catalog)


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
    """The Feeder's state: candidates, files in flight and its decode processes."""

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
        self.busy: dict[str, Planned] = {}  # files in the decode processes
        self.outbox: list[tuple[str, Message | None]] = []  # judged without a decode (a bad name)
        self._attempts: dict[str, int] = {}
        self.decoders = max(1, decoders)
        self.sent = 0
        self.resent = 0
        self.retries = 0
        self.held_until: float | None = None  # monotonic: the Keeper's backlog is full until then
        self.dropped = Dropped()

    def run(self) -> None:
        self.input_dir.mkdir(parents=True, exist_ok=True)
        with (
            zmq_context(self.cfg) as ctx,
            DecodePool(self.decoders) as pool,
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
                self._take_events(timeout=0.0 if self.busy else 0.02)  # busy: the decoders wake it up
                self._take_done(done)
                now = time.monotonic()
                if now >= next_scan:
                    next_scan = now + self.cfg.serve.rescan_interval_s
                    for path in scan(self.input_dir):
                        self._candidate(path, complete=False)
                if now >= next_expiry and not self.held():
                    next_expiry = now + 0.5
                    self._expire()
                for path in self.settler.settled():
                    self._complete(path)
                if self.catalog.ready:
                    self._dispatch(pool)
                self._collect(pool, out, keeper, timeout=0.002 if self.busy else 0.0)
                beat.maybe_send(self.gauges() | {"decoder_restarts": pool.replaced})
            log.info("stopping: %d sent, %d re-sent, %d in flight stay in the input directory",
                     self.sent, self.resent, len(self.in_flight))  # fmt: skip

    def gauges(self) -> dict[str, int]:
        return {
            "queue_ready": len(self.ready),
            "queue_settling": len(self.settler),
            "in_flight": len(self.in_flight),
            "decoding": len(self.busy),
            "sent": self.sent,
            "resent": self.resent,
            "retries": self.retries,
            "held": int(self.held_until is not None),
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

    def held(self) -> bool:
        """Whether the Keeper's backlog is full: sending waits (ended here when the hold is not renewed)."""
        if self.held_until is not None and time.monotonic() >= self.held_until:
            self.held_until = None
            log.info("the Keeper takes results again: sending resumed (no hold announced for %.0f s)", HOLD_S)
        return self.held_until is not None

    def _hold(self, value: bytes) -> None:
        if value == b"on":
            if self.held_until is None:
                log.warning("the Keeper's backlog is full: sending paused")
            self.held_until = time.monotonic() + HOLD_S
        elif value == b"off":
            if self.held_until is not None:
                log.info("the Keeper takes results again: sending resumed")
            self.held_until = None
        else:
            self.dropped("malformed", f"hold announcement {value[:40]!r}")

    def _take_done(self, sock: zmq.Socket) -> None:
        done, retry, hold = topics(self.instance)
        while sock.poll(0):
            frames = sock.recv_multipart()
            if len(frames) != 2:
                self.dropped("malformed", f"announcement of {len(frames)} frames")
                continue
            topic, raw = frames
            path = raw.decode(errors="replace")
            if topic == done:
                self.in_flight.pop(path, None)
            elif topic == hold:
                self._hold(raw)
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

    def _dispatch(self, pool: DecodePool) -> None:
        if self.held():  # the Keeper would drop the results: the files wait in the input directory
            return
        # twice what the decoders hold: a decoder that answers its batch finds the next one queued
        limit = 2 * pool.capacity
        cap = self.cfg.serve.max_in_flight
        jobs: list[tuple[DecodeJob, str]] = []
        while self.ready and len(self.busy) < limit and len(self.in_flight) < cap:
            path, seen = next(iter(self.ready.items()))
            del self.ready[path]
            attempt = self._attempts.pop(path, 1)
            self.in_flight[path] = InFlight(time.time() + deadline_s(self.cfg, attempt), attempt)
            try:
                planned = plan(path, self.cfg, self.catalog, seen=seen, attempt=attempt)
            except Exception:  # noqa: BLE001 - a bug must not stop the feeder
                log.exception("%s: unexpected failure while checking", path)
                self.in_flight.pop(path, None)
                continue
            if isinstance(planned, Planned):
                self.busy[path] = planned
                jobs.append((planned.job, path))
            else:
                self.outbox.append((path, planned))
        if jobs:
            pool.submit_many(jobs)

    def _collect(self, pool: DecodePool, out: zmq.Socket, keeper: zmq.Socket, timeout: float = 0.0) -> None:
        judged, self.outbox = self.outbox, []
        for path, res in pool.collect(timeout if not judged else 0.0):
            planned = self.busy.pop(path, None)
            if planned is None:  # sent again past its deadline while this decode was slow: one result will do
                continue
            try:
                judged.append((path, finish(planned, res, self.cfg, self.catalog)))
            except Exception as exc:  # noqa: BLE001 - a bug or a disk error must not stop the feeder
                log.error("%s: unexpected failure while reading: %s", path, exc)
                self.in_flight.pop(path, None)
        for path, msg in judged:
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
    stop = stop if stop is not None else StopFlag().install()  # a StopFlag not set is falsy
    decoders = decoders or cfg.serve.decoders or default_decoders()
    Path(cfg.input_dir).mkdir(parents=True, exist_ok=True)
    Feeder(cfg, addrs, decoders=decoders, stop=stop, instance=instance).run()
