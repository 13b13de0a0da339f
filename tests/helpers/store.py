"""The Keeper's Store in tests: a store on a database, reports of files in its input folder, batches."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from hydra.config import load_config
from hydra.db import session_scope
from hydra.serve.alarms import AlarmTracker
from hydra.serve.conditions import CommandCondition
from hydra.serve.messages import ErrorNotice, Report
from hydra.serve.store import Batch, Store
from tests.helpers.models import add_active_model


def make_store(engine, tmp_path: Path, consecutive: int = 2, condition: str | None = None):
    """A Keeper's Store on ``engine`` with a home in ``tmp_path``; the config and (plot type, model) ids."""
    cfg = load_config(None, home=tmp_path / "home")
    cfg.ensure_dirs()
    with session_scope(engine) as s:
        pt, m = add_active_model("fcal", (8, 8), session=s)
        ids = pt.id, m.id
    store = Store(cfg, engine, AlarmTracker(consecutive), CommandCondition(condition, 1.0, cache_s=0))
    return cfg, store, ids


def make_report(
    cfg, name: str, pt_id: int, model_id: int, label="Good", confirmed=True, heat=False
) -> Report:
    """A report of ``name``, whose file is written into the input folder."""
    path = cfg.input_dir / name
    path.write_bytes(name.encode())
    return Report(
        order_id=name, path=str(path), filename=name, source_key=name.ljust(64, "0")[:64], plot_type="fcal",
        plot_type_id=pt_id, run=7, chunk=1, model_id=model_id, label=label, weight=0.8,
        weights={"Good": 0.8, "Bad": 0.2} if label == "Good" else {"Good": 0.2, "Bad": 0.8},
        confirmed=confirmed, is_problem=label == "Bad", content_hash="h" * 64,
        times={"file": time.time() - 0.1, "keep": time.time()},
        heatmap=np.zeros((8, 8, 3), np.uint8) if heat else None,
    )  # fmt: skip


def batch_of(*items) -> Batch:
    """A batch of reports, error notices and registrations, keyed as the Keeper keys them."""
    b = Batch()
    for it in items:
        if isinstance(it, Report):
            b.reports[(it.source_key, it.model_id)] = it
        elif isinstance(it, ErrorNotice):
            b.errors[it.path] = it
        else:
            b.registrations[it.path] = it
    return b
