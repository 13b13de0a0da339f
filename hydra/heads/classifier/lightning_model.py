"""The ``classifier`` head: any timm backbone, trained with weighted cross-entropy."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from hydra.heads.base import Head
from hydra.heads.classifier.torch_model import build_backbone, cam_layer, load_init_weights


class ClassifierHead(Head):
    """A supervised classifier over the plot type's labels.

    ``inception_v3`` at 299×299 is the production preset; a small backbone at
    about 128 px serves CPU-only sites and tests (see ``configs/heads/``).

    Args:
        backbone: any timm model name (``timm.list_models()``); built from scratch.
        weights_file: optional safetensors/state-dict file to start from
            (tensors that do not fit, like an ImageNet classifier, are skipped).
        drop_rate: dropout before the classifier.
        labels, problem_labels, input_size, channels, lr, weight_decay,
        max_epochs_hint, jitter: see :class:`hydra.heads.Head`.
    """

    head_name = "classifier"

    def __init__(
        self,
        labels: Sequence[str] = ("Good", "Bad"),
        problem_labels: Sequence[str] = ("Bad",),
        input_size: Sequence[int] = (128, 160),
        channels: int = 3,
        backbone: str = "mobilenetv3_small_100",
        weights_file: str | None = None,
        drop_rate: float = 0.0,
        lr: float = 1e-3,
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
        self.net = build_backbone(backbone, len(self.labels), channels, drop_rate)
        if weights_file:
            load_init_weights(self.net, weights_file)

    @classmethod
    def config_for_load(cls, hparams: dict[str, Any]) -> dict[str, Any]:
        # the trained weights replace the initial ones; the file need not exist any more
        return {**hparams, "weights_file": None}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def cam_target_layers(self) -> list[nn.Module]:
        return [cam_layer(self.net)]
