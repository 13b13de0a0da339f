"""The Run page's services: tiles, group counts, the run header and alarms.

What they read, they return as plain dataclasses (:class:`Frame`,
:class:`GroupSummary`, :class:`RunHeader`, :class:`AlarmView`,
:class:`AlarmGroup`) with aware UTC times, except the pickers every page
shares (:func:`plot_types`, :func:`plot_groups`, :func:`labels_of`), which
return the ORM rows. Functions that touch the database take a keyword-only
``session``; :func:`frame_order` and :func:`group_summaries` work on frames
already read.

:func:`heatmap_opacity` and :func:`set_heatmap_opacity` read and store the
Grad-CAM opacity a user chose, in ``user.preferences``, so it outlives the
session and an app restart.

Otherwise only :func:`acknowledge_alarm` and :func:`acknowledge_alarms` write. They
take the acting user's id, look the user up themselves and refuse
(``PermissionDenied``) without a user or with one whose role and grants do
not allow it (``hydra.auth.require(user, "acknowledge", plot_type_id)``), so
the check does not depend on what a page shows.

:func:`run_frames` finds the newest row of each plot type with one correlated
subquery per plot type (``ORDER BY created_at DESC, id DESC LIMIT 1``, all in
one statement), which the ``(plot_type_id, created_at)`` indexes of RunTime,
Inference and Image can answer without grouping the whole table;
``benchmarks/bench_run_page.py`` times it at production scale.

Example:
    >>> with session_scope(engine) as session:  # doctest: +SKIP
    ...     frames = run_frames(session=session)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlmodel import Session, col

from hydra.auth import PermissionDenied, can, require
from hydra.db import queries
from hydra.db.models import (
    LIVE,
    Alarm,
    Image,
    Inference,
    Label,
    Model,
    PlotGroup,
    PlotType,
    RunTime,
    User,
    utcnow,
)
from hydra.services._common import aware

NO_MODEL_COLOR = "#5a5a5a"
DEFAULT_OPACITY = 0.45  # heat maps visible from the start, the plot still readable under them
OPACITY_KEY = "run_opacity"  # its key in user.preferences


@dataclass
class Frame:
    """One tile of the Run page: the newest image of one plot type."""

    plot_type_id: int
    plot_type: str
    group: str | None
    has_model: bool
    source: str  # "runtime", "history", "image" or "none"
    run: int | None = None
    chunk: int | None = None
    label: str | None = None
    weight: float | None = None
    confirmed: bool = False
    is_problem: bool = False
    color: str = NO_MODEL_COLOR
    image_path: str | None = None
    heatmap_path: str | None = None
    created_at: datetime | None = None
    weights: dict[str, float] = field(default_factory=dict)

    @property
    def rank(self) -> int:
        """0: confirmed problem, 1: unconfirmed, 2: fine, 3: no model, 4: nothing yet."""
        if self.source == "none":
            return 4
        if not self.has_model or self.source == "image":
            return 3
        if self.confirmed and self.is_problem:
            return 0
        return 1 if not self.confirmed else 2

    def age(self, now: datetime | None = None) -> timedelta | None:
        if self.created_at is None:
            return None
        return (now or utcnow()) - self.created_at

    def is_stale(self, stale_after_min: float, now: datetime | None = None) -> bool:
        age = self.age(now)
        return age is None or age > timedelta(minutes=stale_after_min)


def _newest_ids(table: Any, plot_type_ids: Sequence[int], *, session: Session) -> dict[int, int]:
    """The id of the newest row of ``table`` per plot type (one correlated subquery each, one statement).

    Of ``Inference`` only the live rows count: a shadow model's or a reprocessing's never reach the page.
    """
    if not plot_type_ids:
        return {}
    newest = (
        select(table.id)
        .where(
            table.plot_type_id == PlotType.id, *((Inference.origin == LIVE,) if table is Inference else ())
        )
        .order_by(table.created_at.desc(), table.id.desc())
        .limit(1)
        .correlate(PlotType)
        .scalar_subquery()
    )
    rows = session.execute(select(PlotType.id, newest).where(col(PlotType.id).in_(plot_type_ids))).all()
    return {pt_id: row_id for pt_id, row_id in rows if row_id is not None}


def legend(*, session: Session) -> list[tuple[str, str]]:
    """The distinct (label name, colour) pairs of all plot types, for the Run page's legend."""
    return sorted(session.execute(select(Label.name, Label.color).distinct()).tuples())


