"""What the serve machinery costs per image: ``hydra-serve`` with the ``null`` head (JSON out).

Usage: python benchmarks/bench_pipeline.py [--images 6000] [--size 64x48] [--workers 1] [--batch 64]
                                          [--mysql-url URL] [--skip-mysql] [--keep]

The ``null`` head answers constant weights without computing anything (input
32x32), so what is left is the pipeline itself: the Feeder (find, read, hash,
decode, resize, encode), the Balancer, Predict's batching and messages, and
the Keeper (checks, one transaction per batch, moving every file). The real
``hydra-serve`` is started on a fresh HYDRA_HOME (SQLite, then MariaDB with
``--mysql-url``), warmed up, then ``--images`` small PNGs are renamed into the
input directory at once. The rate is images over the time from the first
rename to the last ``done`` announcement of the Keeper (sent after the row
is committed and the file moved). Alongside: the stages' median timings as
stored with the inferences, and the CPU seconds each process (and the
database server) spent per image, read from /proc, which is where the time
goes when the cores are the limit.

``--profile DIR`` also samples every stage with py-spy (``PY_SPY`` or on the
PATH) while the images flow, writes each stage's collapsed stacks to DIR and
adds each stage's busiest functions to the JSON.

Target (issue #14): >= 3,000 images/s on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import zmq
from sqlmodel import col, func, select

LABELS = ["Good", "Bad", "NoData"]
PLOT = "fcal_occupancy"
TARGET = 3000


def make_pngs(directory: Path, n: int, size: tuple[int, int], start_run: int) -> list[Path]:
    """``n`` small histogram-like PNGs (distinct content), named by the convention."""
    from PIL import Image

    from hydra.data.naming import make_name

    directory.mkdir(parents=True, exist_ok=True)
    w, h = size
    rng = np.random.default_rng(0)
    base = np.full((h, w, 3), 255, np.uint8)
    base[h - 4, :] = 0
    base[:, 3] = 0
    out = []
    for i in range(n):
        img = base.copy()
        bars = rng.integers(1, h - 6, size=w - 5)
        for x, b in enumerate(bars):
            img[h - 4 - b : h - 4, 5 + x] = (40, 70, 200)
        path = directory / make_name(PLOT, start_run + i // 1000, i % 1000)
        Image.fromarray(img).save(path, compress_level=1)
        out.append(path)
    return out


def add_null_model(engine, models_dir: Path, input_size: tuple[int, int]) -> int:
    from hydra.db import session_scope
    from hydra.db.models import Model, Threshold
    from hydra.db.queries import activate_model, create_plot_type
    from hydra.heads import create_head

    head = create_head("null", labels=LABELS, problem_labels=["Bad"], input_size=input_size)
    with session_scope(engine) as s:
        pt = create_plot_type(PLOT, LABELS, session=s)
        row = Model(plot_type_id=pt.id, head="null", path="", config=head.config(), input_height=input_size[0],
                    input_width=input_size[1], channels=3, labels=LABELS)  # fmt: skip
        s.add(row)
        s.flush()
        row.path = str(head.save(models_dir / str(row.id)))
        s.add_all([Threshold(model_id=row.id, label=lab, value=0.5) for lab in LABELS])
        activate_model(row.id, session=s)
        return int(row.id)


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def cpu_seconds(pid: int, *, descendants: bool = True) -> float:
    """User + system CPU seconds so far of one process (its threads) and its live descendants
    (the Feeder's decode processes)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (f := _stat(int(entry))) is not None:
            parents.setdefault(int(f[1]), []).append(int(entry))
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        if (f := _stat(p)) is not None:
            total += (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
        if descendants:
            todo.extend(parents.get(p, []))
    return total


def stage_pids(parent: int) -> dict[str, int]:
    """Stage name -> pid of ``hydra-serve`` and its stages."""
    from hydra.serve.supervisor import stage_pids as stages

    return {"supervisor": parent, **stages(parent)}


def server_pid(names: tuple[str, ...] = ("mariadbd", "mysqld")) -> int | None:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if Path(f"/proc/{entry}/comm").read_text().strip() in names:
                    return int(entry)
            except OSError:
                continue
    return None


class Pipeline:
    """``hydra-serve`` on a private HYDRA_HOME and database."""

    def __init__(self, work: Path, db_url: str, serve: dict[str, object]) -> None:
        from hydra.config import load_config
        from hydra.db import make_engine, upgrade_to_head

        self.sock = Path(tempfile.mkdtemp(prefix="hbp-", dir="/tmp"))
        self.env = dict(
            os.environ, HYDRA_HOME=str(work / "home"), HYDRA_DB_URL=db_url, HYDRA_LOG_LEVEL="INFO"
        )
        self.env.pop("HYDRA_CONFIG", None)
        settings = {
            "balancer_frontend": f"ipc://{self.sock}/f", "balancer_backend": f"ipc://{self.sock}/b",
            "keeper_address": f"ipc://{self.sock}/k", "control_address": f"ipc://{self.sock}/c",
            "metrics_port": 0, **serve,
        }  # fmt: skip
        for k, v in settings.items():
            self.env[f"HYDRA_SERVE__{k.upper()}"] = str(v)
        old = dict(os.environ)
        os.environ.update({k: v for k, v in self.env.items() if k.startswith("HYDRA_")})
        try:
            self.cfg = load_config()
        finally:
            os.environ.clear()
            os.environ.update(old)
        self.cfg.ensure_dirs()
        self.engine = make_engine(db_url)
        upgrade_to_head(self.engine)
        self.proc: subprocess.Popen | None = None

    def start(self, workers: int) -> None:
        from hydra.db import session_scope
        from hydra.db.models import Heartbeat

        log = (self.cfg.home / "serve.log").open("ab")
        exe = Path(sys.executable).with_name("hydra-serve")
        self.proc = subprocess.Popen([str(exe)], env=self.env, stdout=log, stderr=log)
        want = {"keeper", "balancer", "feeder"} | {f"predict-{i}" for i in range(workers)}
        end = time.monotonic() + 600
        while time.monotonic() < end:
            with session_scope(self.engine) as s:
                if want <= set(s.exec(select(Heartbeat.process)).all()):
                    return
            if self.proc.poll() is not None:
                break
            time.sleep(0.5)
        raise RuntimeError(f"hydra-serve did not come up; see {self.cfg.home / 'serve.log'}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=120)
        self.engine.dispose()
        shutil.rmtree(self.sock, ignore_errors=True)


def feed(files: list[Path], input_dir: Path, sub: zmq.Socket, timeout: float = 600) -> dict:
    """Rename every file in at once; seconds from the first rename to the last 'done'."""
    want = {str(input_dir / f.name) for f in files}
    done: dict[str, float] = {}
    start: dict[str, float] = {}
    t0 = time.time()
    for f in files:
        start[str(input_dir / f.name)] = time.time()
        os.replace(f, input_dir / f.name)
    renamed = time.time() - t0
    end = time.time() + timeout
    while len(done) < len(want) and time.time() < end:
        if sub.poll(100):
            while sub.poll(0):
                _, path = sub.recv_multipart()
                p = path.decode()
                if p in want:
                    done.setdefault(p, time.time())
    last = max(done.values()) if done else time.time()
    span = last - t0
    lat = np.array([(done[p] - start[p]) * 1000.0 for p in done]) if done else np.zeros(1)
    return {"images": len(files), "completed": len(done), "seconds": round(span, 3),
            "per_s": round(len(done) / span, 1), "rename_s": round(renamed, 3),
            "latency_ms": {"median": round(float(np.median(lat)), 1), "max": round(float(lat.max()), 1)}}  # fmt: skip


def stage_medians(engine, runs: set[int]) -> dict[str, float]:
    """Median per-stage times stored with the inferences (``wait`` and ``total`` start at the file's
    mtime, which here is when it was staged: left out)."""
    from hydra.db import session_scope
    from hydra.db.models import Inference

    with session_scope(engine) as s:
        rows = s.exec(select(Inference.timings).where(col(Inference.run).in_(runs))).all()
    keys = sorted({k for t in rows for k in t} - {"wait", "total"})
    return {k: round(float(np.median([t[k] for t in rows if k in t])), 2) for k in keys}


def start_spies(pids: dict[str, int], out: Path) -> dict[str, tuple[subprocess.Popen, Path]]:
    """py-spy on every stage (not the database server), sampling until stopped."""
    exe = os.environ.get("PY_SPY") or shutil.which("py-spy")
    if not exe:
        raise SystemExit("--profile needs py-spy (set PY_SPY or put it on the PATH)")
    out.mkdir(parents=True, exist_ok=True)
    spies = {}
    for stage, pid in pids.items():
        if stage in ("supervisor", "mariadbd"):
            continue
        path = out / f"{stage}.txt"
        cmd = [exe, "record", "--pid", str(pid), "--format", "raw", "--rate", "250", "--nonblocking", "--gil",
               "-o", str(path)]  # fmt: skip
        spies[stage] = (subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), path)
    time.sleep(1.0)  # attached
    return spies


def stop_spies(spies: dict[str, tuple[subprocess.Popen, Path]], top: int = 12) -> dict[str, dict]:
    """Stop the samplers; per stage the functions with the most samples, on their own and with callees."""
    for proc, _ in spies.values():
        proc.send_signal(signal.SIGINT)
    summary = {}
    for stage, (proc, path) in spies.items():
        proc.wait(timeout=60)
        own: dict[str, int] = {}
        incl: dict[str, int] = {}
        total = 0
        for line in path.read_text().splitlines() if path.exists() else []:
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            n = int(count)
            total += n
            frames = [f.split(" (")[0] + " " + f.rsplit("/", 1)[-1].rstrip(")") for f in stack.split(";")[1:]]
            if frames:
                own[frames[-1]] = own.get(frames[-1], 0) + n
            for f in set(frames):
                incl[f] = incl.get(f, 0) + n

        summary[stage] = {
            "samples": total,
            "self": _shares(own, total, top),
            "inclusive": _shares(incl, total, top),
        }
    return summary


def _shares(counts: dict[str, int], total: int, top: int) -> dict[str, float]:
    best = sorted(counts.items(), key=lambda kv: -kv[1])[:top]
    return {k: round(v / max(total, 1), 3) for k, v in best}


def run_backend(name: str, db_url: str, work: Path, args: argparse.Namespace) -> dict:
    from hydra.db import session_scope
    from hydra.db.models import Inference

    size = tuple(int(v) for v in args.size.lower().split("x"))
    serve = {
        "workers": args.workers, "max_batch": args.batch, "max_wait_ms": args.max_wait_ms,
        "keeper_flush_ms": args.flush_ms, "max_in_flight": args.in_flight, "torch_threads": args.threads,
    }  # fmt: skip
    pipe = Pipeline(work / name, db_url, serve)
    try:
        add_null_model(pipe.engine, pipe.cfg.path("models"), (32, 32))
        stage = work / name / "stage"
        warm = make_pngs(stage / "warm", 40, size, 1000)
        bulk = make_pngs(stage / "bulk", args.images, size, 5000)
        pipe.start(args.workers)
        with zmq.Context() as ctx, ctx.socket(zmq.SUB) as sub:
            sub.setsockopt(zmq.SUBSCRIBE, b"done")
            sub.connect(pipe.cfg.serve.control_address)
            time.sleep(0.5)
            for f in warm:  # loads the model in every worker
                os.replace(f, pipe.cfg.input_dir / f.name)
                time.sleep(0.02)
            time.sleep(2.0)
            pids = stage_pids(pipe.proc.pid)
            if name == "mariadb" and (db := server_pid()):
                pids["mariadbd"] = db
            spies = start_spies(pids, args.profile / name) if args.profile else {}
            pids.pop("supervisor", None)  # its children are the stages, counted on their own
            own = pids["feeder"]
            before = {k: cpu_seconds(p) for k, p in pids.items()}
            before["feeder (own process)"] = cpu_seconds(own, descendants=False)
            me0 = time.process_time()
            result = feed(bulk, pipe.cfg.input_dir, sub)
            after = {k: cpu_seconds(p) for k, p in pids.items()}
            after["feeder (own process)"] = cpu_seconds(own, descendants=False)
            me = time.process_time() - me0
            if spies:
                result["profile"] = stop_spies(spies)
        n = max(result["completed"], 1)
        cpu = {k: round((after[k] - before[k]) / n * 1e6, 1) for k in before}
        cpu["benchmark"] = round(me / n * 1e6, 1)
        result["cpu_us_per_image"] = cpu
        result["cpu_us_per_image_total"] = round(sum(v for k, v in cpu.items() if "(" not in k), 1)
        result["stage_median_ms"] = stage_medians(
            pipe.engine, set(range(5000, 5000 + args.images // 1000 + 1))
        )
        with session_scope(pipe.engine) as s:
            result["rows"] = int(s.exec(select(func.count()).select_from(Inference)).one())
        result["left_in_input"] = len(os.listdir(pipe.cfg.input_dir))
        return result
    finally:
        pipe.stop()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=6000)
    parser.add_argument("--size", default="64x48", help="PNG width x height")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--flush-ms", type=float, default=50.0)
    parser.add_argument("--in-flight", type=int, default=2000)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads per worker (0: the supervisor's share of the cores)",
    )
    parser.add_argument(
        "--mysql-url",
        default=os.environ.get("HYDRA_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test"),
    )
    parser.add_argument("--skip-mysql", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, databases)")
    parser.add_argument("--profile", type=Path, help="sample every stage with py-spy into this folder")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="hydra-bench-pipeline-"))
    result: dict = {
        "benchmark": "pipeline", "head": "null", "machine": platform.machine(), "cpus": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2), "images": args.images, "size": args.size,
        "workers": args.workers, "batch": args.batch, "torch_threads": args.threads, "target_per_s": TARGET,
    }  # fmt: skip
    try:
        result["sqlite"] = run_backend("sqlite", f"sqlite:///{work / 'hydra.db'}", work, args)
        if not args.skip_mysql:
            import pymysql
            from sqlalchemy.engine import make_url

            url = make_url(args.mysql_url)
            db = f"hydra_bench_{uuid.uuid4().hex[:8]}"
            kw = dict(host=url.host, port=url.port or 3306, user=url.username, password=url.password or "")
            with pymysql.connect(**kw) as conn, conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE `{db}` CHARACTER SET utf8mb4")
            try:
                db_url = url.set(database=db).render_as_string(hide_password=False)
                result["mariadb"] = run_backend("mariadb", db_url, work, args)
            finally:
                with pymysql.connect(**kw) as conn, conn.cursor() as cur:
                    cur.execute(f"DROP DATABASE IF EXISTS `{db}`")
        result["load_avg_1m_after"] = round(os.getloadavg()[0], 2)
    finally:
        if args.keep:
            result["work"] = str(work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
