"""A shadow model in a real ``hydra-serve``: stored beside the active model, never acted on.

The active model says Good for every plot, the shadow (of another input
shape, so its pixels are prepared separately) says Bad, confirmed: were its
verdicts live, every image would be kept and alarms would fire. They are
stored, and that is all.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from sqlmodel import select

from hydra.db import session_scope
from hydra.db.models import LIVE, SHADOW, Alarm, Image, Inference, RunTime
from hydra.services import run
from tests.helpers.serve import PLOT, Serve, drop_plots, input_files, wait_until
from tests.helpers.shadow import add_constant_model

pytestmark = pytest.mark.slow


def _by_origin(dep) -> dict[str, list[Inference]]:
    with session_scope(dep.engine) as s:
        rows = s.exec(select(Inference)).all()
    return {o: [r for r in rows if r.origin == o] for o in (LIVE, SHADOW)}


def test_a_shadow_models_results_are_stored_and_never_alarm(deployment_factory):
    dep = deployment_factory(None, workers=1, heatmaps_for="problem")
    active = add_constant_model(dep.engine, dep.dir("models"), PLOT, "Good", activate=True)
    cand = add_constant_model(dep.engine, dep.dir("models"), PLOT, "Bad", size=(40, 56), shadow=True)
    with Serve(dep) as srv:
        names = drop_plots(dep.cfg.input_dir, 24)
        wait_until(lambda: not input_files(dep), 300, what=f"an empty input dir; log:\n{srv.tail()}")
        wait_until(
            lambda: len(_by_origin(dep)[SHADOW]) >= len(names), 60, what=f"shadow rows; log:\n{srv.tail()}"
        )
        assert srv.stop() == 0
    rows = _by_origin(dep)
    live, shadow = rows[LIVE], rows[SHADOW]
    assert Counter(r.filename for r in live) == Counter(names) == Counter(r.filename for r in shadow)
    assert {(r.model_id, r.label, r.confirmed, r.heatmap_path) for r in live} == {
        (active, "Good", True, None)
    }
    assert {(r.model_id, r.label, r.confirmed, r.is_problem) for r in shadow} == {(cand, "Bad", True, True)}
    paths = {r.source_key: r.path for r in live}
    for r in shadow:
        assert r.path == paths[r.source_key] and Path(r.path).is_file() and "short_term" in r.path
        assert r.heatmap_path and r.heatmap_path.endswith(f"-m{cand}.png") and Path(r.heatmap_path).is_file()
        assert r.kept_image_id is None
    with session_scope(dep.engine) as s:
        assert not s.exec(select(Alarm)).all(), "a shadow model's verdicts never alarm"
        assert not s.exec(select(Image)).all(), "nor keep an image"
        window = s.exec(select(RunTime)).all()
        frames = {f.plot_type: f for f in run.run_frames(session=s)}
    assert {w.inference_id for w in window} == {r.id for r in live}  # the Run page's window: live only
    assert {w.label for w in window} == {"Good"} and frames[PLOT].label == "Good"
    log = srv.log.read_text(errors="replace")
    assert f"shadow model {cand} skipped" not in log, log[-3000:]