def plot_groups(*, session: Session) -> list[PlotGroup]:
    """The detector groups, by name."""
    return list(session.scalars(select(PlotGroup).order_by(PlotGroup.name)))


def plot_types(*, session: Session, include_hidden: bool = True) -> list[PlotType]:
    """Plot types by name, case-insensitively (so ``FCAL_x`` does not jump ahead of ``cdc_x``)."""
    query = select(PlotType).order_by(func.lower(PlotType.name), PlotType.name)
    if not include_hidden:
        query = query.where(col(PlotType.hidden).is_(False))
    return list(session.scalars(query))


def labels_of(plot_type_id: int, *, session: Session) -> list[Label]:
    """The labels of one plot type, in their order."""
    return queries.labels_of(plot_type_id, session=session)


def run_frames(*, session: Session, group_id: int | None = None, include_hidden: bool = False) -> list[Frame]:
    """The newest image of every plot type, problems and unconfirmed first.

    The source is RunTime (the Keeper's recent window); plot types whose
    RunTime rows were pruned fall back to their newest Inference, and plot
    types without an active model show their newest kept Image. Only the
    needed columns are read (no ORM objects): this runs on every refresh.
    """
    query = select(PlotType.id, PlotType.name, PlotGroup.name).outerjoin(
        PlotGroup, PlotGroup.id == PlotType.group_id
    )
    if group_id is not None:
        query = query.where(PlotType.group_id == group_id)
    if not include_hidden:
        query = query.where(col(PlotType.hidden).is_(False))
    pts = session.execute(query).all()
    modelled = set(session.scalars(select(Model.plot_type_id).where(col(Model.active).is_(True))))
    colors = {
        (pt, name): color
        for pt, name, color in session.execute(select(Label.plot_type_id, Label.name, Label.color))
    }
    frames = {pt_id: Frame(pt_id, name, group, pt_id in modelled, "none") for pt_id, name, group in pts}
    with_model = [i for i, f in frames.items() if f.has_model]
    without = [i for i, f in frames.items() if not f.has_model]

    common = (
        "plot_type_id",
        "run",
        "chunk",
        "label",
        "weight",
        "confirmed",
        "is_problem",
        "heatmap_path",
        "created_at",
    )
    rt_cols = [getattr(RunTime, c) for c in common] + [RunTime.image_path]
    runtime_ids = _newest_ids(RunTime, with_model, session=session)
    for row in _rows(RunTime, rt_cols, runtime_ids.values(), session=session):
        _fill(frames[row.plot_type_id], "runtime", row, row.image_path, colors)
    missing = [i for i in with_model if i not in runtime_ids]
    inf_cols = [getattr(Inference, c) for c in common] + [Inference.path, Inference.weights]
    for row in _rows(
        Inference, inf_cols, _newest_ids(Inference, missing, session=session).values(), session=session
    ):
        _fill(frames[row.plot_type_id], "history", row, row.path, colors)
        frames[row.plot_type_id].weights = dict(row.weights)
    img_cols = [Image.plot_type_id, Image.run, Image.chunk, Image.path, Image.created_at]
    for row in _rows(Image, img_cols, _newest_ids(Image, without, session=session).values(), session=session):
        frame = frames[row.plot_type_id]
        frame.source, frame.run, frame.chunk = "image", row.run, row.chunk
        frame.image_path, frame.created_at = row.path, aware(row.created_at)
    return sorted(frames.values(), key=frame_order)


def frame_order(frame: Frame) -> tuple[int, str, str]:
    """Where a tile goes: by its rank, then its group and name, never by its age or weight.

    A tile therefore moves only when its verdict moves it to another rank; a
    new image with the same verdict leaves every tile where it was.
    """
    return (frame.rank, (frame.group or "~").lower(), frame.plot_type.lower())


@dataclass
class GroupSummary:
    """One detector group's tiles counted by state, for the Run page's summary row."""

    group: str | None
    good: int = 0
    problem: int = 0
    unconfirmed: int = 0
    stale: int = 0
    no_model: int = 0

    @property
    def total(self) -> int:
        return self.good + self.problem + self.unconfirmed + self.no_model


