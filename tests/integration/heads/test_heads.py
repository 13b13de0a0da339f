"""The same checks over every registered head: fit, save, load, predict, Grad-CAM.

The checks that need no training are in tests/unit/heads/test_heads.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from hydra.heads import Head, create_head, list_heads, load_model
from hydra.heads.cam import grad_cam, overlay
from tests.helpers.heads import SMALL, dataset, make_trainer

SIZE = (32, 40)
LABELS = ["Good", "Bad", "NoData"]


def _loader(n: int = 24, seed: int = 0, weights: bool = True) -> DataLoader:
    images, labels = dataset(n, *SIZE, seed=seed)
    labels[labels == 1] = np.where(np.arange((labels == 1).sum()) % 3 == 0, 2, 1)  # some NoData
    tensors = [torch.from_numpy(images), torch.from_numpy(labels)]
    if weights:
        tensors.append(torch.linspace(0.5, 1.5, n))
    return DataLoader(TensorDataset(*tensors), batch_size=8, shuffle=True)


@pytest.fixture(scope="module", params=list_heads())
def trained(request, tmp_path_factory):
    """Each registered head, fitted a few steps on tiny plots and saved."""
    torch.manual_seed(0)
    head = create_head(
        request.param,
        labels=LABELS,
        problem_labels=["Bad", "NoData"],
        input_size=SIZE,
        **SMALL.get(request.param, {}),
    )
    make_trainer(max_steps=3, limit_val_batches=1).fit(head, _loader(), _loader(8, seed=1, weights=False))
    head.eval()
    out = tmp_path_factory.mktemp(request.param)
    head.save(out)
    return request.param, head, out


def _batch(n: int = 5) -> torch.Tensor:
    return torch.from_numpy(dataset(n, *SIZE, seed=3)[0])


def test_contract(trained):
    name, head, _ = trained
    assert isinstance(head, Head)
    assert head.labels == LABELS and head.input_size == SIZE and head.channels == 3
    x = head.preprocess(_batch())
    extra = 2 if getattr(head, "uses_reference", False) else 1  # the image, and its deviation from Good
    assert x.dtype == torch.float32 and tuple(x.shape) == (5, 3 * extra, *SIZE)
    assert len(head.cam_target_layers()) >= 1


def test_save_writes_safetensors_and_resolved_config(trained):
    name, head, out = trained
    import json

    config = json.loads((out / "config.json").read_text())
    assert config["head"] == name
    assert config["hparams"]["labels"] == LABELS and config["hparams"]["input_size"] == list(SIZE)
    assert (out / "model.safetensors").stat().st_size > 0


def test_load_reproduces_weights_and_outputs(trained):
    _, head, out = trained
    loaded = load_model(out)
    assert type(loaded) is type(head)
    for (k, a), (k2, b) in zip(head.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k
    with torch.no_grad():
        x = head.preprocess(_batch())
        assert torch.allclose(head.weights(x), loaded.weights(x), atol=1e-6)
    assert type(head).load(out).labels == LABELS


def test_weights_are_a_distribution(trained):
    _, head, _ = trained
    with torch.no_grad():
        w = head.weights(head.preprocess(_batch(7)))
    assert tuple(w.shape) == (7, len(LABELS))
    assert torch.all(w >= 0)
    assert torch.allclose(w.sum(dim=1), torch.ones(7), atol=1e-5)


def test_grad_cam_shape_range_and_hooks_released(trained):
    _, head, _ = trained
    pixels = _batch(4)
    with torch.inference_mode():  # as serving calls it
        x = head.preprocess(pixels)
    maps = grad_cam(head, x, [0, 1, 2, 1])
    assert maps.shape == (4, *SIZE) and maps.dtype == np.float32
    assert maps.min() >= 0.0 and maps.max() <= 1.0
    leftover = [m for m in head.modules() if m._forward_hooks or m._backward_hooks or m._forward_pre_hooks]
    assert leftover == []
    assert not head.training
    img = overlay(pixels[0].numpy(), maps[0])
    assert img.shape == (*SIZE, 3) and img.dtype == np.uint8


def test_sample_weights_change_the_loss(trained):
    name, head, _ = trained
    images, labels = dataset(8, *SIZE, seed=4)
    batch_a = (torch.from_numpy(images), torch.from_numpy(labels), torch.ones(8))
    batch_b = (batch_a[0], batch_a[1], torch.tensor([5.0, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]))
    head.train()
    try:
        torch.manual_seed(0)
        loss_a = head.training_loss(batch_a)
        torch.manual_seed(0)
        loss_b = head.training_loss(batch_b)
    finally:
        head.eval()
    assert torch.isfinite(loss_a) and torch.isfinite(loss_b)
    assert not torch.allclose(loss_a, loss_b)
