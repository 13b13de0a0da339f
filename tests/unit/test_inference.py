"""The shared inference path and ``hydra predict`` on a real (tiny) trained model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sqlmodel import select
from typer.testing import CliRunner

from hydra.inference import ServingModel, Verdict, cam_batch, decide, needs_cam, predict_batch
from tests.helpers.heads import dataset

SIZE = (32, 40)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    from hydra.heads import create_head

    torch.manual_seed(0)
    head = create_head(
        "classifier",
        labels=["Good", "Bad"],
        problem_labels=["Bad"],
        input_size=SIZE,
        backbone="mobilenetv3_small_050",
    )
    head.eval()
    out = tmp_path_factory.mktemp("model")
    head.save(out)
    return out


def test_decide_argmax_and_thresholds():
    labels = ["Good", "Bad", "NoData"]
    v = decide(np.array([0.2, 0.7, 0.1]), labels, {"Bad": 0.8}, ["Bad", "NoData"])
    assert v == Verdict("Bad", pytest.approx(0.7), False, True)
    assert needs_cam(v)
    v = decide([0.9, 0.05, 0.05], labels, {}, ["Bad"])
    assert v.label == "Good" and v.confirmed and not v.is_problem and not needs_cam(v)
    assert not decide([0.5, 0.4, 0.1], labels, None, ["Bad"]).confirmed  # default 0.5, strictly above
    with pytest.raises(ValueError, match="3 labels"):
        decide([0.5, 0.5], labels, {}, [])


def test_predict_batch_and_cam(model_dir):
    model = ServingModel.from_dir(model_dir, model_id=3, thresholds={"Good": 0.6})
    assert model.labels == ["Good", "Bad"] and model.input_size == SIZE and model.channels == 3
    pixels = dataset(6, *SIZE, seed=1)[0]
    w = predict_batch(model, pixels)
    assert w.shape == (6, 2) and w.dtype == np.float32
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(predict_batch(model, pixels, max_batch=4), w, atol=1e-6)
    np.testing.assert_allclose(predict_batch(model, pixels[:1])[0], w[0], atol=1e-5)
    assert predict_batch(model, pixels[:0]).shape == (0, 2)
    maps = cam_batch(model, pixels[:3], [0, 1, 1])
    assert maps.shape == (3, *SIZE) and maps.dtype == np.float32 and 0 <= maps.min() <= maps.max() <= 1
    with pytest.raises(ValueError, match="uint8 N x 32 x 40 x 3"):
        predict_batch(model, np.zeros((2, 30, 40, 3), np.uint8))


def _setup_db(home: Path, model_dir: Path) -> int:
    import shutil

    from hydra.config import load_config
    from hydra.db.engine import make_engine, session_scope
    from hydra.db.models import Label, Model, PlotType, Threshold

    cfg = load_config()
    shutil.copytree(model_dir, cfg.path("models") / "m1")
    engine = make_engine(cfg.database_url)
    with session_scope(engine) as s:
        pt = PlotType(name="toy_hist")
        s.add(pt)
        s.flush()
        s.add(Label(plot_type_id=pt.id, name="Good"))
        s.add(Label(plot_type_id=pt.id, name="Bad", is_problem=True))
        s.add(PlotType(name="orphan"))
        m = Model(plot_type_id=pt.id, head="classifier", path="m1", input_height=SIZE[0], input_width=SIZE[1],
                  labels=["Good", "Bad"], active=True)  # fmt: skip
        s.add(m)
        s.flush()
        s.add(Threshold(model_id=m.id, label="Good", value=0.0))
        s.add(Threshold(model_id=m.id, label="Bad", value=0.99))
        model_id = m.id
    engine.dispose()
    return model_id


def test_load_model_from_db(hydra_home, model_dir):
    from sqlmodel import Session

    from hydra.config import load_config
    from hydra.db.engine import make_engine
    from hydra.db.queries import thresholds_of
    from hydra.inference import ServingModel

    model_id = _setup_db(hydra_home, model_dir)
    cfg = load_config()
    engine = make_engine(cfg.database_url)
    with Session(engine) as s:
        assert thresholds_of(model_id, session=s) == {"Good": 0.0, "Bad": 0.99}
        loaded = ServingModel.load(s, model_id, cfg.path("models"))
        assert loaded.model_id == model_id and loaded.problem_labels == ["Bad"]
        with pytest.raises(LookupError):
            ServingModel.load(s, 999, cfg.path("models"))
    engine.dispose()


def test_hydra_predict_cli(hydra_home, model_dir, tmp_path):
    from hydra.cli import app

    model_id = _setup_db(hydra_home, model_dir)
    plots = tmp_path / "plots"
    plots.mkdir()
    images = dataset(3, 90, 120, seed=5)[0]
    good = []
    for i, img in enumerate(images):
        path = plots / f"toy_hist-001000_000{i}.png"
        Image.fromarray(img).save(path)
        good.append(path)
    (plots / "toy_hist-001000_0009.png").write_bytes(b"not a png")
    Image.fromarray(images[0]).save(plots / "badly named.png")
    Image.fromarray(images[0]).save(plots / "nosuch-001000_0001.png")
    Image.fromarray(images[0]).save(plots / "orphan-001000_0001.png")
    cams = tmp_path / "cams"
    result = CliRunner().invoke(app, ["predict", str(plots), "--json", "--cam", str(cams)])
    assert result.exit_code == 1, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert sorted(Path(r["path"]).name for r in rows) == sorted(p.name for p in good)
    for r in rows:
        assert set(r) >= {"path", "plot_type", "model_id", "label", "weights", "confirmed"}
        assert r["plot_type"] == "toy_hist" and r["model_id"] == model_id
        assert abs(sum(r["weights"].values()) - 1) < 1e-5
        assert r["confirmed"] == (r["label"] == "Good")  # thresholds 0.0 / 0.99
        assert Path(r["heatmap"]).is_file()
    assert Image.open(rows[0]["heatmap"]).size == (120, 90)
    err = result.stderr
    for name, why in [("toy_hist-001000_0009.png", "not a readable image"), ("badly named.png", "naming convention"),
                      ("nosuch-001000_0001.png", "unknown plot type"), ("orphan-001000_0001.png", "no active model")]:  # fmt: skip
        assert name in err and why in err, err

    # the same weights as the shared inference path on the same prepared pixels
    from hydra.data.images import load_image, prepare

    model = ServingModel.from_dir(model_dir)
    pixels = np.stack([prepare(load_image(p), SIZE, 3) for p in good])
    expected = predict_batch(model, pixels)
    by_name = {Path(r["path"]).name: r for r in rows}
    for p, w in zip(good, expected):
        np.testing.assert_allclose(list(by_name[p.name]["weights"].values()), w, atol=1e-5)

    forced = CliRunner().invoke(
        app, ["predict", str(plots / "badly named.png"), "--model", str(model_id), "--json"]
    )
    assert forced.exit_code == 0, forced.output
    assert json.loads(forced.stdout.splitlines()[0])["plot_type"] == "toy_hist"
    table = CliRunner().invoke(app, ["predict", str(good[0])])
    assert table.exit_code == 0 and "toy_hist" in table.stdout


def test_serving_model_carries_mask_thresholds_and_refreshes_in_the_cache(hydra_home, model_dir):
    """One object holds the preprocessing and the thresholds; the Predict cache refreshes them."""
    from hydra.config import load_config
    from hydra.data.images import prepare
    from hydra.db.engine import make_engine, session_scope
    from hydra.db.models import Label, Model, PlotType, Threshold
    from hydra.inference import ServingModel
    from hydra.serve.model_cache import ModelCache

    model_id = _setup_db(hydra_home, model_dir)
    cfg = load_config()
    engine = make_engine(cfg.database_url)
    mask = [[0.0, 0.0, 0.5, 0.5]]
    with session_scope(engine) as s:
        s.get(PlotType, s.get(Model, model_id).plot_type_id).mask = mask
    with session_scope(engine) as s:
        served = ServingModel.load(s, model_id, cfg.path("models"))
    assert served.mask == mask and served.thresholds == {"Good": 0.0, "Bad": 0.99}
    image = Image.fromarray(dataset(1, 90, 120, seed=2)[0][0])
    np.testing.assert_array_equal(served.prepare(image), prepare(image, SIZE, 3, mask))
    pixels = np.stack([served.prepare(image)])
    weights, verdicts = served.classify(pixels)
    np.testing.assert_allclose(weights, predict_batch(served, pixels), atol=1e-6)
    assert verdicts == [decide(weights[0], served.labels, served.thresholds, served.problem_labels)]
    assert served.weights_dict(weights[0]) == {"Good": float(weights[0, 0]), "Bad": float(weights[0, 1])}

    cache = ModelCache(engine, "cpu", refresh_s=0.0, models_dir=cfg.path("models"))
    first = cache.get(model_id)
    assert len(cache) == 1 and first.thresholds == {"Good": 0.0, "Bad": 0.99}
    with session_scope(engine) as s:
        for t in s.exec(select(Threshold).where(Threshold.model_id == model_id)).all():
            t.value = 0.3
        label = s.exec(select(Label).where(Label.name == "Good")).first()
        label.is_problem = True
    again = cache.get(model_id)
    assert again is first and again.thresholds == {"Good": 0.3, "Bad": 0.3}
    assert sorted(again.problem_labels) == ["Bad", "Good"]
    engine.dispose()
