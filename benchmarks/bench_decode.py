"""Image decoding on this machine: decoders compared, and the Feeder's decode processes (JSON out).

Usage: python benchmarks/bench_decode.py [--images 120] [--size 800x600] [--format png|png-palette|jpeg|both|all]
                                          [--procs 1,2] [--inputs 299x299,160x160] [--quick]

1. Images: realistic monitoring plots (``hydra.data.synthetic.render``, every
   plot type in turn, a few with faults) at ``--size``, written as
   ``png`` (8-bit RGB, zlib level 6: what ROOT and libpng write),
   ``png-palette`` (what ``hydra.data.synthetic.write_plot`` writes: a
   palette PNG at zlib level 1) and ``jpeg`` (quality 90, 4:2:0).
2. Decoders, one core, bytes already in memory: Pillow (the decoder before
   this benchmark), OpenCV (``cv2.imdecode``), pyspng (PNG) and simplejpeg
   (JPEG; in the ``bench`` extra), each to an RGB array; then the same plus a resize to each model
   input (``--inputs``) with Pillow's box filter (what ``prepare`` does) and
   with OpenCV's ``INTER_AREA``. Every decoder's pixels are compared with
   Pillow's (``decode_max_diff``: must be 0) and every resize with Pillow's
   box filter of Pillow's pixels (``max_diff``). ``hydra`` is the shipped
   path, ``prepare(decode_image(data), size)``; ``hydra_pillow_only`` the
   same with the fast decoders switched off (the code before them).
3. Scaling: the Feeder's decode pool (:class:`hydra.serve.decode_pool.DecodePool`:
   read, hash, decode and prepare to the first ``--inputs`` size, pixels
   back through shared memory) with each of ``--procs`` processes (and one
   per usable core); ``speedup`` is against one process. ``in_process`` is
   the same work in this process, without a pool.

Rates are images per second, the best of ``--repeat`` passes; the load
average before and after each part is in the output (the numbers mean
little on a busy machine). Target (issue #14): 2 processes on 2 cores
>= 1.8x one.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from hydra.data import images as images_mod
from hydra.data.images import decode_image, prepare
from hydra.data.synthetic import PLOT_SPECS, render
from hydra.serve.decode_pool import DecodeJob, DecodePool, decode_file, usable_cores

FORMATS = ("png", "png-palette", "jpeg")


def make_images(n: int, size: tuple[int, int], fmt: str) -> list[bytes]:
    """``n`` encoded plots of ``size`` (width, height), every plot type in turn, one in five with a fault."""
    rng = np.random.default_rng(14)
    out = []
    for i in range(n):
        spec = dataclasses.replace(PLOT_SPECS[i % len(PLOT_SPECS)], size=size)
        fault = spec.faults[i % len(spec.faults)] if i % 5 == 4 else None
        img = render(spec, rng, fault, run=40000 + i)
        buf = io.BytesIO()
        if fmt == "png":
            img.convert("RGB").save(buf, "PNG", compress_level=6)
        elif fmt == "png-palette":
            img.save(buf, "PNG", compress_level=1)
        else:
            img.convert("RGB").save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


# ---------------------------------------------------------------- decoders: bytes -> RGB uint8 (H, W, 3)


def pillow_rgb(data: bytes) -> np.ndarray:
    img = Image.open(io.BytesIO(data))
    img.load()
    return np.asarray(img if img.mode == "RGB" else img.convert("RGB"))


def decoders(fmt: str) -> dict[str, Callable[[bytes], np.ndarray] | str]:
    """The decoders to measure for ``fmt``: name -> function, or -> why it is not measured."""
    found: dict[str, Callable[[bytes], np.ndarray] | str] = {"pillow": pillow_rgb}
    try:
        import cv2

        cv2.setNumThreads(1)
        rgb_flag = getattr(cv2, "IMREAD_COLOR_RGB", None)

        def opencv_rgb(data: bytes) -> np.ndarray:
            buf = np.frombuffer(data, np.uint8)
            if rgb_flag is not None:
                return cv2.imdecode(buf, rgb_flag)
            return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)

        found["opencv"] = opencv_rgb
    except ImportError:
        found["opencv"] = "not installed (pip install opencv-python-headless)"
    if fmt.startswith("png"):
        try:
            import pyspng

            found["pyspng"] = lambda data: pyspng.load(data, format="RGB")
        except ImportError:
            found["pyspng"] = "not installed (pip install pyspng)"
    else:
        try:
            import simplejpeg

            found["simplejpeg"] = lambda data: simplejpeg.decode_jpeg(data, colorspace="RGB")
        except ImportError:
            found["simplejpeg"] = "not installed (pip install simplejpeg)"
    return found


def box(arr: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Pillow's box filter, as ``prepare`` resizes."""
    img = Image.fromarray(arr).resize((hw[1], hw[0]), Image.Resampling.BOX, reducing_gap=None)
    return np.asarray(img)


