"""Time the queries the Run page makes on every refresh, at production scale.

Seeds 200 plot types (with labels and an active model each) and 1,000,000
inferences (bulk insert), a RunTime window for half the plot types (the rest
fall back to history, the slow path), kept images for 20 plot types without a
model, then times each query of the Run page's refresh (median of repeats)
and prints one JSON object. The target is < 200 ms for the whole refresh.

Usage:
    python benchmarks/bench_run_page.py [--db-url URL] [--inferences N] [--plot-types N]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import insert

from hydra.db import make_engine, session_scope, upgrade_to_head
from hydra.db.models import Image, Inference, Label, Model, PlotType, RunTime, utcnow
from hydra.services import run, status

LABELS = (("Good", "#2ca02c", False), ("Bad", "#d62728", True), ("NoData", "#7f7f7f", False))


def seed(engine, n_types: int, n_inferences: int, no_model: int) -> dict[str, float]:
    t0 = time.perf_counter()
    now = utcnow()
    rng = random.Random(1)
    with engine.begin() as conn:
        conn.execute(insert(PlotType), [{"name": f"PT_{i:04d}", "mask": []} for i in range(n_types)])
        ids = [r[0] for r in conn.execute(PlotType.__table__.select().with_only_columns(PlotType.id))]
        conn.execute(insert(Label), [
            {"plot_type_id": i, "name": n, "color": c, "is_problem": p, "ordinal": k}
            for i in ids for k, (n, c, p) in enumerate(LABELS)
        ])  # fmt: skip
        modelled = ids[: n_types - no_model]
        conn.execute(insert(Model), [
            {"plot_type_id": i, "head": "classifier", "path": f"/m/{i}", "config": {}, "input_height": 128,
             "input_width": 128, "labels": [x[0] for x in LABELS], "metrics": {}, "active": True}
            for i in modelled
        ])  # fmt: skip
        model_of = dict(
            conn.execute(Model.__table__.select().with_only_columns(Model.plot_type_id, Model.id)).all()
        )
    per_type = n_inferences // len(modelled)
    batch: list[dict] = []
    n = 0
    with engine.begin() as conn:
        for k in range(per_type):
            when = now - timedelta(seconds=30 * (per_type - k))
            for pt in modelled:
                bad = rng.random() < 0.05
                label = "Bad" if bad else "Good"
                batch.append({
                    "source_key": f"{pt}-{k}", "path": f"/s/PT_{pt}-{k}.png", "filename": f"PT_{pt}-{k}.png",
                    "plot_type_id": pt, "run": 70000 + k // 120, "chunk": k, "model_id": model_of[pt],
                    "label": label, "weight": 0.9, "weights": {"Good": 0.9, "Bad": 0.05, "NoData": 0.05},
                    "confirmed": True, "is_problem": bad, "timings": {"predict": 600.0}, "created_at": when,
                })  # fmt: skip
                n += 1
                if len(batch) >= 20_000:
                    conn.execute(insert(Inference), batch)
                    batch.clear()
        if batch:
            conn.execute(insert(Inference), batch)
    t1 = time.perf_counter()
    with engine.begin() as conn:  # a RunTime window (last 60 per plot type) for half the plot types
        recent = conn.execute(
            Inference.__table__.select()
            .with_only_columns(Inference.id, Inference.plot_type_id, Inference.run, Inference.created_at)
            .where(Inference.created_at >= now - timedelta(minutes=30))
        ).all()
        half = set(modelled[: len(modelled) // 2])
        conn.execute(insert(RunTime), [
            {"inference_id": i, "plot_type_id": pt, "run": run_no, "label": "Good", "image_path": f"/s/{i}.png",
             "created_at": when}
            for i, pt, run_no, when in recent if pt in half
        ])  # fmt: skip
        conn.execute(insert(Image), [
            {"path": f"/k/{pt}-{j}.png", "filename": f"{pt}-{j}.png", "plot_type_id": pt, "run": 70000,
             "content_hash": f"{pt:x}{j:x}", "created_at": now - timedelta(minutes=j)}
            for pt in ids[n_types - no_model:] for j in range(500)
        ])  # fmt: skip
    return {"inferences": n, "seed_s": round(time.perf_counter() - t0, 1), "bulk_insert_s": round(t1 - t0, 1)}


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return round(statistics.median(times) * 1000, 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db-url", help="an empty database (default: a temporary SQLite file)")
    ap.add_argument("--plot-types", type=int, default=200)
    ap.add_argument("--inferences", type=int, default=1_000_000)
    ap.add_argument("--no-model", type=int, default=20, help="plot types without a model (Image fallback)")
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.db_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        engine = make_engine(url)
        upgrade_to_head(engine)
        info = seed(engine, args.plot_types, args.inferences, args.no_model)

        def query(fn):
            def call():
                with session_scope(engine) as s:
                    return fn(s)

            return call

        # what the refreshing fragment runs every app.refresh_s, in one session as the page does
        refresh = query(lambda s: (run.run_header(session=s), run.open_alarms(session=s),
                                   run.run_frames(session=s), run.legend(session=s)))  # fmt: skip
        steps = {
            "run_frames_ms": query(lambda s: run.run_frames(session=s)),
            "run_header_ms": query(lambda s: run.run_header(session=s)),
            "open_alarms_ms": query(lambda s: run.open_alarms(session=s)),
            "legend_ms": query(lambda s: run.legend(session=s)),
            # only on a full rerun (a control changed): the sidebar and the controls
            "heartbeats_ms": query(lambda s: status.heartbeats(session=s)),
            "controls_ms": query(lambda s: (run.plot_groups(session=s), run.plot_types(session=s))),
        }
        result = {name: timed(fn, args.repeats) for name, fn in steps.items()}
        result["refresh_ms"] = timed(refresh, args.repeats)
        with session_scope(engine) as s:
            frames = run.run_frames(session=s)
        result["full_rerun_ms"] = round(
            result["refresh_ms"] + result["heartbeats_ms"] + result["controls_ms"], 2
        )
        result["sources"] = {
            src: sum(f.source == src for f in frames) for src in ("runtime", "history", "image")
        }
        print(json.dumps({
            "benchmark": "run_page_queries", "backend": engine.url.get_backend_name(),
            "plot_types": args.plot_types, **info, **result, "target_ms": 200,
            "ok": result["refresh_ms"] < 200,
        }))  # fmt: skip
        engine.dispose()


if __name__ == "__main__":
    main()
