"""How many inferences per second the Keeper stores, alone (JSON out).

Usage: python benchmarks/bench_keeper.py [--reports 20000] [--batch 500] [--mysql-url URL] [--skip-mysql]

Encoded Report messages (as the Predict workers send them) are decoded,
collected and written in batches of ``--batch`` exactly as the Keeper does
(multi-row inserts of inference + RunTime rows, duplicate check, one
transaction per batch) into a fresh SQLite database and a fresh MariaDB
database. Files and heat maps are left out: the rate is the database path.
Target: at least 5,000 inferences/s on each backend.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
import uuid
from pathlib import Path

from hydra.config import load_config
from hydra.db import make_engine, session_scope, upgrade_to_head
from hydra.db.models import Model
from hydra.db.queries import activate_model, create_plot_type
from hydra.serve.keeper import Keeper
from hydra.serve.messages import Report, decode_message, encode_message
from hydra.serve.stage import StopFlag
from hydra.serve.store import Batch

LABELS = ["Good", "Bad", "NoData"]


def reports(n: int, pt_id: int, model_id: int, input_dir: Path) -> list[list]:
    now = time.time()
    out = []
    for i in range(n):
        key = uuid.uuid4().hex + uuid.uuid4().hex
        r = Report(
            order_id=key[:16], path=str(input_dir / f"fcal_occupancy-{5000 + i // 100:06d}_{i % 100:04d}.png"),
            filename=f"fcal_occupancy-{5000 + i // 100:06d}_{i % 100:04d}.png", source_key=key,
            plot_type="fcal_occupancy", plot_type_id=pt_id, run=5000 + i // 100, chunk=i % 100,
            model_id=model_id, label="Good", weight=0.97, weights={"Good": 0.97, "Bad": 0.02, "NoData": 0.01},
            confirmed=True, is_problem=False, content_hash=key, worker="predict-0",
            times={k: now + j * 0.001 for j, k in enumerate(("file", "seen", "feed0", "feed1", "bal_in", "bal_out", "recv", "pred0", "pred1"))},
        )  # fmt: skip
        out.append([bytes(f) for f in encode_message(r)])
    return out


def run_backend(url: str, n: int, batch: int, home: Path) -> dict:
    engine = make_engine(url)
    upgrade_to_head(engine)
    with session_scope(engine) as s:
        pt = create_plot_type("fcal_occupancy", LABELS, session=s)
        m = Model(
            plot_type_id=pt.id, head="classifier", path="x", input_height=120, input_width=160, labels=LABELS
        )
        s.add(m)
        s.flush()
        activate_model(m.id, session=s)
        pt_id, model_id = pt.id, m.id
    cfg = load_config(None, home=home, db_url=url, serve={"keeper_batch": batch, "metrics_port": 0})
    cfg.ensure_dirs()
    keeper = Keeper(cfg, StopFlag())
    frames = reports(n, pt_id, model_id, cfg.input_dir)
    t0, c0 = time.perf_counter(), time.process_time()
    flushes = 0
    for f in frames:
        keeper.add(decode_message(f))
        if len(keeper.batch) >= batch:
            keeper.store.write(keeper.batch)
            keeper.batch = Batch()
            flushes += 1
    if len(keeper.batch):
        keeper.store.write(keeper.batch)
        flushes += 1
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    engine.dispose()
    keeper.engine.dispose()
    return {"inferences": n, "batch": batch, "flushes": flushes, "seconds": round(elapsed, 3), "per_s": round(n / elapsed, 1),
            "keeper_cpu_s": round(cpu, 3), "per_cpu_s": round(n / cpu, 1)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reports", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument(
        "--mysql-url",
        default=os.environ.get("HYDRA_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test"),
    )
    parser.add_argument("--skip-mysql", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hydra-bench-keeper-"))
    result = {
        "benchmark": "keeper",
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "target_per_s": 5000,
    }
    try:
        result["sqlite"] = run_backend(
            f"sqlite:///{work / 'hydra.db'}", args.reports, args.batch, work / "home1"
        )
        if not args.skip_mysql:
            import pymysql
            from sqlalchemy.engine import make_url

            url = make_url(args.mysql_url)
            name = f"hydra_bench_{uuid.uuid4().hex[:8]}"
            kw = dict(host=url.host, port=url.port or 3306, user=url.username, password=url.password or "")
            with pymysql.connect(**kw) as conn, conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
            try:
                db_url = url.set(database=name).render_as_string(hide_password=False)
                result["mariadb"] = run_backend(db_url, args.reports, args.batch, work / "home2")
            finally:
                with pymysql.connect(**kw) as conn, conn.cursor() as cur:
                    cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
