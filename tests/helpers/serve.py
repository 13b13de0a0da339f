"""The serve pipeline in tests: a deployment in a temp dir, a small model, ``hydra-serve`` as a process.

Every deployment has its own HYDRA_HOME, its own database, ipc:// sockets in a
private directory (so parallel runs never collide) and metrics off. The
pipeline runs as real ``hydra-serve`` processes; plots are dropped into its
input folder and what it stored is read back from the database.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from sqlmodel import select

from hydra.data.synthetic import write_plot
from hydra.db import make_engine, session_scope, upgrade_to_head
from hydra.db.models import ErrorRecord, Inference, Model, Threshold
from hydra.db.queries import activate_model, create_plot_type

ROOT = Path(__file__).resolve().parents[2]
HYDRA_SERVE = Path(sys.executable).with_name("hydra-serve")
PLOT = "fcal_occupancy"
FAULTS = (None, None, "dead_channel", "hot_channel", "empty")


def wait_until(
    check: Callable[[], bool], timeout: float, every: float = 0.25, what: str = "condition"
) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def add_model(
    engine,
    models_dir: Path,
    plot_type: str,
    *,
    labels: tuple[str, ...] = ("Good", "Bad", "NoData"),
    size: tuple[int, int] = (48, 64),
    thresholds: float = 0.5,
    create_type: bool = True,
) -> int:
    """A small untrained classifier saved, registered with thresholds and activated; its id."""
    from hydra.heads import create_head

    head = create_head(
        "classifier",
        labels=list(labels),
        problem_labels=["Bad"],
        input_size=size,
        backbone="mobilenetv3_small_050",
    )
    with session_scope(engine) as s:
        if create_type:
            pt = create_plot_type(plot_type, labels, session=s)
        else:
            from hydra.db.queries import get_plot_type

            pt = get_plot_type(plot_type, session=s)
        row = Model(
            plot_type_id=pt.id, head="classifier", path="", config=head.config(), input_height=size[0],
            input_width=size[1], channels=3, labels=list(labels),
        )  # fmt: skip
        s.add(row)
        s.flush()
        row.path = str(head.save(models_dir / str(row.id)))
        for lab in labels:
            s.add(Threshold(model_id=row.id, label=lab, value=thresholds))
        activate_model(row.id, session=s)
        return row.id


def write_bad_inputs(input_dir: Path, plot_type: str) -> dict[str, str]:
    """One file per kind of bad input; name -> the error kind expected."""
    from PIL import Image

    good = input_dir.parent / "good.png"
    Image.new("RGB", (64, 48), (255, 255, 255)).save(good)
    data = good.read_bytes()
    files = {
        f"{plot_type}-000001_0001.png": ("empty", b""),
        f"{plot_type}-000001_0002.png": ("truncated", data[: len(data) // 2]),
        f"{plot_type}-000001_0003.png": ("not_image", b"this is not a PNG at all\n" * 20),
        "not-the-convention.png": ("bad_name", data),
    }
    # a decompression bomb: a tiny PNG that declares 50000 x 50000 pixels
    bomb = input_dir.parent / "bomb.png"
    Image.new("1", (50000, 50000)).save(bomb, optimize=True)
    files[f"{plot_type}-000001_0004.png"] = ("too_large", bomb.read_bytes())
    for name, (_, content) in files.items():
        tmp = input_dir / f".{name}.tmp"
        tmp.write_bytes(content)
        os.replace(tmp, input_dir / name)
    return {name: kind for name, (kind, _) in files.items()}


class Deployment:
    """A HYDRA_HOME with its database, storage folders and serve settings."""

    def __init__(self, root: Path, db_url: str, **serve: object) -> None:
        self.home = root / "home"
        self.db_url = db_url
        self.sock_dir = Path(tempfile.mkdtemp(prefix="hs-", dir="/tmp"))
        settings = {
            "balancer_frontend": f"ipc://{self.sock_dir}/front",
            "balancer_backend": f"ipc://{self.sock_dir}/back",
            "keeper_address": f"ipc://{self.sock_dir}/keeper",
            "control_address": f"ipc://{self.sock_dir}/control",
            "metrics_port": 0,
            "workers": 2,
            "max_batch": 16,
            "order_deadline_s": 6,
            "rescan_interval_s": 1,
            "model_refresh_s": 1,
            "settle_ms": 100,
        }
        settings.update(serve)
        self.env = dict(os.environ, HYDRA_HOME=str(self.home), HYDRA_DB_URL=db_url, HYDRA_LOG_LEVEL="INFO")
        self.env.pop("HYDRA_CONFIG", None)
        for key, value in settings.items():
            self.env[f"HYDRA_SERVE__{key.upper()}"] = str(value)
        from hydra.config import load_config

        old = dict(os.environ)
        os.environ.update(self.env)
        try:
            self.cfg = load_config()
        finally:
            os.environ.clear()
            os.environ.update(old)
        self.cfg.ensure_dirs()
        self.engine = make_engine(db_url)
        upgrade_to_head(self.engine)

    def dir(self, which: str) -> Path:
        return self.cfg.path(which)

    def close(self) -> None:
        self.engine.dispose()
        shutil.rmtree(self.sock_dir, ignore_errors=True)


class Serve:
    """``hydra-serve`` as a child process, logging to a file; stopped with SIGTERM."""

    def __init__(self, dep: Deployment, *args: str) -> None:
        self.dep = dep
        self.log = dep.home / "serve.log"
        self.args = args
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Serve:
        fh = self.log.open("ab")
        self.proc = subprocess.Popen(
            [str(HYDRA_SERVE), *self.args], env=self.dep.env, stdout=fh, stderr=fh, cwd=ROOT
        )
        fh.close()
        return self

    def children(self) -> dict[str, int]:
        """Stage name -> pid of the supervisor's live children (from /proc, by command line)."""
        from hydra.serve.supervisor import stage_pids

        return stage_pids(self.proc.pid)

    def stop(self, timeout: float = 40.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(
                f"hydra-serve did not stop within {timeout} s; log:\n{self.tail()}"
            ) from None

    def wait_ready(self, timeout: float = 300.0) -> None:
        """Wait until every stage has sent its first heartbeat (torch imports are slow on a busy host)."""
        from sqlmodel import select

        from hydra.db.models import Heartbeat

        want = {"keeper", "balancer", "feeder"} | {f"predict-{i}" for i in range(self.dep.cfg.serve.workers)}

        def ready() -> bool:
            try:
                with session_scope(self.dep.engine) as s:
                    return want <= set(s.exec(select(Heartbeat.process)).all())
            except Exception:  # noqa: BLE001 - the database may be down in a test
                return False

        wait_until(ready, timeout, what=f"all stages up; log:\n{self.tail()}")

    def tail(self, n: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:]) if self.log.exists() else ""

    def __exit__(self, *exc: object) -> None:
        self.stop()


