"""The ``null`` head: constant output weights, no compute (for measuring the pipeline itself).

Whatever the image, it answers the same weights: the softmax of one learned
logit per label (its prior), so a batch costs a few microseconds and a
benchmark of ``hydra-serve`` with it measures what the Feeder, Balancer,
Predict's batching and the Keeper cost per image. Untrained, it says the
first label that is not a problem ("Good") with ``good_logit`` above the
others (weight 0.995 with three labels): confirmed Good, as a healthy
production stream mostly is, so no Grad-CAM is computed. Training moves only
the logits (to the labels' frequencies), so it still ignores the image.

It honours the whole :class:`~hydra.heads.base.Head` contract (preprocess,
save/load, Grad-CAM, sample weights), so it is trained, saved and served as
any head is::

    head = create_head("null", labels=["Good", "Bad", "NoData"], input_size=(32, 32))
    head.save(models_dir / "7")   # a few hundred bytes, loadable without training
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from hydra.heads.base import Head


class _Probe(nn.Module):
    """The input times a gain held at zero: a layer for Grad-CAM to hook, with no effect on the output."""

    def __init__(self) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gain


class NullHead(Head):
    """Constant weights: one logit per label, whatever the image.

    Args:
        good_logit: how far the first non-problem label's logit starts above
            the others (0: uniform weights).
        (the rest as :class:`~hydra.heads.base.Head`; ``input_size`` defaults to 32x32.)
    """

    head_name = "null"

    def __init__(
        self,
        labels: Sequence[str] = ("Good", "Bad"),
        problem_labels: Sequence[str] = ("Bad",),
        input_size: Sequence[int] = (32, 32),
        channels: int = 3,
        good_logit: float = 6.0,
        lr: float = 0.1,
        weight_decay: float = 0.0,
        max_epochs_hint: int = 0,
        jitter: float = 0.0,
    ) -> None:
        super().__init__(
            labels=labels,
            problem_labels=problem_labels,
            input_size=input_size,
            channels=channels,
            lr=lr,
            weight_decay=weight_decay,
            max_epochs_hint=max_epochs_hint,
            jitter=jitter,
        )
        start = torch.zeros(len(self.labels))
        good = self.good_index_for("Good")
        if good is not None:
            start[good] = float(good_logit)
        self.logits = nn.Parameter(start)
        self.probe = _Probe()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the probe's output is all zeros (its gain is never trained): the logits stay constant,
        # yet Grad-CAM finds activations and gradients on it
        zero = self.probe(x).mean(dim=(1, 2, 3))
        return self.logits.unsqueeze(0) + zero.unsqueeze(1)

    def cam_target_layers(self) -> list[nn.Module]:
        return [self.probe]

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD([self.logits], lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
