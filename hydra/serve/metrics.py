"""Prometheus metrics, served by the Keeper on ``serve.metrics_bind``:``serve.metrics_port`` (0: off).

The Keeper sees every report with its per-stage timestamps and every
stage's heartbeat, so one ``/metrics`` endpoint covers the whole pipeline
(no port per process to configure on remote workers).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

log = logging.getLogger("hydra.serve.metrics")

BUCKETS_MS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000)


class Metrics:
    """The pipeline's counters, gauges and per-stage latency histograms."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.stage_ms = Histogram(
            "hydra_stage_latency_ms",
            "Time per image spent in each stage",
            ["stage"],
            buckets=BUCKETS_MS,
            registry=r,
        )
        self.images = Counter(
            "hydra_images_total",
            "Inferences stored, by plot type and label",
            ["plot_type", "label"],
            registry=r,
        )
        self.errors = Counter(
            "hydra_errors_total", "Inputs rejected, by stage and kind", ["stage", "kind"], registry=r
        )
        self.registered = Counter(
            "hydra_registered_total", "Images kept because their plot type has no model", registry=r
        )
        self.duplicates = Counter(
            "hydra_duplicate_reports_total", "Reports of already stored inferences", registry=r
        )
        self.alarms = Counter("hydra_alarms_total", "Alarms, raised or logged only", ["raised"], registry=r)
        self.restarts = Counter(
            "hydra_worker_restarts_total",
            "Serve processes restarted by the supervisor",
            ["process"],
            registry=r,
        )
        self.queue = Gauge("hydra_queue_depth", "Items waiting in a stage", ["process", "queue"], registry=r)
        self.keeper_pending = Gauge(
            "hydra_keeper_pending", "Items waiting for the Keeper's next commit", registry=r
        )
        self.flush_failures = Counter(
            "hydra_keeper_flush_failures_total", "Failed database commits (retried)", registry=r
        )
        self.dropped = Gauge(
            "hydra_dropped_messages",
            "Messages dropped by a stage since it started: malformed, or of another instance",
            ["process", "reason"],
            registry=r,
        )
        self.retries = Counter(
            "hydra_retries_total",
            "Images sent again after a fault of the server (model not loadable, disk full), by stage",
            ["stage"],
            registry=r,
        )
        self.backlog_dropped = Counter(
            "hydra_keeper_backlog_dropped_total",
            "Results dropped because the Keeper's backlog was full (their files come again)",
            registry=r,
        )

    def serve(self, port: int, addr: str = "127.0.0.1") -> bool:
        """Start the HTTP endpoint; False (logged) when the port is taken."""
        if port <= 0:
            return False
        try:
            start_http_server(port, addr=addr, registry=self.registry)
        except OSError as exc:
            log.error("metrics port %s:%d unavailable (%s); metrics are off", addr, port, exc)
            return False
        log.info("metrics on http://%s:%d/metrics", addr, port)
        return True

    def observe_timings(self, timings: dict[str, float]) -> None:
        for stage, ms in timings.items():
            self.stage_ms.labels(stage).observe(ms)

    def observe_batch(self, timings: list[dict[str, float]], images: dict[tuple[str, str], int]) -> None:
        """A committed batch at once: its timings per stage and its images per (plot type, label).

        The same counts as :meth:`observe_timings` per inference, at one
        bucket search per stage instead of a lock per bucket and value (the
        Keeper stores thousands per second).
        """
        for key, n in images.items():
            self.images.labels(*key).inc(n)
        by_stage: dict[str, list[float]] = {}
        for t in timings:
            for stage, ms in t.items():
                by_stage.setdefault(stage, []).append(ms)
        for stage, values in by_stage.items():
            child = self.stage_ms.labels(stage)
            buckets, total = getattr(child, "_buckets", None), getattr(child, "_sum", None)
            bounds = getattr(child, "_upper_bounds", None)
            if buckets is None or total is None or bounds is None or len(bounds) != len(buckets):
                for ms in values:  # another prometheus_client: the public way
                    child.observe(ms)
                continue
            # prometheus_client counts a value in the first bucket whose bound is >= it
            counts = np.bincount(np.searchsorted(bounds, values, side="left"), minlength=len(bounds))
            total.inc(float(sum(values)))
            for i, c in enumerate(counts[: len(bounds)]):
                if c:
                    buckets[i].inc(int(c))

    def observe_dropped(self, process: str, info: dict[str, Any]) -> None:
        for key, value in info.items():
            if key.startswith("dropped_") and isinstance(value, (int, float)):
                self.dropped.labels(process, key[8:]).set(value)

    def observe_heartbeat(self, process: str, info: dict[str, Any]) -> None:
        for key, value in info.items():
            if key.startswith("queue_") and isinstance(value, (int, float)):
                self.queue.labels(process, key[6:]).set(value)