def drop_plots(input_dir: Path, n: int, *, plot: str = PLOT, run: int = 5000, start: int = 0) -> list[str]:
    names = []
    for i in range(start, start + n):
        p = write_plot(input_dir, plot, run + i // 100, i % 100, FAULTS[i % len(FAULTS)], seed=i)
        names.append(p.name)
    return names


def stored(dep: Deployment) -> tuple[list[Inference], list[ErrorRecord]]:
    with session_scope(dep.engine) as s:
        return list(s.exec(select(Inference)).all()), list(s.exec(select(ErrorRecord)).all())


def input_files(dep: Deployment) -> list[str]:
    return sorted(os.listdir(dep.cfg.input_dir))


def check_exactly_once(dep: Deployment, names: list[str], bad: dict[str, str]) -> list[Inference]:
    """One inference per image, one error per bad input, files where the rows say."""
    inferences, errors = stored(dep)
    counts = Counter(i.filename for i in inferences)
    assert sorted(counts) == sorted(names), f"missing: {sorted(set(names) - set(counts))[:5]}"
    assert max(counts.values()) == 1, [n for n, c in counts.items() if c > 1][:5]
    kinds = {e.filename: e.kind for e in errors}
    assert kinds == bad
    assert len(errors) == len(bad)
    for e in errors:
        assert Path(e.quarantine_path).is_file() and e.message
    for inf in inferences:
        assert Path(inf.path).is_file(), inf.path
        assert not inf.path.startswith(str(dep.cfg.input_dir))
        assert set(inf.weights) == {"Good", "Bad", "NoData"}
        assert abs(sum(inf.weights.values()) - 1.0) < 1e-4
        assert {"feeder", "balancer", "predict", "keeper", "total"} <= set(inf.timings)
    return inferences


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie nobody reaped has stopped running)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def cfg_at(tmp_path: Path, name: str = "home", **serve: object):
    """A config whose home is ``tmp_path / name``, with ``serve`` settings."""
    from hydra.config import load_config

    return load_config(None, home=tmp_path / name, serve=serve)
