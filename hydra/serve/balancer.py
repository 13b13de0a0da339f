"""The Balancer: passes orders from the Feeder to the Predict workers.

Workers connect a DEALER to the backend ROUTER and announce themselves with
``READY n`` (n orders of credit); each finished order returns one credit.
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

import json
import logging
import time
from collections import deque
from typing import Any

import zmq

from hydra.config import HydraConfig
from hydra.serve.messages import ORDER, READY
from hydra.serve.stage import Addresses, HeartbeatSender, StopFlag, make_socket, zmq_context

log = logging.getLogger("hydra.serve.balancer")

POLICIES = ("least_loaded", "round_robin")


def stamp(frames: list[Any], t_in: float) -> list[Any] | None:
    """The order's frames with the Balancer's in/out times added to its header.

    None for an order past its deadline: the Feeder has sent it again already,
    so passing it on would only make a duplicate.
    """
    header = json.loads(bytes(frames[1].buffer if hasattr(frames[1], "buffer") else frames[1]))
    now = time.time()
    if header.get("deadline", now) < now:
        return None
    times = header.setdefault("times", {})
    times["bal_in"] = t_in
    times["bal_out"] = now
    return [frames[0], json.dumps(header, separators=(",", ":")).encode(), *frames[2:]]


def _show(ident: bytes) -> str:
    return ident.decode(errors="replace") if ident[:1] != b"\0" else ident.hex()


class Workers:
    """Known workers with their credit, in the order a policy picks them."""

    def __init__(self, policy: str) -> None:
        if policy not in POLICIES:
            raise ValueError(f"unknown balancer policy {policy!r}; known: {', '.join(POLICIES)}")
        self.policy = policy
        self.credit: dict[bytes, int] = {}
        self.seen: dict[bytes, float] = {}
        self.ring: deque[bytes] = deque()

    def __len__(self) -> int:
        return len(self.credit)

    def ready(self, ident: bytes, n: int) -> None:
        if ident not in self.credit:
            log.info("worker %s joined with credit %d", _show(ident), n)
            self.credit[ident] = 0
            self.ring.append(ident)
        self.credit[ident] += n
        self.seen[ident] = time.monotonic()

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

    def total_credit(self) -> int:
        return sum(max(c, 0) for c in self.credit.values())


def run(
    cfg: HydraConfig, addrs: Addresses, *, policy: str | None = None, stop: StopFlag | None = None
) -> None:
    """Run the Balancer until SIGTERM/SIGINT."""
    stop = stop or StopFlag().install()
    workers = Workers(policy or cfg.serve.policy)
    waiting: deque[tuple[float, list[Any]]] = deque()
    passed = expired = 0
    with zmq_context() as ctx:
        front = make_socket(ctx, zmq.PULL, addrs.frontend, bind=True)
        back = make_socket(ctx, zmq.ROUTER, addrs.backend, bind=True)
        back.setsockopt(zmq.ROUTER_MANDATORY, 1)
        keeper = make_socket(ctx, zmq.PUSH, addrs.keeper, bind=False)
        beat = HeartbeatSender(keeper, "balancer")
        poller = zmq.Poller()
        poller.register(front, zmq.POLLIN)
        poller.register(back, zmq.POLLIN)
        log.info("policy %s, frontend %s, backend %s", workers.policy, addrs.frontend, addrs.backend)
        while not stop:
            events = dict(poller.poll(100))
            if back in events:
                while back.poll(0):
                    ident, kind, *rest = back.recv_multipart()
                    if kind == READY:
                        workers.ready(ident, int(rest[0]) if rest else 1)
            if front in events:
                while front.poll(0) and len(waiting) < 100_000:
                    frames = front.recv_multipart(copy=False)
                    waiting.append((time.time(), frames))
            failures = 0
            while waiting and failures < max(len(workers), 1):
                ident = workers.pick()
                if ident is None:
                    break
                t_in, frames = waiting[0]
                stamped = stamp(frames, t_in) if bytes(frames[0].buffer) == ORDER else None
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
            beat.maybe_send(
                {"queue_waiting": len(waiting), "workers": len(workers), "passed": passed, "expired": expired}
            )
        log.info(
            "stopping: %d orders passed, %d waiting go back through the Feeder's deadline",
            passed,
            len(waiting),
        )
