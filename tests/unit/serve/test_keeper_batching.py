"""The Keeper's batching: fast input makes larger batches, a trickle keeps its latency; metrics per batch."""

from __future__ import annotations

import time

from hydra.serve.keeper import FAST_BATCH, STRETCH, Keeper
from hydra.serve.metrics import Metrics
from hydra.serve.stage import StopFlag
from tests.helpers.serve import cfg_at


def _keeper(tmp_path) -> Keeper:
    cfg = cfg_at(tmp_path, keeper_flush_ms=50, keeper_batch=500, metrics_port=0)
    return Keeper(
        cfg.model_copy(update={"db_url": f"sqlite:///{tmp_path / 'h.db'}"}), StopFlag(), instance="i"
    )


def _fill(keeper: Keeper, n: int, age_s: float) -> None:
    keeper.batch.reports = {(f"k{i}", 1): object() for i in range(n)}  # type: ignore[misc]
    keeper.batch.since = time.monotonic() - age_s


def test_a_trickle_is_written_after_flush_ms_and_a_flood_collects_longer(tmp_path):
    keeper = _keeper(tmp_path)
    _fill(keeper, FAST_BATCH - 1, 0.051)
    assert keeper._due()  # a few results: written after keeper_flush_ms as always
    _fill(keeper, FAST_BATCH, 0.051)
    assert not keeper._due() and 0 < keeper._timeout_ms() <= 50 * STRETCH
    _fill(keeper, FAST_BATCH, 0.05 * STRETCH + 0.001)
    assert keeper._due()  # ... for at most STRETCH times as long
    _fill(keeper, 500, 0.0)
    assert keeper._due()  # or until keeper_batch items


def test_batch_metrics_count_as_one_observation_per_inference():
    # values on bucket bounds (1, 50) and past the last one count where observe() counts them
    timings = [{"feeder": ms, "keeper": ms * 3} for ms in (0.5, 1.0, 1.5, 7.0, 49.0, 50.0, 1e6)]
    one, batch = Metrics(), Metrics()
    for t in timings:
        one.observe_timings(t)
        one.images.labels("fcal", "Good").inc()
    batch.observe_batch(timings, {("fcal", "Good"): len(timings)})

    def samples(m: Metrics) -> dict:
        return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in m.registry.collect() for s in f.samples
                if not s.name.endswith("_created")}  # fmt: skip

    assert samples(one) == samples(batch)
