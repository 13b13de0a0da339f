"""The serve path on one GPU node, measured in one run (JSON out).

Usage on an H100/H200 node (all CPU cores decode PNGs)::

    python benchmarks/gpu_serve.py --device cuda:0

A quick check of the script itself on a CPU::

    python benchmarks/gpu_serve.py --device cpu --preset classifier-cpu --size 64 64 \\
        --images 40 --batch 8 --predict-images 32 --cam-images 8 --no-compile

Measures, for the ``classifier-inception`` preset (inception_v3 at 299x299,
untrained, biased to confident Good as on healthy plots):

1. ``predict``: the Predict stage alone, ``hydra.inference.predict_batch``
   (bf16 autocast + channels_last on CUDA) on prepared batches, images/s;
   and the same with ``torch.compile`` on the network.
2. ``cam``: batched Grad-CAM (``hydra.inference.cam_batch``), images/s.
3. ``end_to_end``: ``hydra-serve`` with one GPU worker and a Feeder with one
   decoder thread per core, on 800x600 synthetic plot PNGs renamed into the
   input directory at once; files in -> rows committed, images/s.

Targets: end to end >= 2,500/s, predict >= 7,000/s in bf16, Grad-CAM >= 500/s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_serve import LABELS, Pipeline, feed, make_model  # noqa: E402

from hydra.data.synthetic import write_plot  # noqa: E402

PNG_PLOT = "tof_energy"  # an 800x600 plot type of the synthetic generator


def _write(args: tuple[str, int]) -> str:
    stage, i = args
    return str(write_plot(stage, PNG_PLOT, 9000 + i // 100, i % 100, seed=i))


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def rate(fn, n_images: int, device: str, repeats: int) -> float:
    fn()  # warm up (cudnn autotuning, compilation)
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    _sync(device)
    return round(n_images * repeats / (time.perf_counter() - t0), 1)


def stage_alone(model_dir: Path, device: str, batch: int, cam_batch_size: int, compile_too: bool) -> dict:
    import torch

    from hydra.inference import ServingModel, cam_batch, predict_batch

    model = ServingModel.from_dir(model_dir, 0, device=device)
    h, w = model.input_size
    pixels = np.random.default_rng(0).integers(0, 255, (batch, h, w, 3), dtype=np.uint8)
    out = {"batch": batch, "dtype": "bf16" if device.startswith("cuda") else "fp32"}
    out["predict_per_s"] = rate(lambda: predict_batch(model, pixels), batch, device, 10)
    if compile_too:
        model.head.net = torch.compile(model.head.net)
        out["predict_compiled_per_s"] = rate(lambda: predict_batch(model, pixels), batch, device, 10)
        model = ServingModel.from_dir(model_dir, 0, device=device)
    cam_px = pixels[:cam_batch_size]
    out["cam_batch"] = cam_batch_size
    out["cam_per_s"] = rate(lambda: cam_batch(model, cam_px, [1] * len(cam_px)), len(cam_px), device, 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda:0")
    parser.add_argument("--preset", default="classifier-inception")
    parser.add_argument(
        "--size", type=int, nargs=2, default=None, metavar=("H", "W"), help="override the input size"
    )
    parser.add_argument("--images", type=int, default=20_000, help="PNGs for the end-to-end run")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--predict-images", type=int, default=512, help="batch of the Predict-alone run")
    parser.add_argument("--cam-images", type=int, default=64, help="batch of the Grad-CAM run")
    parser.add_argument("--decoders", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--no-compile", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hydra-gpu-serve-"))
    result: dict = {"benchmark": "gpu_serve", "machine": platform.machine(), "cpus": os.cpu_count(),
                    "device": args.device, "preset": args.preset}  # fmt: skip
    try:
        import torch

        if args.device.startswith("cuda"):
            result["gpu"] = torch.cuda.get_device_name(args.device)
        overrides = {"device": args.device, "max_wait_ms": 2, "keeper_batch": 2000, "heatmaps_for": "problem"}
        pipe = Pipeline(work, 1, args.batch, **overrides)
        kw = {"input_size": list(args.size)} if args.size else {}
        _, model_dir = make_model(pipe.engine, pipe.cfg.path("models"), args.preset, PNG_PLOT, **kw)
        result["stage"] = stage_alone(
            model_dir, args.device, args.predict_images, args.cam_images, not args.no_compile
        )
        stage = work / "stage"
        stage.mkdir()
        t0 = time.perf_counter()
        with ProcessPoolExecutor(os.cpu_count()) as pool:
            files = [
                Path(p)
                for p in pool.map(_write, [(str(stage), i) for i in range(args.images + 20)], chunksize=64)
            ]
        result["png_write_s"] = round(time.perf_counter() - t0, 1)
        try:
            pipe.start(1, ("--decoders", str(args.decoders), "--threads", "4"))
            import zmq

            with zmq.Context() as ctx, ctx.socket(zmq.SUB) as sub:
                sub.setsockopt(zmq.SUBSCRIBE, b"done")
                sub.connect(pipe.cfg.serve.control_address)
                time.sleep(0.5)
                feed(files[:20], pipe.cfg.input_dir, sub, rate=10.0)
                result["end_to_end"] = feed(files[20:], pipe.cfg.input_dir, sub, rate=None)
        finally:
            pipe.stop()
        result["labels"] = LABELS
        result["plot_type"] = PNG_PLOT
        result["targets"] = {"end_to_end_per_s": 2500, "predict_per_s": 7000, "cam_per_s": 500}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
