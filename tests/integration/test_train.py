"""``hydra train`` end to end on synthetic plots: a real DB, the CPU preset, the serving path."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from sqlmodel import select
from typer.testing import CliRunner

# one-channel faults (a dead or hot channel, a dead board) are the hard case for a small model
PLOT_TYPE = "fcal_occupancy"


def _hand_max_f1(scores: np.ndarray, positive: np.ndarray) -> float:
    """The max-F1 threshold by hand: every t in 0.00..0.99, the middle of the best plateau."""
    best, at = -1.0, []
    for k in range(100):
        t = k / 100
        tp = int(((scores > t) & positive).sum())
        fp = int(((scores > t) & ~positive).sum())
        fn = int(positive.sum()) - tp
        f1 = 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else 0.0
        if f1 > best + 1e-12:
            best, at = f1, [t]
        elif abs(f1 - best) <= 1e-12:
            at.append(t)
    return at[len(at) // 2]


@pytest.fixture
def trained(hydra_home, tmp_path):
    """160 synthetic plots ingested and one model trained on them with the CPU preset, 3 folds."""
    from hydra.cli import app
    from hydra.config import load_config
    from hydra.data.synthetic import generate
    from hydra.db import make_engine
    from hydra.services.ingest import ingest

    cfg = load_config()
    engine = make_engine(cfg.database_url)
    labels = generate(tmp_path / "plots", plot_types=[PLOT_TYPE], images=160, seed=1, fault_rate=0.5)
    report = ingest(tmp_path / "plots", engine=engine, labels_csv=labels)
    assert report.labeled == 160
    result = CliRunner().invoke(
        app,
        [
            "train",
            PLOT_TYPE,
            "--config",
            "classifier-cpu",
            "--folds",
            "3",
            "--epochs",
            "10",
            "--activate",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    yield cfg, engine, summary
    engine.dispose()


@pytest.mark.slow
def test_train_registers_an_accurate_model_with_cross_validated_thresholds(trained, tmp_path):
    from hydra.db.engine import session_scope
    from hydra.db.models import Image, Model, ModelClassification, Threshold, TrainingSetImage

    cfg, engine, summary = trained
    metrics = summary["metrics"]
    assert metrics["folds"] == 3 and metrics["evaluation"] == "3-fold cross-validation"
    assert metrics["accuracy"] >= 0.9, (metrics["accuracy"], metrics["epochs"])
    assert 1 <= metrics["threads"] <= len(os.sched_getaffinity(0))
    with session_scope(engine) as s:
        model = s.get(Model, summary["model_id"])
        # the fold models (and the preset's companion of each) serve together: the thresholds
        # were chosen on their weights
        assert model.active and model.head == "ensemble" and model.labels == ["Good", "Bad", "NoData"]
        assert model.config["hparams"]["size"] == 6 == metrics["members"]
        assert (model.input_height, model.input_width) == (120, 160)
        assert model.path.startswith(str(cfg.path("models"))) and model.config["seed"] == 0
        thresholds = {t.label: t for t in s.exec(select(Threshold).where(Threshold.model_id == model.id))}
        assert set(thresholds) == set(model.labels)
        members = s.exec(
            select(TrainingSetImage).where(TrainingSetImage.training_set_id == model.training_set_id)
        ).all()
        # every labelled image trains the model that serves; none is kept back for a test split
        assert len(members) == 160 and {m.split for m in members} == {"train"}
        rows = s.exec(select(ModelClassification, Image.path).join(Image)).all()
    # every labelled image has an out-of-fold verdict: the confusion matrix and report rest on all of them
    assert len(rows) == 160 == metrics["n_test"] and {mc.split for mc, _ in rows} == {"oof"}
    assert {mc.image_id for mc, _ in rows} == {m.image_id for m in members}
    weights = np.array([[mc.weights[lab] for lab in model.labels] for mc, _ in rows])
    truth = np.array([model.labels.index(mc.human_label) for mc, _ in rows])
    for j, label in enumerate(model.labels):
        assert thresholds[label].method == "max_f1"
        assert thresholds[label].value == pytest.approx(_hand_max_f1(weights[:, j], truth == j)), label
    _serving_path_agrees(model, [p for _, p in rows[:24]], tmp_path)
    _models_list_and_activate(summary)


def _serving_path_agrees(model, paths: list[str], tmp_path) -> None:
    """Training's evaluation of the saved model = ``hydra predict`` (the Predict stage's code), 1e-5."""
    from hydra.cli import app
    from hydra.data.datasets import DatasetItem, PlotImageDataset
    from hydra.data.sampling import Member
    from hydra.services.training import evaluate

    base = PlotImageDataset([DatasetItem(p, 0) for p in paths], (model.input_height, model.input_width))
    members = [Member(i, "Good", "train", path=p) for i, p in enumerate(paths)]
    expected = evaluate(model.path, members, base, {i: i for i in range(len(paths))}, model.labels)
    out = CliRunner().invoke(app, ["predict", *paths, "--json"])
    assert out.exit_code == 0, out.output
    got = {r["path"]: r for r in map(json.loads, out.stdout.splitlines())}
    predicted = np.array([[got[p]["weights"][lab] for lab in model.labels] for p in paths])
    np.testing.assert_allclose(predicted, expected, atol=1e-5)


def _models_list_and_activate(summary: dict) -> None:
    from hydra.cli import app

    runner = CliRunner()
    listed = runner.invoke(app, ["models", "list", "--plot-type", PLOT_TYPE, "--json"])
    assert listed.exit_code == 0, listed.output
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [r["id"] for r in rows] == [summary["model_id"]] and rows[0]["active"]
    missing = runner.invoke(app, ["models", "activate", "999"])
    assert missing.exit_code == 1 and "unknown model id 999" in missing.output


def test_too_few_labelled_images_fails_naming_counts(hydra_home, tmp_path):
    from hydra.cli import app
    from hydra.config import load_config
    from hydra.data.synthetic import generate
    from hydra.db import make_engine
    from hydra.services.ingest import ingest

    engine = make_engine(load_config().database_url)
    labels = generate(tmp_path / "few", plot_types=["bcal_timing"], images=12, seed=5, fault_rate=0.25)
    ingest(tmp_path / "few", engine=engine, labels_csv=labels)
    result = CliRunner().invoke(app, ["train", "bcal_timing", "--epochs", "1", "--folds", "0"])
    assert result.exit_code == 1
    message = " ".join(result.output.split())
    assert (
        "plot type 'bcal_timing' has 2 labelled image(s) of label 'Bad'; needs at least 3" in message
    )  # --folds 0
    assert "nothing was recorded" in message
    unknown = CliRunner().invoke(app, ["train", "nope", "--epochs", "1"])
    assert unknown.exit_code == 1 and "unknown plot type 'nope'" in " ".join(unknown.output.split())
    engine.dispose()


def test_torch_threads_default_to_the_machines_cores_and_are_restored_after():
    import torch

    from hydra.services.training import cpu_threads, torch_threads

    assert cpu_threads(3) == 3
    assert 1 <= cpu_threads() <= len(os.sched_getaffinity(0))
    assert cpu_threads() == len(os.sched_getaffinity(0))  # never the load: the weights depend on it
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError), torch_threads(1):
        assert torch.get_num_threads() == 1
        raise RuntimeError("a failing training")
    assert torch.get_num_threads() == before


def test_zero_threads_is_refused_before_any_work(hydra_home):
    from hydra.config import load_config
    from hydra.db import make_engine
    from hydra.services.training import TrainError, TrainOptions, train

    cfg = load_config()
    engine = make_engine(cfg.database_url)
    with pytest.raises(TrainError, match="--threads must be at least 1, got 0"):
        train(TrainOptions("nope", threads=0), cfg=cfg, engine=engine)
    engine.dispose()


def _ingest_synthetic(tmp_path, plot_type: str, images: int, seed: int, keep=None):
    from hydra.config import load_config
    from hydra.data.synthetic import generate
    from hydra.db import make_engine
    from hydra.services.ingest import ingest

    cfg = load_config()
    engine = make_engine(cfg.database_url)
    labels = generate(tmp_path / "plots", plot_types=[plot_type], images=images, seed=seed, fault_rate=0.5)
    if keep is not None:  # label only some images (e.g. the Good ones)
        lines = labels.read_text().splitlines()
        labels.write_text("\n".join([lines[0], *[ln for ln in lines[1:] if keep(ln.split(",")[1])]]) + "\n")
    ingest(tmp_path / "plots", engine=engine, labels_csv=labels)
    return cfg, engine


@pytest.mark.slow
def test_the_same_seed_gives_the_same_weights_and_another_seed_others(hydra_home, tmp_path):
    from hydra.services.training import TrainOptions, train

    cfg, engine = _ingest_synthetic(tmp_path, "bcal_timing", 40, seed=3)
    runs = [
        train(
            TrainOptions("bcal_timing", epochs=2, folds=2, seed=s, progress=False),  # default threads
            cfg=cfg,
            engine=engine,
        )
        for s in (7, 7, 8)
    ]
    weights = [(Path(r.path) / "model.safetensors").read_bytes() for r in runs]
    assert weights[0] == weights[1]
    assert weights[0] != weights[2]
    assert runs[0].thresholds == runs[1].thresholds and runs[0].metrics["seed"] == 7
    engine.dispose()


@pytest.mark.slow
def test_the_fold_models_serve_together_and_a_new_training_starts_from_one(hydra_home, tmp_path):
    from hydra.heads import load_model
    from hydra.services.training import TrainOptions, train

    cfg, engine = _ingest_synthetic(tmp_path, "bcal_timing", 40, seed=4)
    few = TrainOptions("bcal_timing", epochs=1, folds=2, progress=False)  # fewer images than it takes
    alone = train(few, cfg=cfg, engine=engine)  # one model on all images, with classifier-cpu's companion
    assert alone.head == "ensemble" and alone.metrics["members"] == 2
    first = train(
        TrainOptions("bcal_timing", epochs=2, folds=2, ensemble_min_images=40, progress=False),
        cfg=cfg,
        engine=engine,
    )
    assert first.head == "ensemble" and first.metrics["members"] == 4
    assert [type(m).__name__ for m in load_model(first.path).members] == ["ClassifierHead"] * 4
    child = train(
        TrainOptions(
            "bcal_timing", epochs=1, folds=2, parent=first.model_id, ensemble_min_images=40, progress=False
        ),
        cfg=cfg,
        engine=engine,
    )
    assert child.head == "ensemble" and child.parent_id == first.model_id
    assert child.metrics["members"] == 2  # a parent's member is fine-tuned alone, without a companion
    single = train(
        TrainOptions(
            "bcal_timing", epochs=1, folds=2, ensemble=False, ensemble_min_images=40, progress=False
        ),
        cfg=cfg,
        engine=engine,
    )
    assert single.head == "ensemble" and single.metrics["members"] == 2
    engine.dispose()


@pytest.mark.slow
def test_a_preset_companion_trains_beside_every_model_and_serves_with_it(hydra_home, tmp_path):
    """Each fit also fits the companion (from its own start, at its own learning rate); both serve."""
    import torch
    from safetensors.torch import save_file

    from hydra.heads import create_head, load_model
    from hydra.services.training import TrainOptions, train

    cfg, engine = _ingest_synthetic(tmp_path, "bcal_timing", 40, seed=5)
    shape = {
        "labels": ["Good", "Bad"],
        "problem_labels": ["Bad"],
        "backbone": "plotnet",
        "input_size": [48, 64],
    }
    torch.manual_seed(11)
    start = {
        k: v.contiguous()
        for k, v in create_head("classifier", reference=True, **shape).net.state_dict().items()
    }
    save_file(start, str(tmp_path / "start.safetensors"))
    preset = tmp_path / "pair.yaml"
    preset.write_text(
        "head: classifier\nbackbone: plotnet\ninput_size: [48, 64]\nreference: true\nlr: 0.003\n"
        "companion:\n  weights_file: start.safetensors\n  lr: 0.0001\n"
    )
    folds = train(
        TrainOptions(
            "bcal_timing", config=str(preset), epochs=1, folds=2, ensemble_min_images=40, progress=False
        ),
        cfg=cfg,
        engine=engine,
    )
    assert folds.head == "ensemble" and folds.metrics["members"] == 4  # each fold's model and its companion
    served = load_model(folds.path)
    members = served.members
    for own, companion in (members[0:2], members[2:4]):
        mine, theirs = dict(own.net.named_parameters()), dict(companion.net.named_parameters())
        shared = [k for k in theirs if theirs[k].shape == start[k].shape]  # not the classifier layer
        assert len(shared) > 10
        moved = max(float((theirs[k] - start[k]).abs().max()) for k in shared)
        elsewhere = max(float((mine[k] - start[k]).abs().max()) for k in shared)
        assert moved < 0.05 < elsewhere  # the companion started there and took small steps
    _out_of_fold_weights_are_the_pairs(engine, folds, served)
    one = train(
        TrainOptions(
            "bcal_timing", config=str(preset), epochs=1, folds=2, progress=False
        ),  # too few for folds
        cfg=cfg,
        engine=engine,
    )
    assert one.head == "ensemble" and one.metrics["members"] == 2
    engine.dispose()


def _out_of_fold_weights_are_the_pairs(engine, result, served) -> None:
    """Each labelled image's out-of-fold weights are those of its fold's model and companion together."""
    import torch

    from hydra.data.datasets import DatasetItem, PlotImageDataset
    from hydra.db.engine import session_scope
    from hydra.db.models import Image, ModelClassification
    from hydra.heads.ensemble import EnsembleHead

    with session_scope(engine) as s:
        query = select(ModelClassification, Image.path).join(Image)
        rows = s.exec(query.where(ModelClassification.model_id == result.model_id)).all()
        oof = np.array([[mc.weights[lab] for lab in result.labels] for mc, _ in rows])
        paths = [p for _, p in rows]
    members = served.members
    base = PlotImageDataset([DatasetItem(p, 0) for p in paths], tuple(served.input_size))
    pixels = torch.from_numpy(np.stack([base.pixels(i) for i in range(len(paths))]))
    bias = served.logit_bias.numpy()

    def weights(heads) -> np.ndarray:
        together = EnsembleHead.of(heads)
        together.set_logit_bias(bias)
        with torch.inference_mode():
            return together.weights(together.preprocess(pixels)).numpy()

    close = [np.abs(weights(pair) - oof).max(axis=1) < 1e-4 for pair in (members[0:2], members[2:4])]
    assert len(oof) == 40 and (close[0] | close[1]).all()
    assert close[0].sum() >= 10 and close[1].sum() >= 10  # each pair weighs its own fold
    assert (np.abs(weights(members) - oof).max(axis=1) > 1e-4).any()  # not all four together


@pytest.mark.slow
@pytest.mark.parametrize("choice", [{"head": "siamese"}, {"config": "siamese-cpu"}], ids=["head", "preset"])
def test_good_only_means_good_only_whatever_labels_the_plot_type_has(hydra_home, tmp_path, choice):
    """A plot type with Good, Bad and NoData trains a one-class head on its Good images alone.

    Whether the head is named (``--head siamese``) or comes with a preset (``--config``).
    """
    from hydra.db.engine import session_scope
    from hydra.db.queries import get_plot_type, labels_of
    from hydra.inference import ServingModel, predict_batch
    from hydra.services.training import TrainOptions, train

    cfg, engine = _ingest_synthetic(tmp_path, "fcal_occupancy", 60, seed=4, keep=lambda lab: lab == "Good")
    with session_scope(engine) as s:
        from hydra.db.queries import add_label

        pt = get_plot_type("fcal_occupancy", session=s)
        have = {lab.name for lab in labels_of(pt.id, session=s)}
        for name in ("Bad", "NoData"):
            if name not in have:
                add_label(pt.id, name, session=s, is_problem=True)
        assert {lab.name for lab in labels_of(pt.id, session=s)} >= {"Good", "Bad", "NoData"}
    opts = TrainOptions("fcal_occupancy", **choice, epochs=1, folds=2, threads=1, progress=False)
    result = train(opts, cfg=cfg, engine=engine)
    assert result.labels == ["Good", "Bad", "NoData"]
    loaded = ServingModel.from_dir(result.path)
    pixels = np.random.default_rng(0).integers(0, 255, (4, *loaded.input_size, 3), dtype=np.uint8)
    w = predict_batch(loaded, pixels)
    good = result.labels.index("Good")
    np.testing.assert_allclose(w[:, [i for i in range(3) if i != good]].sum(1), 1 - w[:, good], atol=1e-5)
    engine.dispose()


def test_the_head_is_chosen_once_for_every_way_of_naming_it():
    """A head, a preset given as --head, a preset given as --config: one choice, which Good-only checks too."""
    from hydra.services.training import TrainOptions, chosen_preset

    assert chosen_preset(TrainOptions("pt", head="siamese"))[0] == "siamese"
    assert chosen_preset(TrainOptions("pt", head="siamese-cpu"))[0] == "siamese"
    name, kwargs = chosen_preset(TrainOptions("pt", config="siamese-cpu"))
    assert name == "siamese" and kwargs["reference"] is True
    assert chosen_preset(TrainOptions("pt"))[0] == "classifier"
