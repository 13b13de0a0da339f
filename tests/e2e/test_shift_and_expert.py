"""Real browser: the shift crew's and the expert's day.

Alarms collapse to one banner per condition and are acknowledged all at
once; the Run grid keeps its order across refreshes; a problem tile shows
its heat map without touching a slider; the Labeler pre-paints the model's
verdicts and one key accepts them; the Admin page renames and merges plot
types; the Log filters by run. Each test adds what it needs to the running
app's database and checks the outcome there. The Admin test renames and
merges seeded plot types, so it runs last.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
from datetime import timedelta

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlmodel import col, select

from hydra.data.images import source_key
from hydra.db import make_engine, session_scope
from hydra.db.models import Alarm, Image, ImageLabel, Inference, PlotType, RunTime, utcnow
from hydra.db.queries import labels_of
from tests.helpers.browser import assert_no_exception, open_page, screenshot, wait_idle
from tests.helpers.seed import FIRST_RUN, USERS, write_plot_png

pytestmark = pytest.mark.browser
GRID = "iframe[title*='labeler_grid']"


@pytest.fixture
def db(app_server):
    eng = make_engine(f"sqlite:///{app_server.seeded.home / 'hydra.db'}")
    yield eng
    eng.dispose()


def log_in(page, app_server, name: str, path: str) -> None:
    page.goto(f"{app_server.url}/{path}")
    bar = page.locator('[data-testid="stSidebar"]')
    bar.get_by_role("textbox", name="User name").fill(name)
    bar.get_by_role("textbox", name="Password").fill(USERS[name].password)
    bar.get_by_role("button", name="Log in").click()
    bar.get_by_text(f"Logged in as {name}").wait_for()
    wait_idle(page)


def tile_order(page) -> list[str]:
    return page.locator('[class*="st-key-frame_"]').evaluate_all(
        "els => els.map(e => [...e.classList].find(c => c.startsWith('st-key-frame_')))"
    )


def test_alarms_collapse_and_acknowledge_all(page, app_server, db):
    ids = app_server.seeded.plot_types
    with session_scope(db) as s:
        for run in (FIRST_RUN + 3, FIRST_RUN + 4, FIRST_RUN + 4, FIRST_RUN + 5):  # the same condition, again
            s.add(Alarm(plot_type_id=ids["FCAL_occupancy"], run=run, label="Bad",
                        message=f"FCAL_occupancy: 3 confirmed Bad in a row (run {run})"))  # fmt: skip
        s.add(Alarm(plot_type_id=ids["BCAL_energy"], run=FIRST_RUN + 5, label="Bad", message="x"))
    with session_scope(db) as s:
        open_ = s.exec(
            select(Alarm).where(col(Alarm.raised).is_(True), col(Alarm.acknowledged_at).is_(None))
        ).all()
        n_fcal = sum(a.plot_type_id == ids["FCAL_occupancy"] for a in open_)  # 4, or 5 with the seeded one
    log_in(page, app_server, "admin", "")
    banners = page.locator('[class*="st-key-alarm_"]')
    banners.nth(1).wait_for()
    assert banners.count() == 2  # one per condition, not one per alarm
    fcal = page.locator(f".st-key-alarm_{ids['FCAL_occupancy']}_Bad").inner_text()
    assert f"{n_fcal} alarms" in fcal and fcal.count("FCAL_occupancy") == 1 and "3 confirmed" not in fcal
    assert page.get_by_text(f"{len(open_)} open alarms on 2 conditions").count() == 1
    screenshot(page, "run-alarms")
    page.get_by_role("button", name="Acknowledge all").click()
    banners.first.wait_for(state="detached")
    wait_idle(page)
    assert_no_exception(page)
    with session_scope(db) as s:
        left = s.exec(select(Alarm).where(col(Alarm.raised).is_(True), col(Alarm.acknowledged_at).is_(None)))
        assert left.all() == []


def test_tile_order_is_stable_across_refreshes(page, app_server, db):
    missing = []
    page.on("response", lambda r: missing.append(r.url) if r.status == 404 and "/media/" in r.url else None)
    open_page(page, app_server, "", "Current run")
    page.locator('[class*="st-key-frame_"]').nth(5).wait_for()
    before = tile_order(page)
    timing = app_server.seeded.plot_types["FCAL_timing"]
    with session_scope(db) as s:  # a new image of FCAL_timing, still Good, with another weight
        newest = s.exec(
            select(RunTime).where(RunTime.plot_type_id == timing).order_by(col(RunTime.created_at).desc())
        ).first()
        newest.weight, newest.created_at = 0.777, utcnow()
        s.add(newest)
    tile = page.locator(f".st-key-frame_{timing}")
    tile.get_by_text("0.78").wait_for(timeout=20_000)  # the refresh has drawn the new verdict
    page.wait_for_timeout(5_500)  # and one more refresh
    assert tile_order(page) == before
    assert missing == []  # images are embedded: a refresh leaves no stale media URL behind
    assert_no_exception(page)


def test_heat_map_visible_on_a_problem_tile_by_default(page, app_server, db):
    open_page(page, app_server, "", "Current run")
    tile = page.locator(f".st-key-frame_{app_server.seeded.plot_types['FCAL_occupancy']} img.hydra-tile")
    tile.wait_for()
    assert "heat" in tile.get_attribute("class")
    src = tile.get_attribute("src")
    shown = PILImage.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("RGB")
    pt_id = app_server.seeded.plot_types["FCAL_occupancy"]
    with session_scope(db) as s:
        newest = s.exec(
            select(RunTime).where(RunTime.plot_type_id == pt_id).order_by(col(RunTime.created_at).desc())
        ).first()
    with PILImage.open(newest.image_path) as original:
        plain = np.asarray(original.convert("RGB").resize(shown.size), dtype=float)
    # the jet-coloured map is blended in: the tile is visibly not the plain plot
    assert np.abs(np.asarray(shown, dtype=float) - plain).mean() > 20
    screenshot(page, "run-heatmap")


def _images_with_verdicts(db, home, plot_type: str, verdicts: list[str]) -> list[int]:
    """Unlabeled images older than any other, each with the inference the Keeper would have stored."""
    ids = []
    with session_scope(db) as s:
        pt = s.exec(select(PlotType).where(PlotType.name == plot_type)).one()
        model = s.exec(select(Inference.model_id).where(Inference.plot_type_id == pt.id)).first()
        start = utcnow() - timedelta(days=60)
        for i, label in enumerate(verdicts):
            png = write_plot_png(home / "kept" / f"{plot_type}-{80000 + i:06d}.png", seed=500 + i,
                                 problem=label == "Bad")  # fmt: skip
            digest = hashlib.sha256(png.read_bytes()).hexdigest()
            img = Image(path=str(png), filename=png.name, plot_type_id=pt.id, run=80000 + i,
                        created_at=start + timedelta(minutes=i), content_hash=digest, kept_reason="doubt")  # fmt: skip
            s.add(img)
            s.flush()
            s.add(Inference(source_key=source_key(png.name, digest), path=str(png), filename=png.name,
                            plot_type_id=pt.id, run=80000 + i, model_id=model, label=label, weight=0.91,
                            weights={label: 0.91}, confirmed=False, kept_image_id=img.id))  # fmt: skip
            ids.append(img.id)
    return ids


def _big_noisy_png(path, size: tuple[int, int]) -> None:
    """A plot far larger than a thumbnail, noisy enough that no thumbnail embeds it as it is."""
    rng = np.random.default_rng(7)
    with PILImage.open(path) as small:
        plot = np.asarray(small.convert("RGB").resize(size), dtype=np.int16)
    noisy = np.clip(plot + rng.integers(-40, 40, plot.shape), 0, 255).astype(np.uint8)
    PILImage.fromarray(noisy).save(path)


def leaderboard_count(page, user: str) -> int:
    """The user's count on the Labeler's leaderboard (0 while the user is not on it)."""
    text = page.locator(".st-key-labeler_board").inner_text()
    found = re.search(rf"\d+\. {re.escape(user)} \(([\d,]+)\)", text)
    return int(found.group(1).replace(",", "")) if found else 0


def test_labeler_prepaint_accepted_with_one_key(page, app_server, db):
    verdicts = ["Bad" if i in (4, 20, 33) else "Good" for i in range(48)]
    ids = _images_with_verdicts(db, app_server.seeded.home, "BCAL_energy", verdicts)
    with session_scope(db) as s:
        big = s.get(Image, ids[4]).path
    _big_noisy_png(big, (1280, 960))
    log_in(page, app_server, "labeler", "labeler")
    page.locator(".st-key-labeler_plot_type [role='combobox']").click()
    page.get_by_role("option", name="BCAL_energy", exact=True).click()
    wait_idle(page)
    grid = page.frame_locator(GRID)
    cells = grid.locator(".cell")
    cells.first.wait_for()
    frame = next(f for f in page.frames if "hydra_labeler_grid" in f.url)
    frame.wait_for_function("() => document.body.dataset.suggested === '48'")
    assert [int(cells.nth(i).get_attribute("data-image-id")) for i in range(48)] == ids
    assert "suggested" in cells.nth(4).get_attribute("class")
    assert cells.nth(4).locator(".badge").inner_text() == "Bad?"  # a suggestion, not a human's paint
    assert "model: Bad 0.91" in cells.nth(4).inner_text()
    assert grid.locator("#apply").inner_text() == "Apply 0 labels"
    board_before = leaderboard_count(page, "labeler")
    screenshot(page, "labeler-suggested")
    token = frame.evaluate("() => document.body.dataset.readyToken")
    # the grid holds a thumbnail of the big image, not the image
    assert cells.nth(4).locator("img").evaluate("i => i.naturalWidth") <= 320
    # leave the plot type box first (keys typed there are its own)
    page.get_by_role("heading", name="Labeler").click()
    cells.nth(4).hover()
    page.keyboard.press(" ")  # Space previews the image under the mouse, large
    grid.locator("#preview").wait_for()
    assert "BCAL_energy-080004.png" in grid.locator("#preview .pcap").inner_text()
    with PILImage.open(big) as source:
        width = source.width
    # the preview gets the file at its full resolution, not the enlarged thumbnail
    frame.wait_for_function(
        "(w) => { const i = document.querySelector('#preview img'); return i.complete && i.naturalWidth === w; }",
        arg=width,
        timeout=20_000,
    )
    assert frame.evaluate("() => document.querySelector('#preview').dataset.full") == "1"
    screenshot(page, "labeler-preview")
    assert frame.evaluate("() => document.body.dataset.readyToken") == token  # the same page, still unpainted
    page.keyboard.press("Escape")
    grid.locator("#preview").wait_for(state="hidden")
    page.keyboard.press("s")  # accept the page's suggestions: action 1
    assert grid.locator("#apply").inner_text() == "Apply 48 labels"
    page.keyboard.press("Enter")  # apply: action 2
    frame.wait_for_function("(t) => document.body.dataset.readyToken !== t", arg=token)
    wait_idle(page)
    page.get_by_text("Stored 48 labels on BCAL_energy").wait_for()
    # the leaderboard counts the 48 labels at once (it is cached, and Apply clears it)
    assert leaderboard_count(page, "labeler") == board_before + 48
    assert_no_exception(page)
    with session_scope(db) as s:
        names = {lb.id: lb.name for lb in labels_of(app_server.seeded.plot_types["BCAL_energy"], session=s)}
        rows = s.exec(select(ImageLabel).where(col(ImageLabel.image_id).in_(ids))).all()
        by_image = {r.image_id: names[r.label_id] for r in rows}
    assert [by_image[i] for i in ids] == verdicts


def test_log_filtered_by_run(page, app_server):
    open_page(page, app_server, "log", "Confirmed problems")
    run = FIRST_RUN + 2
    box = page.locator(".st-key-log_run input")
    box.fill(str(run))
    box.press("Enter")
    page.get_by_text(f"Filtered: run {run}").wait_for()
    wait_idle(page)
    page.wait_for_function(
        "(r) => [...document.querySelectorAll('[data-testid=\"stExpander\"] summary')]"
        ".every(e => e.innerText.includes(' · run ' + r + ' · '))",
        arg=str(run),
    )
    titles = page.locator('[data-testid="stExpander"] summary').all_inner_texts()
    assert titles and all(f" · run {run} · " in t for t in titles)
    assert_no_exception(page)
    screenshot(page, "log-run")


def _labeled_images(db, home, plot_type: str, labels: list[str | None]) -> list[int]:
    """Images of a plot type, each with its human label (None: unlabeled) and that label's history."""
    ids = []
    with session_scope(db) as s:
        pt = s.exec(select(PlotType).where(PlotType.name == plot_type)).one()
        by_name = {lb.name: lb.id for lb in labels_of(pt.id, session=s)}
        for i, name in enumerate(labels):
            png = write_plot_png(home / "kept" / f"{plot_type}-{85000 + i:06d}.png", seed=900 + i)
            img = Image(path=str(png), filename=png.name, plot_type_id=pt.id, run=85000 + i,
                        content_hash=f"merge{i}", label_id=by_name.get(name), labeled_at=utcnow() if name else None)  # fmt: skip
            s.add(img)
            s.flush()
            if name:
                s.add(ImageLabel(image_id=img.id, label_id=by_name[name], source="labeler"))
            ids.append(img.id)
    return ids


