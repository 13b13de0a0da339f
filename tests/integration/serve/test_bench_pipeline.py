"""The pipeline benchmark (``hydra-serve`` with the null head) runs and prints what it promises."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[3] / "benchmarks" / "bench_pipeline.py"


@pytest.mark.slow
def test_bench_pipeline_quick(capsys):
    spec = importlib.util.spec_from_file_location("bench_pipeline", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    result = mod.main(["--images", "300", "--skip-mysql"])
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(result))
    run = result["sqlite"]
    assert run["completed"] == 300 and run["per_s"] > 0
    assert run["rows"] == 340 and run["left_in_input"] == 0  # 40 warm-up images and the 300, each once
    assert {"feeder", "balancer", "keeper", "predict-0"} <= set(run["cpu_us_per_image"])
    assert {"feeder", "predict", "keeper"} <= set(run["stage_median_ms"]) and run["latency_ms"]["median"] > 0
