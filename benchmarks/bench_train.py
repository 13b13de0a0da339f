"""Training benchmark: ``hydra train`` on ~160 synthetic plots with the CPU presets.

Prints one JSON object per plot type: the wall and CPU time of ``hydra
train`` (a real process, the CLI's default epochs and early stopping unless
``--epochs`` is given) with the classifier CPU preset and its held-out
accuracy, and the Siamese head's ROC AUC (problem vs Good) when trained on
Good images only, all on the same images in a fresh HYDRA_HOME. The load
average is printed too: on a shared machine it explains slow times.

Usage:
    .venv/bin/python benchmarks/bench_train.py [--plot-type cdc_occupancy,fcal_occupancy,bcal_timing]
        [--images 160] [--epochs N] [--no-siamese]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# one-channel faults (1D and 2D) and a global shift: what the CPU preset must learn
DEFAULT_PLOT_TYPES = "cdc_occupancy,fcal_occupancy,bcal_timing"


def _hydra(args: list[str], env: dict[str, str]) -> tuple[dict, float, float]:
    """Run ``hydra ARGS --json``: its last JSON line, wall seconds and CPU seconds."""
    exe = Path(sys.executable).with_name("hydra")
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run([str(exe), *args, "--json"], env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
    if proc.returncode != 0:
        raise SystemExit(f"hydra {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1]), elapsed, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plot-type", default=DEFAULT_PLOT_TYPES, help="one plot type or a comma list")
    parser.add_argument("--images", type=int, default=160)
    parser.add_argument("--epochs", type=int, default=None, help="default: the CLI's")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-siamese", action="store_true", help="time the classifier only")
    args = parser.parse_args()
    for plot_type in [p.strip() for p in args.plot_type.split(",") if p.strip()]:
        print(json.dumps(bench_plot_type(plot_type, args)), flush=True)


def bench_plot_type(plot_type: str, args: argparse.Namespace) -> dict:
    """Synthesise, ingest and train one plot type in a fresh HYDRA_HOME."""
    from hydra.config import load_config
    from hydra.data.synthetic import generate
    from hydra.db import make_engine, upgrade_to_head
    from hydra.services.ingest import ingest

    with tempfile.TemporaryDirectory(prefix="hydra-bench-train-") as tmp:
        home = Path(tmp) / "home"
        os.environ["HYDRA_HOME"] = str(home)  # the environment wins over arguments
        os.environ.pop("HYDRA_DB_URL", None)
        os.environ.pop("HYDRA_CONFIG", None)
        env = dict(os.environ)
        cfg = load_config()
        cfg.ensure_dirs()
        engine = make_engine(cfg.database_url)
        upgrade_to_head(engine)
        t0 = time.perf_counter()
        labels = generate(Path(tmp) / "plots", plot_types=[plot_type], images=args.images, seed=args.seed)
        synth_s = time.perf_counter() - t0
        ingest(Path(tmp) / "plots", engine=engine, labels_csv=labels)
        engine.dispose()
        common = [plot_type, "--seed", str(args.seed)]
        if args.epochs is not None:
            common += ["--epochs", str(args.epochs)]
        load_before = os.getloadavg()[0]
        clf, clf_s, clf_cpu = _hydra(["train", *common, "--config", "classifier-cpu"], env)
        result = {
            "benchmark": "train",
            "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.python_version()}",
            "load_average_1min_before": round(load_before, 1),
            "load_average_1min": round(os.getloadavg()[0], 1),
            "plot_type": plot_type,
            "images": args.images,
            "synth_seconds": round(synth_s, 2),
            "classifier_cpu": {
                "wall_seconds": round(clf_s, 1),
                "cpu_seconds": round(clf_cpu, 1),
                "threads": clf["metrics"].get("threads"),
                "epochs": clf["metrics"]["epochs"],
                "accuracy": clf["metrics"]["accuracy"],
                "n_test": clf["metrics"]["n_test"],
            },
        }
        if not args.no_siamese:
            sia, sia_s, sia_cpu = _hydra(
                ["train", *common, "--head", "siamese", "--train-labels", "Good"], env
            )
            result["siamese_good_only"] = {
                "wall_seconds": round(sia_s, 1),
                "cpu_seconds": round(sia_cpu, 1),
                "faulty_roc_auc": sia["metrics"]["faulty_roc_auc"],
                "problem_roc_auc": sia["metrics"]["problem_roc_auc"],
                "n_test": sia["metrics"]["n_test"],
            }
    return result


if __name__ == "__main__":
    main()