def test_admin_renames_and_merges_plot_types(page, app_server, db):
    from hydra.db.queries import add_label
    from hydra.services.admin import plot_type_usage

    home = app_server.seeded.home
    with session_scope(db) as s:  # TOF_rates gets images, one of them with a label CDC_hits lacks
        tof = s.exec(select(PlotType).where(PlotType.name == "TOF_rates")).one()
        add_label(tof.id, "Noisy", session=s, is_problem=True)
        assert "Noisy" not in {
            lb.name for lb in labels_of(app_server.seeded.plot_types["CDC_hits"], session=s)
        }
    moved = _labeled_images(db, home, "TOF_rates", ["Good", "Noisy", None])
    with session_scope(db) as s:
        target = plot_type_usage("CDC_hits", session=s)
    log_in(page, app_server, "admin", "admin")
    page.locator(".st-key-adm_plot_type [role='combobox']").click()
    page.get_by_role("option", name="TOF_rates", exact=True).click()
    wait_idle(page)
    page.get_by_text("Rename, merge or delete TOF_rates").click()
    page.get_by_text("TOF_rates holds 3 images (2 labeled)").wait_for()
    page.locator(".st-key-adm_rename_to input").fill("TOF_rates_v2")
    page.get_by_role("button", name="Rename", exact=True).click()
    page.get_by_text("Renamed TOF_rates to TOF_rates_v2.").wait_for()
    wait_idle(page)
    if not page.locator(".st-key-adm_merge_into").is_visible():
        page.get_by_text("Rename, merge or delete TOF_rates_v2").click()
    page.locator(".st-key-adm_merge_into [role='combobox']").click()
    page.keyboard.type("CDC_hits")
    page.keyboard.press("Enter")
    screenshot(page, "admin-plot-types")
    page.get_by_role("button", name="Merge", exact=True).click()
    page.get_by_text("Merged TOF_rates_v2 into CDC_hits").wait_for()
    wait_idle(page)
    assert_no_exception(page)
    # the page now shows the target, holding what moved, with the label it lacked
    holds = page.get_by_text(f"CDC_hits holds {target.images + 3} images ({target.labeled + 2} labeled)")
    if not holds.is_visible():
        page.get_by_text("Rename, merge or delete CDC_hits").click()
    holds.wait_for()
    assert page.get_by_text("Noisy", exact=True).count() >= 1
    with session_scope(db) as s:
        names = set(s.exec(select(PlotType.name)).all())
        cdc = app_server.seeded.plot_types["CDC_hits"]
        label_names = {lb.id: lb.name for lb in labels_of(cdc, session=s)}
        images = [s.get(Image, i) for i in moved]
        history = s.exec(select(ImageLabel).where(col(ImageLabel.image_id).in_(moved))).all()
    assert "CDC_hits" in names and not names & {"TOF_rates", "TOF_rates_v2"}
    assert {img.plot_type_id for img in images} == {cdc}
    assert [label_names.get(img.label_id) for img in images] == ["Good", "Noisy", None]
    assert sorted(label_names[h.label_id] for h in history) == ["Good", "Noisy"]
    # an action on another tab keeps that tab open
    page.get_by_role("tab", name="Users").click()
    page.locator(".st-key-adm_user_name input").fill("newcomer")
    page.locator(".st-key-adm_user_password input").fill("newcomer-pw")
    page.get_by_role("button", name="Add user").click()
    page.get_by_text("Added newcomer.").wait_for()
    wait_idle(page)
    assert page.get_by_role("tab", name="Users").get_attribute("aria-selected") == "true"
