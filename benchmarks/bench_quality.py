"""Detection quality on plots rendered from real histograms (see ``hydra.data.realbench``).

For every plot type, training set size and seed: a fresh HYDRA_HOME, the
training images ingested with their labels, ``hydra train``'s code path
(:func:`hydra.services.training.train`, the preset the CLI picks unless ``--config`` or
``--head`` says otherwise), then the held-out images scored through
``hydra predict``'s code path (:mod:`hydra.quality`). Prints one JSON line
per run and a final JSON summary: accuracy, problem recall, Good false
alarms (all and confirmed), recall per fault kind (and for the subtle ones),
ROC AUC, training seconds and the Grad-CAM pointing score, for the tuned
plot types and, apart, for the two kept out of all tuning; across seeds the
worst value is what counts.

Usage:
    .venv/bin/python benchmarks/bench_quality.py [--data var/bench-quality] [--sizes 160,40]
        [--seeds 0,1,2] [--plot-types hpx,...] [--config classifier-cpu | --head siamese --good-only]
        [--jobs 1] [--threads 2] [--out results.json]
    .venv/bin/python benchmarks/bench_quality.py --report results.json   # markdown tables
    .venv/bin/python benchmarks/bench_quality.py --misses results.json   # every wrong verdict, explained
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import signal
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

TRAIN_POOL = 160  # images per plot type that may be labelled for training
HELD_OUT = 80
WORST = {  # how "worst over seeds" reads each metric
    "accuracy": min,
    "problem_recall": min,
    "roc_auc": min,
    "cam_pointing": min,
    "good_false_alarm": max,
    "good_false_alarm_confirmed": max,
}


def _subset(records: list, size: int) -> list:
    """The first ``size`` of the training pool, stratified: half Good, a share of every fault kind."""
    if size >= len(records):
        return list(records)
    good = [r for r in records if r.label == "Good"]
    by_kind: dict[str, list] = {}
    for r in records:
        if r.label != "Good":
            by_kind.setdefault(r.fault, []).append(r)
    chosen = good[: size // 2]
    kinds = sorted(by_kind)
    i = 0
    while len(chosen) < size and any(by_kind.values()):
        bucket = by_kind[kinds[i % len(kinds)]]
        if bucket:
            chosen.append(bucket.pop(0))
        i += 1
    return chosen


def run_one(job: dict[str, Any]) -> dict[str, Any]:
    """One (plot type, size, seed): ingest, train, score. Runs in its own process."""
    import torch

    torch.set_num_threads(job["threads"])
    from hydra.config import load_config
    from hydra.data.realbench import read_truth
    from hydra.db import make_engine, upgrade_to_head
    from hydra.db.engine import session_scope
    from hydra.inference import ServingModel
    from hydra.quality import as_rows, ensure_problem_labels, score, summarize
    from hydra.services.ingest import ingest
    from hydra.services.training import TrainOptions, train

    data = Path(job["data"])
    records = [r for r in read_truth(data) if r.plot_type == job["plot_type"]]
    pool, held = records[:TRAIN_POOL], records[TRAIN_POOL : TRAIN_POOL + HELD_OUT]
    train_set = _subset(pool, job["size"])
    if job.get("good_only"):
        train_set = [r for r in train_set if r.label == "Good"]
    with tempfile.TemporaryDirectory(prefix="hydra-bench-quality-") as tmp:
        home, plots = Path(tmp) / "home", Path(tmp) / "plots"
        plots.mkdir()
        for r in train_set:
            (plots / r.filename).symlink_to((data / r.filename).resolve())
        with (plots / "labels.csv").open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["filename", "label"])
            w.writerows((r.filename, r.label) for r in train_set)
        os.environ["HYDRA_HOME"] = str(home)
        os.environ.pop("HYDRA_DB_URL", None)
        os.environ.pop("HYDRA_CONFIG", None)
        cfg = load_config()
        cfg.ensure_dirs()
        engine = make_engine(cfg.database_url)
        upgrade_to_head(engine)
        ingest(plots, engine=engine, labels_csv=plots / "labels.csv")
        ensure_problem_labels(engine, job["plot_type"])
        opts = TrainOptions(
            job["plot_type"],
            head=job.get("head"),
            config=job.get("config"),
            seed=job["seed"],
            activate=True,
            progress=False,
            threads=job["threads"],
            ensemble=not job.get("no_ensemble", False),
        )
        if job.get("epochs"):
            opts.epochs = job["epochs"]
        if job.get("folds") is not None:
            opts.folds = job["folds"]
        if job.get("ensemble_min_images") is not None:
            opts.ensemble_min_images = job["ensemble_min_images"]
        started = time.perf_counter()
        result = train(opts, cfg=cfg, engine=engine)
        train_s = time.perf_counter() - started
        with session_scope(engine) as session:
            loaded = ServingModel.load(session, result.model_id, cfg.path("models"))
        outcomes = score(loaded, held, data)
        engine.dispose()
    return {
        "plot_type": job["plot_type"],
        "data_seed": job["data_seed"],
        "size": job["size"],
        "seed": job["seed"],
        "trained_on": len(train_set),
        "train_seconds": round(train_s, 1),
        "threads": job["threads"],
        "head": result.head,
        "oof_confusion": result.metrics.get("confusion"),  # rows: the human label, in the plot type's order
        "summary": summarize(outcomes),
        "outcomes": as_rows(outcomes),
    }


def _combine(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Pooled metrics over the runs' outcomes (one seed, one size, a group of plot types)."""
    from hydra.quality import Outcome, summarize

    outcomes = [Outcome(**o) for r in runs for o in r["outcomes"]]
    out = summarize(outcomes)
    out["train_seconds_max"] = max(r["train_seconds"] for r in runs)
    out["train_seconds_mean"] = round(sum(r["train_seconds"] for r in runs) / len(runs), 1)
    out["train_seconds_median"] = sorted(r["train_seconds"] for r in runs)[len(runs) // 2]
    return out


def report(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per size: per group (tuned / held out / all) per seed, plus worst and spread over seeds."""
    from hydra.data.realbench import SOURCE_BY_NAME

    summary: dict[str, Any] = {}
    for size in sorted({r["size"] for r in runs}, reverse=True):
        mine = [r for r in runs if r["size"] == size]
        seeds = sorted({r["seed"] for r in mine})
        groups = {
            "tuned": lambda r: SOURCE_BY_NAME[r["plot_type"]].tuned,
            "held_out_types": lambda r: not SOURCE_BY_NAME[r["plot_type"]].tuned,
            "all": lambda r: True,
        }
        by_size: dict[str, Any] = {}
        for name, keep in groups.items():
            per_seed = {s: _combine([r for r in mine if r["seed"] == s and keep(r)]) for s in seeds if any(
                r["seed"] == s and keep(r) for r in mine)}  # fmt: skip
            if not per_seed:
                continue
            worst = {}
            for metric, pick in WORST.items():
                values = [v[metric] for v in per_seed.values() if v[metric] is not None]
                worst[metric] = pick(values) if values else None
                worst[f"{metric}_spread"] = [min(values), max(values)] if values else None
            kinds = sorted({k for v in per_seed.values() for k in v["recall_by_fault"]})
            worst["recall_by_fault"] = {
                k: min(
                    v["recall_by_fault"][k]["recall"] for v in per_seed.values() if k in v["recall_by_fault"]
                )
                for k in kinds
            }
            worst["train_seconds_max"] = max(v["train_seconds_max"] for v in per_seed.values())
            worst["train_seconds_median"] = sorted(v["train_seconds_median"] for v in per_seed.values())[
                len(per_seed) // 2
            ]
            by_size[name] = {"worst_seed": worst, "per_seed": per_seed}
        by_size["per_plot_type"] = {
            pt: {
                "roc_auc_min": min(r["summary"]["roc_auc"] or 0 for r in mine if r["plot_type"] == pt),
                "problem_recall_min": min(
                    r["summary"]["problem_recall"] or 0 for r in mine if r["plot_type"] == pt
                ),
                "good_false_alarm_max": max(
                    r["summary"]["good_false_alarm"] or 0 for r in mine if r["plot_type"] == pt
                ),
                "train_seconds_max": max(r["train_seconds"] for r in mine if r["plot_type"] == pt),
            }
            for pt in sorted({r["plot_type"] for r in mine})
        }
        summary[str(size)] = by_size
    return summary


def _read_runs(path: str) -> list[dict[str, Any]]:
    """The runs of a ``--out`` file (its last line, the summary, left out)."""
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    return [r for r in rows if "plot_type" in r]


def markdown(path: str) -> str:
    """Tables (per group and size, per plot type, per fault kind) from a ``--out`` file."""
    summary = report(_read_runs(path))
    out = []
    fmt = lambda v: "—" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))  # noqa: E731
    out.append("| labels | plot types | accuracy | problem recall | Good false alarm | confirmed | ROC AUC "
               "| Grad-CAM pointing | training s (median, max) |")  # fmt: skip
    out.append("|---|---|---|---|---|---|---|---|---|")
    for size, groups in summary.items():
        for name in ("tuned", "held_out_types", "all"):
            if name not in groups:
                continue
            w = groups[name]["worst_seed"]
            out.append(
                f"| {size} | {name.replace('_', ' ')} | {fmt(w['accuracy'])} | {fmt(w['problem_recall'])} "
                f"| {fmt(w['good_false_alarm'])} | {fmt(w['good_false_alarm_confirmed'])} | {fmt(w['roc_auc'])} "
                f"| {fmt(w['cam_pointing'])} | {w['train_seconds_median']:.0f}, {w['train_seconds_max']:.0f} |"
            )
    kinds = sorted({k for g in summary.values() for k in g["all"]["worst_seed"]["recall_by_fault"]})
    out += ["", "| labels | plot types | " + " | ".join(kinds) + " |", "|---|---|" + "---|" * len(kinds)]
    for size, groups in summary.items():
        for name in ("tuned", "held_out_types", "all"):
            if name in groups:
                rec = groups[name]["worst_seed"]["recall_by_fault"]
                out.append(
                    f"| {size} | {name.replace('_', ' ')} | "
                    + " | ".join(fmt(rec.get(k)) for k in kinds)
                    + " |"
                )
    out += ["", "| labels | plot type | ROC AUC (min) | problem recall (min) | Good false alarm (max) | training s (max) |",
            "|---|---|---|---|---|---|"]  # fmt: skip
    for size, groups in summary.items():
        for pt, v in groups["per_plot_type"].items():
            out.append(
                f"| {size} | {pt} | {fmt(v['roc_auc_min'])} | {fmt(v['problem_recall_min'])} "
                f"| {fmt(v['good_false_alarm_max'])} | {v['train_seconds_max']:.0f} |"
            )
    return "\n".join(out)


def misses(path: str, data: str) -> str:
    """Every wrong verdict of a ``--out`` file (a Good plot flagged, a problem missed) beside what made
    the image (:func:`hydra.data.realbench.explain`): a head's miss, or a fault nobody could see?"""
    from hydra.data.realbench import explain, read_stamp

    runs = _read_runs(path)
    folder_seed = (read_stamp(data) or {}).get("seed")
    seeds = {r["data_seed"] for r in runs if "data_seed" in r} - {folder_seed}
    if seeds:  # the same file names, other images: the explanation would be of the wrong plots
        raise SystemExit(f"{path} was measured on data seed {sorted(seeds)}; {data} holds seed {folder_seed}")
    facts = explain(data)
    out = [
        "| plot type | labels | seed | image | truth | subtle | said (weight) | luminosity | fault bins "
        "| entries there | share |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        for o in run["outcomes"]:
            if o["flagged"] != (o["truth"] == "Good"):
                continue
            f = facts.get(o["filename"], {})
            said = f"{o['label']} ({o['problem_weight']:.2f}{'' if o['confirmed'] else ', unconfirmed'})"
            out.append(
                f"| {o['plot_type']} | {run['size']} | {run['seed']} | {o['filename']} "
                f"| {o['fault'] or o['truth']} | {'yes' if o['subtle'] else ''} | {said} | {f.get('luminosity', '')} "
                f"| {f.get('fault_bins', '')} | {f.get('fault_entries', '')} | {f.get('fault_share', '')} |"
            )
    return "\n".join(out)


def main() -> None:
    from hydra.data.realbench import SOURCES, generate, is_current

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", default="var/bench-quality", help="generated once, reused while the generator and seed stay"
    )
    parser.add_argument("--data-seed", type=int, default=2026)
    parser.add_argument("--plot-types", default=",".join(s.plot_type for s in SOURCES))
    parser.add_argument("--sizes", default="160,40")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--config", default=None, help="a head preset (default: what hydra train picks)")
    parser.add_argument("--head", default=None)
    parser.add_argument("--good-only", action="store_true", help="label only the Good images")
    parser.add_argument("--epochs", type=int, default=None, help="default: the preset's")
    parser.add_argument("--folds", type=int, default=None, help="default: hydra train's")
    parser.add_argument("--no-ensemble", action="store_true", help="serve one model fitted on all images")
    parser.add_argument(
        "--ensemble-min-images",
        type=int,
        default=None,
        help="default: hydra train's (the fold models serve from it)",
    )
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel (processes)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per run")
    parser.add_argument(
        "--out", default=None, help="also write every run (with outcomes) here, one JSON line each"
    )
    parser.add_argument("--report", default=None, help="print markdown tables of an --out file and stop")
    parser.add_argument(
        "--misses",
        default=None,
        help="print every wrong verdict of an --out file with what made the image, and stop",
    )
    args = parser.parse_args()
    if args.misses:
        print(misses(args.misses, args.data))
        return
    if args.report:
        print(markdown(args.report))
        return
    data = Path(args.data)
    every_type = [s.plot_type for s in SOURCES]
    stamp = {"plot_types": every_type, "images": TRAIN_POOL + HELD_OUT, "seed": args.data_seed}
    if not is_current(data, **stamp):  # none yet, another seed, or an older generator's images
        t0 = time.perf_counter()
        generate(data, **stamp, workers=max(1, args.jobs, 2))
        print(json.dumps({"generated": str(data), "seconds": round(time.perf_counter() - t0, 1)}), flush=True)
    jobs = [
        {"data": str(data), "data_seed": args.data_seed, "plot_type": pt, "size": int(size), "seed": int(seed), "threads": args.threads,
         "config": args.config, "head": args.head, "good_only": args.good_only, "epochs": args.epochs, "folds": args.folds, "no_ensemble": args.no_ensemble,
         "ensemble_min_images": args.ensemble_min_images}
        for size in args.sizes.split(",")
        for seed in args.seeds.split(",")
        for pt in args.plot_types.split(",")
    ]  # fmt: skip
    runs = []
    started = time.perf_counter()
    import multiprocessing as mp

    out = open(args.out, "w") if args.out else None  # noqa: SIM115 - written as the runs finish
    from hydra.serve.supervisor import die_with_parent

    # a killed benchmark leaves no run behind (SIGKILL: Lightning catches SIGTERM and trains on)
    pool = ProcessPoolExecutor(
        args.jobs, mp_context=mp.get_context("spawn"), initializer=die_with_parent, initargs=(signal.SIGKILL,)
    )
    with pool:
        # written as each run finishes, so that a run cut short keeps what it measured
        for done in as_completed([pool.submit(run_one, job) for job in jobs]):
            run = done.result()
            runs.append(run)
            line = {k: v for k, v in run.items() if k != "outcomes"}
            print(json.dumps(line), flush=True)
            if out:
                out.write(json.dumps(run) + "\n")
                out.flush()
    result = {
        "benchmark": "quality",
        "machine": f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}",
        "config": args.config or args.head or "default",
        "good_only": args.good_only,
        "seconds": round(time.perf_counter() - started, 1),
        "summary": report(runs),
    }
    if out:
        out.write(json.dumps(result) + "\n")
        out.close()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    sys.exit(main())
