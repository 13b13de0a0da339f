"""Queries shared by the CLI, the serve layer and the app.

Every function takes a keyword-only ``session``; none commits (the caller's
``session_scope`` does), so several calls make one transaction.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from sqlmodel import Session, col, select

from hydra.data.naming import check_label_name, check_plot_type_name
from hydra.db.models import Label, Model, PlotGroup, PlotType, Threshold, utcnow

# Colours given to labels that arrive without one (red is reserved for problems).
DEFAULT_COLORS = {
    "Good": "#2ca02c",
    "Bad": "#d62728",
    "NoData": "#7f7f7f",
    "Warning": "#ff7f0e",
    "Ignore": "#c7c7c7",
}
_PALETTE = ["#1f77b4", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#ff7f0e"]
PROBLEM_NAMES = {"Bad"}
_COLOR = re.compile(r"#[0-9a-fA-F]{6}")


class NotFoundError(LookupError):
    """A named thing (plot type, label, model, user) does not exist."""


def default_color(name: str, index: int) -> str:
    return DEFAULT_COLORS.get(name, _PALETTE[index % len(_PALETTE)])


def get_plot_type(name: str, *, session: Session) -> PlotType:
    """The plot type called ``name``; the error lists the known ones."""
    pt = session.exec(select(PlotType).where(PlotType.name == name)).first()
    if pt is None:
        known = session.exec(select(PlotType.name).order_by(PlotType.name).limit(20)).all()
        raise NotFoundError(f"unknown plot type {name!r}; known: {', '.join(known) or '(none yet)'}")
    return pt


def plot_types_by_name(*, session: Session) -> dict[str, PlotType]:
    return {pt.name: pt for pt in session.exec(select(PlotType)).all()}


def get_or_create_group(name: str, *, session: Session) -> PlotGroup:
    if not name or len(name) > 64 or name != name.strip():
        raise ValueError(f"a group name has 1 to 64 characters, without spaces around; got {name[:80]!r}")
    group = session.exec(select(PlotGroup).where(PlotGroup.name == name)).first()
    if group is None:
        group = PlotGroup(name=name)
        session.add(group)
        session.flush()
    return group


def create_plot_type(
    name: str,
    labels: Sequence[str],
    *,
    session: Session,
    problem: Sequence[str] | None = None,
    colors: Sequence[str] | None = None,
    group: str | None = None,
    collect_percent: float = 0.0,
) -> PlotType:
    """Create a plot type with its labels.

    ``problem`` defaults to the labels named Bad. Raises ValueError if it exists,
    the name breaks the naming rule (``NamingError``) or the arguments disagree.
    """
    check_plot_type_name(name)
    if not labels:
        raise ValueError(f"plot type {name!r} needs at least one label")
    for label in labels:
        check_label_name(label)
    if colors and any(not _COLOR.fullmatch(c) for c in colors):
        raise ValueError(f"colours are #rrggbb, got {list(colors)}")
    if len(set(labels)) != len(labels):
        raise ValueError(f"plot type {name!r}: duplicate labels in {list(labels)}")
    problem = list(PROBLEM_NAMES & set(labels)) if problem is None else list(problem)
    unknown = set(problem) - set(labels)
    if unknown:
        raise ValueError(f"problem label(s) {sorted(unknown)} are not among the labels {list(labels)}")
    if colors and len(colors) != len(labels):
        raise ValueError(f"got {len(colors)} colours for {len(labels)} labels")
    if session.exec(select(PlotType.id).where(PlotType.name == name)).first() is not None:
        raise ValueError(f"plot type {name!r} already exists")
    group_id = get_or_create_group(group, session=session).id if group else None
    pt = PlotType(name=name, group_id=group_id, collect_percent=collect_percent)
    session.add(pt)
    session.flush()
    for i, label in enumerate(labels):
        color = colors[i] if colors else default_color(label, i)
        session.add(
            Label(plot_type_id=pt.id, name=label, color=color, is_problem=label in problem, ordinal=i)
        )
    session.flush()
    return pt


def labels_of(plot_type_id: int, *, session: Session) -> list[Label]:
    return list(
        session.exec(select(Label).where(Label.plot_type_id == plot_type_id).order_by(Label.ordinal)).all()
    )


def add_label(plot_type_id: int, name: str, *, session: Session, is_problem: bool | None = None) -> Label:
    """Add a label to a plot type (used when a CSV brings a new one)."""
    check_label_name(name)
    existing = labels_of(plot_type_id, session=session)
    label = Label(
        plot_type_id=plot_type_id,
        name=name,
        color=default_color(name, len(existing)),
        is_problem=name in PROBLEM_NAMES if is_problem is None else is_problem,
        ordinal=len(existing),
    )
    session.add(label)
    session.flush()
    return label


def active_model(plot_type_id: int, *, session: Session) -> Model | None:
    return session.exec(
        select(Model).where(Model.plot_type_id == plot_type_id, col(Model.active).is_(True))
    ).first()


def active_models(*, session: Session) -> dict[int, Model]:
    """The active model of every plot type that has one, by plot type id."""
    rows = session.exec(select(Model).where(col(Model.active).is_(True))).all()
    return {m.plot_type_id: m for m in rows}


def shadow_model(plot_type_id: int, *, session: Session) -> Model | None:
    """The plot type's shadow (candidate) model, or None."""
    return session.exec(
        select(Model).where(Model.plot_type_id == plot_type_id, col(Model.shadow).is_(True))
    ).first()


def shadow_models(*, session: Session) -> dict[int, int]:
    """Plot type id -> the id of its shadow model, for every plot type that has one."""
    rows = session.exec(select(Model.plot_type_id, Model.id).where(col(Model.shadow).is_(True))).all()
    return {pt: mid for pt, mid in rows}


def get_model(model_id: int, *, session: Session) -> Model:
    model = session.get(Model, model_id)
    if model is None:
        known = session.exec(select(Model.id).order_by(col(Model.id).desc()).limit(10)).all()
        raise NotFoundError(f"unknown model id {model_id}; newest: {list(known) or '(none yet)'}")
    return model


def activate_model(model_id: int, *, session: Session) -> Model:
    """Make a model the active one of its plot type (and the others inactive).

    A shadow (candidate) model that becomes active is a shadow no more.
    """
    model = get_model(model_id, session=session)
    for other in session.exec(
        select(Model).where(Model.plot_type_id == model.plot_type_id, col(Model.active).is_(True))
    ).all():
        other.active = False
        session.add(other)
    model.active = True
    model.shadow = False
    model.activated_at = utcnow()
    session.add(model)
    session.flush()
    return model


def thresholds_of(model_id: int, *, session: Session) -> dict[str, float]:
    rows = session.exec(select(Threshold).where(Threshold.model_id == model_id)).all()
    return {t.label: t.value for t in rows}
