"""A minimal Hydra head: three conv layers and a linear classifier."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from hydra.heads.base import Head

__all__ = ["TinyCNNHead"]


class TinyCNNHead(Head):
    """A tiny CNN classifier; the example of a head shipped by another package.

    Args:
        width: channels of the conv layers.
        labels, problem_labels, input_size, channels, lr, weight_decay,
        max_epochs_hint, jitter: see :class:`hydra.heads.Head`.
    """

    head_name = "tinycnn"

    def __init__(
        self,
        labels: Sequence[str] = ("Good", "Bad"),
        problem_labels: Sequence[str] = ("Bad",),
        input_size: Sequence[int] = (64, 80),
        channels: int = 3,
        width: int = 8,
        lr: float = 3e-3,
        weight_decay: float = 1e-4,
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
        self.features = nn.Sequential(
            nn.Conv2d(channels, width, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1),
            nn.ReLU(),
        )
        self.classifier = nn.Linear(2 * width, len(self.labels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean(dim=(2, 3)))

    def cam_target_layers(self) -> list[nn.Module]:
        return [self.features[-2]]
