"""A plot type with an active model row, for tests that need one but no trained weights."""

from __future__ import annotations

from sqlmodel import Session

from hydra.db.models import Model, PlotType
from hydra.db.queries import activate_model, create_plot_type


def add_active_model(
    name: str, size: tuple[int, int], *, session: Session, labels=("Good", "Bad"), path: str = "x"
) -> tuple[PlotType, Model]:
    """Create plot type ``name`` and an active classifier model row of input ``size`` (H, W)."""
    pt = create_plot_type(name, list(labels), session=session)
    model = Model(
        plot_type_id=pt.id,
        head="classifier",
        path=path,
        input_height=size[0],
        input_width=size[1],
        labels=list(labels),
    )
    session.add(model)
    session.flush()
    activate_model(model.id, session=session)
    return pt, model
