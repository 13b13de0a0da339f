"""What every serve stage shares: addresses, sockets, stop signals, heartbeats.

A stage is a plain function ``run(cfg, addrs, ...)`` that loops until
:class:`StopFlag` is set by SIGTERM/SIGINT or its parent dies; sockets live in
a :func:`zmq_context` so nothing leaks when it returns. Addresses left empty
in the config are the home's private ``ipc://`` sockets
(:mod:`hydra.serve.instance`); TCP beyond loopback gets CURVE
(:mod:`hydra.serve.security`).
"""

from __future__ import annotations

import contextlib
import faulthandler
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import zmq

from hydra.config import HydraConfig
from hydra.serve.instance import InUseError, check_free, default_address
from hydra.serve.messages import Pulse, encode_message
from hydra.serve.security import Curve, needs_curve

log = logging.getLogger("hydra.serve")

HEARTBEAT_S = 5.0
PARENT_ENV = "HYDRA_SERVE_PARENT"  # set by the supervisor for its stages: the pid they must not outlive
PEER_TIMEOUT_S = 20
ORPHAN_GRACE_S = 12.0  # a stage whose supervisor died stops within this, cleanly or not
EXIT_ORPHANED = 70


@dataclass(frozen=True)
class Addresses:
    """The four socket addresses of a deployment (config values unless overridden)."""

    frontend: str
    backend: str
    keeper: str
    control: str

    @classmethod
    def from_config(cls, cfg: HydraConfig, **overrides: str | None) -> Addresses:
        """The configured addresses; an empty one is this home's private ipc socket."""
        s = cfg.serve
        values = {
            "frontend": s.balancer_frontend,
            "backend": s.balancer_backend,
            "keeper": s.keeper_address,
            "control": s.control_address,
        }
        values.update({k: v for k, v in overrides.items() if v})
        return cls(**{k: v or default_address(cfg, k) for k, v in values.items()})

    def named(self) -> list[tuple[str, str]]:
        """(config key, address) of the four sockets, for messages that name them."""
        return [
            ("serve.balancer_frontend", self.frontend),
            ("serve.balancer_backend", self.backend),
            ("serve.keeper_address", self.keeper),
            ("serve.control_address", self.control),
        ]

    def as_args(self) -> list[str]:
        """Command-line options that reproduce these addresses in a child process."""
        return [
            "--frontend", self.frontend,
            "--backend", self.backend,
            "--keeper", self.keeper,
            "--control", self.control,
        ]  # fmt: skip


class StopFlag:
    """Set by SIGTERM/SIGINT, or when the parent process is gone; stages check it between iterations.

    The parent check is what keeps a stage from outliving a supervisor that
    was killed with SIGKILL (besides ``PR_SET_PDEATHSIG``): the parent pid
    changes when the parent dies, to 1 or a subreaper. Only a stage that the
    supervisor started (``HYDRA_SERVE_PARENT`` names its parent) watches; one
    started by hand from a shell may outlive that shell.

    :meth:`install` also starts a watcher thread for such a stage, because
    nobody is left to escalate once the supervisor is gone: the stage gets
    ``ORPHAN_GRACE_S`` to stop cleanly (the Keeper's last commit), then the
    watcher writes every thread's traceback to the log and ends the process.
    Nothing is lost: an image whose row was not committed stays in the input
    directory.
    """

    def __init__(self, grace_s: float | None = None) -> None:
        self.stopped = False
        self.signal: int | None = None
        self.grace_s = ORPHAN_GRACE_S if grace_s is None else grace_s
        parent = os.getppid()
        self.parent = parent if os.environ.get(PARENT_ENV) == str(parent) else None

    def install(self) -> StopFlag:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)
        if self.parent is not None:
            threading.Thread(target=self._watch_parent, name="parent-watch", daemon=True).start()
        return self

    def _handle(self, signum: int, _frame: Any) -> None:
        self.stopped = True
        self.signal = signum

    def set(self) -> None:
        self.stopped = True

    def orphaned(self) -> bool:
        return self.parent is not None and os.getppid() != self.parent

    def _watch_parent(self) -> None:  # pragma: no cover - runs in a stage process
        while not self.orphaned():
            time.sleep(0.25)
        self.stopped = True
        time.sleep(self.grace_s)
        log.error("the parent process %d is gone and this stage did not stop in %.0f s; exiting",
                  self.parent, self.grace_s)  # fmt: skip
        with contextlib.suppress(Exception):
            faulthandler.dump_traceback(all_threads=True)
        os._exit(EXIT_ORPHANED)

    def __bool__(self) -> bool:
        if not self.stopped and self.orphaned():
            log.warning("the parent process %d is gone; stopping", self.parent)
            self.stopped = True
        return self.stopped


_CURVES: dict[int, Curve] = {}


