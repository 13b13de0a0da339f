"""A slice of the real-histogram quality benchmark, trained and scored in the suite.

One plot type rendered from a real histogram (``hpx``), 100 labelled images
through ``hydra train``'s code path with the default CPU preset, and 160
held-out images through ``hydra predict``'s: every fault kind must be found
most of the time, Good plots must rarely alarm, and Grad-CAM must point at the
injected fault. The full benchmark is ``benchmarks/bench_quality.py``.
"""

from __future__ import annotations

import csv
import os

import pytest

pytest.importorskip("skhep_testdata", reason="needs scikit-hep-testdata 0.3.0 (the dev extra)")

PLOT_TYPE = "hpx"
TRAIN = 100


@pytest.mark.slow
def test_a_slice_of_the_benchmark_finds_every_fault_kind(hydra_home, tmp_path):
    from hydra.config import load_config
    from hydra.data.realbench import FAULTS, generate
    from hydra.db import make_engine
    from hydra.db.engine import session_scope
    from hydra.inference import ServingModel
    from hydra.quality import ensure_problem_labels, score, summarize
    from hydra.services.ingest import ingest
    from hydra.services.training import TrainOptions, train

    data = tmp_path / "plots"
    records = generate(data, plot_types=[PLOT_TYPE], images=TRAIN + 160, seed=11, workers=2)
    labelled, held = records[:TRAIN], records[TRAIN:]
    os.remove(data / "labels.csv")
    train_dir = tmp_path / "train"
    train_dir.mkdir()
    for r in labelled:
        (train_dir / r.filename).symlink_to(data / r.filename)
    with (train_dir / "labels.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows([("filename", "label"), *((r.filename, r.label) for r in labelled)])
    cfg = load_config()
    engine = make_engine(cfg.database_url)
    ingest(train_dir, engine=engine, labels_csv=train_dir / "labels.csv")
    ensure_problem_labels(engine, PLOT_TYPE)  # an empty plot is a problem too
    result = train(TrainOptions(PLOT_TYPE, seed=0, activate=True, progress=False), cfg=cfg, engine=engine)
    assert result.metrics["folds"] == 4 and "logit_bias" in result.metrics
    with session_scope(engine) as s:
        loaded = ServingModel.load(s, result.model_id, cfg.path("models"))
    summary = summarize(score(loaded, held, data))
    engine.dispose()
    recall = {kind: v["recall"] for kind, v in summary["recall_by_fault"].items()}
    assert set(recall) == {*FAULTS, "empty"}, recall
    assert summary["problem_recall"] >= 0.85, summary
    assert all(r >= 0.6 for r in recall.values()), recall
    assert summary["good_false_alarm"] <= 0.15, summary
    assert summary["roc_auc"] >= 0.95, summary
    assert summary["cam_pointing"] is not None and summary["cam_pointing"] >= 0.5, summary