def group_summaries(
    frames: Sequence[Frame], *, stale_after_min: float, now: datetime | None = None
) -> list[GroupSummary]:
    """Counts of Good, problem, unconfirmed and stale tiles per detector group (no group last)."""
    out: dict[str | None, GroupSummary] = {}
    for f in frames:
        g = out.setdefault(f.group, GroupSummary(f.group))
        if f.source == "none":
            continue
        if f.rank == 0:
            g.problem += 1
        elif f.rank == 1:
            g.unconfirmed += 1
        elif f.rank == 2:
            g.good += 1
        else:
            g.no_model += 1
        if f.is_stale(stale_after_min, now):
            g.stale += 1
    return sorted(out.values(), key=lambda g: (g.group is None, (g.group or "").lower()))


def _rows(table: Any, columns: list[Any], ids: Iterable[int], *, session: Session) -> list[Any]:
    ids = list(ids)
    return list(session.execute(select(*columns).where(table.id.in_(ids)))) if ids else []


def _fill(frame: Frame, source: str, row: Any, path: str, colors: dict[tuple[int, str], str]) -> None:
    frame.source, frame.run, frame.chunk = source, row.run, row.chunk
    frame.label, frame.weight = row.label, row.weight
    frame.confirmed, frame.is_problem = row.confirmed, row.is_problem
    frame.image_path, frame.heatmap_path = path, row.heatmap_path
    frame.created_at = aware(row.created_at)
    frame.color = colors.get((row.plot_type_id, row.label), "#888888")


@dataclass
class RunHeader:
    run: int | None
    last_update: datetime | None


def run_header(*, session: Session, frames: Sequence[Frame] = ()) -> RunHeader:
    """The run of the newest inference and when it was made.

    ``frames`` (the tiles on screen) count too, so an image registered
    without a model still updates the header that sits above it.
    """
    row = session.execute(
        select(Inference.run, Inference.created_at)
        .where(Inference.origin == LIVE)
        .order_by(col(Inference.created_at).desc(), col(Inference.id).desc())
        .limit(1)
    ).first()
    header = RunHeader(row[0], aware(row[1])) if row else RunHeader(None, None)
    for f in frames:
        if f.created_at is not None and (header.last_update is None or f.created_at > header.last_update):
            header = RunHeader(f.run, f.created_at)
    return header


@dataclass
class AlarmView:
    id: int
    plot_type_id: int
    plot_type: str
    run: int
    label: str
    message: str
    condition: str | None
    created_at: datetime


def open_alarms(*, session: Session, limit: int = 500) -> list[AlarmView]:
    """Raised alarms nobody has acknowledged yet, newest first."""
    rows = session.execute(
        select(Alarm, PlotType.name)
        .join(PlotType, PlotType.id == Alarm.plot_type_id)
        .where(col(Alarm.raised).is_(True), col(Alarm.acknowledged_at).is_(None))
        .order_by(col(Alarm.created_at).desc(), col(Alarm.id).desc())
        .limit(limit)
    ).all()
    return [
        AlarmView(a.id, a.plot_type_id, name, a.run, a.label, a.message, a.condition, aware(a.created_at))
        for a, name in rows
    ]


@dataclass
class AlarmGroup:
    """The open alarms of one condition (plot type + rule), shown as one banner.

    The Keeper raises an alarm per streak; a plot type that stays bad raises
    again and again, so the Run page collapses them into one line per plot
    type and label that updates in place: how many, which runs, since when.
    """

    plot_type_id: int
    plot_type: str
    label: str
    ids: list[int]
    runs: list[int]  # distinct, newest first
    first_at: datetime
    last_at: datetime
    condition: str | None

    @property
    def key(self) -> str:
        return f"{self.plot_type_id}_{''.join(c if c.isalnum() else '_' for c in self.label)}"

    @property
    def count(self) -> int:
        return len(self.ids)


