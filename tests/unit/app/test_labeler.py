"""AppTest of the Labeler page on a seeded database (the grid itself is driven in tests/e2e)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlmodel import select

from hydra.db import session_scope
from hydra.db.models import Image, ImageLabel
from tests.helpers.apptest import assert_no_exception as _no_exception
from tests.helpers.apptest import open_page

pytestmark = pytest.mark.timeout(120)


def _open(user_id: int | None, **state):
    return open_page("views/labeler.py", user_id, **state)


def test_labeler_needs_login(seeded):
    at = _open(None)
    _no_exception(at)
    assert any("Log in to label" in i.value for i in at.info)


def test_labeler_applies_with_permission(seeded):
    engine, seed = seeded
    at = _open(seed.users["labeler"], labeler_plot_type="BCAL_energy")
    _no_exception(at)
    assert at.title[0].value == "Labeler"
    assert not at.warning  # the labeler may label BCAL_energy
    waiting = next(m for m in at.metric if m.label == "Waiting for a label")
    before = int(waiting.value.replace(",", ""))
    images = at.multiselect(key="labeler_form_images")
    if not images.options:
        pytest.skip("the seed keeps no unlabeled BCAL_energy images")
    picked = images.options[:2]
    images.set_value(picked)
    at.selectbox(key="labeler_form_label").set_value("Bad")
    submit = next(b for b in at.button if b.label.startswith("Apply the label"))
    submit.click().run()
    _no_exception(at)
    assert any("Stored 2 labels" in m.value for m in at.success)
    waiting = next(m for m in at.metric if m.label == "Waiting for a label")
    assert int(waiting.value.replace(",", "")) == before - 2
    with session_scope(engine) as s:
        rows = s.exec(select(ImageLabel).where(ImageLabel.user_id == seed.users["labeler"])).all()
        assert len(rows) == 2 and {r.source for r in rows} == {"labeler"}
        assert all(s.get(Image, r.image_id).label_id == r.label_id for r in rows)


def test_labeler_refuses_without_permission(seeded):
    engine, seed = seeded
    at = _open(seed.users["viewer"], labeler_plot_type="BCAL_energy")
    _no_exception(at)
    assert any("no label permission" in w.value for w in at.warning)
    images = at.multiselect(key="labeler_form_images")
    images.set_value(images.options[:1])
    next(b for b in at.button if b.label.startswith("Apply the label")).click().run()
    assert any("Refused: viewer may not label" in e.value for e in at.error)
    with session_scope(engine) as s:
        assert not s.exec(select(ImageLabel).where(ImageLabel.user_id == seed.users["viewer"])).all()


def test_editor_relabels_and_shows_history(seeded):
    engine, seed = seeded
    at = _open(
        seed.users["admin"],
        labeler_plot_type="FCAL_occupancy",
        labeler_mode="Editor",
        editor_window="all time",
    )
    _no_exception(at)
    images = at.multiselect(key="labeler_form_images")
    assert images.options, "the seed labels some FCAL_occupancy images"
    first = images.options[0]
    image_id = int(first.rsplit("#", 1)[1].rstrip(")"))
    with session_scope(engine) as s:
        old = s.get(Image, image_id).label_id
    from hydra.db.queries import labels_of

    with session_scope(engine) as s:
        new = next(lb for lb in labels_of(seed.plot_types["FCAL_occupancy"], session=s) if lb.id != old)
    images.set_value([first])
    at.selectbox(key="labeler_form_label").set_value(new.name)
    next(b for b in at.button if b.label.startswith("Apply the label")).click().run()
    _no_exception(at)
    with session_scope(engine) as s:
        assert s.get(Image, image_id).label_id == new.id
        sources = [r.source for r in s.exec(select(ImageLabel).where(ImageLabel.image_id == image_id)).all()]
        assert sources[-1] == "editor" and len(sources) >= 2
    at.selectbox(key="editor_history").set_value(first).run()
    table = next(d.value for d in at.dataframe if "Source" in d.value.columns)
    assert list(table["Label"])[-1] == new.name and list(table["Source"])[-1] == "editor"


def test_model_verdicts_are_suggested_and_weights_settable(seeded):
    """Every kept image the model saw carries its verdict; a training weight needs the label right."""
    from hydra.auth import PermissionDenied
    from hydra.db.models import Inference, User
    from hydra.services import labeling

    engine, seed = seeded
    pt_id = seed.plot_types["FCAL_occupancy"]
    with session_scope(engine) as s:
        page = labeling.with_suggestions(
            labeling.editor_page(pt_id, session=s, limit=100), pt_id, session=s
        ) + labeling.with_suggestions(labeling.next_page(pt_id, session=s, limit=100), pt_id, session=s)
        verdicts = {
            i.kept_image_id: (i.label, i.weight)
            for i in s.exec(select(Inference).where(Inference.plot_type_id == pt_id)).all()
            if i.kept_image_id
        }
        assert page and len(page) == len(verdicts)
        for g in page:
            assert (g.suggested_label, g.suggested_weight) == verdicts[g.id]
            assert g.suggested_label_id is not None
        ids = [g.id for g in page[:2]]
        with pytest.raises(PermissionDenied):
            labeling.set_train_weight(s.get(User, seed.users["labeler"]), pt_id, ids, 2.0, session=s)
        assert labeling.set_train_weight(s.get(User, seed.users["expert"]), pt_id, ids, 2.0, session=s) == 2
    with session_scope(engine) as s:
        assert [s.get(Image, i).train_weight for i in ids] == [2.0, 2.0]


def test_editor_pages_through_labeled_images(seeded):
    engine, seed = seeded
    state = dict(labeler_plot_type="CDC_pedestal", labeler_mode="Editor", editor_window="all time")
    at = _open(seed.users["admin"], labeler_per_page=48, **state)
    _no_exception(at)
    assert any(m.value.startswith("Page 1 · images 1-4") for m in at.markdown)
    assert at.button(key="editor_next").disabled and at.button(key="editor_prev").disabled


def test_the_preview_is_the_file_itself_unless_it_is_huge(tmp_path, monkeypatch):
    import base64
    import io
    import sys

    import numpy as np
    from PIL import Image as PILImage

    from tests.helpers.apptest import APP

    monkeypatch.syspath_prepend(str(Path(APP).parent))
    sys.modules.pop("components.labeler_grid", None)
    from components.labeler_grid import PREVIEW_MAX_PX, PREVIEW_RAW_LIMIT, full_uri

    small = tmp_path / "fcal-000001_0001.png"
    PILImage.new("RGB", (1280, 960), "white").save(small)
    assert full_uri(small) == "data:image/png;base64," + base64.b64encode(small.read_bytes()).decode()
    huge = tmp_path / "fcal-000001_0002.png"  # noise does not compress: a file over the limit
    PILImage.fromarray(np.random.default_rng(0).integers(0, 255, (1500, 3000, 3), dtype=np.uint8)).save(huge)
    assert huge.stat().st_size > PREVIEW_RAW_LIMIT
    data = base64.b64decode(full_uri(huge).split(",", 1)[1])
    with PILImage.open(io.BytesIO(data)) as shown:
        assert shown.size == (PREVIEW_MAX_PX, PREVIEW_MAX_PX // 2)
    assert full_uri(tmp_path / "gone.png") == ""
