"""The ``classifier`` head: any timm backbone, trained with weighted cross-entropy.

Optionally *reference-aware*: data-quality checks compare a plot with a
reference, so the head can keep the per-pixel mean (and spread) of the
Good training images with its weights and give the network, next to the
image, how far each pixel is from that reference. And it can learn from
synthetic faults made from its Good images (:mod:`hydra.heads.faults`) as
well as from the labelled Bad ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hydra.heads.base import Head, LogitBias
from hydra.heads.classifier.torch_model import PlotNet, build_backbone, cam_layer, load_init_weights
from hydra.heads.faults import make_faulty_with_kinds
from hydra.heads.reference import DEFAULT_FLOOR, DEFAULT_STAT, DEFAULT_WINDOW, Z_CLIP, GoodReference


class ClassifierHead(GoodReference, LogitBias, Head):
    """A supervised classifier over the plot type's labels.

    ``inception_v3`` at 299×299 is the production preset; a small backbone at
    about 128 px serves CPU-only sites and tests (see ``hydra/heads/presets/``).

    Args:
        backbone: any timm model name (``timm.list_models()``); built from scratch.
        weights_file: optional safetensors/state-dict file to start from
            (tensors that do not fit, like an ImageNet classifier, are skipped).
        drop_rate: dropout before the classifier.
        reference: give the network the deviation from the Good reference
            (per-pixel mean of the Good training images, in units of their
            spread) as extra input channels; :meth:`fit_reference` sets it. In
            training a Good image (or a synthetic fault made from one) reads its
            deviation from the reference of the other Good images
            (:meth:`~hydra.heads.reference.GoodReference.training_input`).
        reference_floor: the smallest spread (in [0, 1] pixel units), so that
            pixels that never change in Good plots do not amplify noise.
        reference_stat: ``mean`` (the Good images' mean and standard
            deviation per pixel) or ``median`` (median and scaled median
            absolute deviation); see :class:`hydra.heads.reference.GoodReference`.
        reference_window: each pixel's spread is the largest within this
            square (odd, in input pixels), so a bar top one pixel beyond
            where the Good images put it is not read as a fault.
        reference_clip: deviations beyond this many spreads read the same
            (the network reads +-``reference_clip`` as +-2).
        cam_guide: ``true`` weighs Grad-CAM maps by the deviation from the reference
            (:meth:`~hydra.heads.reference.GoodReference.refine_cam`), so a
            heat map points at the bins that differ; ``"deviation"`` draws
            the deviation map itself, with no gradients
            (:meth:`~hydra.heads.reference.GoodReference.cam_from_input`).
        synth_faults: share of each batch's Good images that also enter as a
            synthetic fault (labelled with the problem label; an emptied plot
            as ``NoData`` where the plot type has it). 0: labelled images only.
        synth_weight: training weight of a synthetic fault.
        good_label: the label that means "nothing wrong" (the reference's images).
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
        reference: bool = False,
        reference_floor: float = DEFAULT_FLOOR,
        reference_stat: str = DEFAULT_STAT,
        reference_window: int = DEFAULT_WINDOW,
        reference_clip: float = Z_CLIP,
        cam_guide: bool | str = False,
        synth_faults: float = 0.0,
        synth_weight: float = 0.5,
        good_label: str = "Good",
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
        self.net = build_backbone(backbone, len(self.labels), self.input_channels(), drop_rate)
        if isinstance(self.net, PlotNet):
            self.net = self.net.to(memory_format=torch.channels_last)
        if weights_file:
            load_init_weights(self.net, weights_file)
        self.good_index = self.good_index_for(good_label) or 0
        self.init_reference()
        self.init_logit_bias()

    # --------------------------------------------------------------- training
    def _synthetic_label(self, kind: str) -> int | None:
        problems = [p for p in self.problem_labels if p != "NoData"] or self.problem_labels
        if not problems:
            return None
        if kind == "empty" and "NoData" in self.labels:
            return self.labels.index("NoData")
        return self.labels.index("Bad" if "Bad" in problems else problems[0])

    def training_loss(self, batch: Any) -> torch.Tensor:
        images, targets, sw = self.unpack(batch)
        sources = self.to_unit(images)  # as the Good reference saw them
        x01 = self.augment(sources)
        targets = targets.long().to(x01.device)
        member = targets == self.good_index  # the reference rests on these
        weights = torch.ones(len(targets), device=x01.device) if sw is None else sw.to(x01.device).float()
        share = float(self.hparams.get("synth_faults", 0.0))
        if share > 0 and self._synthetic_label("Bad") is not None:
            good = torch.nonzero(member).flatten()
            pick = good[torch.rand(len(good), device=good.device) < share]
            if len(pick):
                faulty, kinds = make_faulty_with_kinds(x01[pick].detach().cpu())
                synth_t = torch.tensor([self._synthetic_label(k) for k in kinds], device=x01.device)
                x01 = torch.cat([x01, faulty.to(x01.device)])
                sources = torch.cat([sources, sources[pick]])
                member = torch.cat([member, torch.ones(len(pick), dtype=torch.bool, device=member.device)])
                targets = torch.cat([targets, synth_t])
                synth_w = torch.full((len(kinds),), float(self.hparams.get("synth_weight", 0.5)))
                weights = torch.cat([weights, synth_w.to(x01.device)])
        logits = self(self.training_input(x01, sources, member))
        return self.weighted_mean(F.cross_entropy(logits.float(), targets, reduction="none"), weights)

    @classmethod
    def config_for_load(cls, hparams: dict[str, Any]) -> dict[str, Any]:
        # the trained weights replace the initial ones; the file need not exist any more
        return {**hparams, "weights_file": None}

    def load_weights(self, state: dict[str, torch.Tensor]) -> None:
        # models saved before the reference or the calibration existed have neither: they keep the neutral ones
        state = self.with_reference(state)
        super().load_weights({"logit_bias": self.logit_bias, **state})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.net, PlotNet):  # dense small convolutions run faster channels-last on CPUs too
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x) + self.logit_bias.to(x.dtype)

    def cam_target_layers(self) -> list[nn.Module]:
        if isinstance(self.net, PlotNet):
            # the last stage and the finer one at stride 4: on the real-histogram benchmark the
            # heat map's peak fell inside the injected fault 0.84 of the time instead of 0.60
            return [self.net.last_stage, self.net.fine_stage]
        return [cam_layer(self.net)]
