"""The logit bias fitted on out-of-fold verdicts (training's calibration)."""

from __future__ import annotations

import numpy as np
import torch

from hydra.heads import create_head
from hydra.services.training import apply_logit_bias, fit_logit_bias


def _overcalled(n: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Good images the model gives Bad 0.7, Bad images Bad 0.95: well ranked, badly placed."""
    truth = np.array([0] * n + [1] * n)
    bad = np.where(truth == 1, 0.95, 0.7)
    return np.stack([1 - bad, bad], axis=1), truth


def test_bias_moves_the_decision_where_the_labels_put_it():
    w, truth = _overcalled()
    bias = fit_logit_bias(w, truth)
    assert bias.shape == (2,) and abs(bias.sum()) < 1e-9 and bias[1] < 0 < bias[0]
    fixed = apply_logit_bias(w, bias)
    np.testing.assert_allclose(fixed.sum(1), 1.0, atol=1e-12)
    assert np.all(fixed[truth == 0].argmax(1) == 0) and np.all(fixed[truth == 1].argmax(1) == 1)
    assert np.array_equal(
        np.argsort(fixed[:, 1], kind="stable"), np.argsort(w[:, 1], kind="stable")
    )  # ranking kept


def test_bias_matches_a_brute_force_search_of_the_same_loss():
    w, truth = _overcalled()
    logw = np.log(w)

    def loss(d: float) -> float:  # bias (d/2, -d/2), cross-entropy + the same L2 penalty
        z = logw + np.array([d / 2, -d / 2])
        z -= z.max(1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(1, keepdims=True))
        return -logp[np.arange(len(truth)), truth].mean() + 0.01 * (d**2 / 2)

    grid = np.linspace(-6, 6, 12001)
    best = grid[np.argmin([loss(d) for d in grid])]
    bias = fit_logit_bias(w, truth)
    assert abs((bias[0] - bias[1]) - best) < 2e-3


def test_the_head_adds_the_bias_to_its_logits():
    head = create_head("classifier", labels=["Good", "Bad"], backbone="plotnet", input_size=(32, 40))
    head.eval()
    x = head.preprocess(torch.randint(0, 255, (3, 32, 40, 3), dtype=torch.uint8))
    with torch.no_grad():
        before = head(x)
        head.set_logit_bias([1.5, -1.5])
        after = head(x)
        np.testing.assert_allclose((after - before).numpy(), [[1.5, -1.5]] * 3, atol=1e-5)
        w0 = torch.softmax(before, -1).numpy()
        np.testing.assert_allclose(
            torch.softmax(after, -1).numpy(), apply_logit_bias(w0, np.array([1.5, -1.5])), atol=1e-5
        )
