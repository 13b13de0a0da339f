"""Run conditions that gate alarms (e.g. the beam current).

The source is pluggable through the deployment config: ``alarms.condition_command``
is a shell command that prints one number (the way halls read the beam
current from their control system, e.g. ``caget -t IBCAD00CRCUR6``). A
confirmed problem raises an alarm only while that number is at least
``alarms.condition_min``; otherwise the alarm is logged with ``raised=False``.
A source that fails or prints no number is reported in the alarm's
condition text and does not suppress it: an unknown condition must not hide
a real problem.
"""

from __future__ import annotations

import logging
import subprocess
import time
from dataclasses import dataclass

log = logging.getLogger("hydra.serve.conditions")


@dataclass(frozen=True)
class Condition:
    """The state of the run conditions at one moment."""

    ok: bool
    text: str | None


class CommandCondition:
    """Runs the configured command at most every ``cache_s`` seconds."""

    def __init__(
        self, command: str | None, minimum: float, name: str = "beam current", cache_s: float = 5.0
    ) -> None:
        self.command = command
        self.minimum = minimum
        self.name = name
        self.cache_s = cache_s
        self._last: tuple[float, Condition] | None = None

    def read(self) -> float:
        """The number the command prints; raises ValueError if it prints none."""
        assert self.command
        proc = subprocess.run(self.command, shell=True, capture_output=True, text=True, timeout=10)
        if proc.returncode != 0:
            raise ValueError(f"exit status {proc.returncode}: {proc.stderr.strip()[:200]}")
        text = proc.stdout.strip().split()
        if not text:
            raise ValueError("printed nothing")
        return float(text[-1])

    def check(self) -> Condition:
        """Whether alarms may be raised now, and a text saying why."""
        if not self.command:
            return Condition(True, None)
        now = time.monotonic()
        if self._last and now - self._last[0] < self.cache_s:
            return self._last[1]
        try:
            value = self.read()
        except (ValueError, OSError, subprocess.SubprocessError) as exc:
            log.warning("run condition %r unknown: %s", self.name, exc)
            cond = Condition(True, f"{self.name} unknown ({exc})"[:255])
        else:
            ok = value >= self.minimum
            cond = Condition(ok, f"{self.name}={value:g} {'>=' if ok else '<'} {self.minimum:g}")
        self._last = (now, cond)
        return cond
