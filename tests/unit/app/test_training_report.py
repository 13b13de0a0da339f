"""AppTest of the Training report: disagreements ranked, one-click fix with permission."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlmodel import select

from hydra.db import make_engine, session_scope
from hydra.db.models import Image, ImageLabel, ModelClassification
from hydra.db.queries import labels_of

APP = str(Path(__file__).resolve().parents[3] / "apps" / "streamlit" / "app.py")
pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def seeded(hydra_home):
    """The seeded deployment plus two disagreements on FCAL_occupancy (human Good, model Bad)."""
    from hydra.config import load_config
    from tests.helpers.seed import seed_database

    eng = make_engine(load_config().database_url)
    seed = seed_database(eng, hydra_home, history=6)
    with session_scope(eng) as s:
        pt_id = seed.plot_types["FCAL_occupancy"]
        good = next(lb for lb in labels_of(pt_id, session=s) if lb.name == "Good")
        ids = []
        for i, weight in enumerate((0.97, 0.71)):
            img = Image(
                path=f"/nowhere/{i}.png", filename=f"{i}.png", plot_type_id=pt_id, content_hash=f"d{i}"
            )
            img.label_id = good.id
            s.add(img)
            s.flush()
            ids.append(img.id)
            s.add(
                ModelClassification(
                    model_id=seed.models["FCAL_occupancy"], image_id=img.id, human_label="Good",
                    predicted_label="Bad", weights={"Good": round(1 - weight, 2), "Bad": weight, "NoData": 0.0},
                )
            )  # fmt: skip
    try:
        yield eng, seed, ids
    finally:
        eng.dispose()


def _open(user_id: int | None):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=60)
    if user_id is not None:
        at.session_state["hydra_user_id"] = user_id
    at.session_state["report_plot_type"] = "FCAL_occupancy"
    at.switch_page("views/training_report.py")
    return at.run()


def test_report_ranks_and_fixes_with_permission(seeded):
    engine, seed, ids = seeded
    at = _open(seed.users["viewer"])
    assert not at.exception, [e.value for e in at.exception]
    assert any("**2** disagreements" in m.value for m in at.markdown)
    fixes = [b for b in at.button if b.key and b.key.startswith("fix_")]
    assert [b.key.rsplit("_", 1)[1] for b in fixes] == [str(ids[0]), str(ids[1])]  # most confident first
    fixes[0].click().run()
    assert any("Refused: viewer may not label" in e.value for e in at.error)

    at = _open(seed.users["expert"])
    next(b for b in at.button if b.key == f"fix_{seed.models['FCAL_occupancy']}_{ids[0]}").click().run()
    assert not at.exception
    assert any("Fixed: now labeled Bad" in m.value for m in at.success)
    with session_scope(engine) as s:
        assert s.get(Image, ids[0]).label_id != s.get(Image, ids[1]).label_id
        row = s.exec(select(ImageLabel).where(ImageLabel.image_id == ids[0])).one()
        assert (row.source, row.user_id) == ("report", seed.users["expert"])


def test_report_empty_state_without_disagreements(seeded):
    at = _open(None)
    at.selectbox(key="report_plot_type").set_value("FCAL_timing").run()
    assert not at.exception
    assert any("No disagreements" in i.value for i in at.info)
