"""How many inferences per second the Keeper stores, alone (JSON out).

Usage: python benchmarks/bench_keeper.py [--reports 20000] [--batch 2000] [--mysql-url URL] [--skip-mysql]

Encoded Report messages (as the Predict workers send them) are decoded,
collected and written in batches of ``--batch`` (by default the Keeper's own
``serve.keeper_batch``; 500 until 2026-11-28) exactly as the Keeper does
(multi-row inserts of inference + RunTime rows, duplicate check, one
transaction per batch) into a fresh SQLite database and a fresh MariaDB
database. Two figures per backend:

* ``store``: decode and write only; files and heat maps are left out, so the
  rate is the database path (the figure measured since the first version).
* ``loop``: the Keeper's whole loop on one message after another: decode,
  the checks of every message, the batch, the write, then moving each file
  out of the input directory, the metrics and the ``done`` announcements.

Targets (issue #14): 20,000 inferences/s on SQLite and 25,000/s on MariaDB
(the writes of ten GPU nodes).
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

from hydra.config import ServeConfig, load_config
from hydra.db import make_engine, session_scope, upgrade_to_head
from hydra.db.models import Model
from hydra.db.queries import activate_model, create_plot_type
from hydra.serve.checks import check_message
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


def _setup(url: str, batch: int, home: Path) -> tuple[Keeper, int, int]:
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
    engine.dispose()
    cfg = load_config(None, home=home, db_url=url, serve={"keeper_batch": batch, "metrics_port": 0})
    cfg.ensure_dirs()
    return Keeper(cfg, StopFlag()), pt_id, model_id


def run_store(keeper: Keeper, frames: list[list], batch: int) -> dict:
    """Decode and write in batches (no checks, no files): the database path."""
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
    n = len(frames)
    return {"inferences": n, "batch": batch, "flushes": flushes, "seconds": round(elapsed, 3), "per_s": round(n / elapsed, 1),
            "keeper_cpu_s": round(cpu, 3), "per_cpu_s": round(n / cpu, 1)}  # fmt: skip


def run_loop(keeper: Keeper, frames: list[list], batch: int) -> dict:
    """The Keeper's loop: decode, check, batch, write, move the files, metrics, announcements."""
    import zmq

    cfg = keeper.cfg
    for f in frames:
        (cfg.input_dir / json.loads(bytes(f[1]))["filename"]).write_bytes(b"png")
    with zmq.Context() as ctx, ctx.socket(zmq.PUB) as announce:
        announce.bind(f"ipc://{cfg.home}/control")
        t0, c0 = time.perf_counter(), time.process_time()
        for f in frames:
            msg = decode_message(f)
            check_message(cfg, msg, keeper.input_dir)
            keeper.add(msg)
            if len(keeper.batch) >= batch:
                keeper._flush(announce)
        if len(keeper.batch):
            keeper._flush(announce)
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    n = len(frames)
    left = len(os.listdir(cfg.input_dir))
    return {"inferences": n, "stored": keeper.stored, "left_in_input": left, "seconds": round(elapsed, 3),
            "per_s": round(n / elapsed, 1), "per_cpu_s": round(n / cpu, 1)}  # fmt: skip


def run_backend(url: str, n: int, batch: int, home: Path) -> dict:
    keeper, pt_id, model_id = _setup(url, batch, home)
    try:
        out = run_store(keeper, reports(n, pt_id, model_id, keeper.cfg.input_dir), batch)
        out["loop"] = run_loop(keeper, reports(n, pt_id, model_id, keeper.cfg.input_dir), batch)
    finally:
        keeper.engine.dispose()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reports", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=ServeConfig.model_fields["keeper_batch"].default)
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
        "target_per_s": {"sqlite": 20000, "mariadb": 25000},
        "load_avg_1m": round(os.getloadavg()[0], 2),
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