def area(arr: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    import cv2

    return cv2.resize(arr, (hw[1], hw[0]), interpolation=cv2.INTER_AREA)


def rate(fn: Callable[[bytes], object], images: list[bytes], repeat: int) -> float:
    """Images per second of ``fn`` over ``images``, the best of ``repeat`` passes."""
    fn(images[0])  # warm up
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for data in images:
            fn(data)
        best = min(best, time.perf_counter() - t0)
    return round(len(images) / best, 1)


def max_diff(a: np.ndarray, b: np.ndarray) -> int:
    if a.shape != b.shape:
        return -1
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


def compare(images: list[bytes], fmt: str, inputs: list[tuple[int, int]], repeat: int) -> dict:
    """Every decoder of ``fmt``: decode rate, decode + resize rates and their pixel differences."""
    reference = [pillow_rgb(d) for d in images]
    ref_resized = {hw: [box(a, hw) for a in reference] for hw in inputs}
    out: dict = {}
    found = decoders(fmt)
    resizers = [("box", box)] + ([("area", area)] if callable(found.get("opencv")) else [])
    for name, fn in found.items():
        if isinstance(fn, str):
            out[name] = {"skipped": fn}
            continue
        try:
            decoded = [fn(d) for d in images]
        except Exception as exc:  # noqa: BLE001 - a decoder that cannot read these is reported
            out[name] = {"skipped": f"fails: {exc.__class__.__name__}: {exc}"}
            continue
        row: dict = {
            "decode_per_s": rate(fn, images, repeat),
            "decode_max_diff": max(max_diff(a, b) for a, b in zip(decoded, reference)),
        }
        for hw in inputs:
            tag = f"{hw[0]}x{hw[1]}"
            for rname, resize in resizers:
                got = [resize(a, hw) for a in decoded]
                row[f"{rname}_{tag}_per_s"] = rate(lambda d, f=fn, r=resize, s=hw: r(f(d), s), images, repeat)
                row[f"{rname}_{tag}_max_diff"] = max(max_diff(a, b) for a, b in zip(got, ref_resized[hw]))
        out[name] = row
    for row, fast in (("hydra", images_mod.FAST_DECODERS), ("hydra_pillow_only", {})):
        saved, images_mod.FAST_DECODERS = images_mod.FAST_DECODERS, fast
        try:
            shipped: dict = {"decode_per_s": rate(lambda d: decode_image(d).load(), images, repeat)}
            for hw in inputs:
                tag = f"{hw[0]}x{hw[1]}"
                shipped[f"prepare_{tag}_per_s"] = rate(
                    lambda d, s=hw: prepare(decode_image(d), s, 3), images, repeat
                )
                got = [prepare(decode_image(d), hw, 3) for d in images]
                shipped[f"prepare_{tag}_max_diff"] = max(max_diff(a, b) for a, b in zip(got, ref_resized[hw]))
        finally:
            images_mod.FAST_DECODERS = saved
        out[row] = shipped
    return out


# ---------------------------------------------------------------- scaling through the decode pool


def pool_rate(files: list[Path], hw: tuple[int, int], procs: int, repeat: int) -> dict:
    """Images per second through a :class:`DecodePool` of ``procs`` processes (best of ``repeat``)."""
    jobs = [DecodeJob(str(f), size=hw) for f in files]
    with DecodePool(procs) as pool:
        for job in jobs[: 4 * procs]:  # warm up: every worker started and ready
            pool.submit(job)
        got = 0
        while got < min(len(jobs), 4 * procs):
            got += len(pool.collect(timeout=10.0))
        best = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            for job in jobs:
                pool.submit(job)
            got, bad = 0, 0
            while got < len(jobs):
                for _, res in pool.collect(timeout=10.0):
                    got += 1
                    bad += res.status != "ok"
            best = min(best, time.perf_counter() - t0)
        assert bad == 0, f"{bad} images failed in the pool"
    return {"processes": procs, "per_s": round(len(jobs) / best, 1)}


def in_process_rate(files: list[Path], hw: tuple[int, int], repeat: int) -> float:
    jobs = [DecodeJob(str(f), size=hw) for f in files]
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for job in jobs:
            decode_file(job)
        best = min(best, time.perf_counter() - t0)
    return round(len(jobs) / best, 1)


def scaling(
    images: list[bytes], fmt: str, work: Path, hw: tuple[int, int], procs: list[int], repeat: int
) -> dict:
    folder = work / fmt
    folder.mkdir(parents=True, exist_ok=True)
    suffix = "jpg" if fmt == "jpeg" else "png"
    files = []
    for i, data in enumerate(images):
        path = folder / f"plot-{i:06d}.{suffix}"
        path.write_bytes(data)
        files.append(path)
    out: dict = {
        "input": f"{hw[0]}x{hw[1]}",
        "in_process_per_s": in_process_rate(files, hw, repeat),
        "pools": [],
    }
    for p in procs:
        out["pools"].append(pool_rate(files, hw, p, repeat))
    one = next((r["per_s"] for r in out["pools"] if r["processes"] == 1), None)
    for r in out["pools"]:
        if one:
            r["speedup"] = round(r["per_s"] / one, 2)
    return out


# ---------------------------------------------------------------- main


def versions() -> dict:
    import PIL

    found = {"python": platform.python_version(), "pillow": PIL.__version__, "numpy": np.__version__}
    for module, dist in (("cv2", "opencv"), ("pyspng", "pyspng"), ("simplejpeg", "simplejpeg")):
        try:
            found[dist] = __import__(module).__version__
        except ImportError:
            found[dist] = None
    return found


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=120)
    parser.add_argument("--size", default="800x600", help="WIDTHxHEIGHT of the plots")
    parser.add_argument(
        "--format", default="all", choices=(*FORMATS, "both", "all"), help="both: png and jpeg"
    )
    parser.add_argument("--procs", default="1,2", help="decode processes to measure (one per core is added)")
    parser.add_argument("--inputs", default="299x299,160x160", help="model inputs HEIGHTxWIDTH")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="20 images, one pass: a smoke run")
    parser.add_argument("--skip-compare", action="store_true")
    parser.add_argument("--skip-scaling", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.repeat = min(args.images, 20), 1
    width, height = (int(v) for v in args.size.lower().split("x"))
    inputs = [tuple(int(v) for v in s.lower().split("x")) for s in args.inputs.split(",")]
    formats = {"both": ["png", "jpeg"], "all": list(FORMATS)}.get(args.format, [args.format])
    procs = sorted({int(p) for p in args.procs.split(",")} | {usable_cores()})
    result: dict = {
        "benchmark": "decode",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores ({usable_cores()} usable)",
        "versions": versions(),
        "images": args.images,
        "size": f"{width}x{height}",
        "repeat": args.repeat,
        "formats": {},
    }
    work = Path(tempfile.mkdtemp(prefix="hydra-bench-decode-"))
    try:
        for fmt in formats:
            images = make_images(args.images, (width, height), fmt)
            entry: dict = {"mean_kb": round(sum(map(len, images)) / len(images) / 1024, 1)}
            if not args.skip_compare:
                entry["load_before"] = load()
                entry["decoders"] = compare(images, fmt, inputs, args.repeat)
                entry["load_after"] = load()
            if not args.skip_scaling:
                before = load()
                entry["scaling"] = scaling(images, fmt, work, inputs[0], procs, args.repeat)
                entry["scaling"]["load_before"], entry["scaling"]["load_after"] = before, load()
            result["formats"][fmt] = entry
            print(json.dumps({fmt: entry}), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
