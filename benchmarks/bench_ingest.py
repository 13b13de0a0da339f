"""How long `hydra ingest` takes to register N labelled plot images (JSON out).

Usage: python benchmarks/bench_ingest.py [--images 10000] [--db-url URL]

The images are 800x600 plot-like PNGs (20 distinct ones copied under 10,000
names), registered with a labels CSV into a fresh database.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from hydra.data.naming import make_name
from hydra.db import make_engine, upgrade_to_head
from hydra.services.ingest import ingest


def _plot(rng: np.random.Generator) -> Image.Image:
    img = Image.new("RGB", (800, 600), "white")
    draw = ImageDraw.Draw(img)
    counts = rng.poisson(300, 100)
    for i, c in enumerate(counts):
        x = 60 + i * 7
        draw.rectangle([x, 560 - int(c), x + 6, 560], fill=(40, 90, 200))
    draw.rectangle([60, 40, 760, 560], outline="black")
    return img


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--db-url", default=None, help="default: a fresh SQLite file")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    work = Path(tempfile.mkdtemp(prefix="hydra-bench-ingest-"))
    try:
        src = work / "src"
        src.mkdir()
        templates = []
        for i in range(20):
            p = work / f"t{i}.png"
            _plot(rng).save(p)
            templates.append(p)
        lines = ["filename,label"]
        for i in range(args.images):
            name = make_name(f"plot{i % 10}", 1000 + i // 100, i % 100)
            shutil.copyfile(templates[i % 20], src / name)
            lines.append(f"{name},{'Bad' if i % 7 == 0 else 'Good'}")
        (src / "labels.csv").write_text("\n".join(lines) + "\n")
        url = args.db_url or f"sqlite:///{work / 'hydra.db'}"
        engine = make_engine(url)
        upgrade_to_head(engine)
        t0 = time.perf_counter()
        report = ingest(src, engine=engine, labels_csv=src / "labels.csv")
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = ingest(src, engine=engine, labels_csv=src / "labels.csv")
        second = time.perf_counter() - t0
        print(
            json.dumps(
                {
                    "benchmark": "ingest",
                    "backend": engine.dialect.name,
                    "images": args.images,
                    "added": report.added,
                    "seconds": round(first, 3),
                    "images_per_s": round(report.added / first, 1),
                    "second_run_seconds": round(second, 3),
                    "second_run_added": again.added,
                    "machine": f"{platform.node()} {platform.processor() or platform.machine()}",
                }
            )
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
