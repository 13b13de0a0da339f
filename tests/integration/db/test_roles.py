"""Roles mean something: each role tries each action through the service layer, on SQLite and MariaDB.

Every user but the admin holds a full grant (label and thresholds) on one
plot type, so what each may do there is the role's doing; on the other plot
type nobody but the admin holds anything.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from sqlmodel import Session, select

from hydra.auth import PermissionDenied, create_user, grant
from hydra.db.engine import session_scope
from hydra.db.models import Alarm, Image, Model, PlotType, Threshold, User
from hydra.db.queries import create_plot_type, labels_of
from hydra.services import admin, labeling, library, run

ROLES = ("viewer", "labeler", "expert", "admin")
ACTIONS = ("label", "thresholds", "acknowledge", "admin")
ALLOWED = {  # on the granted plot type; only the admin may act on the other one
    "viewer": set(),
    "labeler": {"label"},
    "expert": {"label", "thresholds", "acknowledge"},
    "admin": {"label", "thresholds", "acknowledge", "admin"},
}


@dataclass
class Target:
    plot_type: int
    good: int
    image: int
    model: int
    alarm: int


def _target(s: Session, name: str) -> Target:
    pt = create_plot_type(name, ["Good", "Bad"], session=s)
    image = Image(path=f"/plots/{name}-000001.png", filename=f"{name}-000001.png", plot_type_id=pt.id,
                  run=1, content_hash="0" * 64, kept_reason="unconfirmed")  # fmt: skip
    model = Model(plot_type_id=pt.id, head="classifier", path=f"/m/{name}", input_height=8, input_width=8,
                  labels=["Good", "Bad"], active=True)  # fmt: skip
    s.add_all([image, model])
    s.flush()
    alarm = Alarm(plot_type_id=pt.id, run=1, label="Bad", message=f"{name}: Bad")
    s.add(alarm)
    s.flush()
    return Target(pt.id, labels_of(pt.id, session=s)[0].id, image.id, model.id, alarm.id)


@pytest.fixture
def world(engine):
    with session_scope(engine) as s:
        granted, other = _target(s, "fcal_occupancy"), _target(s, "bcal_timing")
        for role in ROLES:
            create_user(role, "pw", session=s, role=role)
            if role != "admin":
                grant(role, "fcal_occupancy", session=s, label=True, thresholds=True)
    return engine, granted, other


def _do(action: str, user: User, t: Target, s: Session) -> None:
    if action == "label":
        labeling.apply_labels(user, t.plot_type, {t.image: t.good}, session=s)
    elif action == "thresholds":
        library.save_thresholds(user, t.model, {"Good": 0.42}, session=s)
    elif action == "acknowledge":
        run.acknowledge_alarm(t.alarm, user_id=user.id, session=s)
    elif action == "admin":
        admin.update_plot_type(user, t.plot_type, collect_percent=7.0, session=s)


def _done(action: str, t: Target, s: Session) -> bool:
    if action == "label":
        return s.get(Image, t.image).label_id == t.good
    if action == "thresholds":
        return s.exec(select(Threshold).where(Threshold.model_id == t.model)).first() is not None
    if action == "acknowledge":
        return s.get(Alarm, t.alarm).acknowledged_by is not None
    return s.get(PlotType, t.plot_type).collect_percent == 7.0


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("role", ROLES)
def test_role_and_action(world, role, action):
    engine, granted, other = world
    for target, allowed in ((granted, action in ALLOWED[role]), (other, role == "admin")):
        if allowed:
            with session_scope(engine) as s:
                _do(action, s.exec(select(User).where(User.name == role)).one(), target, s)
        else:
            with (
                pytest.raises(PermissionDenied, match=f"{role} may not {action}"),
                session_scope(engine) as s,
            ):
                _do(action, s.exec(select(User).where(User.name == role)).one(), target, s)
        with Session(engine) as s:
            assert _done(action, target, s) is allowed, (role, action, target)


def test_refusals_say_what_is_missing(world):
    engine, granted, other = world
    with session_scope(engine) as s:
        user = {u.name: u for u in s.exec(select(User)).all()}
        with pytest.raises(PermissionDenied, match="the viewer role cannot label"):
            labeling.apply_labels(user["viewer"], granted.plot_type, {granted.image: granted.good}, session=s)
        with pytest.raises(PermissionDenied, match="the labeler role cannot change thresholds .*expert"):
            library.save_thresholds(user["labeler"], granted.model, {"Good": 0.5}, session=s)
        with pytest.raises(
            PermissionDenied,
            match="expert may not acknowledge on plot type bcal_timing: no grant on this plot type",
        ):
            run.acknowledge_alarm(other.alarm, user_id=user["expert"].id, session=s)
        with pytest.raises(PermissionDenied, match="the expert role cannot administer"):
            library.activate(user["expert"], granted.model, session=s)


def test_acknowledge_all_takes_only_what_the_expert_may(world):
    engine, granted, other = world
    with session_scope(engine) as s:
        viewer = s.exec(select(User).where(User.name == "viewer")).one()
        with pytest.raises(PermissionDenied, match="viewer role cannot acknowledge"):
            run.acknowledge_alarms(user_id=viewer.id, session=s)
    with session_scope(engine) as s:
        expert = s.exec(select(User).where(User.name == "expert")).one()
        assert run.acknowledge_alarms(user_id=expert.id, session=s) == 1
    with Session(engine) as s:
        assert s.get(Alarm, granted.alarm).acknowledged_by is not None
        assert s.get(Alarm, other.alarm).acknowledged_by is None
