"""The Predict worker's models: loaded lazily per model id, thresholds kept fresh.

A worker loads a head the first time an order names its model id, and
re-reads that model's thresholds and problem labels from the database every
``refresh_s`` seconds, so an expert's threshold change applies within
seconds without a restart. While the database is unreachable the last
values stay in use.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import col, select

from hydra.db.engine import session_scope
from hydra.db.models import Label
from hydra.db.queries import get_model, thresholds_of

log = logging.getLogger("hydra.serve.models")


@dataclass
class Served:
    """A loaded model with what deciding a verdict needs."""

    model_id: int
    model: Any
    labels: list[str]
    problem_labels: list[str]
    thresholds: dict[str, float]
    refreshed: float = field(default_factory=time.monotonic)


class ModelCache:
    """Model id -> :class:`Served`, loaded on first use."""

    def __init__(self, engine: Engine, device: str, refresh_s: float, models_dir: Path | None = None) -> None:
        self.engine = engine
        self.device = device
        self.refresh_s = refresh_s
        self.models_dir = models_dir
        self._served: dict[int, Served] = {}

    def __len__(self) -> int:
        return len(self._served)

    def _read(self, model_id: int) -> tuple[list[str], dict[str, float]]:
        """The plot type's problem labels and the model's thresholds, as they are now."""
        with session_scope(self.engine) as s:
            row = get_model(model_id, session=s)
            problems = s.exec(
                select(Label.name).where(Label.plot_type_id == row.plot_type_id, col(Label.is_problem))
            ).all()
            return list(problems), thresholds_of(model_id, session=s)

    def get(self, model_id: int) -> Served:
        """The served model, loading it (or refreshing its thresholds) when due."""
        served = self._served.get(model_id)
        if served is None:
            from hydra import inference

            t0 = time.monotonic()
            with session_scope(self.engine) as s:
                model = inference.load_model_from_db(s, model_id, self.models_dir, self.device)
            served = Served(model_id, model, model.labels, model.problem_labels, model.thresholds)
            self._served[model_id] = served
            log.info("loaded model %d on %s in %.2f s", model_id, self.device, time.monotonic() - t0)
        elif time.monotonic() - served.refreshed > self.refresh_s:
            served.refreshed = time.monotonic()
            try:
                problems, thresholds = self._read(model_id)
            except Exception as exc:  # noqa: BLE001 - an outage keeps the last thresholds
                log.warning("model %d: cannot refresh thresholds (%s)", model_id, exc.__class__.__name__)
            else:
                if thresholds != served.thresholds:
                    log.info("model %d: thresholds now %s", model_id, thresholds)
                served.thresholds = served.model.thresholds = thresholds
                served.problem_labels = problems or served.model.problem_labels
        return served
