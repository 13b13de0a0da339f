"""Alarms: a plot type confirmed as a problem N times in a row.

The Keeper feeds every stored verdict, in order, to :class:`AlarmTracker`;
the streak of a plot type grows with each confirmed problem and breaks on
anything else. When it reaches ``consecutive`` an alarm is due (once per
streak). The tracker is copied before a batch and kept only if the batch
commits, so a retried batch never counts twice.

The optional hook is a shell command run (not waited for) with the alarm in
its environment: ``HYDRA_ALARM_PLOT_TYPE``, ``HYDRA_ALARM_RUN``,
``HYDRA_ALARM_LABEL``, ``HYDRA_ALARM_MESSAGE``, ``HYDRA_ALARM_ID``.
"""

from __future__ import annotations

import copy
import logging
import os
import subprocess
from dataclasses import dataclass

log = logging.getLogger("hydra.serve.alarms")


@dataclass
class DueAlarm:
    plot_type_id: int
    plot_type: str
    run: int
    label: str
    source_key: str
    model_id: int
    message: str


class AlarmTracker:
    """Streaks of confirmed problems per plot type."""

    def __init__(self, consecutive: int) -> None:
        self.consecutive = consecutive
        self.streak: dict[int, int] = {}

    def observe(self, plot_type_id: int, *, confirmed_problem: bool) -> bool:
        """Count one verdict; True exactly when this one completes a streak of N."""
        if not confirmed_problem:
            self.streak[plot_type_id] = 0
            return False
        n = self.streak.get(plot_type_id, 0) + 1
        self.streak[plot_type_id] = n
        return n == self.consecutive

    def snapshot(self) -> AlarmTracker:
        return copy.deepcopy(self)


class HookRunner:
    """Starts the hook command per raised alarm and reaps finished ones."""

    def __init__(self, command: str | None) -> None:
        self.command = command
        self.running: list[subprocess.Popen] = []

    def fire(self, alarm: DueAlarm, alarm_id: int | None) -> None:
        if not self.command:
            return
        env = dict(
            os.environ,
            HYDRA_ALARM_PLOT_TYPE=alarm.plot_type,
            HYDRA_ALARM_RUN=str(alarm.run),
            HYDRA_ALARM_LABEL=alarm.label,
            HYDRA_ALARM_MESSAGE=alarm.message,
            HYDRA_ALARM_ID=str(alarm_id or ""),
        )
        try:
            self.running.append(subprocess.Popen(self.command, shell=True, env=env))
        except OSError as exc:
            log.error("alarm hook %r could not start: %s", self.command, exc)
        self.reap()

    def reap(self) -> None:
        still = []
        for proc in self.running:
            code = proc.poll()
            if code is None:
                still.append(proc)
            elif code != 0:
                log.warning("alarm hook exited with status %d", code)
        self.running = still

    def close(self, timeout: float = 5.0) -> None:
        for proc in self.running:
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.running = []
