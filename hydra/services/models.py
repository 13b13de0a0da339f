"""Trained models for the CLI: list them, find the one a plot type serves.

Activating a model is :func:`hydra.services.library.activate` (admin only, or
the CLI's operator).
"""

from __future__ import annotations

from sqlmodel import Session, select

from hydra.db import training as training_db
from hydra.db.models import Model, PlotType

__all__ = ["list_models", "plot_type_named", "serving_model"]


def list_models(*, session: Session, plot_type: str | None = None) -> list[tuple[Model, str]]:
    """Models with their plot type's name, newest first (optionally of one plot type)."""
    return training_db.list_models(session=session, plot_type=plot_type)


def plot_type_named(name: str | None, *, session: Session) -> PlotType | None:
    """The plot type called ``name``, or None."""
    return session.exec(select(PlotType).where(PlotType.name == name)).first()


def serving_model(plot_type_id: int, *, session: Session) -> Model | None:
    """The plot type's active model (the one serve and ``hydra predict`` use), or None."""
    return session.exec(select(Model).where(Model.plot_type_id == plot_type_id, Model.active)).first()
