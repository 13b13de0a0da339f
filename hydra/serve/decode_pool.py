"""Decode processes for the Feeder: read, check, decode and prepare files on every core.

Decoding and resizing a plot costs milliseconds of CPU, most of it holding
the GIL, so threads in the Feeder process do not scale with cores. A
:class:`DecodePool` runs ``processes`` worker processes (started with the
``forkserver`` method where there is one, else ``spawn``: the Feeder has
ZeroMQ sockets and threads and is never forked). Each worker runs
:func:`decode_file` on the jobs it is sent and writes the prepared pixels into
a shared-memory slot that the pool lent to the job; the parent copies them out
and lends the slot again. The slots are a small ring (``depth`` per worker) of
blocks sized to the largest model input seen so far (a slot grows when a
job needs more).

Everything that can go wrong with a file comes back as a value
(:class:`Decoded`), never as an exception that stops the pool. A worker
that dies (killed, crashed inside a decoder) is replaced and the file it was
working on is tried once more in the new worker; only a file on which a
worker dies twice is reported as ``decoder_crash`` (the Feeder quarantines
it). A worker answers all the jobs of one message (up to ``depth``) with
one message, not one per file; so when a worker dies holding several
files, which one killed it is not known: none is blamed, and each is sent
again alone (a *suspect*), where a death names its file. A worker that
dies before it is ready (a broken installation) is a fault of the server:
its files are not blamed, and it is restarted with a backoff. A worker that
has not answered for ``task_timeout_s`` is killed, which counts as a crash
(of the file, once it is alone). :meth:`DecodePool.close` stops the workers
and unlinks every block; if the Feeder itself is killed, the workers see
their pipe close and exit, and multiprocessing's resource tracker unlinks
the blocks.

Example:
    >>> with DecodePool(2) as pool:                               # doctest: +SKIP
    ...     pool.submit(DecodeJob("plot.png", size=(299, 299)), tag="plot.png")
    ...     while not (done := pool.collect(timeout=1.0)):
    ...         pass
    >>> done[0][1].pixels.shape                                   # doctest: +SKIP
    (299, 299, 3)
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import multiprocessing as mp
import os
import select
import signal
import time
import traceback
import uuid
from collections import deque
from dataclasses import dataclass, field
from multiprocessing import shared_memory
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from hydra.data.images import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_PIXELS,
    ImageError,
    content_hash,
    decode_image,
    prepare,
    read_bytes,
    source_key,
)

log = logging.getLogger("hydra.serve.decode")

MAX_DEFAULT_DECODERS = 16
SLOT_BYTES = 299 * 299 * 3  # the production input (inception_v3 at 299 px, RGB); a larger one grows its slot
SHM_PREFIX = "hydra-dec-"
RESTART_BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def default_decoders() -> int:
    """One decode process per usable core, at most ``MAX_DEFAULT_DECODERS``."""
    return max(1, min(MAX_DEFAULT_DECODERS, usable_cores()))


@dataclass(frozen=True)
class DecodeJob:
    """One file to read and check, and the model input to prepare (``size`` None: decode only)."""

    path: str
    max_bytes: int = DEFAULT_MAX_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    size: tuple[int, int] | None = None  # (height, width)
    channels: int = 3
    mask: tuple[tuple[float, ...], ...] = ()

    @property
    def nbytes(self) -> int:
        """The size of the prepared pixels (uint8)."""
        return self.size[0] * self.size[1] * self.channels if self.size else 0


@dataclass
class Decoded:
    """What became of one :class:`DecodeJob`.

    ``status`` is ``ok`` (``pixels`` hold the prepared input, or None for a
    decode-only job), ``missing`` (the file is gone), ``error`` (a bad input:
    ``kind`` and ``message`` as :class:`~hydra.data.images.ImageError` says;
    ``key`` when the file could be read), ``crashed`` (a decoder process died
    twice on this file: kind ``decoder_crash``) or ``failed`` (an unexpected
    failure that is no fault of the file, e.g. a read error of the disk:
    ``message`` holds the traceback).
    """

    status: str
    digest: str = ""
    key: str = ""
    pixels: np.ndarray | None = None
    image_size: tuple[int, int] = (0, 0)  # (width, height) of the file's image
    kind: str = ""
    message: str = ""
    started: float = 0.0  # wall-clock time the decoder took the job
    finished: float = 0.0
    slot_shape: tuple[int, ...] | None = None  # set by a worker that wrote the pixels into its slot


def decode_file(job: DecodeJob) -> Decoded:
    """Read, hash, decode and (if ``job.size``) prepare one file; a bad input is a value.

    The judgement of a file is the Feeder's: the same limits, error kinds and
    messages whether it runs here, in a decode process or in a test.
    """
    t0 = time.time()
    name = os.path.basename(job.path)
    try:
        data = read_bytes(job.path, job.max_bytes)
    except FileNotFoundError:  # removed between the size check and the read
        return Decoded("missing", started=t0, finished=time.time())
    except ImageError as exc:
        if exc.kind == "missing":
            return Decoded("missing", started=t0, finished=time.time())
        return Decoded("error", kind=exc.kind, message=str(exc), started=t0, finished=time.time())
    digest = content_hash(data)
    key = source_key(name, digest)
    try:
        img = decode_image(data, name, job.max_pixels)
        size = img.size
        pixels = prepare(img, job.size, job.channels, job.mask or None) if job.size else None
    except ImageError as exc:
        return Decoded(
            "error", digest, key, kind=exc.kind, message=str(exc), started=t0, finished=time.time()
        )
    except Exception as exc:  # noqa: BLE001 - any other decoder failure is a bad input too
        msg = f"{name}: cannot be prepared ({exc})"
        return Decoded("error", digest, key, kind="not_image", message=msg, started=t0, finished=time.time())
    return Decoded("ok", digest, key, pixels, size, started=t0, finished=time.time())


# ---------------------------------------------------------------- the worker process


def _worker_main(conn: Connection) -> None:
    """A decode process: jobs in, :class:`Decoded` out, pixels through the lent slot."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the Feeder decides
    blocks: dict[str, shared_memory.SharedMemory] = {}
    try:
        conn.send(("ready", os.getpid()))
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):  # the Feeder is gone
                return
            if msg is None:
                return
            answers = []
            for task_id, job, slot_name, slot_bytes in msg:  # a batch, answered in one message, in order
                try:
                    res = decode_file(job)
                    if res.pixels is not None and slot_name and res.pixels.nbytes <= slot_bytes:
                        block = blocks.get(slot_name)
                        if block is None:
                            block = blocks[slot_name] = _attach(slot_name, blocks)
                        view = np.ndarray(res.pixels.shape, np.uint8, buffer=block.buf)
                        view[...] = res.pixels
                        del view
                        res.slot_shape, res.pixels = res.pixels.shape, None
                except Exception:  # noqa: BLE001 - never let one file stop the worker
                    res = Decoded("failed", message=traceback.format_exc(), finished=time.time())
                answers.append((task_id, res))
            try:
                conn.send(answers)
            except (BrokenPipeError, OSError):
                return
    finally:
        for block in blocks.values():
            with contextlib.suppress(Exception):
                block.close()


