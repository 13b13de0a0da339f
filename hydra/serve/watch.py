"""Finding complete files in the input directory.

Three sources feed one set of candidates: file system events (inotify read
directly on Linux, else watchdog's observer; watchdog's polling observer for
network file systems), a scan at start and a periodic rescan. A file counts
as complete when it was closed after writing or renamed into the directory
(from within it or from elsewhere: a rename moves a whole file), or when it
ends the way its format ends (a PNG's IEND chunk, a JPEG's end marker);
otherwise (polling, the scans, a damaged file) when its size and mtime have
not changed for ``settle_ms``.

The direct inotify reader watches only what makes a candidate (created,
modified, closed after writing, moved in), so the Keeper's moves out of the
directory cost the Feeder nothing, and it makes no Python object per event
beyond the path it queues.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import queue
import select
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from watchdog.events import FileClosedEvent, FileMovedEvent, FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

IGNORED_SUFFIXES = (".tmp", ".part", ".partial", ".swp")
PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"
JPEG_END = b"\xff\xd9"


def ends_complete(path: str) -> bool:
    """Whether the file ends with its format's end marker (written to the end)."""
    return _tail_check(path)[1]


def _tail_check(path: str) -> tuple[os.stat_result | None, bool]:
    """The file's status (None: it is gone or unreadable) and whether it ends with an end marker.

    One open, fstat and positioned read: the settle check's only syscalls for a new file.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None, False
    try:
        st = os.fstat(fd)
        if st.st_size < len(PNG_END):
            return st, False
        tail = os.pread(fd, len(PNG_END), st.st_size - len(PNG_END))
    except OSError:
        return None, False
    finally:
        os.close(fd)
    return st, tail == PNG_END or tail.endswith(JPEG_END)


def ignored(name: str) -> bool:
    """Hidden and temporary files are someone's work in progress, not input."""
    return name.startswith(".") or name.endswith(IGNORED_SUFFIXES)


class _Handler(FileSystemEventHandler):
    def __init__(self, events: queue.SimpleQueue) -> None:
        self.events = events

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            return
        if isinstance(event, FileMovedEvent):
            self.events.put((os.fsdecode(event.dest_path), True))
        elif isinstance(event, FileClosedEvent):
            self.events.put((os.fsdecode(event.src_path), True))
        elif event.event_type in ("created", "modified"):
            self.events.put((os.fsdecode(event.src_path), False))


MOVE_PAIRING_S = 0.01


def _short_move_pairing() -> None:
    """Hold unpaired IN_MOVED_FROM events 10 ms, not watchdog's 0.5 s.

    watchdog keeps every event in one FIFO and holds a "moved from" event to
    pair it with its "moved to"; the Keeper moves each processed file out of
    the input directory, so each of those moves would hold up every new file
    behind it by half a second. The pair of a rename arrives in the same
    inotify read, so 10 ms is plenty.
    """
    try:
        from watchdog.observers.inotify_move_event_grouper import InotifyMoveEventGrouper
    except ImportError:  # another platform or watchdog version: nothing to shorten
        return
    InotifyMoveEventGrouper.delay = MOVE_PAIRING_S


_IN_MODIFY = 0x00000002
_IN_CLOSE_WRITE = 0x00000008
_IN_MOVED_TO = 0x00000080
_IN_CREATE = 0x00000100
_IN_Q_OVERFLOW = 0x00004000
_IN_ISDIR = 0x40000000
_IN_ONLYDIR = 0x01000000
_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_WATCH_MASK = _IN_MODIFY | _IN_CLOSE_WRITE | _IN_MOVED_TO | _IN_CREATE | _IN_ONLYDIR
_COMPLETE = _IN_CLOSE_WRITE | _IN_MOVED_TO
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then the name, NUL-padded to len


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6", use_errno=True)
        libc.inotify_init1  # noqa: B018 - present only on Linux
        libc.inotify_add_watch  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


