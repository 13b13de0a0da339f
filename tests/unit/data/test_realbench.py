"""The quality benchmark's faults are ones a person can tell from a Good plot of the type."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hydra.data.realbench import CHANCE_HOLE, GAIN_SHARE, _telling, inject


def test_a_dead_bin_is_only_one_that_chance_leaves_empty_in_under_one_good_plot_in_a_hundred():
    lam = np.array([0.1, 1.0, 3.0, 4.0, 5.0, 6.0, 30.0])
    pop = lam > 0.5
    telling = _telling(lam, pop)
    # by hand: chance of some hole among the bins at least as full as each populated bin
    #   from 1.0: e^-1 + e^-3 + e^-4 + e^-5 + e^-6 + e^-30 = 0.445;  from 4.0: 0.027;  from 5.0: 0.0092
    assert math.exp(-4) + math.exp(-5) + math.exp(-6) > CHANCE_HOLE > math.exp(-5) + math.exp(-6)
    assert telling.tolist() == [False, False, False, False, True, True, True]


def _sparse_map() -> np.ndarray:
    """A 2D map like a sparse occupancy: a dense core and a wide populated fringe of ~3 entries a cell."""
    y, x = np.mgrid[0:30, 0:30]
    return 3.0 + 40.0 * np.exp(-((x - 15) ** 2 + (y - 15) ** 2) / 40.0)


def test_a_dead_cell_on_a_sparse_map_is_never_one_that_good_plots_also_leave_empty():
    lam = _sparse_map()
    assert np.exp(-lam[lam < 4]).sum() > 10  # a Good plot has holes in the fringe every time
    for seed in range(200):
        faulty, where = inject(lam, "dead_channel", subtle=seed % 2 == 0, rng=np.random.default_rng(seed))
        (x0, x1), (y0, y1) = where
        killed = lam[x0:x1, y0:y1]
        assert (faulty[x0:x1, y0:y1] == 0).all()
        # a Good plot shows a hole this full (a cell, a block or a row) in under 1 % of images
        assert np.exp(-lam[lam >= killed.sum()]).sum() <= CHANCE_HOLE, (seed, where, killed.sum())


@pytest.mark.parametrize(
    "shape",
    [
        np.array([2000, 2000, 1000, 480, 380, 40, 36, 30, 30, 0, 0, 0, 30, 24, 12, 6, 6], float),  # a cutflow
        np.exp(-((np.arange(60) - 30) ** 2) / 50.0) * 500 + 1,  # a peak
        # a response: a narrow peak holding 72 % of the entries above a long tail too low to count as
        # populated; a range centred on a populated bin holds the peak (> 80 %) or the first bin (< 20 %)
        np.concatenate([[150.0], np.geomspace(0.5, 60.0, 60), [90, 160, 310, 730, 1030], np.zeros(34)]),
    ],
    ids=["cutflow", "peak", "response"],
)
def test_a_gain_shift_scales_part_of_the_plot_not_all_of_it(shape):
    """Scaling every entry is what a run with more or less luminosity looks like: not a fault."""
    for seed in range(100):
        faulty, ((x0, x1), _) = inject(
            shape, "gain_shift", subtle=seed % 3 == 0, rng=np.random.default_rng(seed)
        )
        changed = ~np.isclose(faulty, shape)
        assert not changed[:x0].any() and not changed[x1:].any()
        share = shape[x0:x1].sum() / shape.sum()
        assert GAIN_SHARE[0] <= share <= GAIN_SHARE[1], (seed, x0, x1, share)


def test_a_benchmark_folder_of_another_generator_seed_or_size_is_not_reused(tmp_path, monkeypatch):
    import json

    from hydra.data import realbench

    args = {"plot_types": ["hpx", "cutflow"], "images": 240, "seed": 2026}
    assert not realbench.is_current(tmp_path, **args)  # nothing generated yet
    (tmp_path / "truth.json").write_text("[]")  # images of a generator that wrote no stamp
    assert not realbench.is_current(tmp_path, **args)
    (tmp_path / "generator.json").write_text(json.dumps(realbench._stamp(**args)))
    assert realbench.is_current(tmp_path, **args)
    assert not realbench.is_current(tmp_path, **{**args, "seed": 1})
    assert not realbench.is_current(tmp_path, **{**args, "images": 40})
    assert not realbench.is_current(tmp_path, **{**args, "plot_types": ["hpx"]})
    monkeypatch.setattr(realbench, "GENERATOR_VERSION", realbench.GENERATOR_VERSION + 1)
    assert not realbench.is_current(tmp_path, **args)  # the generator changed since
    (tmp_path / "generator.json").write_text("{not json")
    monkeypatch.undo()
    assert not realbench.is_current(tmp_path, **args)


def test_explain_replays_what_made_each_image_of_a_generated_folder(tmp_path):
    """The replay is the generator itself: its fault bins are where the truth says the fault is drawn."""
    pytest.importorskip("skhep_testdata", reason="needs scikit-hep-testdata 0.3.0 (the dev extra)")
    from hydra.data.realbench import SOURCE_BY_NAME, explain, generate, template
    from hydra.data.root import RootError

    records = generate(tmp_path, plot_types=["cutflow", "hpxpy"], images=24, seed=5, first_run=7)
    facts = explain(tmp_path)
    assert set(facts) == {r.filename for r in records}
    for r in records:
        fact = facts[r.filename]
        assert 0.6 <= fact["luminosity"] <= 1.6, fact
        if r.fault not in ("dead_channel", "dead_region", "hot_channel", "gain_shift"):
            assert "fault_bins" not in fact, (r, fact)
            continue
        (x0, x1), ys = fact["fault_bins"]
        drawn = SOURCE_BY_NAME[r.plot_type].style.bin_box(template(SOURCE_BY_NAME[r.plot_type]), (x0, x1), ys)
        assert tuple(round(v, 4) for v in drawn) == r.region, (r, fact)
        assert 0 < fact["fault_share"] <= 1 and fact["fault_entries"] > 0
        if r.fault == "gain_shift":
            assert GAIN_SHARE[0] - 0.01 <= fact["fault_share"] <= GAIN_SHARE[1] + 0.01, fact
    (tmp_path / "generator.json").write_text('{"version": 1}')
    with pytest.raises(RootError, match="generator version 1"):
        explain(tmp_path)