def _attach(name: str, blocks: dict[str, shared_memory.SharedMemory]) -> shared_memory.SharedMemory:
    """Open a slot's block; forget blocks the pool replaced (grown), keeping the open set small."""
    if len(blocks) > 64:
        for old in list(blocks)[:32]:
            with contextlib.suppress(Exception):
                blocks.pop(old).close()
    return shared_memory.SharedMemory(name=name)


# ---------------------------------------------------------------- the pool (in the Feeder)


@dataclass
class _Task:
    id: int
    job: DecodeJob
    tag: Any
    crashes: int = 0
    slot: int | None = None
    suspect: bool = False  # its worker died holding it among others: it goes alone from now on


@dataclass
class _Worker:
    index: int
    proc: Any = None  # multiprocessing.Process, None while waiting to restart
    conn: Connection | None = None
    ready: bool = False
    tasks: deque[_Task] = field(default_factory=deque)
    head_since: float = 0.0  # when the oldest task became the one it works on
    restart_at: float = 0.0
    failed_starts: int = 0


def _default_context() -> str:
    return "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"


class DecodePool:
    """``processes`` decode processes fed by one parent; see the module's docstring.

    Not thread-safe: one thread (the Feeder's loop) submits and collects.

    Args:
        processes: number of worker processes.
        depth: jobs sent ahead to each worker (several keep it busy while
            the parent collects, and go out in one message).
        slot_bytes: initial size of each shared-memory slot.
        task_timeout_s: a worker silent for longer (on one message) is killed.
        context: multiprocessing start method (default forkserver, else spawn).
    """

    def __init__(
        self,
        processes: int,
        *,
        depth: int = 4,
        slot_bytes: int = SLOT_BYTES,
        task_timeout_s: float = 60.0,
        context: str | None = None,
    ) -> None:
        self.processes = max(1, int(processes))
        self.depth = max(1, int(depth))
        self.task_timeout_s = task_timeout_s
        self.prefix = f"{SHM_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:6]}-"
        method = context or _default_context()
        self.ctx = mp.get_context(method)
        if method == "forkserver":  # workers fork from a server that imported this (and the main script) once
            self.ctx.set_forkserver_preload(["__main__", __name__])
        self.replaced = 0  # workers that died and were replaced
        self.crashed = 0  # files given up after two crashes
        self._ids = itertools.count()
        self._pending: deque[_Task] = deque()
        self._done: list[tuple[Any, Decoded]] = []
        self._blocks: list[shared_memory.SharedMemory] = []
        self._free: list[int] = []
        self._closed = False
        self._workers: list[_Worker] = []
        self._poller = select.poll()  # the workers' pipes, registered once (cheaper than a wait() per call)
        self._by_fd: dict[int, _Worker] = {}
        try:
            for i in range(self.capacity):
                self._blocks.append(self._new_block(max(1, slot_bytes)))
                self._free.append(i)
            for i in range(self.processes):
                w = _Worker(i)
                self._start(w)
                self._workers.append(w)
        except BaseException:
            self.close()
            raise

    # -- public

    def __enter__(self) -> DecodePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def capacity(self) -> int:
        """Jobs the workers hold at most (``depth`` each); more wait in the pool."""
        return self.processes * self.depth

    def __len__(self) -> int:
        """Jobs submitted and not yet collected."""
        return len(self._pending) + sum(len(w.tasks) for w in self._workers) + len(self._done)

    def submit(self, job: DecodeJob, tag: Any = None) -> None:
        """Queue a job; its result comes back from :meth:`collect` with ``tag``."""
        if self._closed:
            raise RuntimeError("the decode pool is closed")
        self._pending.append(_Task(next(self._ids), job, tag))
        self._dispatch()

    def collect(self, timeout: float = 0.0) -> list[tuple[Any, Decoded]]:
        """The results that are ready, waiting up to ``timeout`` seconds for the first one."""
        if not self._done:
            self._receive(timeout)
        self._check_workers()
        self._dispatch()
        done, self._done = self._done, []
        return done

    def pids(self) -> list[int]:
        """The worker processes' ids (for tests and logs)."""
        return [w.proc.pid for w in self._workers if w.proc is not None and w.proc.pid]

    def block_names(self) -> list[str]:
        """The names of the shared-memory blocks in use (under /dev/shm on Linux)."""
        return [b.name for b in self._blocks]

    def close(self) -> None:
        """Stop the workers and unlink every shared-memory block. Jobs not collected are dropped."""
        if self._closed:
            return
        self._closed = True
        for w in self._workers:
            if w.conn is not None:
                with contextlib.suppress(Exception):
                    w.conn.send(None)
        deadline = time.monotonic() + 2.0
        for w in self._workers:
            if w.proc is not None:
                w.proc.join(max(0.0, deadline - time.monotonic()))
                if w.proc.is_alive():
                    w.proc.kill()
                    w.proc.join(1.0)
            self._close_conn(w)
        for block in self._blocks:
            self._drop_block(block)
        self._blocks.clear()
        self._pending.clear()

    # -- workers

    def _start(self, w: _Worker) -> None:
        parent, child = self.ctx.Pipe(duplex=True)
        try:
            proc = self.ctx.Process(
                target=_worker_main, args=(child,), name=f"hydra-decode-{w.index}", daemon=True
            )
            proc.start()
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
        w.proc, w.conn, w.ready, w.head_since = proc, parent, False, time.monotonic()
        self._poller.register(parent.fileno(), select.POLLIN)
        self._by_fd[parent.fileno()] = w

    def _close_conn(self, w: _Worker) -> None:
        if w.conn is None:
            return
        fd = w.conn.fileno()
        with contextlib.suppress(KeyError, ValueError):
            self._poller.unregister(fd)
        self._by_fd.pop(fd, None)
        w.conn.close()
        w.conn = None

    def _receive(self, timeout: float) -> None:
        if not self._by_fd:
            if timeout:
                time.sleep(min(timeout, 0.05))
            return
        now = time.monotonic()
        for w in self._by_fd.values():  # wake up in time to kill a worker stuck on a file
            if w.ready and w.tasks:
                timeout = min(timeout, max(0.0, w.head_since + self.task_timeout_s - now) + 0.001)
        events = self._poller.poll(math.ceil(max(0.0, timeout) * 1000))
        for _round in range(64):  # everything that is there, one message per worker and round
            if not events:
                return
            for fd, _event in events:
                w = self._by_fd.get(fd)
                if w is None or w.conn is None:
                    continue
                try:
                    self._answer(w, w.conn.recv())
                except (EOFError, OSError):  # it died, its pipe closed: _check_workers replaces it
                    self._close_conn(w)
            events = self._poller.poll(0)

    def _answer(self, w: _Worker, msg: Any) -> None:
        if isinstance(msg, tuple):  # ("ready", pid); answers come as a list
            w.ready, w.failed_starts, w.head_since = True, 0, time.monotonic()
            return
        for task_id, res in msg:  # the answers to one message, in order
            if not w.tasks or w.tasks[0].id != task_id:  # pragma: no cover - a protocol bug
                log.error("decode worker %d answered task %s out of order; ignored", w.index, task_id)
                continue
            task = w.tasks.popleft()
            if res.slot_shape is not None:
                block = self._blocks[task.slot]
                res.pixels = np.ndarray(res.slot_shape, np.uint8, buffer=block.buf).copy()
                res.slot_shape = None
            self._release(task)
            self._done.append((task.tag, res))
        w.head_since = time.monotonic()

    def _check_workers(self) -> None:
        now = time.monotonic()
        for w in self._workers:
            if w.proc is None:
                if not self._closed and now >= w.restart_at:
                    self._restart(w)
                continue
            if w.ready and w.tasks and now - w.head_since > self.task_timeout_s:
                log.error("%s: still decoding after %.0f s; killing decoder %d",
                          os.path.basename(w.tasks[0].job.path), self.task_timeout_s, w.index)  # fmt: skip
                w.proc.kill()
                w.proc.join(1.0)
                self._replace(w)
            elif w.conn is None:  # a death shows as the end of its pipe; no polling of the process
                self._replace(w)

    def _replace(self, w: _Worker) -> None:
        """Restart a dead worker; try its current file once more, or give it up after a second death."""
        proc = w.proc
        proc.join(0.5)
        code = proc.exitcode
        if w.conn is not None:
            with contextlib.suppress(Exception):  # drain answers sent just before it died
                while w.conn.poll():
                    self._answer(w, w.conn.recv())
            self._close_conn(w)
        tasks, w.tasks = list(w.tasks), deque()
        how = f"signal {-code}" if code is not None and code < 0 else f"status {code}"
        if w.ready and len(tasks) > 1:  # which of them killed it is not known: each goes again, alone
            for task in tasks:
                task.suspect = True
            log.warning("decoder %d died (%s) holding %d files; sending each again alone",
                        w.index, how, len(tasks))  # fmt: skip
        elif w.ready and tasks:
            head = tasks[0]
            head.crashes += 1
            name = os.path.basename(head.job.path)
            if head.crashes >= 2:
                self.crashed += 1
                tasks = tasks[1:]
                self._release(head)
                log.error("%s: decoder %d died on it again (%s); giving it up", name, w.index, how)
                msg = f"{name}: the decoder process died twice while decoding it ({how})"
                self._done.append((head.tag, Decoded("crashed", kind="decoder_crash", message=msg)))
            else:
                log.warning("%s: decoder %d died (%s); trying it again in a new one", name, w.index, how)
        elif not w.ready:
            log.error("decoder %d died before it was ready (%s)", w.index, how)
        for task in tasks:
            self._release(task)
        self._pending.extendleft(reversed(tasks))
        self.replaced += 1
        w.proc, w.conn = None, None
        if w.ready:
            w.failed_starts = 0
            self._restart(w)
        else:  # a broken start is the server's fault: back off, blame no file
            self._back_off(w)

    def _restart(self, w: _Worker) -> None:
        try:
            self._start(w)
        except Exception as exc:  # noqa: BLE001 - no process could be made (limits, memory): try later
            log.error("cannot start decoder %d (%s)", w.index, exc)
            w.proc, w.conn = None, None
            self._back_off(w)

    def _back_off(self, w: _Worker) -> None:
        w.failed_starts += 1
        w.restart_at = time.monotonic() + RESTART_BACKOFF_S[min(w.failed_starts, len(RESTART_BACKOFF_S)) - 1]

    # -- slots

    def _new_block(self, size: int) -> shared_memory.SharedMemory:
        return shared_memory.SharedMemory(name=f"{self.prefix}{uuid.uuid4().hex[:8]}", create=True, size=size)

    @staticmethod
    def _drop_block(block: shared_memory.SharedMemory) -> None:
        with contextlib.suppress(Exception):
            block.close()
        with contextlib.suppress(FileNotFoundError):
            block.unlink()

    def _release(self, task: _Task) -> None:
        if task.slot is not None:
            self._free.append(task.slot)
            task.slot = None

    def _dispatch(self) -> None:
        """Hand pending jobs to the least busy workers: one message per worker for all it gets now."""
        batches: dict[int, list[_Task]] = {}
        while self._pending and self._free:
            live = [w for w in self._workers if self._takes(w, self._pending[0])]
            if not live:
                break
            w = min(live, key=lambda x: len(x.tasks))
            task = self._pending.popleft()
            slot = self._free.pop()
            if self._blocks[slot].size < task.job.nbytes:  # a larger model input than so far: grow
                self._drop_block(self._blocks[slot])
                self._blocks[slot] = self._new_block(task.job.nbytes)
            task.slot = slot
            if not w.tasks:
                w.head_since = time.monotonic()
            w.tasks.append(task)
            batches.setdefault(w.index, []).append(task)
        for index, batch in batches.items():
            w = self._workers[index]
            if w.conn is None:  # pragma: no cover - closed above; nothing was sent
                continue
            items = [(t.id, t.job, self._blocks[t.slot].name, self._blocks[t.slot].size) for t in batch]
            try:
                w.conn.send(items)
            except (BrokenPipeError, OSError):  # it died; these tasks never left: _check_workers replaces it
                for _ in batch:
                    w.tasks.pop()
                for task in reversed(batch):
                    self._release(task)
                    self._pending.appendleft(task)
                self._close_conn(w)

    def _takes(self, w: _Worker, task: _Task) -> bool:
        """Whether ``w`` can be sent ``task`` now: a suspect goes to an idle worker, and nothing with it."""
        if w.conn is None:
            return False
        if not w.tasks:
            return True
        return not (task.suspect or w.tasks[0].suspect) and len(w.tasks) < self.depth

    def submit_many(self, jobs: list[tuple[DecodeJob, Any]]) -> None:
        """Queue several ``(job, tag)`` at once: each worker gets its share in one message."""
        if self._closed:
            raise RuntimeError("the decode pool is closed")
        for job, tag in jobs:
            self._pending.append(_Task(next(self._ids), job, tag))
        self._dispatch()
