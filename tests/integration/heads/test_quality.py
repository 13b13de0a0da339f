"""What the heads must show on generated plots: a head trained on Good plots only finds the faults."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from hydra.data.images import prepare
from hydra.heads import create_head
from tests.helpers.heads import make_trainer, roc_auc


def _synthetic(n: int, size: tuple[int, int], seed: int, fault_rate: float):
    from hydra.data.synthetic import LABELS, PLOT_SPECS, choose_fault, fault_label, render

    spec = PLOT_SPECS[0]
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for _ in range(n):
        fault = choose_fault(spec, rng, fault_rate)
        images.append(prepare(render(spec, rng, fault), size, 3))
        labels.append(LABELS.index(fault_label(fault)))
    return torch.from_numpy(np.stack(images)), torch.tensor(labels)


@pytest.mark.slow
def test_siamese_trained_on_good_only_separates_faulty_plots():
    size = (96, 128)  # about one pixel per channel: a single dead channel stays visible
    torch.manual_seed(0)
    x_train, y_train = _synthetic(96, size, seed=1, fault_rate=0.0)
    x_test, y_test = _synthetic(80, size, seed=2, fault_rate=0.5)
    head = create_head(
        "siamese",
        labels=["Good", "Bad", "NoData"],
        problem_labels=["Bad", "NoData"],
        input_size=size,
        width=16,
        embed_dim=32,
        reference=True,  # as the siamese-cpu preset: without it 0.915 with today's libraries
    )
    loader = DataLoader(TensorDataset(x_train, y_train), batch_size=16, shuffle=True)
    make_trainer(max_epochs=4).fit(head, loader)
    assert head.bank.shape[0] == 96  # the Good references were stored at the end of fit
    head.eval()
    with torch.no_grad():
        weights = head.weights(head.preprocess(x_test)).numpy()
    faulty = (y_test.numpy() != 0).astype(int)
    auc = roc_auc(1.0 - weights[:, 0], faulty)
    assert auc >= 0.95, auc
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-5)
