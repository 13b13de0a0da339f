"""Training benchmark: ``hydra train`` on ~160 synthetic plots with the CPU presets.

Prints one JSON object: the wall time of ``hydra train`` (a real process)
with the classifier CPU preset and its held-out accuracy, and the Siamese
head's ROC AUC (problem vs Good) when trained on Good images only, all on
the same images in a fresh HYDRA_HOME.

Usage:
    .venv/bin/python benchmarks/bench_train.py [--plot-type bcal_timing] [--images 160] [--epochs 20]
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
from pathlib import Path


def _hydra(args: list[str], env: dict[str, str]) -> tuple[dict, float]:
    exe = Path(sys.executable).with_name("hydra")
    started = time.perf_counter()
    proc = subprocess.run([str(exe), *args, "--json"], env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"hydra {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1]), elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plot-type", default="bcal_timing")
    parser.add_argument("--images", type=int, default=160)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    from hydra.config import load_config
    from hydra.data.synthetic import generate
    from hydra.db import make_engine, upgrade_to_head
    from hydra.ingest import ingest

    with tempfile.TemporaryDirectory(prefix="hydra-bench-train-") as tmp:
        home = Path(tmp) / "home"
        env = {**os.environ, "HYDRA_HOME": str(home)}
        env.pop("HYDRA_DB_URL", None)
        env.pop("HYDRA_CONFIG", None)
        cfg = load_config(home=home, db_url=None)
        cfg.ensure_dirs()
        engine = make_engine(cfg.database_url)
        upgrade_to_head(engine)
        t0 = time.perf_counter()
        labels = generate(
            Path(tmp) / "plots", plot_types=[args.plot_type], images=args.images, seed=args.seed
        )
        synth_s = time.perf_counter() - t0
        ingest(Path(tmp) / "plots", engine=engine, labels_csv=labels)
        engine.dispose()
        common = [args.plot_type, "--epochs", str(args.epochs), "--seed", str(args.seed)]
        clf, clf_s = _hydra(["train", *common, "--config", "classifier-cpu"], env)
        sia, sia_s = _hydra(["train", *common, "--head", "siamese", "--train-labels", "Good"], env)
    print(
        json.dumps(
            {
                "benchmark": "train",
                "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.python_version()}",
                "plot_type": args.plot_type,
                "images": args.images,
                "synth_seconds": round(synth_s, 2),
                "classifier_cpu": {
                    "wall_seconds": round(clf_s, 1),
                    "epochs": clf["metrics"]["epochs"],
                    "accuracy": clf["metrics"]["accuracy"],
                    "n_test": clf["metrics"]["n_test"],
                },
                "siamese_good_only": {
                    "wall_seconds": round(sia_s, 1),
                    "faulty_roc_auc": sia["metrics"]["faulty_roc_auc"],
                    "problem_roc_auc": sia["metrics"]["problem_roc_auc"],
                    "n_test": sia["metrics"]["n_test"],
                },
            }
        )
    )


if __name__ == "__main__":
    main()