class InotifyWatcher:
    """A thread that reads inotify events of one directory and queues ``(path, complete)``.

    Closed after writing or moved in: complete; created or modified: a
    candidate to settle. An overflow of the kernel's queue queues every file
    of a scan (to settle), as the periodic rescan would.
    """

    def __init__(self, directory: Path, events: queue.SimpleQueue, libc: ctypes.CDLL) -> None:
        self.directory = str(directory)
        self.events = events
        self.fd = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if self.fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        if libc.inotify_add_watch(self.fd, os.fsencode(self.directory), _WATCH_MASK) < 0:
            err = ctypes.get_errno()
            os.close(self.fd)
            raise OSError(err, f"{self.directory}: {os.strerror(err)}")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hydra-inotify", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            os.close(self.fd)

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        put, join, fsdecode, unpack_from, size = (
            self.events.put,
            os.path.join,
            os.fsdecode,
            _EVENT.unpack_from,
            _EVENT.size,
        )
        directory = self.directory
        while not self._stop.is_set():
            if not poller.poll(200):
                continue
            try:
                buf = os.read(self.fd, 1 << 16)
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EINTR):
                    continue
                raise
            pos, end = 0, len(buf)
            while pos < end:
                _wd, mask, _cookie, length = unpack_from(buf, pos)
                start = pos + size
                pos = start + length
                if mask & _IN_Q_OVERFLOW:
                    for path in scan(Path(directory)):
                        put((path, False))
                    continue
                if mask & _IN_ISDIR or not length:
                    continue
                name = buf[start:pos].rstrip(b"\0")
                put((join(directory, fsdecode(name)), bool(mask & _COMPLETE)))


@contextmanager
def observe(directory: Path, *, polling: bool, events: queue.SimpleQueue) -> Iterator[None]:
    """Watch ``directory`` (not recursively) while the context is open."""
    libc = None if polling else _libc()
    if libc is not None:
        watcher = InotifyWatcher(directory, events, libc)
        watcher.start()
        try:
            yield
        finally:
            watcher.stop()
        return
    if not polling:
        _short_move_pairing()
    observer = PollingObserver(timeout=0.5) if polling else Observer()
    observer.schedule(_Handler(events), str(directory), recursive=False)
    observer.start()
    try:
        yield
    finally:
        observer.stop()
        observer.join(timeout=5)


class Settler:
    """Candidates whose completeness is judged by a stable size and mtime."""

    def __init__(self, settle_ms: float) -> None:
        self.settle_s = settle_ms / 1000.0
        self._seen: dict[str, tuple[int, float, float]] = {}  # path -> size, mtime, stable since

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, path: str) -> bool:
        return path in self._seen

    def add(self, path: str) -> None:
        if path not in self._seen:
            self._seen[path] = (-1, -1.0, time.monotonic())

    def discard(self, path: str) -> None:
        self._seen.pop(path, None)

    def settled(self) -> list[str]:
        """Paths stable for long enough (removed from the candidates); vanished ones are dropped."""
        now = time.monotonic()
        wall = time.time()
        done: list[str] = []
        for path, (size, mtime, since) in list(self._seen.items()):
            if size == -1:  # new: one open tells whether it is there and whether it is whole
                st, whole = _tail_check(path)
                if st is None and not os.path.lexists(path):
                    del self._seen[path]
                    continue
                if whole:
                    done.append(path)
                    del self._seen[path]
                    continue
                if st is None:
                    try:
                        st = os.stat(path)
                    except FileNotFoundError:
                        del self._seen[path]
                        continue
            else:
                try:
                    st = os.stat(path)
                except FileNotFoundError:
                    del self._seen[path]
                    continue
            if (st.st_size, st.st_mtime) != (size, mtime):
                # an old file found by a scan needs no waiting: nobody has touched it for a while
                if size == -1 and wall - st.st_mtime >= self.settle_s:
                    done.append(path)
                    del self._seen[path]
                else:
                    self._seen[path] = (st.st_size, st.st_mtime, now)
            elif now - since >= self.settle_s:
                done.append(path)
                del self._seen[path]
        return done


def scan(directory: Path) -> list[str]:
    """Every regular, non-ignored file directly in ``directory``, oldest first."""
    entries = []
    with os.scandir(directory) as it:
        for e in it:
            if e.is_file(follow_symlinks=False) and not ignored(e.name):
                try:
                    mtime = e.stat().st_mtime
                except FileNotFoundError:  # moved out (by the Keeper) since the listing
                    continue
                entries.append((mtime, e.path))
    return [p for _, p in sorted(entries)]
