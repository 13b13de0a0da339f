"""AppTest of the Library page: models, enhanced confusion matrix, live thresholds, save and activate."""

from __future__ import annotations

import pytest
from sqlmodel import select

from hydra.db import session_scope
from hydra.db.models import Model, ThresholdChange
from hydra.db.queries import thresholds_of
from tests.helpers.apptest import assert_no_exception as _ok
from tests.helpers.apptest import open_page

pytestmark = pytest.mark.timeout(120)


def _open(user_id: int | None, **state):
    return open_page("views/library.py", user_id, **state)


def test_library_shows_models_matrix_and_live_metrics(seeded):
    engine, seed = seeded
    at = _open(None, library_plot_type="FCAL_occupancy")
    _ok(at)
    models = at.dataframe[0].value
    assert "★" in set(models[""]) and seed.models["FCAL_occupancy"] in set(models["Model"])
    assert at.get("image"), "the enhanced confusion matrix is drawn"
    unconfirmed = next(m for m in at.metric if m.label.startswith("Unconfirmed at"))
    before = int(unconfirmed.value)
    total = int(next(m for m in at.metric if m.label == "Held-out images").value)
    assert before < total
    for label in ("Good", "Bad", "NoData"):
        at.slider(key=f"th_{seed.models['FCAL_occupancy']}_{label}").set_value(0.99)
    at.run()
    _ok(at)
    after = int(next(m for m in at.metric if m.label.startswith("Unconfirmed at")).value)
    assert after == total  # nothing is confirmed at 0.99


def test_library_save_needs_permission(seeded):
    engine, seed = seeded
    model_id = seed.models["FCAL_occupancy"]
    key = f"th_{model_id}_Bad"
    at = _open(seed.users["labeler"], library_plot_type="FCAL_occupancy")
    at.slider(key=key).set_value(0.42).run()
    at.button(key="library_save").click().run()
    assert any("Refused" in e.value for e in at.error)
    with session_scope(engine) as s:
        assert thresholds_of(model_id, session=s)["Bad"] != 0.42

    at = _open(seed.users["expert"], library_plot_type="FCAL_occupancy")
    at.slider(key=key).set_value(0.42).run()
    at.button(key="library_save").click().run()
    _ok(at)
    assert any("Saved 1 threshold" in m.value for m in at.success)
    with session_scope(engine) as s:
        assert thresholds_of(model_id, session=s)["Bad"] == 0.42
        change = s.exec(select(ThresholdChange).where(ThresholdChange.new_value == 0.42)).one()
        assert change.set_by == seed.users["expert"]


def test_library_activate_is_admin_only(seeded):
    engine, seed = seeded
    with session_scope(engine) as s:
        active = s.get(Model, seed.models["FCAL_timing"])
        spare = Model(
            plot_type_id=active.plot_type_id, head="classifier", path="/m/spare", input_height=8, input_width=8,
            labels=list(active.labels),
        )  # fmt: skip
        s.add(spare)
        s.flush()
        spare_id = spare.id
    label = "library_model"
    for user, allowed in ((seed.users["expert"], False), (seed.users["admin"], True)):
        at = _open(user, library_plot_type="FCAL_timing")
        option = next(o for o in at.selectbox(key=label).options if o.startswith(f"model {spare_id} "))
        at.selectbox(key=label).set_value(option).run()
        at.button(key="library_activate").click().run()
        with session_scope(engine) as s:
            assert s.get(Model, spare_id).active is allowed
        if not allowed:
            assert any("Refused" in e.value for e in at.error)
