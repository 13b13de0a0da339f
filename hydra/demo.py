"""``hydra demo``: the whole system on the embedded SQLite default, in one command.

It starts the web app first (so there is something to look at at once), then
generates labelled synthetic plots, trains and activates a CPU head per plot
type (a Siamese head for the plot type that has no Bad labels), starts
``hydra-serve``, and streams new plots into the input directory: mostly good,
a fault now and then, a slow gain drift that shows in Trends, and every few
minutes a burst of bad plots that raises an alarm. A second run reuses the
models it finds. Ctrl-C stops everything.

The demo is for one person on one machine: it runs only on the embedded
SQLite database of HYDRA_HOME (never on a configured production database),
the app listens on 127.0.0.1 unless told otherwise, and the ``demo`` admin
gets a fresh random password on every start (printed) unless one is given.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.markup import escape
from sqlalchemy.engine import Engine

from hydra.config import HydraConfig

console = Console(stderr=True)

CLASSIFIED = ("cdc_occupancy", "fcal_occupancy", "bcal_timing")
GOOD_ONLY = "tof_energy"  # trained with the Siamese head from Good images alone
DRIFTING = "tof_energy"
DEMO_USER = "demo"
PASSWORD_ENV = "HYDRA_DEMO_PASSWORD"


class DemoError(RuntimeError):
    """The demo cannot run here; the message says why and what to do."""


@dataclass
class DemoOptions:
    port: int = 8501
    images: int = 160
    epochs: int = 20
    rate: float = 2.0  # plots per second written into the input directory
    duration: float = 0.0  # seconds of streaming; 0 = until Ctrl-C
    burst_every: float = 180.0  # seconds between bursts of bad plots
    app: bool = True
    seed: int = 0
    address: str = "127.0.0.1"  # where the web app listens
    password: str | None = None  # of the demo admin; None: a random one, printed


@contextmanager
def _process(
    args: list[str], name: str, log: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen]:
    """A child process that is stopped (SIGTERM, then SIGKILL) when the block ends."""
    fh = log.open("ab")
    proc = subprocess.Popen(
        args, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True, env=env and {**os.environ, **env}
    )
    console.print(f"started {name} (pid {proc.pid}, log {log})")
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        fh.close()
        console.print(f"stopped {name}")


def check_database(cfg: HydraConfig) -> None:
    """Refuse a configured database: the demo makes an admin, plot types and models wherever it runs."""
    if cfg.db_url:
        from sqlalchemy.engine import make_url

        shown = make_url(cfg.db_url).render_as_string(hide_password=True)
        raise DemoError(
            f"hydra demo runs on the embedded SQLite database of HYDRA_HOME only, and the database "
            f"is configured as {shown}; unset HYDRA_DB_URL (or db_url in the config) and point "
            "HYDRA_HOME at a scratch folder"
        )


def demo_password(opts: DemoOptions) -> str:
    """The password given (option or $HYDRA_DEMO_PASSWORD), else a fresh random one."""
    return opts.password or os.environ.get(PASSWORD_ENV) or secrets.token_urlsafe(12)


def ensure_user(engine: Engine, password: str) -> None:
    """Create the demo admin, or give the existing one this run's password."""
    from hydra.auth import create_user, get_user, set_password
    from hydra.db.engine import session_scope
    from hydra.db.queries import NotFoundError

    with session_scope(engine) as session:
        try:
            get_user(DEMO_USER, session=session)
        except NotFoundError:
            create_user(DEMO_USER, password, session=session, role="admin")
        else:
            set_password(DEMO_USER, password, session=session)


def _needs_model(engine: Engine, plot_type: str) -> bool:
    from hydra.db.engine import session_scope
    from hydra.db.queries import NotFoundError, active_model, get_plot_type

    with session_scope(engine) as session:
        try:
            return active_model(get_plot_type(plot_type, session=session).id, session=session) is None
        except NotFoundError:
            return True


def _train_all(cfg: HydraConfig, engine: Engine, opts: DemoOptions) -> None:
    """Generate, ingest and train what is missing; models already active are reused."""
    from hydra.data.naming import DEFAULT_LABELS
    from hydra.data.synthetic import generate
    from hydra.db.engine import session_scope
    from hydra.db.queries import create_plot_type, plot_types_by_name
    from hydra.services.ingest import ingest
    from hydra.services.training import TrainOptions, train

    todo = [p for p in (*CLASSIFIED, GOOD_ONLY) if _needs_model(engine, p)]
    if not todo:
        console.print("[green]all demo plot types have an active model: reusing them[/]")
        return
    data = cfg.home / "demo" / "training"
    with session_scope(engine) as session:
        known = plot_types_by_name(session=session)
        groups = {
            "cdc_occupancy": "CDC",
            "fcal_occupancy": "FCAL",
            "bcal_timing": "BCAL",
            "tof_energy": "TOF",
        }
        for name in todo:
            if name not in known:
                # the Good-only plot type has no NoData examples either: Good vs Bad alone
                labels = ["Good", "Bad"] if name == GOOD_ONLY else list(DEFAULT_LABELS)
                create_plot_type(name, labels, session=session, group=groups[name], collect_percent=2)
    for name in todo:
        good_only = name == GOOD_ONLY
        folder = data / name
        if not (folder / "labels.csv").exists():
            console.print(
                f"generating {opts.images} synthetic {name} plots" + (" (Good only)" if good_only else "")
            )
            generate(folder, [name], opts.images, seed=opts.seed, fault_rate=0.0 if good_only else 0.5)
        ingest(folder, engine=engine, labels_csv=folder / "labels.csv", pattern=cfg.naming_regex)
        console.rule(f"training {name} ({'siamese' if good_only else 'classifier'})")
        result = train(
            TrainOptions(
                plot_type=name,
                head="siamese" if good_only else None,
                epochs=opts.epochs,
                activate=True,
                seed=opts.seed,
            ),
            cfg=cfg,
            engine=engine,
        )
        if result is not None:
            acc = result.metrics.get("accuracy")
            shown = f"{acc:.1%}" if isinstance(acc, float) else "n/a"
            console.print(f"[green]model {result.model_id} active for {name}[/] (held-out accuracy {shown})")