def alarm_groups(*, session: Session, limit: int = 2000) -> list[AlarmGroup]:
    """Open alarms collapsed to one per condition (plot type and label), newest activity first."""
    groups: dict[tuple[int, str], AlarmGroup] = {}
    for a in open_alarms(session=session, limit=limit):  # newest first
        pt_id = a.plot_type_id
        g = groups.get((pt_id, a.label))
        if g is None:
            g = groups[(pt_id, a.label)] = AlarmGroup(
                pt_id, a.plot_type, a.label, [], [], a.created_at, a.created_at, a.condition
            )
        g.ids.append(a.id)
        if a.run not in g.runs:
            g.runs.append(a.run)
        g.first_at = min(g.first_at, a.created_at)
    return sorted(groups.values(), key=lambda g: g.last_at, reverse=True)


def acknowledge_alarms(
    *,
    user_id: int | None,
    session: Session,
    alarm_ids: Sequence[int] | None = None,
    plot_type_id: int | None = None,
) -> int:
    """Acknowledge many alarms at once: the given ids, or the open ones the user may acknowledge.

    Without ``alarm_ids`` it takes the open alarms (of ``plot_type_id``, when
    given) that the user's role and grants allow, and refuses with the reason
    for the first one when there are some but none is allowed. Every alarm
    goes through :func:`acknowledge_alarm`, so the same user check applies
    (for given ids, the first refusal raises). Returns how many alarms it went
    through (a given id of an alarm acknowledged before counts too).

    Raises:
        PermissionDenied: as :func:`acknowledge_alarm`; also with nothing to
            acknowledge and no (existing) user.
    """
    if alarm_ids is None:
        query = select(Alarm.id, Alarm.plot_type_id).where(
            col(Alarm.raised).is_(True), col(Alarm.acknowledged_at).is_(None)
        )
        if plot_type_id is not None:
            query = query.where(Alarm.plot_type_id == plot_type_id)
        found = session.execute(query).all()
        user = session.get(User, user_id) if user_id is not None else None
        mine = [i for i, pt in found if can(user, "acknowledge", pt, session=session)]
        if found and not mine:  # say why, from the first one
            require(user, "acknowledge", found[0][1], session=session)
        alarm_ids = mine
    if not alarm_ids:
        if user_id is None or session.get(User, user_id) is None:
            raise PermissionDenied("acknowledging an alarm needs a logged-in user")
        return 0
    for alarm_id in alarm_ids:
        acknowledge_alarm(alarm_id, user_id=user_id, session=session)
    return len(alarm_ids)


def acknowledge_alarm(alarm_id: int, *, user_id: int | None, session: Session) -> Alarm:
    """Mark an alarm acknowledged by a user allowed to: an admin, or an expert with a grant on its plot type.

    Raises:
        PermissionDenied: without a user (or with one that does not exist), or
            one whose role or grants do not allow it.
        LookupError: the alarm does not exist.
    """
    user = session.get(User, user_id) if user_id is not None else None
    if user is None:
        raise PermissionDenied("acknowledging an alarm needs a logged-in user")
    alarm = session.get(Alarm, alarm_id)
    if alarm is None:
        raise LookupError(f"unknown alarm id {alarm_id}")
    require(user, "acknowledge", alarm.plot_type_id, session=session)
    if alarm.acknowledged_at is None:
        alarm.acknowledged_by, alarm.acknowledged_at = user.id, utcnow()
        session.add(alarm)
        session.flush()
    return alarm


def heatmap_opacity(user_id: int | None, *, session: Session) -> float:
    """The Grad-CAM opacity the user chose last, or :data:`DEFAULT_OPACITY` (also without a user)."""
    user = session.get(User, user_id) if user_id is not None else None
    value = (user.preferences or {}).get(OPACITY_KEY) if user is not None else None
    return float(value) if isinstance(value, (int, float)) else DEFAULT_OPACITY


def set_heatmap_opacity(user_id: int, opacity: float, *, session: Session) -> float:
    """Remember the user's Grad-CAM opacity (0 hides heat maps, 1 covers the plot); returns it.

    Raises:
        ValueError: an opacity outside 0..1.
        LookupError: no such user.
    """
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"the heat-map opacity must be between 0 and 1, not {opacity}")
    user = session.get(User, user_id)
    if user is None:
        raise LookupError(f"unknown user id {user_id}")
    # a new dict: the JSON column does not see changes made in place
    user.preferences = {**(user.preferences or {}), OPACITY_KEY: round(float(opacity), 3)}
    session.add(user)
    session.flush()
    return user.preferences[OPACITY_KEY]
