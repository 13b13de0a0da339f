"""Inference throughput of every head preset by batch size on this machine (CPU), as JSON.

Each preset's head is built from scratch (random weights: speed does not
depend on training), saved, loaded through :class:`hydra.inference.ServingModel`
and timed through :func:`hydra.inference.predict_batch`, the path serving uses.

Usage:
    python benchmarks/bench_heads.py [--quick] [--presets classifier-cpu,siamese-cpu] [--threads N] [--ensemble 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from hydra.heads.presets import create_from_preset, list_presets, read_preset
from hydra.inference import ServingModel, cam_batch, predict_batch

LABELS = ["Good", "Bad", "NoData"]


def _build(preset: str, directory: Path, members: int = 1) -> ServingModel:
    head = create_from_preset(preset, labels=LABELS, problem_labels=["Bad", "NoData"])
    if members > 1 and hasattr(head, "set_logit_bias"):  # served as hydra train serves its fold models
        from hydra.heads.ensemble import EnsembleHead

        more = [create_from_preset(preset, labels=LABELS, problem_labels=["Bad", "NoData"])
                for _ in range(members - 1)]  # fmt: skip
        head = EnsembleHead.of([head, *more])
    if hasattr(head, "fit_reference_bank"):  # score against a real-sized Good bank
        h, w = head.input_size
        gen = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (64, h, w, head.channels), dtype=torch.uint8, generator=gen)
        head.fit_reference_bank([(images, torch.zeros(64, dtype=torch.long))])
    head.eval()
    head.save(directory)
    return ServingModel.from_dir(directory)


def _time(fn, min_time: float, min_reps: int = 3) -> float:
    """Seconds per call (median of repeated calls after one warm-up)."""
    fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_reps or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def run(
    presets: list[str], batch_sizes: list[int], min_time: float, cam_batch_size: int, members: int = 1
) -> dict:
    results = []
    rng = np.random.default_rng(0)
    for preset in presets:
        with tempfile.TemporaryDirectory() as tmp:
            model = _build(preset, Path(tmp), members)
        if model.head.registered_name() == "ensemble":
            preset = f"{preset} (ensemble of {members})"
        h, w = model.input_size
        for bs in batch_sizes:
            pixels = rng.integers(0, 256, (bs, h, w, model.channels), dtype=np.uint8)
            sec = _time(lambda p=pixels, m=model: predict_batch(m, p), min_time)
            results.append(
                {"preset": preset, "input_size": [h, w], "batch_size": bs,
                 "images_per_s": round(bs / sec, 2), "ms_per_batch": round(1000 * sec, 2)}
            )  # fmt: skip
            print(json.dumps(results[-1]), file=sys.stderr)
        if cam_batch_size:
            pixels = rng.integers(0, 256, (cam_batch_size, h, w, model.channels), dtype=np.uint8)
            sec = _time(lambda p=pixels, m=model: cam_batch(m, p, [1] * len(p)), min_time, min_reps=2)
            results.append(
                {"preset": preset, "input_size": [h, w], "batch_size": cam_batch_size, "what": "grad_cam",
                 "images_per_s": round(cam_batch_size / sec, 2), "ms_per_batch": round(1000 * sec, 2)}
            )  # fmt: skip
    return {
        "benchmark": "heads_inference_cpu",
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        },
        "results": results,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="batch sizes 1 and 8, short timings")
    parser.add_argument("--presets", default="", help="comma-separated preset names (default: all)")
    parser.add_argument("--batch-sizes", default="1,8,32,64")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--cam-batch", type=int, default=8, help="also time Grad-CAM at this batch (0: skip)")
    parser.add_argument(
        "--ensemble", type=int, default=1, help="serve a classifier preset as N models (hydra train's folds)"
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    presets = [p for p in args.presets.split(",") if p] or list_presets()
    for p in presets:
        read_preset(p)  # fail early on a bad name
    sizes = [1, 8] if args.quick else [int(b) for b in args.batch_sizes.split(",")]
    report = run(
        presets,
        sizes,
        min_time=0.2 if args.quick else 2.0,
        cam_batch_size=min(args.cam_batch, 2) if args.quick else args.cam_batch,
        members=args.ensemble,
    )
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
