"""The supervisor behind ``hydra-serve``: one child process per stage.

Used as a context manager so that whatever happens (an exception, a signal)
every child it started is stopped when the block ends. It holds the home's
lock (:class:`hydra.serve.instance.HomeLock`) and checks every address it
will bind before it starts anything, so a second instance on the same home,
or one whose port is taken, stops at once with one line saying why instead
of crash-looping. A stage that exits with ``EXIT_IN_USE`` (its address was
taken after all) stops the whole instance the same way. Children die with
the supervisor however it dies: ``PR_SET_PDEATHSIG``, and each stage also
watches its parent pid.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import zmq

from hydra.config import HydraConfig
from hydra.serve.devices import cpu_threads, worker_devices
from hydra.serve.instance import EXIT_IN_USE, HomeLock, InUseError, check_free, instance_id
from hydra.serve.messages import Event, encode_message
from hydra.serve.stage import PARENT_ENV, Addresses, StopFlag, make_socket, zmq_context

log = logging.getLogger("hydra.serve.supervisor")

STOP_TIMEOUT_S = 30.0
CRASH_WINDOW_S = 30.0
GPU_WORKER_THREADS = 2  # torch threads of a GPU worker unless serve.torch_threads says otherwise


@dataclass
class Child:
    """One supervised stage process."""

    name: str
    argv: list[str]
    proc: subprocess.Popen | None = None
    restarts: int = 0
    crashes: list[float] = field(default_factory=list)
    next_start: float = 0.0

    def start(self) -> None:
        # its own process group: a terminal's Ctrl-C reaches the supervisor only, which
        # then stops the stages in pipeline order; PDEATHSIG stops them if it is killed
        env = dict(os.environ, **{PARENT_ENV: str(os.getpid())})
        self.proc = subprocess.Popen(self.argv, preexec_fn=_child_setup, env=env)
        log.info("started %s (pid %d)", self.name, self.proc.pid)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Supervisor:
    """Starts Keeper, Balancer, the workers and the Feeder; restarts the ones that die.

    The workers: one per visible GPU, each on its own ``cuda:i``, or
    ``serve.workers`` on the CPU (:func:`hydra.serve.devices.worker_devices`).
    """

    def __init__(
        self,
        cfg: HydraConfig,
        addrs: Addresses,
        *,
        extra_args: list[str] | None = None,
        decoders: int | None = None,
        threads: int | None = None,
    ) -> None:
        from hydra.serve.launcher import serve_command

        self.cfg = cfg
        self.addrs = addrs
        self.stop = StopFlag()
        self.lock = HomeLock(cfg)
        self.instance = instance_id(cfg)
        self.exit_code = 0
        base = [*serve_command()]
        common = [*addrs.as_args(), "--instance", self.instance, *(extra_args or [])]
        s = cfg.serve
        # one worker per visible GPU (serve.device auto/cuda), else serve.workers; ConfigError if
        # the configured GPU is not here
        self.devices = worker_devices(s.device, s.workers)
        feeder_args = ["--decoders", str(decoders)] if decoders else []
        self.children = [Child("keeper", [*base, "keeper", *common])]
        self.children.append(Child("balancer", [*base, "balancer", *common, "--policy", s.policy]))
        for i, device in enumerate(self.devices):
            name = f"predict-{i}"
            if threads is not None:
                n = threads
            elif device == "cpu":
                n = cpu_threads(len(self.devices), s.torch_threads)
            else:  # the GPU does the work; the cores are the Feeder's, to decode
                n = s.torch_threads or GPU_WORKER_THREADS
            args = ["--device", device, "--threads", str(n), "--policy", s.policy, "--name", name]
            if s.compile:
                args.append("--compile")
            self.children.append(Child(name, [*base, "predict", *common, *args]))
        self.children.append(Child("feeder", [*base, "feeder", *common, *feeder_args]))
        self._ctx: zmq.Context | None = None
        self._events: zmq.Socket | None = None

    def __enter__(self) -> Supervisor:
        """Take the home's lock and check the addresses (raising :class:`InUseError`), then start."""
        self.lock.__enter__()
        try:
            for key, address in self.addrs.named():
                check_free(address, key)
        except InUseError:
            self.lock.__exit__()
            raise
        self.stop.install()
        self.cfg.ensure_dirs()
        self._prepare_database()
        self._zmq = zmq_context(self.cfg)
        self._ctx = self._zmq.__enter__()
        self._events = make_socket(self._ctx, zmq.PUSH, self.addrs.keeper, bind=False)
        for child in self.children:
            child.start()
        log.info("serving %s with %d local workers (%s; %s); Ctrl-C stops", self.cfg.input_dir,
                 len(self.devices), ", ".join(self.devices) or "none", self.cfg.serve.policy)  # fmt: skip
        return self

    def _prepare_database(self) -> None:
        from hydra.db import make_engine, upgrade_to_head

        engine = make_engine(self.cfg.database_url)
        try:
            upgrade_to_head(engine)
        except Exception as exc:  # noqa: BLE001 - the Keeper retries; serving must start anyway
            log.warning("database not ready (%s); the Keeper will retry", exc.__class__.__name__)
        finally:
            engine.dispose()

    def run(self) -> int:
        """Supervise until SIGINT/SIGTERM; the exit status for the command."""
        while not self.stop:
            time.sleep(0.2)
            now = time.monotonic()
            for child in self.children:
                if child.alive or self.stop:
                    continue
                if child.next_start == 0.0:
                    code = child.proc.returncode if child.proc else None
                    if code == EXIT_IN_USE:
                        log.error("%s cannot bind its address (see its error above); stopping this instance",
                                  child.name)  # fmt: skip
                        self.exit_code = EXIT_IN_USE
                        self.stop.set()
                        break
                    child.crashes = [t for t in child.crashes if now - t < CRASH_WINDOW_S] + [now]
                    delay = 0.5 * 2 ** (len(child.crashes) - 1) if len(child.crashes) > 1 else 0.0
                    child.next_start = now + min(delay, 30.0)
                    log.error("%s exited with status %s; restarting in %.1f s", child.name, code, delay)
                if now >= child.next_start:
                    child.next_start = 0.0
                    child.restarts += 1
                    child.start()
                    self._event(Event("restart", child.name, f"restart #{child.restarts}"))
        log.info("stopping (signal %s)", self.stop.signal)
        return self.exit_code

    def _event(self, event: Event) -> None:
        event.instance = self.instance
        if self._events is not None:
            with contextlib.suppress(zmq.Again):
                self._events.send_multipart(encode_message(event), flags=zmq.NOBLOCK)

    def restarts(self) -> dict[str, int]:
        return {c.name: c.restarts for c in self.children}

    def __exit__(self, *exc: object) -> None:
        order = [
            [c for c in self.children if c.name == "feeder"],
            [c for c in self.children if c.name not in ("feeder", "keeper")],
            [c for c in self.children if c.name == "keeper"],
        ]
        for group in order:
            _terminate(group)
        if self._events is not None:
            self._events.close(linger=0)
        if self._ctx is not None:
            self._zmq.__exit__(None, None, None)
        self.lock.__exit__()
        log.info("all stages stopped")


def _child_setup() -> None:  # pragma: no cover - runs in the child
    os.setpgrp()
    die_with_parent()


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Have Linux send this process ``sig`` when its parent dies (``PR_SET_PDEATHSIG``); elsewhere nothing.

    SIGKILL for a process whose libraries catch SIGTERM (Lightning's trainer does).
    """
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(sig))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _terminate(children: list[Child]) -> None:
    """SIGTERM a group of children, wait, then SIGKILL the ones that linger."""
    for c in children:
        if c.alive:
            c.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for c in children:
        if c.proc is None:
            continue
        try:
            c.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.error("%s did not stop within %.0f s; killing it", c.name, STOP_TIMEOUT_S)
            c.proc.kill()
            c.proc.wait()


def stage_pids(supervisor_pid: int) -> dict[str, int]:
    """Stage name -> pid of a ``hydra-serve`` supervisor's live stage processes (read from /proc)."""
    found: dict[str, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) != supervisor_pid or fields[0] == "Z":
            continue
        if "--name" in argv:
            found[argv[argv.index("--name") + 1]] = int(entry)
        else:
            for stage in ("keeper", "balancer", "feeder"):
                if stage in argv:
                    found[stage] = int(entry)
    return found
