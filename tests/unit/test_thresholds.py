"""Max-F1 thresholds and the metrics at given thresholds."""

from __future__ import annotations

import numpy as np
import pytest

from hydra.thresholds import (
    confirmed_mask,
    confusion_matrix,
    f1_curve,
    label_metrics,
    max_f1_thresholds,
    roc_auc,
    unconfirmed_count,
)

LABELS = ["Good", "Bad"]


def _two_label(bad_scores, truth):
    bad = np.asarray(bad_scores, dtype=float)
    return np.stack([1 - bad, bad], axis=1), np.asarray(truth)


def test_max_f1_on_a_known_case():
    # Bad scores: positives 0.9, 0.7, 0.45; negatives 0.6, 0.2, 0.1
    w, t = _two_label([0.9, 0.7, 0.45, 0.6, 0.2, 0.1], [1, 1, 1, 0, 0, 0])
    grid = np.round(np.arange(100) * 0.01, 2)
    f1 = f1_curve(w[:, 1], t == 1, grid)
    # t in [0.20, 0.45): 3 TP + 1 FP -> F1 6/7; t in [0.60, 0.70): 2 TP, 0 FP -> F1 0.8
    assert f1[grid == 0.3][0] == pytest.approx(6 / 7)
    assert f1.max() == pytest.approx(6 / 7)
    choice = max_f1_thresholds(w, t, LABELS)["Bad"]
    assert choice.method == "max_f1" and choice.f1 == pytest.approx(6 / 7)
    assert 0.2 <= choice.value < 0.45  # inside the best range
    assert choice.value == 0.32  # its middle


def test_cap_is_099_and_missing_label_gets_default():
    w, t = _two_label([0.999, 0.9995, 0.001], [1, 1, 0])
    out = max_f1_thresholds(w, t, LABELS)
    assert out["Bad"].value <= 0.99 and out["Bad"].f1 == 1.0
    w, t = _two_label([0.1, 0.2], [0, 0])
    out = max_f1_thresholds(w, t, LABELS)
    assert out["Bad"].method == "default" and out["Bad"].value == 0.5


def test_metrics_confusion_and_unconfirmed_at_thresholds():
    w, t = _two_label([0.9, 0.55, 0.3, 0.1], [1, 1, 0, 0])
    m = label_metrics(w, t, LABELS, {"Good": 0.5, "Bad": 0.6})
    assert (
        m["Bad"]["tp"] == 1
        and m["Bad"]["fn"] == 1
        and m["Bad"]["precision"] == 1.0
        and m["Bad"]["recall"] == 0.5
    )
    assert m["Good"]["support"] == 2
    assert confusion_matrix(t, w.argmax(1), 2).tolist() == [[2, 0], [0, 2]]
    # the 0.55 image is called Bad but below Bad's 0.6: unconfirmed
    assert confirmed_mask(w, LABELS, {"Good": 0.5, "Bad": 0.6}).tolist() == [True, False, True, True]
    assert unconfirmed_count(w, LABELS, {"Good": 0.5, "Bad": 0.6}) == 1
    assert unconfirmed_count(w, LABELS, {"Good": 0.95, "Bad": 0.95}) == 4


def test_bad_shapes_and_missing_thresholds_are_named():
    with pytest.raises(ValueError, match="weights must be N x 2"):
        max_f1_thresholds(np.zeros((3, 3)), np.zeros(3, int), LABELS)
    with pytest.raises(ValueError, match=r"no threshold for label\(s\) \['Bad'\]"):
        unconfirmed_count(np.full((2, 2), 0.5), LABELS, {"Good": 0.5})


def test_roc_auc():
    assert roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1], bool)) == 0.75
    assert np.isnan(roc_auc(np.array([0.1, 0.2]), np.array([0, 0], bool)))
