"""The ``null`` head: constant weights whatever the image, served without training."""

from __future__ import annotations

import numpy as np
import torch

from hydra.heads import create_head, list_heads, load_model
from hydra.inference import ServingModel

LABELS = ["Good", "Bad", "NoData"]


def test_null_head_is_registered_and_answers_the_same_for_every_image(tmp_path):
    assert "null" in list_heads()
    head = create_head("null", labels=LABELS, problem_labels=["Bad", "NoData"])
    assert head.input_size == (32, 32) and head.registered_name() == "null"
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8))
    with torch.no_grad():
        w = head.weights(head.preprocess(images))
    assert torch.allclose(w, w[0].expand_as(w))
    assert int(w[0].argmax()) == 0 and float(w[0, 0]) > 0.99  # confident Good

    head.save(tmp_path / "m")  # loadable as saved, no training needed
    served = ServingModel.from_dir(tmp_path / "m", thresholds={lab: 0.5 for lab in LABELS})
    assert type(load_model(tmp_path / "m")).__name__ == "NullHead"
    weights, verdicts = served.classify(rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8))
    assert weights.shape == (3, 3)
    assert all(v.label == "Good" and v.confirmed and not v.is_problem for v in verdicts)


def test_training_moves_only_the_logits():
    head = create_head("null", labels=LABELS, problem_labels=["Bad"], input_size=(8, 12), good_logit=0.0)
    opt = head.configure_optimizers()
    images = torch.zeros(6, 8, 12, 3, dtype=torch.uint8)
    targets = torch.tensor([1, 1, 1, 1, 0, 2])
    for _ in range(20):
        opt.zero_grad()
        head.training_loss((images, targets)).backward()
        opt.step()
    assert float(head.probe.gain) == 0.0
    with torch.no_grad():
        w = head.weights(head.preprocess(torch.full((2, 8, 12, 3), 200, dtype=torch.uint8)))
    assert int(w[0].argmax()) == 1 and torch.allclose(w[0], w[1])
