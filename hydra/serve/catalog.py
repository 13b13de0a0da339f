"""The Feeder's view of the database: plot types and their active models.

Read every ``model_refresh_s`` seconds, so activating a new model in the app
reaches the Feeder without a restart. While the database is unreachable the
last good view is kept; before the first good read there is none, and the
Feeder waits instead of mistaking every plot type for one without a model.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from sqlalchemy.engine import Engine
from sqlmodel import select

from hydra.db.engine import session_scope
from hydra.db.models import Model, PlotType
from hydra.db.queries import active_models

log = logging.getLogger("hydra.serve.catalog")


@dataclass(frozen=True)
class Target:
    """How to prepare images of one plot type, and for which model."""

    plot_type: str
    plot_type_id: int | None
    mask: tuple[tuple[float, ...], ...] = ()
    model_id: int | None = None
    height: int = 0
    width: int = 0
    channels: int = 3


class ModelCatalog:
    """Plot type name -> :class:`Target`, refreshed from the database."""

    def __init__(self, engine: Engine, refresh_s: float) -> None:
        self.engine = engine
        self.refresh_s = refresh_s
        self._targets: dict[str, Target] | None = None
        self._next = 0.0

    @property
    def ready(self) -> bool:
        """True once the database has been read at least once."""
        return self._targets is not None

    def refresh(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now < self._next:
            return
        self._next = now + self.refresh_s
        try:
            self._targets = self._read()
        except Exception as exc:  # noqa: BLE001 - an outage keeps the last view
            log.warning(
                "cannot read plot types and models (%s); keeping the last view", exc.__class__.__name__
            )

    def _read(self) -> dict[str, Target]:
        with session_scope(self.engine) as s:
            types = s.exec(select(PlotType)).all()
            models: dict[int, Model] = active_models(session=s)
        out: dict[str, Target] = {}
        for pt in types:
            m = models.get(pt.id)
            mask = tuple(tuple(float(v) for v in r) for r in (pt.mask or []))
            if m is None:
                out[pt.name] = Target(pt.name, pt.id, mask)
            else:
                out[pt.name] = Target(pt.name, pt.id, mask, m.id, m.input_height, m.input_width, m.channels)
        return out

    def names(self) -> list[str]:
        """The plot type names of the last good read."""
        return sorted(self._targets or {})

    def recheck(self, plot_type: str, min_interval_s: float = 1.0) -> Target:
        """:meth:`lookup` after reading the database again (at most once per ``min_interval_s``),
        for a name the last read did not know: it may have been added since."""
        now = time.monotonic()
        if now - getattr(self, "_rechecked", 0.0) >= min_interval_s:
            self._rechecked = now
            self.refresh(force=True)
        return self.lookup(plot_type)

    def lookup(self, plot_type: str) -> Target:
        """The target of ``plot_type``; one without a model (or id) when there is none."""
        assert self._targets is not None, "refresh() first"
        return self._targets.get(plot_type) or Target(plot_type, None)
