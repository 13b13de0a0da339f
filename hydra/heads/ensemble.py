"""The ``ensemble`` head: the cross-validation's fold models, served together.

``hydra train`` fits one model per fold to weigh each labelled image with a
model that never saw it; those out-of-fold weights set the thresholds and
the logit calibration. Serving those same models, averaged, instead of one
more model fitted on all images, means that the thresholds were chosen on
the weights of the models that serve, the average of several models varies
less from one image to the next than any one of them, and training fits
one model fewer. On the real-histogram benchmark (docs/performance.md, 160
labels, seed 0) ROC AUC rose from 0.986 to 0.989 and Good false alarms fell
from 0.060 to 0.052 (at 40 labels the fold models learn from too few
images, and ``hydra train`` serves one model fitted on all of them);
serving costs one forward pass per member. Each
member keeps its own Good reference and preprocessing; the ensemble hands
them images in [0, 1].

Example:
    >>> from hydra.heads.ensemble import EnsembleHead
    >>> served = EnsembleHead.of([fold1, fold2, fold3])   # doctest: +SKIP
    >>> served.save("models/12")                          # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from hydra.heads.base import Head, LogitBias, to_jsonable

# Arguments that change only how a member trains, never what it computes once trained: members that
# differ in these alone (a preset's companion: another starting point, another learning rate) serve together.
TRAINING_ONLY = ("weights_file", "lr", "weight_decay", "synth_faults", "synth_weight", "drop_rate", "jitter")


class EnsembleHead(LogitBias, Head):
    """The mean of its members' softmax weights (as log-probabilities, plus its own logit bias).

    Args:
        member: the registered head name of every member (a classifier).
        member_hparams: the members' constructor arguments (one set: they
            differ only in their weights, their Good references and how they
            trained, :data:`TRAINING_ONLY`); labels, input size and channels
            default to the ensemble's.
        size: how many members.
        labels, problem_labels, input_size, channels: as the members'.
    """

    head_name = "ensemble"

    def __init__(
        self,
        member: str = "classifier",
        member_hparams: dict[str, Any] | None = None,
        size: int = 2,
        labels: Sequence[str] = ("Good", "Bad"),
        problem_labels: Sequence[str] = ("Bad",),
        input_size: Sequence[int] = (128, 160),
        channels: int = 3,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        max_epochs_hint: int = 0,
        jitter: float = 0.0,
    ) -> None:
        from hydra.heads.registry import load_head

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
        if size < 1:
            raise ValueError(f"an ensemble needs at least one member, got size {size}")
        cls = load_head(member)
        if not can_serve_together(cls):
            raise ValueError(f"an ensemble's members must be classifiers; {member!r} heads are not")
        shape = {"labels": self.labels, "problem_labels": self.problem_labels,
                 "input_size": list(self.input_size), "channels": self.channels}  # fmt: skip
        hparams = cls.config_for_load({**shape, **(member_hparams or {})})
        self.members = nn.ModuleList(cls(**hparams) for _ in range(size))
        first = self.members[0]
        if (first.labels, first.problem_labels, first.input_size, first.channels) != (
            self.labels, self.problem_labels, self.input_size, self.channels
        ):  # fmt: skip
            raise ValueError("an ensemble's labels, input size and channels must be its members'")
        self.init_logit_bias()

    @classmethod
    def of(cls, heads: Sequence[Head]) -> EnsembleHead:
        """An ensemble holding copies of ``heads`` (fitted heads of one class and config)."""
        first = heads[0]
        if any(type(h) is not type(first) or _served(h) != _served(first) for h in heads):
            raise ValueError(
                "an ensemble's members must be heads of one class with one config "
                f"(they may differ only in {', '.join(TRAINING_ONLY)})"
            )
        out = cls(
            member=first.registered_name(),
            member_hparams=to_jsonable(dict(first.hparams)),
            size=len(heads),
            labels=first.labels,
            problem_labels=first.problem_labels,
            input_size=first.input_size,
            channels=first.channels,
        )
        for mine, theirs in zip(out.members, heads):
            mine.load_weights({k: v.detach().cpu() for k, v in theirs.state_dict().items()})
        return out.to(first.device).eval()

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """[0, 1] images as they are: each member normalises them its own way (its own reference)."""
        return x

    def unnormalize(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = torch.stack([torch.softmax(m(m.normalize(x)).float(), dim=-1) for m in self.members]).mean(0)
        return torch.log(probs.clamp_min(1e-12)) + self.logit_bias

    def first_member(self) -> Head:
        """The member a new training starts from when this model is its parent."""
        return self.members[0]

    def cam_parts(self, x: torch.Tensor) -> list[tuple[Head, torch.Tensor]]:
        """Each member with its own input: :func:`hydra.heads.cam.grad_cam` averages their maps.

        One Grad-CAM over every member's layers at once would scale each
        layer's map to [0, 1] on its own, so a member that barely moved the
        verdict would weigh as much as the one that made it.
        """
        return [(m, m.normalize(x)) for m in self.members]

    def cam_target_layers(self) -> list[nn.Module]:
        return [layer for m in self.members for layer in m.cam_target_layers()]


def can_serve_together(cls: type) -> bool:
    """Whether heads of ``cls`` can be members of an ensemble: classifiers, calibrated by a logit bias."""
    return hasattr(cls, "set_logit_bias")


def _served(head: Head) -> dict[str, Any]:
    """A head's arguments that matter once it is trained."""
    return {k: v for k, v in dict(head.hparams).items() if k not in TRAINING_ONLY}
