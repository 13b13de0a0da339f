"""Real browser: the expert pages label, relabel, refuse and change thresholds for real.

Each test adds the rows it needs to the running app's database (the app
reads it live) and checks the result there; the threshold test then runs
``hydra predict --json`` as a subprocess to see the change take effect.
"""

from __future__ import annotations

import json
import os
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from hydra.auth import grant
from hydra.db import make_engine, session_scope
from hydra.db.models import (
    Image,
    ImageLabel,
    Model,
    ModelClassification,
    Threshold,
    TrainingSet,
    TrainingSetImage,
    utcnow,
)
from hydra.db.queries import create_plot_type, labels_of
from hydra.services import library
from tests.helpers.browser import assert_no_exception, hydra_executable, screenshot, wait_idle
from tests.helpers.seed import USERS, write_plot_png

pytestmark = pytest.mark.browser
GRID = "iframe[title*='labeler_grid']"


@pytest.fixture
def db(app_server):
    eng = make_engine(f"sqlite:///{app_server.seeded.home / 'hydra.db'}")
    yield eng
    eng.dispose()


def add_images(db, home: Path, plot_type: str, n: int, tag: str) -> list[int]:
    """``n`` unlabeled images older than anything seeded, so they fill the first Labeler page."""
    pt_id = None
    ids = []
    with session_scope(db) as s:
        from hydra.db.queries import get_plot_type

        pt_id = get_plot_type(plot_type, session=s).id
        start = utcnow() - timedelta(days=30)
        for i in range(n):
            png = write_plot_png(home / "kept" / f"{plot_type}-{tag}{i:03d}.png", seed=i, problem=i % 10 == 0)
            img = Image(
                path=str(png), filename=png.name, plot_type_id=pt_id, run=90000 + i,
                created_at=start + timedelta(minutes=i), content_hash=f"{tag}{i}",
            )  # fmt: skip
            s.add(img)
            s.flush()
            ids.append(img.id)
    return ids


def log_in(page, app_server, name: str, path: str = "labeler") -> None:
    """Log in on a page (a new page load is a new session, so log in where the test works)."""
    page.goto(f"{app_server.url}/{path}")
    bar = page.locator('[data-testid="stSidebar"]')
    bar.get_by_role("textbox", name="User name").fill(name)
    bar.get_by_role("textbox", name="Password").fill(USERS[name].password)
    bar.get_by_role("button", name="Log in").click()
    bar.get_by_text(f"Logged in as {name}").wait_for()
    wait_idle(page)


def choose(page, key: str, option: str) -> None:
    page.locator(f".st-key-{key} [role='combobox']").click()
    page.get_by_role("option", name=option, exact=True).click()
    wait_idle(page)


def grid_frame(page):
    return next(f for f in page.frames if "hydra_labeler_grid" in f.url)


def apply_and_wait(page) -> None:
    frame = grid_frame(page)
    token = frame.evaluate("() => document.body.dataset.readyToken")
    frame.locator("#apply").click()
    frame.wait_for_function(
        "(t) => document.body.dataset.readyToken !== t || !document.body.classList.contains('busy')",
        arg=token,
    )
    wait_idle(page)


