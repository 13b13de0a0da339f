"""The synthetic plot generator: names, labels, faults that show, determinism."""

from __future__ import annotations

import csv
import re

import numpy as np
import pytest
from PIL import Image

from hydra.data.images import load_image, prepare
from hydra.data.naming import parse_name
from hydra.data.synthetic import (
    PLOT_SPECS,
    fault_label,
    generate,
    get_spec,
    render,
    sample_counts,
    write_plot,
)


def test_at_least_six_plot_types_with_valid_names_and_both_kinds():
    assert len(PLOT_SPECS) >= 6
    assert all(re.fullmatch(r"[A-Za-z0-9_]+", s.name) for s in PLOT_SPECS)
    assert {s.kind for s in PLOT_SPECS} == {"hist1d", "map2d"}
    assert all(s.size[0] * 3 == s.size[1] * 4 for s in PLOT_SPECS)  # 4:3 canvases


def test_generate_writes_parseable_names_and_a_readable_labels_csv(tmp_path):
    labels = generate(tmp_path, plot_types=2, images=30, seed=4, fault_rate=0.5)
    with labels.open() as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["filename", "label", "fault", "plot_type"]
    assert len(rows) == 60
    for row in rows:
        parsed = parse_name(row["filename"])
        assert parsed.plot_type == row["plot_type"]
        assert row["label"] == fault_label(row["fault"] or None)
        img = load_image(tmp_path / row["filename"])
        assert img.size == get_spec(row["plot_type"]).size
    assert {r["label"] for r in rows} >= {"Good", "Bad"}
    assert not list(tmp_path.glob("*.tmp"))  # atomic writes leave no temporaries


def test_same_seed_same_files_other_seed_other_files(tmp_path):
    a, b, c = (
        generate(tmp_path / d, plot_types=1, images=5, seed=s) for d, s in (("a", 1), ("b", 1), ("c", 2))
    )
    names = sorted(p.name for p in a.parent.glob("*.png"))
    for name in names:
        assert (a.parent / name).read_bytes() == (b.parent / name).read_bytes()
    assert any((a.parent / n).read_bytes() != (c.parent / n).read_bytes() for n in names)
    assert a.read_text() == b.read_text()


def _input(img: Image.Image) -> np.ndarray:
    return prepare(img, (120, 160), 3).astype(np.float64)


@pytest.mark.parametrize("spec", PLOT_SPECS, ids=lambda s: s.name)
def test_every_fault_changes_the_image_more_than_good_images_differ(spec):
    """At model input size, a faulty plot is farther from the Good mean than Good plots are."""
    rng = np.random.default_rng(0)
    goods = np.stack([_input(render(spec, rng)) for _ in range(8)])
    mean = goods.mean(0)
    good_dist = max(np.abs(g - mean).max(axis=2).max() for g in goods)
    for fault in spec.faults:
        dists = [np.abs(_input(render(spec, rng, fault)) - mean).max(axis=2).max() for _ in range(4)]
        assert min(dists) > 0.0
        # the largest local change of a fault exceeds what Poisson noise alone produces
        assert np.median(dists) > good_dist * 0.9, (spec.name, fault, dists, good_dist)


def test_single_dead_channel_is_an_empty_bin_among_full_ones():
    spec = get_spec("cdc_occupancy")
    counts = sample_counts(spec, np.random.default_rng(3), "dead_channel")
    assert (counts == 0).sum() == 1 and np.median(counts) > 100
    hot = sample_counts(spec, np.random.default_rng(3), "hot_channel")
    assert hot.max() > 3 * np.median(hot)
    assert sample_counts(spec, np.random.default_rng(3), "empty").sum() == 0
    low = sample_counts(spec, np.random.default_rng(3), "low_stats")
    good = sample_counts(spec, np.random.default_rng(3))
    assert low.sum() < good.sum() / 20


def test_unknown_fault_and_plot_type_are_named():
    with pytest.raises(ValueError, match="no fault 'gain_shift'.*dead_channel"):
        sample_counts(get_spec("cdc_occupancy"), np.random.default_rng(0), "gain_shift")
    with pytest.raises(KeyError, match="known: cdc_occupancy"):
        get_spec("nope")
    with pytest.raises(ValueError, match="plot_types must be between 1"):
        generate("/nonexistent", plot_types=99)


def test_write_plot_is_atomic_and_drift_moves_the_spectrum(tmp_path):
    spec = get_spec("tof_energy")
    path = write_plot(tmp_path, spec, 1234, 7, seed=1)
    assert path.name == "tof_energy-001234_0007.png" and parse_name(path.name).chunk == 7
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    x = np.arange(100)
    peaks = []
    for drift in (0.0, 0.3):
        c = np.mean([sample_counts(spec, np.random.default_rng(i), None, drift) for i in range(5)], axis=0)
        peaks.append(x[30:][np.argmax(c[30:])])  # the MIP peak, above the low-energy fall-off
    assert peaks[1] < peaks[0]  # a gain loss moves the peak down
