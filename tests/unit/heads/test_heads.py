"""Checks over every registered head that need no training: odd input shapes, bad settings.

The trained checks (fit, save, load, predict, Grad-CAM) are in tests/integration/heads/test_heads.py.
"""

from __future__ import annotations

import pytest
import torch

from hydra.heads import create_head, list_heads
from tests.helpers.heads import SMALL


def test_non_square_input_and_one_channel():
    for name in list_heads():
        head = create_head(
            name, labels=["Good", "Bad"], input_size=(24, 56), channels=1, **SMALL.get(name, {})
        )
        x = head.preprocess(torch.zeros(2, 24, 56, 1, dtype=torch.uint8))
        assert tuple(x.shape) == (2, 2 if getattr(head, "uses_reference", False) else 1, 24, 56)
        head.eval()
        with torch.no_grad():
            assert tuple(head.weights(x).shape) == (2, 2)


def test_bad_config_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="problem_labels"):
        create_head("classifier", labels=["Good", "Bad"], problem_labels=["Broken"])
    with pytest.raises(ValueError, match="timm has no model"):
        create_head("classifier", backbone="no_such_net")
    head = create_head("classifier", labels=["Good", "Bad"], **SMALL["classifier"])
    with pytest.raises(ValueError, match="N x H x W x 3"):
        head.preprocess(torch.zeros(2, 3, 32, 40, dtype=torch.uint8))
