"""Finding complete files in the input directory.

Three sources feed one set of candidates: watchdog events (inotify, or a
polling observer for network file systems), a scan at start and a periodic
rescan. A file counts as complete when it was closed after writing or renamed
into place, or when it ends the way its format ends (a PNG's IEND chunk, a
JPEG's end marker: a file renamed in from another directory shows up only as
"created"); otherwise (polling, the scans, a damaged file) when its size and
mtime have not changed for ``settle_ms``.
"""

from __future__ import annotations

import os
import queue
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
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            if size < len(PNG_END):
                return False
            fh.seek(size - len(PNG_END))
            tail = fh.read()
    except OSError:
        return False
    return tail == PNG_END or tail.endswith(JPEG_END)


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


@contextmanager
def observe(directory: Path, *, polling: bool, events: queue.SimpleQueue) -> Iterator[None]:
    """Watch ``directory`` (not recursively) while the context is open."""
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
            try:
                st = os.stat(path)
            except FileNotFoundError:
                del self._seen[path]
                continue
            if size == -1 and ends_complete(path):
                done.append(path)
                del self._seen[path]
            elif (st.st_size, st.st_mtime) != (size, mtime):
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
                entries.append((e.stat().st_mtime, e.path))
    return [p for _, p in sorted(entries)]
