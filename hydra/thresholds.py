"""Per-label confirmation thresholds and the metrics behind them (pure numpy).

A classification is *confirmed* when the predicted label's output weight is
above that label's threshold. The default threshold of each label maximises
its one-vs-rest F1 on the model's held-out images (``weight > t`` counts as
a positive call), searched over 0.00..0.99 in steps of 0.01. Where a whole
range of thresholds reaches the maximum (a cleanly separated test set), the
middle of that range is taken: it leaves the widest margin on both sides.

Training calls :func:`max_f1_thresholds`; the Library page calls
:func:`label_metrics`, :func:`confusion_matrix` and :func:`unconfirmed_count`
to show live what a changed threshold would do.

Example:
    >>> import numpy as np
    >>> w = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    >>> max_f1_thresholds(w, np.array([0, 1, 1]), ["Good", "Bad"])["Bad"].value
    0.25
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

STEP = 0.01
CAP = 0.99
# The one default threshold: a label whose threshold is not stored is compared with it when a
# verdict is decided (hydra.inference.decide), and a label without held-out images gets it here.
DEFAULT_THRESHOLD = 0.5


@dataclass(frozen=True)
class ThresholdChoice:
    """The chosen threshold of one label and why (``max_f1`` or ``default``)."""

    label: str
    value: float
    f1: float
    method: str


def _check(weights: np.ndarray, truth: np.ndarray, labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    w = np.asarray(weights, dtype=np.float64)
    t = np.asarray(truth, dtype=np.int64)
    if w.ndim != 2 or w.shape[1] != len(labels):
        raise ValueError(
            f"weights must be N x {len(labels)} (one column per label {list(labels)}), got {w.shape}"
        )
    if t.shape != (w.shape[0],):
        raise ValueError(f"truth must hold one label index per image ({w.shape[0]}), got shape {t.shape}")
    if t.size and (t.min() < 0 or t.max() >= len(labels)):
        raise ValueError(f"truth indices must be in 0..{len(labels) - 1}, got {t.min()}..{t.max()}")
    return w, t


def f1_curve(scores: np.ndarray, positive: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """F1 of the call ``score > t`` against ``positive`` for every ``t`` in ``grid``."""
    calls = scores[None, :] > grid[:, None]
    tp = (calls & positive[None, :]).sum(1)
    fp = (calls & ~positive[None, :]).sum(1)
    fn = positive.sum() - tp
    denom = 2 * tp + fp + fn
    return np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)


def max_f1_thresholds(
    weights: np.ndarray,
    truth: np.ndarray,
    labels: Sequence[str],
    *,
    step: float = STEP,
    cap: float = CAP,
) -> dict[str, ThresholdChoice]:
    """The max-F1 threshold of every label (one-vs-rest on held-out weights).

    Args:
        weights: N x L output weights (softmax), columns in ``labels`` order.
        truth: N human label indices.
        labels: the model's label order.
        step: the search step; thresholds are 0, step, ..., at most ``cap``.
        cap: the highest threshold allowed (0.99: a threshold of 1 confirms nothing).

    Returns:
        One :class:`ThresholdChoice` per label. A label with no held-out image
        gets :data:`DEFAULT_THRESHOLD` and method ``default``.
    """
    w, t = _check(weights, truth, labels)
    n_steps = int(round(cap / step))
    grid = np.round(np.arange(n_steps + 1) * step, 10)
    out: dict[str, ThresholdChoice] = {}
    for j, label in enumerate(labels):
        positive = t == j
        if not positive.any():
            out[label] = ThresholdChoice(label, DEFAULT_THRESHOLD, 0.0, "default")
            continue
        f1 = f1_curve(w[:, j], positive, grid)
        best = float(f1.max())
        at_best = np.flatnonzero(f1 >= best - 1e-12)
        value = float(grid[at_best[len(at_best) // 2]]) if at_best.size else DEFAULT_THRESHOLD
        out[label] = ThresholdChoice(label, round(min(value, cap), 2), best, "max_f1")
    return out


def predicted(weights: np.ndarray) -> np.ndarray:
    """The predicted label index of every image (the largest weight)."""
    return np.asarray(weights).argmax(axis=1)


def _threshold_vector(labels: Sequence[str], thresholds: Mapping[str, float]) -> np.ndarray:
    missing = [lab for lab in labels if lab not in thresholds]
    if missing:
        raise ValueError(f"no threshold for label(s) {missing}; thresholds given for {sorted(thresholds)}")
    return np.array([float(thresholds[lab]) for lab in labels])


def confirmed_mask(weights: np.ndarray, labels: Sequence[str], thresholds: Mapping[str, float]) -> np.ndarray:
    """Which images are confirmed: the predicted label's weight is above its threshold."""
    w = np.asarray(weights, dtype=np.float64)
    th = _threshold_vector(labels, thresholds)
    idx = predicted(w)
    return w[np.arange(len(w)), idx] > th[idx]


def unconfirmed_count(weights: np.ndarray, labels: Sequence[str], thresholds: Mapping[str, float]) -> int:
    """How many images the thresholds leave unconfirmed (kept for labeling)."""
    return int((~confirmed_mask(weights, labels, thresholds)).sum())


def label_metrics(
    weights: np.ndarray, truth: np.ndarray, labels: Sequence[str], thresholds: Mapping[str, float]
) -> dict[str, dict[str, float]]:
    """Precision, recall, F1 and counts per label at the given thresholds (one-vs-rest)."""
    w, t = _check(weights, truth, labels)
    th = _threshold_vector(labels, thresholds)
    out: dict[str, dict[str, float]] = {}
    for j, label in enumerate(labels):
        positive = t == j
        calls = w[:, j] > th[j]
        tp = int((calls & positive).sum())
        fp = int((calls & ~positive).sum())
        fn = int((~calls & positive).sum())
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out[label] = {
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "support": int(positive.sum()),
            "tp": tp,
            "fp": fp,
            "fn": fn,
            "threshold": float(th[j]),
        }
    return out


def confusion_matrix(truth: np.ndarray, pred: np.ndarray, n_labels: int) -> np.ndarray:
    """Counts[human, predicted] (rows: human label, columns: model's label)."""
    t = np.asarray(truth, dtype=np.int64)
    p = np.asarray(pred, dtype=np.int64)
    if t.shape != p.shape:
        raise ValueError(f"truth and predictions differ in length: {t.shape} vs {p.shape}")
    m = np.zeros((n_labels, n_labels), dtype=np.int64)
    np.add.at(m, (t, p), 1)
    return m


def accuracy(weights: np.ndarray, truth: np.ndarray) -> float:
    """The fraction of images whose largest weight is the human label."""
    t = np.asarray(truth)
    return float((predicted(weights) == t).mean()) if t.size else 0.0


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for ``positive`` (ties count half); NaN if one class is absent."""
    s = np.asarray(scores, dtype=np.float64)
    pos = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    _, first, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0 + 1.0  # average rank of each tie group
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
