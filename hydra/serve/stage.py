"""What every serve stage shares: addresses, sockets, stop signals, heartbeats.

A stage is a plain function ``run(cfg, addrs, ...)`` that loops until
:class:`StopFlag` is set by SIGTERM/SIGINT; sockets live in a
:func:`zmq_context` so nothing leaks when it returns.
"""

from __future__ import annotations

import contextlib
import faulthandler
import logging
import os
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import zmq

from hydra.config import HydraConfig
from hydra.serve.messages import Heartbeat, encode

log = logging.getLogger("hydra.serve")

HEARTBEAT_S = 5.0
PEER_TIMEOUT_S = 20


@dataclass(frozen=True)
class Addresses:
    """The four socket addresses of a deployment (config values unless overridden)."""

    frontend: str
    backend: str
    keeper: str
    control: str

    @classmethod
    def from_config(cls, cfg: HydraConfig, **overrides: str | None) -> Addresses:
        s = cfg.serve
        values = {
            "frontend": s.balancer_frontend,
            "backend": s.balancer_backend,
            "keeper": s.keeper_address,
            "control": s.control_address,
        }
        values.update({k: v for k, v in overrides.items() if v})
        return cls(**values)

    def as_args(self) -> list[str]:
        """Command-line options that reproduce these addresses in a child process."""
        return [
            "--frontend", self.frontend,
            "--backend", self.backend,
            "--keeper", self.keeper,
            "--control", self.control,
        ]  # fmt: skip


class StopFlag:
    """Set by SIGTERM/SIGINT; stages check it between iterations."""

    def __init__(self) -> None:
        self.stopped = False
        self.signal: int | None = None

    def install(self) -> StopFlag:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, _frame: Any) -> None:
        self.stopped = True
        self.signal = signum

    def set(self) -> None:
        self.stopped = True

    def __bool__(self) -> bool:
        return self.stopped


@contextmanager
def zmq_context() -> Iterator[zmq.Context]:
    """A private ZeroMQ context whose sockets are closed (linger 1 s) on exit."""
    ctx = zmq.Context()
    try:
        yield ctx
    finally:
        ctx.destroy(linger=1000)


def make_socket(
    ctx: zmq.Context, kind: int, address: str, *, bind: bool, hwm: int = 10000, identity: bytes | None = None
) -> zmq.Socket:
    """A socket bound or connected to ``address`` with our defaults.

    TCP keepalive lets the kernel notice a peer that vanished without closing
    its connection (a crashed remote host) within about ``PEER_TIMEOUT_S``.
    (ZMTP heartbeats would do it too, but libzmq 4.3 aborts when one times
    out on a connection whose input is paused by the high-water mark.)
    """
    sock = ctx.socket(kind)
    if identity is not None:
        sock.setsockopt(zmq.IDENTITY, identity)
    sock.setsockopt(zmq.LINGER, 1000)
    sock.setsockopt(zmq.TCP_KEEPALIVE, 1)
    sock.setsockopt(zmq.TCP_KEEPALIVE_IDLE, PEER_TIMEOUT_S // 2)
    sock.setsockopt(zmq.TCP_KEEPALIVE_INTVL, 2)
    sock.setsockopt(zmq.TCP_KEEPALIVE_CNT, 5)
    sock.setsockopt(zmq.SNDHWM, hwm)
    sock.setsockopt(zmq.RCVHWM, hwm)
    if kind in (zmq.PUSH, zmq.DEALER):
        # reconnects quickly when the peer restarts
        sock.setsockopt(zmq.RECONNECT_IVL, 100)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)
    if bind:
        sock.bind(address)
    else:
        sock.connect(address)
    return sock


class HeartbeatSender:
    """Sends a :class:`Heartbeat` to the Keeper every few seconds."""

    def __init__(self, sock: zmq.Socket, process: str, every_s: float = HEARTBEAT_S) -> None:
        self.sock = sock
        self.process = process
        self.every_s = every_s
        self.last = 0.0
        self.host = socket.gethostname()

    def maybe_send(self, info: dict[str, Any], *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < self.every_s:
            return
        self.last = now
        hb = Heartbeat(process=self.process, pid=os.getpid(), host=self.host, info=info)
        with contextlib.suppress(zmq.Again):  # the Keeper is busy or gone; the next beat will do
            self.sock.send_multipart(encode(hb), flags=zmq.NOBLOCK, copy=False)


def setup_logging(stage: str, level: str | None = None) -> None:
    """One log line format for every stage, naming the stage and pid."""
    logging.basicConfig(
        level=(level or os.environ.get("HYDRA_LOG_LEVEL", "INFO")).upper(),
        format=f"%(asctime)s {stage}[%(process)d] %(levelname)s %(message)s",
    )
    for noisy in ("alembic", "watchdog", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # ``kill -USR1 PID`` prints every thread's stack: where a stuck stage is stuck
    faulthandler.register(signal.SIGUSR1, all_threads=True)
