"""How much a Good reference alone tells faulty plots apart, by the way its spread is measured (JSON out).

No training: for every plot type of the real-histogram benchmark
(``hydra.data.realbench``, generated once under ``--data`` as
``bench_quality.py`` does), the Good images of the training pool make the
reference (per pixel: median and scaled median absolute deviation, or mean
and standard deviation, the latter also with each pixel's spread widened to
the largest in a square window, ``reference_window``; a floor on the
spread), and each held-out image is
scored by the mean of its ``--top`` largest absolute deviations (clipped at
``--clip`` spreads, by default where ``classifier-cpu`` clips them). Prints the ROC AUC of that score per plot type and
statistic: the information the deviation channels hand a head.

Usage:
    .venv/bin/python benchmarks/bench_reference.py [--data var/bench-quality] [--floor 0.02] [--top 20] [--windows 1,5] [--clip 16]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

TRAIN_POOL, HELD_OUT = 160, 80  # as benchmarks/bench_quality.py splits each plot type
SIZE = (120, 160)  # classifier-cpu's input


def main() -> None:
    import torch

    from hydra.data.images import load_image, prepare
    from hydra.data.realbench import read_truth
    from hydra.heads.presets import read_preset
    from hydra.heads.reference import DEFAULT_FLOOR, Z_CLIP, widen_spread
    from hydra.thresholds import roc_auc

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="var/bench-quality")
    parser.add_argument("--floor", type=float, default=DEFAULT_FLOOR, help="default: the heads' floor")
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--windows", default="1,5", help="reference_window values for the mean reference")
    clip = float(read_preset("classifier-cpu")[1].get("reference_clip", Z_CLIP))
    parser.add_argument("--clip", type=float, default=clip, help="default: classifier-cpu's reference_clip")
    args = parser.parse_args()
    data = Path(args.data)
    records = read_truth(data)
    windows = [int(w) for w in args.windows.split(",")]

    def load(rs: list) -> np.ndarray:
        return (
            np.stack([prepare(load_image(data / r.filename), SIZE, 3, []) for r in rs]).astype(np.float32)
            / 255
        )

    out: dict[str, dict[str, float]] = {}
    for pt in sorted({r.plot_type for r in records}):
        mine = [r for r in records if r.plot_type == pt]
        good = load([r for r in mine[:TRAIN_POOL] if r.label == "Good"])
        held = mine[TRAIN_POOL : TRAIN_POOL + HELD_OUT]
        x = load(held)
        faulty = np.array([r.label != "Good" for r in held])
        median = np.median(good, axis=0)
        refs = {"median": (median, np.median(np.abs(good - median), axis=0) * 1.4826)}
        std = torch.from_numpy(good.std(axis=0)).permute(2, 0, 1)  # C x H x W, as the heads keep it
        for w in windows:
            refs[f"mean_w{w}"] = (good.mean(axis=0), widen_spread(std, w).permute(1, 2, 0).numpy())
        out[pt] = {}
        for name, (centre, spread) in refs.items():
            z = np.abs(np.clip((x - centre) / np.maximum(spread, args.floor), -args.clip, args.clip))
            score = np.sort(z.reshape(len(z), -1), axis=1)[:, -args.top :].mean(axis=1)
            out[pt][name] = round(float(roc_auc(score, faulty)), 3)
        print(json.dumps({"plot_type": pt, "roc_auc": out[pt]}), flush=True)
    summary = {
        name: {"min": min(v[name] for v in out.values()), "max": max(v[name] for v in out.values())}
        for name in next(iter(out.values()))
    }
    print(
        json.dumps(
            {
                "summary": summary,
                "floor": args.floor,
                "top": args.top,
                "windows": windows,
                "clip": args.clip,
                "size": SIZE,
            }
        )
    )


if __name__ == "__main__":
    main()
