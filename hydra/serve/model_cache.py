"""The Predict worker's models: loaded lazily per model id, kept fresh.

A worker loads a :class:`hydra.inference.ServingModel` the first time an
order names its model id, and re-reads that model's thresholds, problem
labels and mask from the database every ``refresh_s`` seconds (through
:meth:`ServingModel.refresh <hydra.inference.ServingModel.refresh>`, which
reads them as loading does), so an expert's threshold change applies within
seconds without a restart. Activating another model needs nothing here: the
Feeder's orders then name the new model id, which is loaded on first use.
Which model shadows each plot type (:meth:`ModelCache.shadow_of`) is re-read
as often.
While the database is unreachable the last values stay in use.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from sqlalchemy.engine import Engine

from hydra.db.engine import session_scope
from hydra.db.queries import shadow_models
from hydra.inference import ServingModel

log = logging.getLogger("hydra.serve.model_cache")


class ModelCache:
    """Model id -> :class:`~hydra.inference.ServingModel`, loaded on first use."""

    def __init__(self, engine: Engine, device: str, refresh_s: float, models_dir: Path | None = None) -> None:
        self.engine = engine
        self.device = device
        self.refresh_s = refresh_s
        self.models_dir = models_dir
        self._models: dict[int, ServingModel] = {}
        self._refreshed: dict[int, float] = {}
        self._shadows: dict[int, int] = {}
        self._shadows_at = 0.0

    def __len__(self) -> int:
        return len(self._models)

    def shadow_of(self, plot_type_id: int) -> int | None:
        """The id of the plot type's shadow model, or None (the database is read every ``refresh_s``).

        While the database is unreachable the last answer stays in use.
        """
        now = time.monotonic()
        if now >= self._shadows_at:
            self._shadows_at = now + self.refresh_s
            try:
                with session_scope(self.engine) as s:
                    shadows = shadow_models(session=s)
            except Exception as exc:  # noqa: BLE001 - an outage keeps the last answer
                log.warning("cannot read the shadow models (%s)", exc.__class__.__name__)
            else:
                if shadows != self._shadows:
                    log.info("shadow models (plot type id: model id): %s", shadows or "none")
                self._shadows = shadows
        return self._shadows.get(plot_type_id)

    def get(self, model_id: int) -> ServingModel:
        """The serving model, loading it (or refreshing its thresholds) when due."""
        model = self._models.get(model_id)
        if model is None:
            t0 = time.monotonic()
            with session_scope(self.engine) as s:
                model = ServingModel.load(s, model_id, self.models_dir, self.device)
            self._models[model_id] = model
            self._refreshed[model_id] = time.monotonic()
            log.info("loaded model %d on %s in %.2f s", model_id, self.device, time.monotonic() - t0)
        elif time.monotonic() - self._refreshed[model_id] > self.refresh_s:
            self._refreshed[model_id] = time.monotonic()
            try:
                with session_scope(self.engine) as s:
                    changed = model.refresh(s)
            except Exception as exc:  # noqa: BLE001 - an outage keeps the last thresholds
                log.warning("model %d: cannot refresh thresholds (%s)", model_id, exc.__class__.__name__)
            else:
                if changed:
                    log.info("model %d: thresholds now %s", model_id, model.thresholds)
        return model