@contextmanager
def zmq_context(cfg: HydraConfig | None = None) -> Iterator[zmq.Context]:
    """A private ZeroMQ context whose sockets are closed (linger 1 s) on exit.

    With ``cfg``, sockets on addresses beyond loopback get CURVE with that home's keys.
    """
    ctx = zmq.Context()
    if cfg is not None:
        _CURVES[id(ctx)] = Curve(cfg)
    try:
        yield ctx
    finally:
        curve = _CURVES.pop(id(ctx), None)
        if curve is not None:
            curve.close()
        ctx.destroy(linger=1000)


def connect_address(address: str) -> str:
    """Where to connect for a bound ``address``: a wildcard host means this host."""
    for wild in ("tcp://0.0.0.0:", "tcp://*:"):
        if address.startswith(wild):
            return "tcp://127.0.0.1:" + address[len(wild) :]
    return address


def make_socket(
    ctx: zmq.Context, kind: int, address: str, *, bind: bool, hwm: int = 10000, identity: bytes | None = None
) -> zmq.Socket:
    """A socket bound or connected to ``address`` with our defaults.

    TCP keepalive lets the kernel notice a peer that vanished without closing
    its connection (a crashed remote host) within about ``PEER_TIMEOUT_S``.
    (ZMTP heartbeats would do it too, but libzmq 4.3 aborts when one times
    out on a connection whose input is paused by the high-water mark.)
    An address beyond loopback is CURVE (the context must know the config);
    a bind to an address that is taken raises :class:`InUseError`.
    """
    if bind and address.startswith("ipc://"):
        check_free(address, "socket")
        os.makedirs(os.path.dirname(address[len("ipc://") :]), mode=0o700, exist_ok=True)
    sock = ctx.socket(kind)
    if needs_curve(address):
        curve = _CURVES.get(id(ctx))
        if curve is None:
            sock.close(linger=0)
            raise ValueError(f"{address} leaves this host: it needs CURVE, so zmq_context(cfg)")
        if bind:
            curve.server(ctx, sock)
        else:
            curve.client(sock)
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
    try:
        if bind:
            sock.bind(address)
        else:
            sock.connect(connect_address(address))
    except zmq.ZMQError as exc:
        sock.close(linger=0)
        if exc.errno == zmq.EADDRINUSE:
            raise InUseError(
                f"{address} is in use by another process; stop it or choose another address"
            ) from None
        raise
    return sock


class HeartbeatSender:
    """Sends a :class:`Pulse` to the Keeper every few seconds."""

    def __init__(
        self, sock: zmq.Socket, process: str, every_s: float = HEARTBEAT_S, instance: str = ""
    ) -> None:
        self.sock = sock
        self.process = process
        self.every_s = every_s
        self.last = 0.0
        self.host = socket.gethostname()
        self.instance = instance

    def maybe_send(self, info: dict[str, Any], *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < self.every_s:
            return
        self.last = now
        if not self.instance:
            return  # a remote worker that has not met its Balancer yet: nobody to report to
        hb = Pulse(process=self.process, pid=os.getpid(), host=self.host, info=info, instance=self.instance)
        with contextlib.suppress(zmq.Again):  # the Keeper is busy or gone; the next beat will do
            self.sock.send_multipart(encode_message(hb), flags=zmq.NOBLOCK, copy=False)


def setup_logging(stage: str, level: str | None = None) -> None:
    """One log line format for every stage, naming the stage and pid."""
    logging.basicConfig(
        level=(level or os.environ.get("HYDRA_LOG_LEVEL", "INFO")).upper(),
        format=f"%(asctime)s {stage}[%(process)d] %(levelname)s %(message)s",
    )
    for noisy in ("alembic", "watchdog", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # ``kill -USR1 PID`` prints every thread's stack: where a stuck stage is stuck
    with contextlib.suppress(ValueError, OSError):  # stderr is no file (captured): no stack dumps
        faulthandler.register(signal.SIGUSR1, all_threads=True)


class Dropped:
    """Messages dropped as malformed or of another instance, counted by reason.

    Logged at most once a second (a flood of garbage must not flood the log);
    the counts travel in the stage's heartbeat (``dropped_malformed``,
    ``dropped_foreign``) to the Keeper's metrics.
    """

    def __init__(self) -> None:
        self.counts: dict[str, int] = {"malformed": 0, "foreign": 0}
        self._next_log: dict[str, float] = {}
        self._quiet: dict[str, int] = {}

    def __call__(self, reason: str, detail: str) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1
        now = time.monotonic()
        if now < self._next_log.get(reason, 0.0):
            self._quiet[reason] = self._quiet.get(reason, 0) + 1
            return
        quiet = self._quiet.pop(reason, 0)
        more = f" (and {quiet} more since the last report)" if quiet else ""
        log.warning("dropped a %s message: %s%s", reason, detail[:300], more)
        self._next_log[reason] = now + 1.0

    def gauges(self) -> dict[str, int]:
        return {f"dropped_{k}": v for k, v in self.counts.items()}
