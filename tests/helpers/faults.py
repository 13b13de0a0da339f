"""What every fault-injection case streams, checks and prints (tests/integration/faults/).

Every case streams images through the pipeline, injects one kind of fault,
and checks the same promise: every good image ends with exactly one stored
result, none is quarantined, and the pipeline recovers within a stated time.
Each case prints one ``FAULT {...}`` line with what it measured (run with
``-s`` to see them; docs/reliability.md lists them).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from pathlib import Path

from tests.helpers.serve import Deployment, Serve, drop_plots, input_files, stored, wait_until


class Stream(threading.Thread):
    """Writes ``n`` plots into the input folder, one every ``every_s``, while the test does its harm."""

    def __init__(self, input_dir: Path, n: int, *, start: int, every_s: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.input_dir, self.n, self.first, self.every_s = input_dir, n, start, every_s
        self.names: list[str] = []

    def run(self) -> None:
        for i in range(self.first, self.first + self.n):
            self.names += drop_plots(self.input_dir, 1, start=i)
            time.sleep(self.every_s)


def good_images_done_once(dep: Deployment, names: list[str]) -> None:
    """Exactly one result per image, no error record, nothing in quarantine, files where the rows say."""
    inferences, errors = stored(dep)
    assert not errors, [(e.filename, e.kind, e.message[:120]) for e in errors][:5]
    assert not os.listdir(dep.dir("quarantine"))
    counts = Counter(i.filename for i in inferences)
    assert sorted(counts) == sorted(names), f"missing: {sorted(set(names) - set(counts))[:5]}"
    assert max(counts.values()) == 1, [n for n, c in counts.items() if c > 1][:5]
    for inf in inferences:
        assert Path(inf.path).is_file(), inf.path
    assert not input_files(dep)


def drained(dep: Deployment, srv: Serve, timeout: float, what: str) -> float:
    """Seconds until the input folder is empty (the recovery time of a case)."""
    t0 = time.monotonic()
    wait_until(lambda: not input_files(dep), timeout, every=0.1, what=f"{what}; log:\n{srv.tail()}")
    return round(time.monotonic() - t0, 1)


def db_name(db_url: str | None) -> str:
    """The database a case ran on, for its ``FAULT`` line (the ``db`` fixture gives None for SQLite)."""
    return "mariadb" if db_url else "sqlite"


def measured(case: str, **numbers: object) -> None:
    print("FAULT " + json.dumps({"case": case, **numbers}), flush=True)