def test_labeler_paints_and_applies_a_page(page, app_server, db):
    ids = add_images(db, app_server.seeded.home, "BCAL_energy", 50, "paint")
    log_in(page, app_server, "labeler")
    choose(page, "labeler_plot_type", "BCAL_energy")
    grid = page.frame_locator(GRID)
    cells = grid.locator(".cell")
    cells.first.wait_for()
    assert cells.count() == 48
    assert [int(cells.nth(i).get_attribute("data-image-id")) for i in range(3)] == ids[:3]  # oldest first
    cells.first.click()  # focus the grid for the keys
    page.keyboard.press("2")  # Bad
    cells.nth(0).click()  # the focusing click painted Good; this one paints Bad over it
    cells.nth(2).click(modifiers=["Shift"])  # range 0..2
    page.keyboard.press("1")  # Good
    page.keyboard.press("a")  # every unpainted one
    assert grid.locator("#apply").inner_text() == "Apply 48 labels"
    screenshot(page, "labeler-painted")
    apply_and_wait(page)
    page.get_by_text("Stored 48 labels on BCAL_energy").wait_for()
    assert_no_exception(page)
    assert int(cells.first.get_attribute("data-image-id")) not in ids[:48]
    screenshot(page, "labeler")
    labeler = app_server.seeded.users["labeler"]
    with session_scope(db) as s:
        rows = s.exec(select(ImageLabel).where(col_in(ImageLabel.image_id, ids[:48]))).all()
        assert len(rows) == 48 and {r.user_id for r in rows} == {labeler}
        names = {lb.id: lb.name for lb in labels_of(app_server.seeded.plot_types["BCAL_energy"], session=s)}
        by_image = {r.image_id: names[r.label_id] for r in rows}
    assert [by_image[i] for i in ids[:3]] == ["Bad", "Bad", "Bad"]
    assert set(by_image[i] for i in ids[3:48]) == {"Good"}


def col_in(column, values):
    from sqlmodel import col

    return col(column).in_(values)


def test_editor_relabels_one_image(page, app_server, db):
    ids = add_images(db, app_server.seeded.home, "BCAL_energy", 3, "edit")
    with session_scope(db) as s:
        from hydra.auth import get_user
        from hydra.services.labeling import apply_labels

        pt_id = app_server.seeded.plot_types["BCAL_energy"]
        good = next(lb.id for lb in labels_of(pt_id, session=s) if lb.name == "Good")
        for i in ids:  # labeled long ago, newest first in the Editor after anything labeled since
            s.get(Image, i).created_at = utcnow() + timedelta(days=1)
        apply_labels(get_user("admin", session=s), pt_id, {i: good for i in ids}, session=s)
    log_in(page, app_server, "labeler")
    choose(page, "labeler_plot_type", "BCAL_energy")
    page.locator(".st-key-labeler_mode").get_by_text("Editor").click()
    wait_idle(page)
    choose(page, "editor_window", "all time")
    grid = page.frame_locator(GRID)
    target = grid.locator(f".cell[data-image-id='{ids[-1]}']")
    target.wait_for()
    assert target.locator(".was").inner_text() == "Good"
    grid.locator(".swatch", has_text="NoData").click()
    target.click()
    assert grid.locator("#apply").inner_text() == "Apply 1 label"
    apply_and_wait(page)
    page.get_by_text("Stored 1 label on BCAL_energy").wait_for()
    assert_no_exception(page)
    screenshot(page, "labeler-editor")
    with session_scope(db) as s:
        steps = s.exec(select(ImageLabel).where(ImageLabel.image_id == ids[-1]).order_by(ImageLabel.id)).all()
        assert [r.source for r in steps] == ["labeler", "editor"]
        assert steps[-1].user_id == app_server.seeded.users["labeler"]
        assert s.get(Image, ids[-1]).label_id == steps[-1].label_id != steps[0].label_id


def test_user_without_permission_is_refused(page, app_server, db):
    add_images(db, app_server.seeded.home, "BCAL_energy", 2, "refuse")
    log_in(page, app_server, "viewer")
    choose(page, "labeler_plot_type", "BCAL_energy")
    page.get_by_text("has no label permission on BCAL_energy").wait_for()
    grid = page.frame_locator(GRID)
    grid.locator(".cell").first.click()
    apply_and_wait(page)
    page.get_by_text("Refused: viewer may not label").wait_for()
    assert grid.locator("#apply").inner_text() == "Apply 1 label"  # the painting stays for another try
    with session_scope(db) as s:
        viewer = app_server.seeded.users["viewer"]
        assert not s.exec(select(ImageLabel).where(ImageLabel.user_id == viewer)).all()


