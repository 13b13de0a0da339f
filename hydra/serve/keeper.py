"""The Keeper: the only writer of results, in batches, losing nothing.

It collects Reports, error notices, registrations and heartbeats from every
stage, and every ``keeper_flush_ms`` (or ``keeper_batch`` items; up to 4x
longer while results pour in, so that fast input makes fewer, larger
commits) writes them in one transaction (:class:`hydra.serve.store.Store`). Only after the commit
does it move the files out of the input directory and announce them done on
the control socket (``[b"done", path]``), which tells the Feeder they left
flight. If the database is unreachable the batch is kept and retried with
backoff while new messages keep arriving (deduplicated by key); the files
stay in the input directory until their rows are committed. That backlog is
bounded (``serve.keeper_max_pending`` items, heat maps included in
``keeper_max_heatmap_mb``): beyond it new results are dropped (their files
stay in the input directory and are asked for again, ``retry``, once a commit
succeeds), and the Keeper tells the Feeder to stop sending: it announces
``[b"hold:<instance>", b"on"]`` on its control socket, again every
``HOLD_EVERY_S`` while the backlog stays full (so a Feeder that connects late
learns it too), and ``b"off"`` after the commit that empties it. Inference is then
not spent on results that would only be dropped.

Every message is checked before use (:mod:`hydra.serve.checks`): one of
another instance, or one that names a file outside the input folder or a
plot type the file name does not say, is counted and dropped. A fault of the
server while storing (a heat-map disk full, a storage folder not writable)
never quarantines an image: its file stays in the input directory and the
Feeder is told to send it again (``retry``) after a backoff.
"""

from __future__ import annotations

import logging
import time

import zmq
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from hydra.config import HydraConfig
from hydra.db.engine import make_engine
from hydra.serve.alarms import AlarmTracker, HookRunner
from hydra.serve.checks import Invalid, check_message
from hydra.serve.conditions import CommandCondition
from hydra.serve.feeder import topics
from hydra.serve.instance import instance_id
from hydra.serve.messages import (
    ErrorNotice,
    Event,
    MessageError,
    Pulse,
    Registration,
    Report,
    Retry,
    Stamp,
    decode_message,
)
from hydra.serve.metrics import Metrics
from hydra.serve.stage import Addresses, Dropped, StopFlag, make_socket, zmq_context
from hydra.serve.store import Batch, Outcome, Store, move_files

log = logging.getLogger("hydra.serve.keeper")

BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0)
DRAIN_S = 1.0
HOLD_EVERY_S = 1.0  # how often a full backlog's hold is announced again
FAST_BATCH = 32  # a batch this full when keeper_flush_ms is up: the input is fast ...
STRETCH = 4  # ... and the batch may collect this many times longer, up to keeper_batch items


def is_outage(exc: BaseException) -> bool:
    """A database that cannot be reached or is busy (retry later), not a bad row."""
    if isinstance(exc, (OperationalError, InterfaceError)):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


