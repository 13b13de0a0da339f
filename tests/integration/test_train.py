"""``hydra train`` end to end on synthetic plots: a real DB, the CPU preset, the serving path."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from sqlmodel import select
from typer.testing import CliRunner

# one-channel faults (a dead or hot channel, a dead board) are the hard case for a small model
PLOT_TYPE = "fcal_occupancy"


@pytest.fixture
def trained(hydra_home, tmp_path):
    """160 synthetic plots ingested and one model trained on them with the CPU preset (CLI epochs)."""
    from hydra.cli import app
    from hydra.config import load_config
    from hydra.data.synthetic import generate
    from hydra.db import make_engine
    from hydra.ingest import ingest

    cfg = load_config()
    engine = make_engine(cfg.database_url)
    labels = generate(tmp_path / "plots", plot_types=[PLOT_TYPE], images=160, seed=1, fault_rate=0.5)
    report = ingest(tmp_path / "plots", engine=engine, labels_csv=labels)
    assert report.labeled == 160
    result = CliRunner().invoke(
        app, ["train", PLOT_TYPE, "--config", "classifier-cpu", "--activate", "--json"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    yield cfg, engine, summary
    engine.dispose()


@pytest.mark.slow
def test_train_registers_an_accurate_model_with_thresholds_and_evaluation(trained):
    from hydra.data.images import load_image, prepare
    from hydra.db.engine import session_scope
    from hydra.db.models import Image, Model, ModelClassification, Threshold, TrainingSetImage
    from hydra.inference import LoadedModel, predict_batch

    cfg, engine, summary = trained
    metrics = summary["metrics"]
    assert metrics["accuracy"] >= 0.95, (metrics["accuracy"], metrics["epochs"], metrics.get("best_val_loss"))
    assert 1 <= metrics["threads"] <= len(os.sched_getaffinity(0))
    with session_scope(engine) as s:
        model = s.get(Model, summary["model_id"])
        assert model.active and model.head == "classifier" and model.labels == ["Good", "Bad", "NoData"]
        assert (model.input_height, model.input_width) == (120, 160)
        assert model.path.startswith(str(cfg.path("models")))
        thresholds = {t.label: t for t in s.exec(select(Threshold).where(Threshold.model_id == model.id))}
        assert set(thresholds) == set(model.labels)
        assert all(0.0 <= t.value <= 0.99 and t.method == "max_f1" for t in thresholds.values())
        members = s.exec(
            select(TrainingSetImage).where(TrainingSetImage.training_set_id == model.training_set_id)
        )
        splits = [m.split for m in members]
        assert len(splits) == 160 and set(splits) == {"train", "val", "test"}
        rows = s.exec(select(ModelClassification, Image.path).join(Image)).all()
    test_count = splits.count("test")
    assert len(rows) == test_count == summary["metrics"]["n_test"]
    # the serving code path reproduces the stored evaluation
    loaded = LoadedModel.from_dir(model.path)
    pixels = np.stack([prepare(load_image(p), loaded.input_size, loaded.channels) for _, p in rows])
    weights = predict_batch(loaded, pixels)
    stored = np.array([[mc.weights[lab] for lab in model.labels] for mc, _ in rows])
    np.testing.assert_allclose(weights, stored, atol=1e-5)
    assert [model.labels[i] for i in weights.argmax(1)] == [mc.predicted_label for mc, _ in rows]
    _models_list_and_activate(summary)


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
    from hydra.ingest import ingest

    engine = make_engine(load_config().database_url)
    labels = generate(tmp_path / "few", plot_types=["bcal_timing"], images=12, seed=5, fault_rate=0.25)
    ingest(tmp_path / "few", engine=engine, labels_csv=labels)
    result = CliRunner().invoke(app, ["train", "bcal_timing", "--epochs", "1"])
    assert result.exit_code == 1
    message = " ".join(result.output.split())
    assert "plot type 'bcal_timing' has 2 labelled image(s) of label 'Bad'; needs at least 3" in message
    assert "nothing was recorded" in message
    unknown = CliRunner().invoke(app, ["train", "nope", "--epochs", "1"])
    assert unknown.exit_code == 1 and "unknown plot type 'nope'" in " ".join(unknown.output.split())
    engine.dispose()


def test_torch_threads_default_to_idle_cores_and_are_restored_after():
    import torch

    from hydra.train import cpu_threads, torch_threads

    assert cpu_threads(3) == 3
    assert 1 <= cpu_threads() <= len(os.sched_getaffinity(0))
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError), torch_threads(1):
        assert torch.get_num_threads() == 1
        raise RuntimeError("a failing training")
    assert torch.get_num_threads() == before


def test_zero_threads_is_refused_before_any_work(hydra_home):
    from hydra.config import load_config
    from hydra.db import make_engine
    from hydra.train import TrainError, TrainOptions, train

    cfg = load_config()
    engine = make_engine(cfg.database_url)
    with pytest.raises(TrainError, match="--threads must be at least 1, got 0"):
        train(TrainOptions("nope", threads=0), cfg=cfg, engine=engine)
    engine.dispose()