@pytest.mark.slow
def test_threshold_change_takes_effect_in_predict(page, app_server, db, tmp_path):
    from hydra.heads import create_head

    home = app_server.seeded.home
    head = create_head(
        "classifier", labels=["Good", "Bad"], input_size=(48, 64), backbone="mobilenetv3_small_050"
    )
    model_dir = home / "models" / "E2E_thresholds" / "1"
    head.save(model_dir)
    probe = write_plot_png(tmp_path / "E2E_thresholds-4242.png", seed=3)
    with session_scope(db) as s:
        pt = create_plot_type("E2E_thresholds", ["Good", "Bad"], session=s)
        pt.hidden = True  # keeps the Run page of the other browser tests as seeded
        grant("expert", "E2E_thresholds", session=s, label=True, thresholds=True)
        model = Model(
            plot_type_id=pt.id, head="classifier", path=str(model_dir), input_height=48, input_width=64,
            labels=["Good", "Bad"], active=True, activated_at=utcnow(),
        )  # fmt: skip
        s.add(model)
        s.flush()
        s.add_all([Threshold(model_id=model.id, label=lb, value=0.01) for lb in ("Good", "Bad")])
        # the model was trained on labeled images (the Library shows its training set and label counts)
        label_ids = {lb.name: lb.id for lb in labels_of(pt.id, session=s)}
        training = TrainingSet(plot_type_id=pt.id, sampling="all", label_counts={"Good": 2, "Bad": 1})
        s.add(training)
        s.flush()
        model.training_set_id = training.id
        for i, (human, w) in enumerate((("Good", 0.8), ("Bad", 0.3), ("Good", 0.6))):
            img = Image(
                path=str(probe) + f"?{i}", filename=probe.name, plot_type_id=pt.id, content_hash=f"t{i}",
                label_id=label_ids[human], labeled_at=utcnow(),
            )  # fmt: skip
            s.add(img)
            s.flush()
            s.add(TrainingSetImage(training_set_id=training.id, image_id=img.id, split="test",
                                   label_id=label_ids[human]))  # fmt: skip
            s.add(ModelClassification(
                model_id=model.id, image_id=img.id, human_label=human,
                predicted_label="Good" if w > 0.5 else "Bad", weights={"Good": w, "Bad": round(1 - w, 2)},
            ))  # fmt: skip
        model_id = model.id

    def predict() -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HYDRA_")} | {"HYDRA_HOME": str(home)}
        out = subprocess.run(
            [hydra_executable(), "predict", "--json", str(probe)],
            env=env, capture_output=True, text=True, timeout=180, check=True,
        )  # fmt: skip
        return json.loads(out.stdout.strip().splitlines()[-1])

    before = predict()
    assert before["model_id"] == model_id and before["confirmed"] is True
    log_in(page, app_server, "expert", "library")
    choose(page, "library_plot_type", "E2E_thresholds")
    slider = page.locator(f".st-key-th_{model_id}_{before['label']} input[type='range']")
    slider.focus()
    page.keyboard.press("End")
    wait_idle(page)
    page.locator(".st-key-library_save button").click()
    page.get_by_text(f"Saved 1 threshold of model {model_id}").wait_for()
    wait_idle(page)  # the rerun after the save has drawn the whole page
    assert_no_exception(page)
    screenshot(page, "library")
    with session_scope(db) as s:  # what the Library's model table shows
        (shown,) = library.models_of(s.get(Model, model_id).plot_type_id, session=s)
    assert (shown.training_size, shown.label_counts, shown.sampling) == (3, {"Good": 2, "Bad": 1}, "all")
    with session_scope(db) as s:
        row = s.exec(
            select(Threshold).where(Threshold.model_id == model_id, Threshold.label == before["label"])
        ).one()
        assert row.value == 1.0 and row.set_by == app_server.seeded.users["expert"]
    after = predict()
    assert after["label"] == before["label"] and after["confirmed"] is False
