"""What the heads must show on generated plots: faults stay visible and are found."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _head_plots import roc_auc
from conftest import make_trainer
from PIL import Image
from torch.utils.data import DataLoader, TensorDataset

from hydra.data.images import prepare
from hydra.heads import create_head
from hydra.heads.presets import read_preset


@pytest.mark.parametrize("preset", ["classifier-cpu", "siamese-cpu", "classifier-inception"])
def test_preset_keeps_a_one_bin_dead_strip_visible(preset):
    """An 800x600 histogram of 100 bins with one empty bin, resized to the preset's input."""
    _, kwargs = read_preset(preset)
    height, width = kwargs["input_size"]
    img = np.full((600, 800, 3), 255, np.uint8)
    left, right, top, bottom = 80, 780, 60, 540
    edges = np.linspace(left, right, 101).round().astype(int)
    dead = 47
    for i in range(100):
        if i != dead:
            img[top:bottom, edges[i] : edges[i + 1]] = (40, 70, 200)
    pixels = prepare(Image.fromarray(img), (height, width), kwargs.get("channels", 3)).astype(float)
    column = pixels[height // 4 : 3 * height // 4].mean(axis=(0, 2))
    x = (edges[dead] + edges[dead + 1]) / 2 / 800 * width
    strip = column[int(x)]
    neighbours = np.r_[column[int(x) - 6 : int(x) - 2], column[int(x) + 3 : int(x) + 7]]
    assert strip - neighbours.mean() > 40, (strip, neighbours)  # clearly brighter (white gap)
    assert neighbours.std() < 5


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
