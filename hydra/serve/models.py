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
from sqlmodel import select

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

    def _read(self, model_id: int) -> tuple[str, list[str], list[str], dict[str, float]]:
        with session_scope(self.engine) as s:
            row = get_model(model_id, session=s)
            thresholds = thresholds_of(model_id, session=s)
            problems = s.exec(
                select(Label.name).where(Label.plot_type_id == row.plot_type_id, Label.is_problem == True)  # noqa: E712
            ).all()
            path = row.path
            labels = [str(x) for x in row.labels]
        p = Path(path)
        if not p.is_absolute() and self.models_dir is not None and not p.exists():
            p = self.models_dir / p
        return str(p), labels, list(problems), thresholds

    def get(self, model_id: int) -> Served:
        """The served model, loading it (or refreshing its thresholds) when due."""
        served = self._served.get(model_id)
        if served is None:
            from hydra import inference

            path, labels, problems, thresholds = self._read(model_id)
            t0 = time.monotonic()
            model = inference.LoadedModel.from_dir(path, model_id, thresholds, self.device)
            labels = list(getattr(model, "labels", None) or labels)
            served = Served(model_id, model, labels, problems, thresholds)
            self._served[model_id] = served
            log.info(
                "loaded model %d from %s on %s in %.2f s", model_id, path, self.device, time.monotonic() - t0
            )
        elif time.monotonic() - served.refreshed > self.refresh_s:
            served.refreshed = time.monotonic()
            try:
                _, _, problems, thresholds = self._read(model_id)
            except Exception as exc:  # noqa: BLE001 - an outage keeps the last thresholds
                log.warning("model %d: cannot refresh thresholds (%s)", model_id, exc.__class__.__name__)
            else:
                if thresholds != served.thresholds:
                    log.info("model %d: thresholds now %s", model_id, thresholds)
                served.thresholds, served.problem_labels = thresholds, problems
                if hasattr(served.model, "thresholds"):
                    served.model.thresholds = thresholds
        return served