class Keeper:
    """Collects messages into a :class:`Batch` and commits it when due."""

    def __init__(self, cfg: HydraConfig, stop: StopFlag, instance: str | None = None) -> None:
        self.cfg = cfg
        self.stop = stop
        self.instance = instance or instance_id(cfg)
        self.done_topic, self.retry_topic, self.hold_topic = topics(self.instance)
        self.dropped = Dropped()
        self.input_dir = str(cfg.input_dir)  # resolved once: every message's path is checked against it
        self.retry_paths: list[str] = []
        self.deferred: set[str] = set()  # files whose results were dropped while the backlog was full
        self.full_since: float | None = None
        self.holding = False  # the Feeder was told to stop sending and not told to resume yet
        self.next_hold = 0.0
        self.engine = make_engine(cfg.database_url)
        a = cfg.alarms
        self.store = Store(
            cfg,
            self.engine,
            AlarmTracker(a.consecutive),
            CommandCondition(a.condition_command, a.condition_min, a.condition_name),
        )
        self.hooks = HookRunner(a.hook)
        self.metrics = Metrics()
        self.batch = Batch()
        self.failures = 0
        self.retry_at = 0.0
        self.stored = 0

    def run(self, addrs: Addresses) -> None:
        self.metrics.serve(self.cfg.serve.metrics_port, self.cfg.serve.metrics_bind)
        with zmq_context(self.cfg) as ctx:
            inbox = make_socket(ctx, zmq.PULL, addrs.keeper, bind=True, hwm=100_000)
            announce = make_socket(ctx, zmq.PUB, addrs.control, bind=True)
            log.info("keeper on %s, announcing on %s, database %s", addrs.keeper, addrs.control,
                     self.engine.url.render_as_string(hide_password=True))  # fmt: skip
            while not self.stop:
                self._receive(inbox, self._timeout_ms())
                if self._due():
                    self._flush(announce)
                self._announce_retries(announce)
                self._announce_hold(announce)
                self.hooks.reap()
            # drain what is already on its way, then a last commit (files of a failed one stay in input)
            end = time.monotonic() + DRAIN_S
            while time.monotonic() < end:
                self._receive(inbox, 50)
            deadline = time.monotonic() + 10.0
            while len(self.batch) and time.monotonic() < deadline:
                if not self._flush(announce):
                    time.sleep(0.5)
            self.hooks.close()
            log.info("stopping: %d inferences stored; %d items not committed stay in the input directory",
                     self.stored, len(self.batch))  # fmt: skip

    def _window_s(self) -> float:
        """How long the batch may collect: ``keeper_flush_ms``, or ``STRETCH`` times that for fast input.

        A batch that already holds ``FAST_BATCH`` items when its time is up
        (results arrive at several hundred or more per second) waits on, until it holds
        ``keeper_batch`` items or the stretched time is up: fewer, larger commits
        where the input is fast; a trickle keeps its latency.
        """
        window = self.cfg.serve.keeper_flush_ms / 1000.0
        if len(self.batch) >= FAST_BATCH:
            return window * STRETCH
        return window

    def _timeout_ms(self) -> int:
        if not len(self.batch):
            return 200
        due = max(self.batch.since + self._window_s(), self.retry_at)
        if self.holding:  # while the backlog stays full its hold is said again on time, not after a retry
            due = min(due, self.next_hold)
        return max(0, int((due - time.monotonic()) * 1000))

    def _due(self) -> bool:
        if not len(self.batch) and not self.batch.beats:
            return False
        now = time.monotonic()
        if now < self.retry_at:
            return False
        if not len(self.batch):
            return now - self.batch.since > 5.0  # heartbeats alone: every few seconds
        return len(self.batch) >= self.cfg.serve.keeper_batch or now - self.batch.since >= self._window_s()

    def _receive(self, sock: zmq.Socket, timeout_ms: int) -> None:
        if not sock.poll(timeout_ms):
            return
        for _ in range(self.cfg.serve.keeper_batch):  # then the loop looks whether the batch is due
            try:
                # copied: reports are ~1 KB, where bytes are cheaper than zmq.Frame objects
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            try:
                msg = decode_message(frames)
            except MessageError as exc:
                self._drop("malformed", str(exc))
                continue
            if getattr(msg, "instance", None) != self.instance:
                self._drop("foreign", f"a {type(msg).__name__} of instance {msg.instance[:40]!r}")
                continue
            try:
                check_message(self.cfg, msg, self.input_dir)
            except Invalid as exc:
                self._drop("malformed", f"{type(msg).__name__}: {exc}")
                continue
            self.add(msg)

    def _drop(self, reason: str, detail: str) -> None:
        self.dropped(reason, detail)
        self.metrics.dropped.labels("keeper", reason).set(self.dropped.counts[reason])

    def _full(self) -> bool:
        """Whether the backlog (held while the database is down) has reached its bound."""
        s = self.cfg.serve
        full = (
            len(self.batch) >= s.keeper_max_pending or self.batch.heat_bytes >= s.keeper_max_heatmap_mb << 20
        )
        if full and self.full_since is None:
            self.full_since = time.monotonic()
            log.warning("%d results wait for the database: new ones are dropped until it is back "
                        "(their files stay in the input directory and come again)", len(self.batch))  # fmt: skip
        elif not full:
            self.full_since = None
        return full

    def add(self, msg: object) -> None:
        """Put one message into the batch (a repeat replaces the earlier copy)."""
        b = self.batch
        if isinstance(msg, (Report, ErrorNotice, Registration)) and self._full():
            self.metrics.backlog_dropped.inc()
            if len(self.deferred) < 100_000:
                self.deferred.add(msg.path)  # asked for again as soon as the database is back
            return
        if isinstance(msg, Retry):
            log.warning(
                "%s: %s fault (%s); it is sent again later", msg.filename, msg.stage, msg.reason[:300]
            )
            self.metrics.retries.labels(msg.stage).inc()
            self.retry_paths.append(msg.path)
        elif isinstance(msg, Report):
            msg.times[Stamp.KEEP] = time.time()
            if (msg.source_key, msg.model_id) not in b.reports:
                b.reports[(msg.source_key, msg.model_id)] = msg
                b.heat_bytes += msg.heatmap.nbytes if msg.heatmap is not None else 0
        elif isinstance(msg, ErrorNotice):
            b.errors[msg.path] = msg
        elif isinstance(msg, Registration):
            b.registrations[msg.path] = msg
        elif isinstance(msg, Pulse):
            b.beats[msg.process] = {
                "process": msg.process,
                "pid": msg.pid,
                "host": msg.host,
                "info": msg.info,
            }
            self.metrics.observe_heartbeat(msg.process, msg.info)
            self.metrics.observe_dropped(msg.process, msg.info)
        elif isinstance(msg, Event):
            if msg.name == "restart":
                self.metrics.restarts.labels(msg.process).inc()
            log.info("event %s from %s: %s", msg.name, msg.process, msg.detail)
        self.metrics.keeper_pending.set(len(b))

    def _flush(self, announce: zmq.Socket) -> bool:
        batch = self.batch
        try:
            outcome = self.store.write(batch)
        except Exception as exc:  # noqa: BLE001 - an outage is retried, anything else isolated
            if not is_outage(exc):
                log.exception("a batch of %d items failed; writing them one by one", len(batch))
                self.batch = Batch()
                self._isolate(batch, announce)
                return True
            self.failures += 1
            self.metrics.flush_failures.inc()
            wait = BACKOFF_S[min(self.failures - 1, len(BACKOFF_S) - 1)]
            self.retry_at = time.monotonic() + wait
            log.warning("database write failed (%s); %d items kept, retry in %.1f s",
                        str(getattr(exc, "orig", None) or exc)[:200], len(batch), wait)  # fmt: skip
            return False
        if self.failures:
            log.info("database is back after %d failed writes", self.failures)
            self.retry_paths.extend(self.deferred)
            self.deferred.clear()
        self.failures = 0
        self.retry_at = 0.0
        self.batch = Batch()
        self._after_commit(outcome, announce)
        return True

    def _isolate(self, batch: Batch, announce: zmq.Socket) -> None:
        """Write a failed batch item by item; a report that still fails becomes an error record."""
        singles: list[Batch] = [Batch(reports={k: r}) for k, r in batch.reports.items()]
        singles += [Batch(errors={k: e}) for k, e in batch.errors.items()]
        singles += [Batch(registrations={k: g}) for k, g in batch.registrations.items()]
        for single in singles:
            try:
                self._after_commit(self.store.write(single), announce)
                continue
            except Exception as exc:  # noqa: BLE001
                if is_outage(exc):
                    self.batch.reports.update(single.reports)
                    self.batch.errors.update(single.errors)
                    self.batch.registrations.update(single.registrations)
                    continue
                reason = f"{exc.__class__.__name__}: {exc}"[:500]
                # a shadow model's verdict never decides its file's fate
                if any(r.shadow for r in single.reports.values()):
                    log.error("a shadow model's result cannot be stored (%s); dropped", reason)
                    continue
                if isinstance(exc, OSError) or isinstance(getattr(exc, "orig", None), OSError):
                    # the server's disk, not the image: leave the file in the input folder, try again later
                    for item in (
                        *single.reports.values(),
                        *single.errors.values(),
                        *single.registrations.values(),
                    ):
                        self.add(Retry(item.path, item.filename, "keeper", reason, self.instance))
                    continue
            for r in single.reports.values():
                log.error("%s: cannot be stored (%s); quarantined", r.filename, reason)
                self.add(
                    ErrorNotice(
                        r.path, r.filename, "keeper", "store_error", reason, r.source_key, self.instance
                    )
                )
            for item in (*single.errors.values(), *single.registrations.values()):
                log.error("%s: cannot be recorded (%s); left in the input directory", item.filename, reason)

    def _after_commit(self, out: Outcome, announce: zmq.Socket) -> None:
        if out.tracker is not None:
            self.store.tracker = out.tracker
        moved, failed = move_files(out.moves)
        for path in moved:
            announce.send_multipart([self.done_topic, path.encode()])
        for r, reason in out.retry:
            self.add(Retry(r.path, r.filename, "keeper", reason, self.instance))
        self.retry_paths.extend(failed)
        m = self.metrics
        if log.isEnabledFor(logging.DEBUG):
            for report, _ in out.stored:
                log.debug("%s stored at %.3f: %s", report.filename, time.time(), report.times)
        images: dict[tuple[str, str], int] = {}
        for report, _ in out.stored:
            images[(report.plot_type, report.label)] = images.get((report.plot_type, report.label), 0) + 1
        m.observe_batch([timings for _, timings in out.stored], images)
        for e in out.errors:
            m.errors.labels(e.stage, e.kind).inc()
        m.registered.inc(out.registered)
        m.duplicates.inc(out.duplicates)
        for due, alarm_id, raised in out.alarms:
            m.alarms.labels(str(raised).lower()).inc()
            log.warning("ALARM%s: %s", "" if raised else " (logged only, run conditions off)", due.message)
            if raised:
                self.hooks.fire(due, alarm_id)
        self.stored += len(out.stored)
        m.keeper_pending.set(len(self.batch))

    def _announce_hold(self, announce: zmq.Socket) -> None:
        """While the backlog is full, tell the Feeder (every ``HOLD_EVERY_S``) to send nothing new.

        The release is said once, after the commit that emptied the backlog (it
        follows that commit's ``done`` announcements); a Feeder that misses it
        resumes by itself a few seconds after the last hold.
        """
        now = time.monotonic()
        if self._full():  # from the moment the bound is reached, and until a commit empties the batch
            if not self.holding or now >= self.next_hold:
                announce.send_multipart([self.hold_topic, b"on"])
                self.holding, self.next_hold = True, now + HOLD_EVERY_S
        elif self.holding:
            announce.send_multipart([self.hold_topic, b"off"])
            self.holding = False
            log.info("the backlog has room again: the Feeder may send")

    def _announce_retries(self, announce: zmq.Socket) -> None:
        """Tell the Feeder which files met a server fault, so it sends them again after a backoff."""
        for path in self.retry_paths:
            announce.send_multipart([self.retry_topic, path.encode()])
        self.retry_paths.clear()


def run(
    cfg: HydraConfig, addrs: Addresses, *, stop: StopFlag | None = None, instance: str | None = None
) -> None:
    """Run the Keeper until SIGTERM/SIGINT."""
    stop = stop if stop is not None else StopFlag().install()  # a StopFlag not set is falsy
    try:
        cfg.ensure_dirs()
    except OSError as exc:  # a storage folder on a disk that is not there or not writable yet
        log.error("cannot create the storage folders (%s); results wait until it is fixed", exc)
    Keeper(cfg, stop, instance).run(addrs)
