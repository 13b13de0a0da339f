"""Admin service on SQLite and MariaDB: every change needs the admin role; bad values are refused with a reason."""

from __future__ import annotations

import pytest

from hydra.auth import PermissionDenied, can, create_user, get_user
from hydra.db import session_scope
from hydra.db.models import Model, PlotType
from hydra.db.queries import active_model, create_plot_type, labels_of
from hydra.services import admin, library


@pytest.fixture
def setup(engine):
    with session_scope(engine) as s:
        create_user("root", "pw", session=s, role="admin")
        create_user("ann", "pw", session=s)
        pt = create_plot_type("cdc_occ", ["Good", "Bad"], session=s)
        m1 = Model(
            plot_type_id=pt.id, head="classifier", path="/m1", input_height=8, input_width=8, active=True
        )
        m2 = Model(plot_type_id=pt.id, head="classifier", path="/m2", input_height=8, input_width=8)
        s.add_all([m1, m2])
        s.flush()
        ids = dict(pt=pt.id, m1=m1.id, m2=m2.id)
    return engine, ids


def test_non_admin_is_refused_everywhere(setup):
    engine, ids = setup
    with session_scope(engine) as s:
        ann = get_user("ann", session=s)
        calls = [
            lambda: admin.add_plot_type(ann, "x", ["Good"], session=s),
            lambda: admin.update_plot_type(ann, ids["pt"], session=s, collect_percent=5),
            lambda: admin.set_label(ann, labels_of(ids["pt"], session=s)[0].id, session=s, color="#000000"),
            lambda: admin.add_plot_type_label(ann, ids["pt"], "NoData", session=s),
            lambda: admin.add_user(ann, "eve", "pw", "admin", session=s),
            lambda: admin.set_role(ann, "ann", "admin", session=s),
            lambda: admin.set_permission(ann, "ann", "cdc_occ", session=s, label=True, thresholds=True),
            lambda: admin.revoke(ann, "ann", "cdc_occ", session=s),
            lambda: library.activate(ann, ids["m2"], session=s),
            lambda: library.activate(None, ids["m2"], session=s),
        ]
        for call in calls:
            with pytest.raises(PermissionDenied):
                call()
        assert get_user("ann", session=s).role == "labeler"
        assert active_model(ids["pt"], session=s).id == ids["m1"]


def test_plot_type_settings_and_labels(setup):
    engine, ids = setup
    with session_scope(engine) as s:
        root = get_user("root", session=s)
        pt = admin.update_plot_type(
            root, ids["pt"], session=s, collect_percent=2.5, mask=[[0, 0, 0.5, 0.1]], group="CDC", hidden=True
        )
        assert pt.collect_percent == 2.5 and pt.hidden
        with pytest.raises(admin.AdminError, match="0 to 100"):
            admin.update_plot_type(root, ids["pt"], session=s, collect_percent=120)
        with pytest.raises(admin.AdminError, match="x0 < x1"):
            admin.update_plot_type(root, ids["pt"], session=s, mask=[[0.5, 0, 0.2, 1]])
        with pytest.raises(admin.AdminError, match="4 numbers"):
            admin.update_plot_type(root, ids["pt"], session=s, mask=[[0.5, 0]])
        good = labels_of(ids["pt"], session=s)[0]
        admin.set_label(root, good.id, session=s, color="#00FF00", is_problem=False)
        with pytest.raises(admin.AdminError, match="#rrggbb"):
            admin.set_label(root, good.id, session=s, color="green")
        admin.add_plot_type_label(root, ids["pt"], "NoData", session=s)
        with pytest.raises(admin.AdminError, match="already has"):
            admin.add_plot_type_label(root, ids["pt"], "NoData", session=s)
        new = admin.add_plot_type(
            root, "bcal_e", ["Good", "Bad", "Cosmic"], session=s, problem=["Bad", "Cosmic"]
        )
        with pytest.raises(admin.AdminError, match="letters, digits"):
            admin.add_plot_type(root, "bad name!", ["Good"], session=s)
        with pytest.raises(admin.AdminError, match="already exists"):
            admin.add_plot_type(root, "bcal_e", ["Good"], session=s)
    with session_scope(engine) as s:
        stored = s.get(PlotType, ids["pt"])
        assert stored.mask == [[0.0, 0.0, 0.5, 0.1]] and stored.group_id is not None
        names = [(lb.name, lb.color, lb.is_problem) for lb in labels_of(ids["pt"], session=s)]
        assert names[0] == ("Good", "#00ff00", False) and names[-1][0] == "NoData"
        assert [lb.is_problem for lb in labels_of(new.id, session=s)] == [False, True, True]


def test_users_permissions_and_active_model(setup):
    engine, ids = setup
    with session_scope(engine) as s:
        root = get_user("root", session=s)
        admin.add_user(root, "eve", "pw", "expert", session=s)
        with pytest.raises(admin.AdminError, match="unknown role"):
            admin.add_user(root, "zed", "pw", "king", session=s)
        with pytest.raises(admin.AdminError, match="last admin"):
            admin.set_role(root, "root", "viewer", session=s)
        admin.set_role(root, "ann", "expert", session=s)
        admin.set_permission(root, "eve", "cdc_occ", session=s, label=True, thresholds=True)
        assert admin.permissions(session=s) == [admin.PermissionRow("eve", "cdc_occ", True, True)]
        eve = get_user("eve", session=s)
        assert can(eve, "thresholds", ids["pt"], session=s)
        assert admin.revoke(root, "eve", "cdc_occ", session=s) is True
        assert admin.revoke(root, "eve", "cdc_occ", session=s) is False
        assert not can(eve, "label", ids["pt"], session=s)
        assert dict(admin.users(session=s)) == {"ann": "expert", "eve": "expert", "root": "admin"}
        library.activate(root, ids["m2"], session=s)
    with session_scope(engine) as s:
        assert active_model(ids["pt"], session=s).id == ids["m2"]
        assert not s.get(Model, ids["m1"]).active
