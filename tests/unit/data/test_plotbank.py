"""The made-up plot types the shipped backbone is pretrained on."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("mplhep", reason="needs the root extra (mplhep, matplotlib)")

from hydra.data.plotbank import LABELS, random_type, render_type  # noqa: E402
from hydra.data.realbench import FAULTS, NODATA  # noqa: E402


def test_a_plot_type_is_the_same_for_the_same_seed_and_differs_between_seeds():
    a, b = render_type(3, images=8), render_type(3, images=8)
    assert np.array_equal(a.pixels, b.pixels) and a.labels == b.labels and a.faults == b.faults
    shapes = {random_type(s)[0].values.shape for s in range(12)}
    assert len(shapes) > 6  # bins and dimensions vary from type to type
    assert {random_type(s)[0].ndim for s in range(12)} == {1, 2}


def test_half_of_a_types_images_are_good_and_the_faults_are_the_benchmarks_kinds():
    bank = render_type(5, images=32, input_size=(60, 80))
    assert bank.pixels.shape == (32, 60, 80, 3) and bank.pixels.dtype == np.uint8
    assert bank.labels.count("Good") == 16 and set(bank.labels) <= set(LABELS)
    kinds = {f for f in bank.faults if f is not None}
    assert kinds == {*FAULTS, NODATA}
    for label, fault in zip(bank.labels, bank.faults):
        assert (label == "Good") == (fault is None) and (label == "NoData") == (fault == NODATA)
    good = bank.pixels[[lab == "Good" for lab in bank.labels]].astype(float)
    empty = bank.pixels[[lab == "NoData" for lab in bank.labels]].astype(float)
    # an empty plot draws nothing in the axes: it is further from the mean Good plot than Good ones are
    mean = good.mean(0)
    assert np.abs(empty - mean).mean() > np.abs(good - mean).mean(axis=(1, 2, 3)).max()
