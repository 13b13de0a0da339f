"""AppTest of the Admin page: admins only; plot type settings, masks, users, permissions, models."""

from __future__ import annotations

import pytest

from hydra.auth import can, get_user
from hydra.db import session_scope
from hydra.db.models import Model, PlotType
from hydra.db.queries import active_model, get_plot_type
from tests.helpers.apptest import open_page

pytestmark = pytest.mark.timeout(120)


def _open(user_id: int | None, **state):
    return open_page("pages/admin.py", user_id, **state)


def test_admin_page_is_for_admins_only(seeded):
    _, seed = seeded
    at = _open(seed.users["expert"])
    assert not at.exception
    assert any("may not admin" in w.value for w in at.warning)
    assert not at.tabs


def test_admin_changes_plot_type_users_and_permissions(seeded):
    engine, seed = seeded
    at = _open(seed.users["admin"], adm_plot_type="FCAL_occupancy")
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.tabs) == 4
    at.number_input(key=f"adm_collect_{seed.plot_types['FCAL_occupancy']}").set_value(12.5)
    at.checkbox(key=f"adm_hidden_{seed.plot_types['FCAL_occupancy']}").check()
    next(b for b in at.button if b.label == "Save plot type").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Saved FCAL_occupancy" in m.value for m in at.success)

    at.text_input(key="adm_user_name").set_value("newbie")
    at.text_input(key="adm_user_password").set_value("pw")
    next(b for b in at.button if b.label == "Add user").click().run()
    at.selectbox(key="adm_perm_user").set_value("newbie")
    at.selectbox(key="adm_perm_plot_type").set_value("CDC_hits")
    at.checkbox(key="adm_perm_thresholds").check()
    next(b for b in at.button if b.label == "Grant").click().run()
    assert not at.exception, [e.value for e in at.exception]

    at.text_input(key="adm_new_pt_name").set_value("bad name!")
    next(b for b in at.button if b.label == "Create plot type").click().run()
    assert any("letters, digits" in e.value for e in at.error)

    with session_scope(engine) as s:
        pt = get_plot_type("FCAL_occupancy", session=s)
        assert (pt.collect_percent, pt.hidden) == (12.5, True)
        newbie = get_user("newbie", session=s)
        cdc = get_plot_type("CDC_hits", session=s).id
        assert can(newbie, "thresholds", cdc, session=s) and can(newbie, "label", cdc, session=s)


def test_mask_preview_and_active_model(seeded):
    engine, seed = seeded
    with session_scope(engine) as s:
        pt = s.get(PlotType, seed.plot_types["CDC_pedestal"])
        pt.mask = [[0.1, 0.1, 0.4, 0.5]]
        s.add(pt)
    at = _open(seed.users["admin"], adm_plot_type="CDC_pedestal")
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.get("image")) == 1  # the mask drawn on the newest CDC_pedestal image
    pt_id = seed.plot_types["FCAL_timing"]
    with session_scope(engine) as s:
        spare = Model(plot_type_id=pt_id, head="classifier", path="/m/spare", input_height=8, input_width=8)
        s.add(spare)
        s.flush()
        spare_id = spare.id
    at.run()
    assert at.button(key=f"adm_activate_{pt_id}").disabled  # the active one is chosen
    chooser = at.selectbox(key=f"adm_model_{pt_id}")
    chooser.set_value(next(o for o in chooser.options if f"model {spare_id} " in o)).run()
    at.button(key=f"adm_activate_{pt_id}").click().run()
    assert not at.exception, [e.value for e in at.exception]
    with session_scope(engine) as s:
        assert active_model(pt_id, session=s).id == spare_id
