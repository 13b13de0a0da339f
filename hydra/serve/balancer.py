"""The Balancer: passes orders from the Feeder to the Predict workers.

Workers connect a DEALER to the backend ROUTER and announce themselves with
``READY n instance`` (n orders of credit); each finished order returns one
credit. Every couple of seconds a worker also says ``ALIVE n instance`` with
the credit it has free: a Balancer that does not know it yet (it restarted)
takes that as its credit and answers ``WELCOME instance``, so a restart
recovers under every policy. A worker that does not know its instance yet
(one on another host) announces an empty one and learns it from the
``WELCOME``, which reaches it before its first order. Credit of another
instance registers no worker (it would take orders only to drop them as
foreign, holding them until their deadlines): it is counted and dropped, a
worker known until then is forgotten, and the answer is a ``WELCOME`` that
tells it whose Balancer this is. A worker's credit is capped, so one that
announces more than any worker could take cannot draw every order to itself.
Anything else on either socket (garbage, another instance's orders) is
counted and dropped.
Policies:

* ``least_loaded`` (default): an order goes to the worker with the most
  credit left, so a slow or busy worker gets less; orders wait in the
  Balancer while every worker is full.
* ``round_robin`` (as in the original system, like a PUSH socket): each order
  goes to the next worker in turn, whatever its load.

A worker that disappears (its connection drops) is forgotten; the orders it
held come back through the Feeder's deadline. The Balancer touches an order
only to stamp its own time into the header: it decodes the small JSON
header, never the pixels.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections import deque
from typing import Any

import zmq
from pydantic_core import from_json

from hydra.config import HydraConfig
from hydra.serve.instance import instance_id
from hydra.serve.messages import ALIVE, ORDER, READY, WELCOME, MessageError, Stamp
from hydra.serve.stage import Addresses, Dropped, HeartbeatSender, StopFlag, make_socket, zmq_context

log = logging.getLogger("hydra.serve.balancer")

POLICIES = ("least_loaded", "round_robin")


def stamp(frames: list[Any], t_in: float, instance: str | None = None) -> list[Any] | None:
    """The order's frames with the Balancer's in/out times added to its header.

    None for an order past its deadline: the Feeder has sent it again already,
    so passing it on would only make a duplicate. Raises :class:`MessageError`
    for frames that are not an order (of this ``instance``, when given).
    """
    if len(frames) < 3 or bytes(frames[0].buffer if hasattr(frames[0], "buffer") else frames[0]) != ORDER:
        raise MessageError(f"not an order ({len(frames)} frames)")
    raw = bytes(frames[1].buffer if hasattr(frames[1], "buffer") else frames[1])
    try:
        header = from_json(raw)  # as decode_message reads headers: strict UTF-8, bounded numbers and nesting
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise MessageError(f"order header is not JSON ({exc.__class__.__name__})") from None
    if not isinstance(header, dict) or not isinstance(header.get("times", {}), dict):
        raise MessageError("order header is not a JSON object with a times object")
    if instance is not None and header.get("instance") != instance:
        raise ForeignError(f"an order of instance {str(header.get('instance'))[:40]!r}")
    now = time.time()
    deadline = header.get("deadline", now)
    if not isinstance(deadline, (int, float)) or deadline < now:
        return None
    return [frames[0], _stamped(raw, header, t_in, now), *frames[2:]]


_TIMES = b'"times":{'
_COMPACT = json.JSONEncoder(separators=(",", ":"))


def _stamped(raw: bytes, header: dict[str, Any], t_in: float, t_out: float) -> bytes:
    """The header with the Balancer's stamps in its ``times``.

    The Feeder's headers are compact JSON with one ``"times":{`` (the text cannot
    occur inside a JSON string, whose quotes are escaped): the stamps are
    written in there, and the header is not encoded again. Anything else (no
    or several such objects, stamps there already) is decoded and encoded again.
    """
    times = header.get("times")
    if (
        isinstance(times, dict)
        and Stamp.BAL_IN not in times
        and Stamp.BAL_OUT not in times
        and raw.count(_TIMES) == 1
    ):
        at = raw.index(_TIMES) + len(_TIMES)
        stamps = f'"{Stamp.BAL_IN}":{t_in!r},"{Stamp.BAL_OUT}":{t_out!r}'.encode()
        return raw[:at] + stamps + (b"" if raw[at : at + 1] == b"}" else b",") + raw[at:]
    times = header.setdefault("times", {})
    times[Stamp.BAL_IN] = t_in
    times[Stamp.BAL_OUT] = t_out
    return _COMPACT.encode(header).encode()


class ForeignError(MessageError):
    """A well-formed message of another instance."""


def parse_credit(rest: list[bytes]) -> int:
    """The n of ``READY n`` / ``ALIVE n``; MessageError unless it is a plain non-negative number."""
    if len(rest) != 1 or not rest[0].isdigit() or len(rest[0]) > 9:
        raise MessageError(f"bad credit {b' '.join(rest)[:40]!r}")
    return int(rest[0])


def parse_announcement(kind: bytes, rest: list[bytes]) -> tuple[int, str]:
    """The credit and instance of ``READY [n [instance]]`` / ``ALIVE n [instance]``.

    An empty or missing instance is a worker that does not know it yet. Raises
    :class:`MessageError` for anything else than a plain number and an instance
    of at most 64 UTF-8 bytes.
    """
    if kind == READY and not rest:
        return 1, ""
    if kind not in (READY, ALIVE):
        raise MessageError(f"unknown kind {kind[:32]!r}")
    if len(rest) > 2:
        raise MessageError(f"credit of {len(rest) + 1} frames")
    credit = parse_credit(rest[:1])
    raw = rest[1] if len(rest) == 2 else b""
    if len(raw) > 64:
        raise MessageError(f"instance of {len(raw)} bytes")
    try:
        return credit, raw.decode()
    except UnicodeDecodeError:
        raise MessageError(f"instance {raw[:40]!r} is not UTF-8") from None


def _show(ident: bytes) -> str:
    return ident.decode(errors="replace") if ident[:1] != b"\0" else ident.hex()


class Workers:
    """Known workers with their credit, in the order a policy picks them."""

    def __init__(self, policy: str, cap: int = 1024) -> None:
        if policy not in POLICIES:
            raise ValueError(f"unknown balancer policy {policy!r}; known: {', '.join(POLICIES)}")
        self.policy = policy
        self.cap = cap
        self.credit: dict[bytes, int] = {}
        self.seen: dict[bytes, float] = {}
        self.ring: deque[bytes] = deque()

    def __len__(self) -> int:
        return len(self.credit)

    def ready(self, ident: bytes, n: int) -> bool:
        """Add ``n`` credit (at most ``cap`` in all); True when the worker is new."""
        new = ident not in self.credit
        if new:
            log.info("worker %s joined with credit %d", _show(ident), min(n, self.cap))
            self.credit[ident] = 0
            self.ring.append(ident)
        self.credit[ident] = min(self.credit[ident] + n, self.cap)
        self.seen[ident] = time.monotonic()
        return new

    def alive(self, ident: bytes, free: int) -> bool:
        """A keep-alive: a worker this Balancer does not know joins with its free credit; True if new."""
        if ident in self.credit:
            self.seen[ident] = time.monotonic()
            return False
        return self.ready(ident, free)

    def forget(self, ident: bytes) -> None:
        if self.credit.pop(ident, None) is not None:
            log.warning("worker %s is gone; its orders come back after their deadline", _show(ident))
        self.seen.pop(ident, None)
        if ident in self.ring:
            self.ring.remove(ident)

    def pick(self) -> bytes | None:
        """The worker for the next order, or None if it should wait."""
        if not self.credit:
            return None
        if self.policy == "round_robin":
            ident = self.ring[0]
            self.ring.rotate(-1)
            return ident
        ident = max(self.credit, key=self.credit.__getitem__)
        return ident if self.credit[ident] > 0 else None

    def sent(self, ident: bytes) -> None:
        self.credit[ident] -= 1


def run(
    cfg: HydraConfig,
    addrs: Addresses,
    *,
    policy: str | None = None,
    stop: StopFlag | None = None,
    instance: str | None = None,
) -> None:
    """Run the Balancer until SIGTERM/SIGINT."""
    stop = stop if stop is not None else StopFlag().install()  # a StopFlag not set is falsy
    instance = instance or instance_id(cfg)
    workers = Workers(policy or cfg.serve.policy, cap=credit_cap(cfg))
    waiting: deque[tuple[float, list[Any]]] = deque()
    passed = expired = 0
    next_purge = 0.0
    dropped = Dropped()
    with zmq_context(cfg) as ctx:
        front = make_socket(ctx, zmq.PULL, addrs.frontend, bind=True)
        back = make_socket(ctx, zmq.ROUTER, addrs.backend, bind=True)
        back.setsockopt(zmq.ROUTER_MANDATORY, 1)
        keeper = make_socket(ctx, zmq.PUSH, addrs.keeper, bind=False)
        beat = HeartbeatSender(keeper, "balancer", instance=instance)
        poller = zmq.Poller()
        poller.register(front, zmq.POLLIN)
        poller.register(back, zmq.POLLIN)
        log.info("policy %s, frontend %s, backend %s", workers.policy, addrs.frontend, addrs.backend)
        while not stop:
            events = dict(poller.poll(100))
            if back in events:
                while (credit := _recv(back, copy=True)) is not None:
                    _take_credit(back, credit, workers, instance, dropped)
            if front in events:
                while len(waiting) < 100_000 and (frames := _recv(front, copy=False)) is not None:
                    waiting.append((time.time(), frames))
            failures = 0
            while waiting and failures < max(len(workers), 1):
                ident = workers.pick()
                if ident is None:
                    break
                t_in, frames = waiting[0]
                try:
                    stamped = stamp(frames, t_in, instance)
                except MessageError as exc:
                    waiting.popleft()
                    dropped("foreign" if isinstance(exc, ForeignError) else "malformed", f"frontend: {exc}")
                    continue
                if stamped is None:
                    waiting.popleft()
                    expired += 1
                    continue
                try:
                    back.send_multipart([ident, *stamped], copy=False, flags=zmq.NOBLOCK)
                except zmq.ZMQError as exc:  # EHOSTUNREACH: the worker is gone; EAGAIN: it is full
                    failures += 1
                    if exc.errno == zmq.EHOSTUNREACH:
                        workers.forget(ident)
                    elif workers.policy == "least_loaded":
                        workers.credit[ident] = 0
                    continue
                failures = 0
                waiting.popleft()
                workers.sent(ident)
                passed += 1
            if waiting and time.monotonic() >= next_purge:
                # with no worker free, orders wait here: those past their deadline have been sent
                # again by the Feeder, so holding them would only grow the queue while workers are gone
                next_purge = time.monotonic() + 1.0
                before = len(waiting)
                waiting = deque(w for w in waiting if not expired_order(w[1]))
                expired += before - len(waiting)
            if time.monotonic() - beat.last >= beat.every_s:  # the gauges only when a beat is due
                beat.maybe_send(
                    {"queue_waiting": len(waiting), "workers": len(workers), "passed": passed,
                     "expired": expired, **dropped.gauges()}
                )  # fmt: skip
        log.info(
            "stopping: %d orders passed, %d waiting go back through the Feeder's deadline",
            passed,
            len(waiting),
        )


def _recv(sock: zmq.Socket, *, copy: bool) -> list[Any] | None:
    """The next message waiting on ``sock``, or None (one call per message, no poll each)."""
    try:
        return sock.recv_multipart(zmq.NOBLOCK, copy=copy)
    except zmq.Again:
        return None


def expired_order(frames: list[Any]) -> bool:
    """Whether a waiting order is past its deadline (or not an order at all: dropped at send time anyway)."""
    try:
        deadline = from_json(bytes(frames[1].buffer if hasattr(frames[1], "buffer") else frames[1]))[
            "deadline"
        ]
        return float(deadline) < time.time()
    except (IndexError, KeyError, TypeError, ValueError):
        return False


def credit_cap(cfg: HydraConfig) -> int:
    """The most credit one worker may hold: twice what an honest worker asks for (its window)."""
    return 2 * max(2 * cfg.serve.max_batch, 4)


def _take_credit(
    back: zmq.Socket, frames: list[bytes], workers: Workers, instance: str, dropped: Dropped
) -> None:
    """Handle one message from a worker: credit, keep-alive, or something to drop."""
    if len(frames) < 2:
        dropped("malformed", f"backend: {len(frames)} frame(s)")
        return
    ident, kind, *rest = frames
    try:
        credit, theirs = parse_announcement(kind, rest)
    except MessageError as exc:
        dropped("malformed", f"backend, worker {_show(ident)}: {exc}")
        return
    if theirs and theirs != instance:
        dropped("foreign", f"backend, worker {_show(ident)}: credit of instance {theirs[:40]!r}")
        workers.forget(ident)
        new = True  # told whose Balancer this is: a worker not bound to an instance takes this one
    elif kind == READY:
        new = workers.ready(ident, credit)
    else:
        new = workers.alive(ident, credit)
    if new:  # gone or full: it is welcomed again when it comes back
        with contextlib.suppress(zmq.ZMQError):
            back.send_multipart([ident, WELCOME, instance.encode()], flags=zmq.NOBLOCK)
