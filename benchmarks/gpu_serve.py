"""The serve path on one GPU node, measured in one run (JSON out).

Usage on an H100/H200 node (all CPU cores decode PNGs)::

    python benchmarks/gpu_serve.py --device cuda:0

A quick check of the script itself on a CPU::

    python benchmarks/gpu_serve.py --device cpu --preset classifier-cpu --size 64 64 \\
        --images 40 --batch 8 --predict-images 32 --cam-images 8 --no-compile

Measures, for the ``classifier-inception`` preset (inception_v3 at 299x299,
untrained, biased to confident Good as on healthy plots):

1. ``predict``: the Predict stage alone, ``hydra.inference.predict_batch`` on
   prepared uint8 batches in host memory, images/s: on CUDA through the
   model's pinned buffer, a non-blocking upload, normalisation on the GPU,
   bf16 autocast and channels_last; the same from raw 800x600 pixels resized
   on the GPU; and with ``ServingModel.compile`` (``serve.compile``), with
   the compile time into an empty cache and in a new process reading that
   cache (a restarted worker; ``--compile-cache`` keeps it somewhere).
2. ``cam``: batched Grad-CAM (``hydra.inference.cam_batch``), images/s.
3. ``end_to_end``: ``hydra-serve`` with one GPU worker and a Feeder with one
   decoder thread per core, on 800x600 synthetic plot PNGs renamed into the
   input directory at once; files in -> rows committed, images/s
   (``--serve-compile``: the worker compiles; ``--no-end-to-end``: skip).

Targets: end to end >= 2,500/s, predict >= 7,000/s in bf16, Grad-CAM >= 500/s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
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


def progress(**measured) -> None:
    """Each figure on stderr as soon as it is measured: a run cut short keeps what it had."""
    print(json.dumps(measured), file=sys.stderr, flush=True)


def rate(fn, n_images: int, device: str, repeats: int) -> float:
    fn()  # warm up (cudnn autotuning, compilation)
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    _sync(device)
    return round(n_images * repeats / (time.perf_counter() - t0), 1)


def _setup(device: str) -> None:
    """What a Predict worker sets on its device (hydra.serve.predict.set_threads)."""
    if device.startswith("cuda"):
        from hydra.serve.predict import set_threads

        set_threads(0, device)


def compile_time(model_dir: Path, device: str, batch: int, cache: Path) -> float:
    """Seconds to compile (or read from ``cache``) and run two batch sizes, in this process."""
    from hydra.inference import ServingModel, predict_batch

    _setup(device)
    model = ServingModel.from_dir(model_dir, 0, device=device)
    h, w = model.input_size
    t0 = time.perf_counter()
    model.compile(cache)
    for n in (batch, max(1, batch // 2)):  # a second size makes the batch dimension dynamic
        predict_batch(model, np.zeros((n, h, w, 3), np.uint8))
    _sync(device)
    return round(time.perf_counter() - t0, 1)


def compile_in_new_process(model_dir: Path, device: str, batch: int, cache: Path) -> float | None:
    """:func:`compile_time` in a new process: what a restarted worker pays with the cache kept."""
    argv = [sys.executable, __file__, "--probe-compile", str(model_dir), "--device", device,
            "--predict-images", str(batch), "--compile-cache", str(cache)]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        print(done.stderr[-2000:], file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])["compile_s"]


def stage_alone(
    model_dir: Path, device: str, batch: int, cam_batch_size: int, compile_too: bool, cache: Path | None
) -> dict:
    from hydra.inference import ServingModel, cam_batch, predict_batch

    _setup(device)
    on_cuda = device.startswith("cuda")
    model = ServingModel.from_dir(model_dir, 0, device=device)
    h, w = model.input_size
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (batch, h, w, 3), dtype=np.uint8)  # host memory, as orders arrive
    out = {"batch": batch, "dtype": "bf16" if on_cuda else "fp32",
           "upload": "pinned uint8, non-blocking, normalised on the GPU" if on_cuda else "none (CPU)"}  # fmt: skip
    out["predict_per_s"] = rate(lambda: predict_batch(model, pixels), batch, device, 10)
    progress(**out)
    if on_cuda:  # raw 800x600 pixels, resized on the GPU (a Feeder that would only decode)
        raw = rng.integers(0, 255, (max(1, batch // 4), 600, 800, 3), dtype=np.uint8)
        out["predict_from_800x600_per_s"] = rate(lambda: predict_batch(model, raw), len(raw), device, 5)
        progress(**out)
    if compile_too and cache is not None:
        empty = not any(f.is_file() for f in cache.rglob("*"))
        out["compile_s" + ("_empty_cache" if empty else "_given_cache")] = compile_time(
            model_dir, device, batch, cache
        )
        out["compile_s_new_process_warm_cache"] = compile_in_new_process(model_dir, device, batch, cache)
        progress(**out)
        compiled = ServingModel.from_dir(model_dir, 0, device=device)
        compiled.compile(cache)
        out["predict_compiled_per_s"] = rate(lambda: predict_batch(compiled, pixels), batch, device, 10)
        progress(**out)
        out["compile_cache"] = str(cache)
    cam_px = pixels[:cam_batch_size]
    out["cam_batch"] = cam_batch_size
    out["cam_per_s"] = rate(lambda: cam_batch(model, cam_px, [1] * len(cam_px)), len(cam_px), device, 3)
    progress(**out)
    return out


def end_to_end(pipe: Pipeline, args: argparse.Namespace) -> dict:
    """``hydra-serve`` with one worker on ``args.device``: 800x600 PNGs in -> rows committed."""
    import zmq

    stage = pipe.cfg.home.parent / "stage"
    stage.mkdir()
    t0 = time.perf_counter()
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        files = [
            Path(p)
            for p in pool.map(_write, [(str(stage), i) for i in range(args.images + 20)], chunksize=64)
        ]
    write_s = round(time.perf_counter() - t0, 1)
    progress(png_write_s=write_s, images=len(files))
    try:
        t0 = time.perf_counter()
        pipe.start(1, ("--decoders", str(args.decoders), "--threads", "4"), timeout=args.start_timeout)
        progress(serve_up_s=round(time.perf_counter() - t0, 1))
        with zmq.Context() as ctx, ctx.socket(zmq.SUB) as sub:
            sub.setsockopt(zmq.SUBSCRIBE, b"done")
            sub.connect(pipe.cfg.serve.control_address)
            time.sleep(0.5)
            # the first files load (and compile) the model
            warm = feed(files[:20], pipe.cfg.input_dir, sub, rate=10.0, timeout=args.start_timeout)
            progress(warm_up=warm)
            if warm["completed"] < 20:
                raise RuntimeError(f"{warm['completed']} of 20 warm-up images scored; the log ends:\n"
                                   f"{pipe.log_tail()}")  # fmt: skip
            return {**feed(files[20:], pipe.cfg.input_dir, sub, rate=None), "png_write_s": write_s}
    finally:
        pipe.stop()
        if os.environ.get("OUT") and pipe.log_path.is_file():  # a GPU node: keep the log
            Path(os.environ["OUT"]).mkdir(parents=True, exist_ok=True)
            shutil.copy(pipe.log_path, Path(os.environ["OUT"]) / "gpu_serve_hydra.log")


def main(argv: list[str] | None = None) -> dict:
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
    parser.add_argument(
        "--compile-cache", type=Path, default=None, help="default: a new folder, removed after"
    )
    parser.add_argument(
        "--start-timeout", type=float, default=180, help="seconds for hydra-serve to come up and warm up"
    )
    parser.add_argument("--serve-compile", action="store_true", help="end to end with serve.compile")
    parser.add_argument("--no-end-to-end", action="store_true", help="the Predict stage and Grad-CAM only")
    parser.add_argument("--probe-compile", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.probe_compile is not None:  # the child of compile_in_new_process
        from hydra.inference import use_compile_cache

        cache = use_compile_cache(args.compile_cache)
        print(
            json.dumps(
                {"compile_s": compile_time(args.probe_compile, args.device, args.predict_images, cache)}
            )
        )
        return {}
    work = Path(tempfile.mkdtemp(prefix="hydra-gpu-serve-"))
    result: dict = {"benchmark": "gpu_serve", "machine": platform.machine(), "cpus": os.cpu_count(),
                    "device": args.device, "preset": args.preset}  # fmt: skip
    try:
        import torch

        if args.device.startswith("cuda"):
            result["gpu"] = torch.cuda.get_device_name(args.device)
        overrides = {"device": args.device, "max_wait_ms": 2, "keeper_batch": 2000, "heatmaps_for": "problem",
                     "compile": args.serve_compile}  # fmt: skip
        pipe = Pipeline(work, 1, args.batch, **overrides)
        kw = {"input_size": list(args.size)} if args.size else {}
        _, model_dir = make_model(pipe.engine, pipe.cfg.path("models"), args.preset, PNG_PLOT, **kw)
        cache = None
        if not args.no_compile:
            from hydra.inference import use_compile_cache

            cache = use_compile_cache(args.compile_cache or work / "compile-cache")
        result["stage"] = stage_alone(
            model_dir, args.device, args.predict_images, args.cam_images, not args.no_compile, cache
        )
        if args.no_end_to_end:
            pipe.stop()
        else:
            result["end_to_end"] = end_to_end(pipe, args)
        result["labels"] = LABELS
        result["plot_type"] = PNG_PLOT
        result["targets"] = {"end_to_end_per_s": 2500, "predict_per_s": 7000, "cam_per_s": 500}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
