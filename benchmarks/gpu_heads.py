"""InceptionV3 head throughput on one GPU (H100/H200 class), measured in one run, as JSON.

Measures, with the production preset (``hydra/heads/presets/classifier-inception.yaml``):

- inference images/s by batch size, bf16 autocast + channels_last, eager and
  ``torch.compile`` (the :mod:`hydra.inference` settings), on pixels already
  on the device;
- the serving path by batch size: uint8 pixels in host memory, through the
  Predict stage's :func:`hydra.inference.predict_batch` (pinned buffer,
  non-blocking upload, normalisation on the GPU, bf16, channels_last), eager
  and compiled; the compile time with an empty cache and in a second process
  reading the cache (``--compile-cache``, like ``serve.compile`` keeps in
  ``HYDRA_HOME/cache/torch-compile``);
- training images/s (bf16 autocast, AdamW, weighted cross-entropy: the head's
  own ``training_loss``);
- batched Grad-CAM images/s (float32, :func:`hydra.heads.cam.grad_cam`).

Writes the JSON to ``$OUT/gpu_heads.json`` when ``OUT`` is set. ``--device cpu
--quick`` runs tiny settings to check the script without a GPU.

Usage:
    python benchmarks/gpu_heads.py                       # on the GPU machine
    python benchmarks/gpu_heads.py --device cpu --quick  # smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from hydra.heads.cam import grad_cam
from hydra.heads.presets import create_from_preset
from hydra.inference import ServingModel, predict_batch, use_compile_cache

LABELS = ["Good", "Bad", "NoData"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], object], device: torch.device, warmup: int, iters: int) -> float:
    """Seconds per call after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    _sync(device)
    return (time.perf_counter() - t0) / iters


_BF16 = {"on": True}