class Streamer:
    """Writes plots into the input directory like an online monitoring system.

    Each tick writes the next chunk of one plot type; the run number advances
    every 20 chunks. Faults appear at random, ``DRIFTING`` drifts slowly, and
    a burst of consecutive faults hits one plot type every ``burst_every`` s.
    """

    def __init__(self, input_dir: Path, opts: DemoOptions, run: int = 2000) -> None:
        self.input_dir, self.opts = input_dir, opts
        self.rng = np.random.default_rng(opts.seed + 1)
        self.run, self.chunk, self.i = run, 0, 0
        self.start = time.monotonic()
        self.burst_left, self.burst_type, self.next_burst = 0, None, opts.burst_every

    def _fault(self, spec, name: str) -> str | None:
        from hydra.data.synthetic import choose_fault

        if self.burst_left and name == self.burst_type:
            self.burst_left -= 1
            return "dead_region" if "dead_region" in spec.faults else spec.faults[0]
        fault = choose_fault(spec, self.rng, 0.04)
        return None if fault == "empty" and name == GOOD_ONLY else fault

    def tick(self) -> Path:
        from hydra.data.synthetic import get_spec, write_plot

        names = (*CLASSIFIED, GOOD_ONLY)
        name = names[self.i % len(names)]
        if self.i % len(names) == 0:
            self.chunk += 1
            if self.chunk >= 20:
                self.run, self.chunk = self.run + 1, 0
        elapsed = time.monotonic() - self.start
        if elapsed >= self.next_burst and not self.burst_left:
            self.burst_type = CLASSIFIED[int(self.rng.integers(len(CLASSIFIED)))]
            self.burst_left, self.next_burst = 5, elapsed + self.opts.burst_every
        spec = get_spec(name)
        drift = min(1.0, elapsed / 900.0) if name == DRIFTING else 0.0
        self.i += 1
        return write_plot(
            self.input_dir, spec, self.run, self.chunk, self._fault(spec, name), drift=drift, seed=self.i
        )


def run_demo(cfg: HydraConfig, opts: DemoOptions) -> None:
    """Run the demo until Ctrl-C (or ``opts.duration`` seconds of streaming)."""
    from hydra.db.engine import get_engine
    from hydra.db.migrate import upgrade_to_head

    check_database(cfg)
    cfg.ensure_dirs()
    engine = get_engine(cfg.database_url)
    upgrade_to_head(engine)
    password = demo_password(opts)
    ensure_user(engine, password)
    login = escape(f"login: {DEMO_USER} / {password}")
    logs = cfg.home / "logs"
    logs.mkdir(exist_ok=True)
    hydra = [sys.executable, "-m", "hydra.cli"]
    stop = {"now": False}

    def _stop(*_):
        stop["now"] = True

    signal.signal(signal.SIGTERM, _stop)
    try:
        with _maybe_app(hydra, opts, logs, login):
            _train_all(cfg, engine, opts)
            # the demo onboards new plot types (a deployment quarantines unknown ones by default)
            onboard = {"HYDRA_SERVE__ONBOARD_NEW_PLOT_TYPES": "true"}
            with _process([*hydra, "serve"], "hydra-serve", logs / "serve.log", env=onboard):
                streamer = Streamer(cfg.input_dir, opts)
                console.print(
                    f"[bold green]streaming {opts.rate:g} plots/s into {cfg.input_dir}[/]  "
                    f"web app: {app_url(opts)}  {login}  (Ctrl-C stops)",
                    highlight=False,
                    soft_wrap=True,
                )
                t0 = time.monotonic()
                while not stop["now"] and (not opts.duration or time.monotonic() - t0 < opts.duration):
                    streamer.tick()
                    time.sleep(1.0 / opts.rate)
    except KeyboardInterrupt:
        console.print("stopping ...")


def app_url(opts: DemoOptions) -> str:
    host = "localhost" if opts.address in ("127.0.0.1", "localhost") else opts.address
    return f"http://{host}:{opts.port}"


def app_command(hydra: list[str], opts: DemoOptions) -> list[str]:
    """``hydra app`` bound to ``opts.address`` (loopback unless told otherwise)."""
    return [*hydra, "app", "--port", str(opts.port), "--address", opts.address]


@contextmanager
def _maybe_app(hydra: list[str], opts: DemoOptions, logs: Path, login: str) -> Iterator[None]:
    if not opts.app:
        yield
        return
    with _process(app_command(hydra, opts), "web app", logs / "app.log"):
        console.print(
            f"[bold]web app: {app_url(opts)}[/]  {login} "
            "(models are being trained; pages fill as they arrive)",
            highlight=False,
            soft_wrap=True,
        )
        yield
