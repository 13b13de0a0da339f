"""``hydra-serve`` end to end: real processes, sockets and databases.

Every image dropped into the input directory ends with exactly one stored
inference or one error record, and the input directory ends empty.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image as PILImage
from sqlmodel import select

from hydra.data.synthetic import write_plot
from hydra.db import session_scope
from hydra.db.models import Heartbeat, Image, PlotType, RunTime
from tests.helpers.serve import (
    PLOT,
    Serve,
    add_model,
    check_exactly_once,
    drop_plots,
    input_files,
    stored,
    wait_until,
    write_bad_inputs,
)

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    "backend,policy",
    [("sqlite", "least_loaded"), pytest.param("mariadb", "round_robin", marks=pytest.mark.mariadb)],
)
def test_every_image_gets_one_result_or_one_error(backend, policy, deployment_factory):
    drop_db = None
    url = None
    if backend == "mariadb":
        from tests.helpers.db import make_mysql_database

        url, drop_db = make_mysql_database()
    try:
        # on SQLite: all confirmed, heat maps for all, 30 % collected; on MariaDB: all unconfirmed
        sqlite = backend == "sqlite"
        # images of a plot type nobody registered yet are onboarded (kept for labeling), not quarantined
        dep = deployment_factory(
            url, policy=policy, heatmaps_for="all" if sqlite else "problem", onboard_new_plot_types=True
        )
        add_model(dep.engine, dep.dir("models"), PLOT, thresholds=0.0 if sqlite else 0.999)
        with session_scope(dep.engine) as s:
            pt = s.exec(select(PlotType).where(PlotType.name == PLOT)).one()
            pt.collect_percent = 30.0
            s.add(pt)
        inp = dep.cfg.input_dir
        early = drop_plots(inp, 20)  # present before start: found by the startup scan
        with Serve(dep) as srv:
            names = early + drop_plots(inp, 180 if sqlite else 100, start=20)
            bad = write_bad_inputs(inp, PLOT)
            no_model = [write_plot(inp, "cdc_occupancy", 7000, i).name for i in range(3)]
            wait_until(lambda: not input_files(dep), 300, what=f"an empty input dir; log:\n{srv.tail()}")
            wait_until(lambda: len(stored(dep)[0]) >= len(names), 10, what="all rows")
            with session_scope(dep.engine) as s:
                beats = {h.process for h in s.exec(select(Heartbeat)).all()}
            assert srv.stop() == 0
        inferences = check_exactly_once(dep, names, bad)
        assert {"keeper", "feeder", "balancer", "predict-0", "predict-1"} <= beats
        with session_scope(dep.engine) as s:
            images = list(s.exec(select(Image)).all())
            runtime = len(s.exec(select(RunTime)).all())
            cdc = s.exec(select(PlotType).where(PlotType.name == "cdc_occupancy")).one()
        assert runtime == len(names)
        registered = [i for i in images if i.kept_reason == "no_model"]
        assert sorted(i.filename for i in registered) == sorted(no_model)
        assert all(i.plot_type_id == cdc.id and Path(i.path).is_file() for i in registered)
        kept = [i for i in inferences if i.kept_image_id]
        heat = [i for i in inferences if i.heatmap_path]
        reasons = {i.id: i.kept_reason for i in images}
        if sqlite:
            assert all(i.confirmed for i in inferences)
            assert all(reasons[i.kept_image_id] == "problem" for i in inferences if i.is_problem)
            fine = [i for i in inferences if not i.is_problem]
            collected = [i for i in fine if i.kept_image_id]
            assert all(reasons[i.kept_image_id] == "collect" for i in collected)
            if len(fine) >= 30:
                assert 0.1 * len(fine) < len(collected) < 0.55 * len(fine)  # the 30 % collect share
            assert all(str(dep.dir("short_term")) in i.path for i in inferences if not i.kept_image_id)
            assert len(heat) == len(names)
        else:
            assert not any(i.confirmed for i in inferences) and len(kept) == len(names)
            assert len(heat) == len(names)
        assert all(Path(i.heatmap_path).is_file() for i in heat)
        for i in heat[:5]:  # stored at the file's own size (which the Feeder read), blended once by the pages
            with PILImage.open(i.heatmap_path) as hm, PILImage.open(i.path) as src:
                assert hm.size == src.size, (i.heatmap_path, hm.size, src.size)
                assert hm.mode == "L", (i.heatmap_path, hm.mode)  # a map the page colours and blends once
        assert all(str(dep.dir("kept")) in i.path for i in kept)
        out = subprocess.run(
            [sys.executable, "-m", "hydra.cli", "results", "--json", "--plot-type", PLOT, "--since", "1h"],
            env=dep.env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        rows = [json.loads(line) for line in out.stdout.splitlines()]
        assert len(rows) == len(names)
        assert {
            "path",
            "plot_type",
            "run",
            "label",
            "weights",
            "confirmed",
            "model_id",
            "created_at",
            "timings",
        } <= set(rows[0])
        out = subprocess.run(
            [sys.executable, "-m", "hydra.cli", "errors", "--json"],
            env=dep.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert sorted(json.loads(line)["kind"] for line in out.stdout.splitlines()) == sorted(bad.values())
    finally:
        if drop_db:
            drop_db()