def _autocast(device: torch.device):
    """bf16 autocast (on CPUs without bf16 units it is emulated and slow: off in --quick)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=_BF16["on"])


def inference(head, device, sizes, batch_sizes, warmup, iters, compiled: bool) -> list[dict]:
    net = torch.compile(head) if compiled else head
    rows = []
    for bs in batch_sizes:
        pixels = torch.randint(0, 256, (bs, *sizes, 3), dtype=torch.uint8, device=device)

        def step(p=pixels):
            with torch.inference_mode(), _autocast(device):
                x = head.preprocess(p).contiguous(memory_format=torch.channels_last)
                return torch.softmax(net(x).float(), dim=-1)

        try:
            sec = _timed(step, device, warmup, iters)
        except torch.OutOfMemoryError:
            rows.append({"batch_size": bs, "error": "out of memory"})
            torch.cuda.empty_cache()
            break
        rows.append(
            {"batch_size": bs, "images_per_s": round(bs / sec, 1), "ms_per_batch": round(1000 * sec, 3)}
        )
        print(json.dumps({"inference": "compiled" if compiled else "eager", **rows[-1]}), file=sys.stderr)
    return rows


def serving(head, device, sizes, batch_sizes, warmup, iters, compiled: bool, cache: Path | None) -> dict:
    """Images/s from host uint8 pixels through ``predict_batch`` (what a Predict worker runs)."""
    model = ServingModel(
        model_id=None, head=head, labels=head.labels, input_size=sizes, channels=head.channels,
        problem_labels=head.problem_labels, device=str(device),
    )  # fmt: skip
    out: dict = {}
    if compiled:
        t0 = time.perf_counter()
        model.compile(cache)
        for bs in batch_sizes[-2:]:  # the first size compiles, a second one makes the batch dynamic
            predict_batch(model, np.zeros((bs, *sizes, head.channels), np.uint8))
        _sync(device)
        out["compile_s"] = round(time.perf_counter() - t0, 1)
    rows = []
    for bs in batch_sizes:
        pixels = np.random.default_rng(bs).integers(0, 256, (bs, *sizes, head.channels), dtype=np.uint8)
        try:
            sec = _timed(lambda p=pixels: predict_batch(model, p), device, warmup, iters)
        except torch.OutOfMemoryError:
            rows.append({"batch_size": bs, "error": "out of memory"})
            torch.cuda.empty_cache()
            break
        rows.append(
            {"batch_size": bs, "images_per_s": round(bs / sec, 1), "ms_per_batch": round(1000 * sec, 3)}
        )
        print(json.dumps({"serving": "compiled" if compiled else "eager", **rows[-1]}), file=sys.stderr)
    out["rows"] = rows
    return out


def compile_in_new_process(args: argparse.Namespace, cache: Path) -> float | None:
    """Seconds a new process (a restarted worker) takes to compile and run, reading ``cache``."""
    argv = [sys.executable, __file__, "--device", args.device, "--preset", args.preset,
            "--batch-sizes", args.batch_sizes, "--compile-cache", str(cache), "--probe-compile"]  # fmt: skip
    if args.quick:
        argv.append("--quick")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        print(done.stderr[-2000:], file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])["compile_s"]


def training(head, device, sizes, batch_size, warmup, iters) -> dict:
    head.train()
    opt = torch.optim.AdamW(head.parameters(), lr=1e-4)
    images = torch.randint(0, 256, (batch_size, *sizes, 3), dtype=torch.uint8, device=device)
    batch = (
        images,
        torch.randint(0, len(LABELS), (batch_size,), device=device),
        torch.ones(batch_size, device=device),
    )

    def step():
        opt.zero_grad(set_to_none=True)
        with _autocast(device):
            loss = head.training_loss(batch)
        loss.backward()
        opt.step()

    sec = _timed(step, device, warmup, iters)
    head.eval()
    return {
        "batch_size": batch_size,
        "images_per_s": round(batch_size / sec, 1),
        "ms_per_step": round(1000 * sec, 2),
    }


def cam(head, device, sizes, batch_size, warmup, iters) -> dict:
    pixels = torch.randint(0, 256, (batch_size, *sizes, 3), dtype=torch.uint8, device=device)
    x = head.preprocess(pixels)
    classes = [1] * batch_size
    sec = _timed(lambda: grad_cam(head, x, classes), device, warmup, iters)
    return {
        "batch_size": batch_size,
        "images_per_s": round(batch_size / sec, 1),
        "ms_per_batch": round(1000 * sec, 2),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few iterations (smoke test)")
    parser.add_argument("--preset", default="classifier-inception")
    parser.add_argument("--batch-sizes", default="1,8,32,64,128,256")
    parser.add_argument("--train-batch", type=int, default=64)
    parser.add_argument("--cam-batch", type=int, default=32)
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument(
        "--compile-cache", type=Path, default=None, help="torch.compile's cache (default: a new temp dir)"
    )
    parser.add_argument("--probe-compile", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    overrides: dict = {"labels": LABELS, "problem_labels": ["Bad", "NoData"]}
    if args.quick:
        overrides["input_size"] = [75, 75]  # inception_v3's smallest input
    head = create_from_preset(args.preset, **overrides).to(device).eval()
    head = head.to(memory_format=torch.channels_last)
    sizes = tuple(head.input_size)
    batch_sizes = [1, 2] if args.quick else [int(b) for b in args.batch_sizes.split(",")]
    warmup, iters = (1, 2) if args.quick else (5, 20)
    do_compile = not args.no_compile and not (args.quick and device.type == "cpu")
    _BF16["on"] = not (args.quick and device.type == "cpu")
    cache = None
    if do_compile or args.probe_compile:  # before anything compiles
        cache = use_compile_cache(args.compile_cache or Path(tempfile.mkdtemp(prefix="hydra-compile-")))
    if args.probe_compile:  # the child of compile_in_new_process: compile from the cache, say how long
        report = serving(head, device, sizes, batch_sizes, 1, 1, True, cache)
        print(json.dumps({"compile_s": report["compile_s"]}))
        return report

    report: dict = {
        "benchmark": "gpu_heads",
        "preset": args.preset,
        "backbone": head.hparams.get("backbone"),
        "input_size": list(sizes),
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "quick": args.quick,
        "bf16": _BF16["on"],
        "inference_bf16_channels_last": {
            "eager": inference(head, device, sizes, batch_sizes, warmup, iters, False)
        },
    }
    # the serving path first, so that its compile meets the cache as given (empty by default)
    serving_report: dict = {
        "path": "pinned uint8 -> non-blocking upload -> normalise on the device -> bf16, channels_last"
        if device.type == "cuda"
        else "CPU: float32, no upload",
        "eager": serving(head, device, sizes, batch_sizes, warmup, iters, False, None)["rows"],
    }
    report["serving_from_host_uint8"] = serving_report
    if do_compile:
        empty = not any(f.is_file() for f in cache.rglob("*"))
        compiled = serving(head, device, sizes, batch_sizes, warmup, iters, True, cache)
        serving_report["compiled"] = compiled["rows"]
        serving_report["compile_s" + ("_empty_cache" if empty else "_given_cache")] = compiled["compile_s"]
        serving_report["compile_s_new_process_warm_cache"] = compile_in_new_process(args, cache)
        print(json.dumps({k: v for k, v in serving_report.items() if k.startswith("compile_s")}),
              file=sys.stderr, flush=True)  # fmt: skip
        serving_report["compile_cache"] = str(cache)
        t0 = time.perf_counter()
        rows = inference(head, device, sizes, batch_sizes, warmup + 2, iters, True)
        report["inference_bf16_channels_last"]["compiled"] = rows
        report["inference_bf16_channels_last"]["compile_and_bench_s"] = round(time.perf_counter() - t0, 1)
    else:
        report["inference_bf16_channels_last"]["compiled"] = "skipped"
    train_bs = 2 if args.quick else args.train_batch
    report["training_bf16"] = training(head, device, sizes, train_bs, warmup, iters)
    print(json.dumps({"training_bf16": report["training_bf16"]}), file=sys.stderr, flush=True)
    report["grad_cam_fp32"] = cam(
        head, device, sizes, 2 if args.quick else args.cam_batch, warmup, max(iters // 2, 1)
    )
    print(json.dumps({"grad_cam_fp32": report["grad_cam_fp32"]}), file=sys.stderr, flush=True)
    if device.type == "cuda":
        report["max_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    text = json.dumps(report, indent=2)
    print(text)
    if os.environ.get("OUT"):
        out = Path(os.environ["OUT"]) / "gpu_heads.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
    return report


if __name__ == "__main__":
    main()
