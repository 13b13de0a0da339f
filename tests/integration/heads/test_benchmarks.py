"""The head benchmarks run and print the JSON they promise (tiny settings, CPU)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[3] / "benchmarks"


def _module(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_bench_heads_quick(capsys):
    _module("bench_heads").main(["--quick", "--presets", "siamese-cpu", "--cam-batch", "0"])
    report = json.loads(capsys.readouterr().out)
    rows = report["results"]
    assert {r["batch_size"] for r in rows} == {1, 8} and all(r["ms_per_batch"] > 0 for r in rows)
    assert report["machine"]["cpu_count"] >= 1


@pytest.mark.slow
def test_bench_heads_serves_a_classifier_as_its_fold_models(capsys):
    _module("bench_heads").main(["--quick", "--presets", "classifier-cpu", "--ensemble", "2"])
    rows = json.loads(capsys.readouterr().out)["results"]
    assert {r["preset"] for r in rows} == {"classifier-cpu (ensemble of 2)"}
    assert any(r.get("what") == "grad_cam" and r["images_per_s"] > 0 for r in rows)


@pytest.mark.slow
def test_gpu_heads_runs_on_cpu_quick(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OUT", str(tmp_path))
    report = _module("gpu_heads").main(["--device", "cpu", "--quick", "--no-compile"])
    saved = json.loads((tmp_path / "gpu_heads.json").read_text())
    assert saved["backbone"] == "inception_v3" and saved == json.loads(json.dumps(report))
    assert [r["batch_size"] for r in saved["inference_bf16_channels_last"]["eager"]] == [1, 2]
    assert saved["training_bf16"]["ms_per_step"] > 0 and saved["grad_cam_fp32"]["ms_per_batch"] > 0


@pytest.mark.slow
def test_gpu_serve_stage_runs_on_cpu_quick(capsys):
    import os

    env = dict(os.environ)
    try:  # the benchmark's pipeline points HYDRA_* at its own temp home
        argv = "--device cpu --preset classifier-cpu --size 64 64 --predict-images 8 --cam-images 2"
        result = _module("gpu_serve").main([*argv.split(), "--no-compile", "--no-end-to-end"])
    finally:
        os.environ.clear()
        os.environ.update(env)
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed == json.loads(json.dumps(result))
    stage = result["stage"]
    assert stage["dtype"] == "fp32" and stage["predict_per_s"] > 0 and stage["cam_per_s"] > 0
    assert "end_to_end" not in result and "compile_cache" not in stage
