"""AppTest of the Library's "Candidate vs active": agreement, disagreements, the matrix, one-click activation."""

from __future__ import annotations

import pytest
from sqlmodel import select

from hydra.db import session_scope
from hydra.db.models import SHADOW, Inference, Model
from tests.helpers.apptest import assert_no_exception as _ok
from tests.helpers.apptest import open_page

pytestmark = pytest.mark.timeout(120)

FLIP = {"Good": "Bad", "Bad": "Good", "NoData": "Good"}


def _candidate(engine, active_id: int) -> int:
    """A shadow model of the active one's plot type that agrees on all but its last two images."""
    with session_scope(engine) as s:
        active = s.get(Model, active_id)
        cand = Model(plot_type_id=active.plot_type_id, head="classifier", path="/m/cand", input_height=8,
                     input_width=8, labels=list(active.labels), shadow=True)  # fmt: skip
        s.add(cand)
        s.flush()
        rows = s.exec(select(Inference).where(Inference.model_id == active_id).order_by(Inference.id)).all()
        for i, row in enumerate(rows):
            copy = {**row.model_dump(exclude={"id"}), "model_id": cand.id, "origin": SHADOW}
            if i >= len(rows) - 2:
                copy["label"] = FLIP[row.label]
            s.add(Inference(**copy))
        return cand.id


def _open(user_id: int | None):
    return open_page("views/library.py", user_id, library_plot_type="FCAL_occupancy")


def test_library_compares_the_candidate_and_activates_it(seeded):
    engine, seed = seeded
    active = seed.models["FCAL_occupancy"]
    cand = _candidate(engine, active)

    at = _open(seed.users["expert"])
    _ok(at)
    assert any("Candidate vs active" in h.value for h in at.subheader)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Agreement"] == "66.7%" and metrics["Agreement, live images"] == "66.7%"
    assert metrics["Agreement, reprocessed images"] == "-"
    table = next(d.value for d in at.dataframe if f"Candidate {cand}" in d.value.columns)
    assert len(table) == 2 and set(table[f"Active {active}"].str.split().str[0]) <= {"Good", "Bad", "NoData"}
    assert len(at.get("image")) >= 4, "both images of each disagreement are drawn"
    at.button(key="library_activate_candidate").click().run()  # an expert may not
    assert any("Refused" in e.value for e in at.error)
    with session_scope(engine) as s:
        assert s.get(Model, active).active and s.get(Model, cand).shadow

    at = _open(seed.users["admin"])
    at.button(key="library_activate_candidate").click().run()
    _ok(at)
    assert any(f"Model {cand} is now the active model" in m.value for m in at.success)
    with session_scope(engine) as s:
        now = s.get(Model, cand)
        assert now.active and not now.shadow and not s.get(Model, active).active


def test_library_runs_a_model_as_shadow(seeded):
    engine, seed = seeded
    active = seed.models["FCAL_timing"]
    with session_scope(engine) as s:
        spare = Model(plot_type_id=s.get(Model, active).plot_type_id, head="classifier", path="/m/spare",
                      input_height=8, input_width=8, labels=["Good", "Bad", "NoData"])  # fmt: skip
        s.add(spare)
        s.flush()
        spare_id = spare.id
    at = open_page("views/library.py", seed.users["admin"], library_plot_type="FCAL_timing")
    option = next(o for o in at.selectbox(key="library_model").options if o.startswith(f"model {spare_id} "))
    at.selectbox(key="library_model").set_value(option).run()
    _ok(at)
    assert any("No image scored by both models yet" in i.value for i in at.info)
    at.button(key="library_shadow").click().run()
    _ok(at)
    with session_scope(engine) as s:
        assert s.get(Model, spare_id).shadow
    assert at.button(key="library_unshadow")
