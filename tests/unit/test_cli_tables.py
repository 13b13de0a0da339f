"""The CLI's human output: tables and result lines on stdout (so ``| grep`` works), messages on
stderr, names not ids; and ``hydra plot-type rename|merge|hide|delete``."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from hydra.cli import app

runner = CliRunner()


@pytest.fixture
def seeded_home(hydra_home):
    from hydra.config import load_config
    from hydra.db import make_engine
    from tests.helpers.seed import seed_database

    eng = make_engine(load_config().database_url)
    try:
        yield eng, seed_database(eng, hydra_home, history=6)
    finally:
        eng.dispose()


def hydra(*args: str):
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_tables_go_to_stdout(seeded_home):
    code, out, err = hydra("models", "list")
    assert code == 0 and "FCAL_occupancy" in out and "FCAL_occupancy" not in err
    code, out, err = hydra("results", "--plot-type", "BCAL_energy")
    assert code == 0
    lines = [ln for ln in out.splitlines() if "BCAL_energy" in ln]
    assert len(lines) == 6 and all(" run 710" in ln for ln in lines)
    assert "6 result(s)" in err and "result(s)" not in out
    code, out, err = hydra("errors")
    assert code == 0 and "unknown plot type 'XYZ'" in out and "3 error(s)" in err


def test_the_training_summary_goes_to_stdout(capsys):
    from types import SimpleNamespace

    from hydra.cli.ml_train import _print_summary

    per_label = {"precision": 0.95, "recall": 0.9, "f1": 0.92, "support": 40}
    result = SimpleNamespace(
        model_id=7, head="classifier", plot_type="FCAL_occupancy", labels=["Good", "Bad"],
        thresholds={"Good": 0.5, "Bad": 0.4}, active=True, training_set_id=3, files=["model.safetensors"],
        metrics={"folds": 5, "per_label": {"Good": per_label, "Bad": per_label}, "accuracy": 0.9583333333,
                 "n_test": 80, "problem_roc_auc": 0.97, "unconfirmed": 2, "epochs": 9, "train_seconds": 41.25},
    )  # fmt: skip
    _print_summary(result)
    got = capsys.readouterr()
    assert "FCAL_occupancy" in got.out and "accuracy 0.958 on 80" in got.out and "model id 7" in got.out
    assert got.err == ""


def test_plot_type_rename_merge_hide_delete(seeded_home):
    from sqlmodel import select

    from hydra.db import session_scope
    from hydra.db.models import Image, PlotType

    eng, seed = seeded_home
    code, _, err = hydra("plot-type", "add", "CDC_Pedestal", "--labels", "Good,Bad")
    assert code == 0, err
    with session_scope(eng) as s:  # the configured collect percentage, not 0
        assert s.exec(select(PlotType).where(PlotType.name == "CDC_Pedestal")).one().collect_percent == 2.0
    code, _, err = hydra("plot-type", "rename", "CDC_Pedestal", "cdc_pedestal")
    assert code == 1 and "exists already" in err and "merge" in err
    code, _, err = hydra("plot-type", "merge", "CDC_Pedestal", "CDC_pedestal")
    assert code == 0 and "merged CDC_Pedestal into CDC_pedestal" in err, err
    code, _, err = hydra("plot-type", "hide", "TOF_rates")
    assert code == 0 and "TOF_rates is hidden" in err
    code, _, err = hydra("plot-type", "rename", "TOF_rates", "tof_rates")
    assert code == 0, err
    code, _, err = hydra("plot-type", "delete", "CDC_pedestal")
    assert code == 1 and "8 images" in err and "--purge" not in err and "purge" in err
    code, _, err = hydra("plot-type", "delete", "tof_Rates")
    assert code == 1 and "did you mean 'tof_rates'" in err
    code, _, err = hydra("plot-type", "delete", "tof_rates")
    assert code == 0, err
    with session_scope(eng) as s:
        names = set(s.exec(select(PlotType.name)).all())
        pedestal = seed.plot_types["CDC_pedestal"]
        images = s.exec(select(Image).where(Image.plot_type_id == pedestal)).all()
    assert "CDC_Pedestal" not in names and "tof_rates" not in names and "TOF_rates" not in names
    assert len(images) == 8
