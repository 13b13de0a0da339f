"""The ``siamese`` head: anomaly scoring by distance to a bank of Good references."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hydra.heads.base import Head
from hydra.heads.faults import make_faulty
from hydra.heads.reference import (
    DEFAULT_FLOOR,
    DEFAULT_STAT,
    DEFAULT_WINDOW,
    Z_CLIP,
    GoodReference,
    leave_one_out_deviation,
    median_spread,
)
from hydra.heads.siamese.torch_model import EmbeddingNet, center_loss, image_score, local_distances

_FLOOR = -30.0  # log-weight of labels the head has no evidence for (weight ~1e-13)


class DistanceToGood:
    """Grad-CAM target: the image's distance to the Good references (what makes it odd)."""

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        return output.reshape(-1)[0]


class _DistanceView(nn.Module):
    """The head seen as ``x -> distance to Good`` (N×1), for pytorch-grad-cam."""

    def __init__(self, head: SiameseHead) -> None:
        super().__init__()
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head.score(x)[:, None]


class SiameseHead(GoodReference, Head):
    """Anomaly detection for plot types with few or no problem labels.

    Training pulls local embeddings of Good images together and pushes
    problem-labelled images and synthetic faults (dead strips, hot channels,
    gain changes, shifts, empty plots, noise) away, so Good-only data works.
    After training, :meth:`fit_reference_bank` stores Good reference
    embeddings and a logistic calibration of the distance, so the output
    weights read like a classifier's: Good gets ``1 - p``, the problem mass
    ``p`` goes to the nearest labelled problem examples (or is shared by the
    problem labels when there are none).

    Args:
        good_label: the label that means "nothing wrong".
        width: channels of the embedding CNN's first stage.
        embed_dim: local embedding size.
        margin: squared distance that negatives are pushed beyond.
        k: nearest Good references averaged per position.
        bank_size: most Good references kept with the model.
        reference, reference_floor, reference_stat, reference_window, reference_clip, cam_guide: the embedding
            network also reads each pixel's deviation from the Good images'
            per-pixel reference (see :class:`hydra.heads.reference.GoodReference`).
        reference_score: an image's distance to Good also counts how far it is from
            that reference (:func:`hydra.heads.reference.top_deviation`): the
            two are each measured in units of their spread over the Good
            images (leave-one-out) and added. A one-bin fault that the
            embedding's coarse grid blurs stays plain in the deviation.
            Needs ``reference`` and ``reference_stat: mean``.
        reference_top: the pixels that differ most, averaged by that deviation score.
        labels, problem_labels, input_size, channels, lr, weight_decay,
        max_epochs_hint, jitter: see :class:`hydra.heads.Head`.
    """

    head_name = "siamese"

    def __init__(
        self,
        labels: Sequence[str] = ("Good", "Bad"),
        problem_labels: Sequence[str] = ("Bad",),
        input_size: Sequence[int] = (128, 160),
        channels: int = 3,
        good_label: str = "Good",
        width: int = 32,
        embed_dim: int = 64,
        margin: float = 1.0,
        k: int = 3,
        bank_size: int = 256,
        reference: bool = False,
        reference_floor: float = DEFAULT_FLOOR,
        reference_stat: str = DEFAULT_STAT,
        reference_window: int = DEFAULT_WINDOW,
        reference_clip: float = Z_CLIP,
        cam_guide: bool | str = False,
        reference_score: bool = False,
        reference_top: int = 50,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        max_epochs_hint: int = 0,
        jitter: float = 0.02,
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
        good_index = self.good_index_for(good_label)
        if good_index is None:
            raise ValueError(f"good_label {good_label!r} is not among the labels {self.labels}")
        self.good_index = good_index
        self.init_reference()
        if reference_score and not (reference and reference_stat == "mean"):
            raise ValueError("reference_score needs reference: true and reference_stat: mean")
        if reference_top < 1:
            raise ValueError(f"reference_top must be at least 1 pixel, got {reference_top!r}")
        self.net = EmbeddingNet(self.input_channels(), width, embed_dim)
        grid = [s for s in self.input_size]
        for _ in range(4):
            grid = [(s + 1) // 2 for s in grid]
        self.register_buffer("bank", torch.zeros(0, embed_dim, *grid))
        self.register_buffer("calib", torch.tensor([0.0, 0.5]))  # [log slope, offset]
        # [centre, spread] of the embedding's and the deviation's scores over Good images (reference_score)
        self.register_buffer("score_norm", torch.tensor([0.0, 1.0, 0.0, 1.0]))
        self.register_buffer("label_bank", torch.zeros(0, embed_dim))
        self.register_buffer("label_bank_idx", torch.zeros(0, dtype=torch.long))

    # ---------------------------------------------------------------- scoring
    def score(self, x: torch.Tensor) -> torch.Tensor:
        """How far each preprocessed image is from Good, N: the embedding's distance to the Good
        references (plus, with ``reference_score``, its deviation from the Good reference)."""
        return self._score(x, self.net(x))

    def _score(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        dist = image_score(local_distances(emb, self.bank, self.hparams.k))
        if not self.hparams.get("reference_score", False):
            return dist
        return self._combined(dist, self.deviation_score(x, int(self.hparams.reference_top)))

    def _combined(self, dist: torch.Tensor, dev: torch.Tensor) -> torch.Tensor:
        """The embedding's distance and the deviation, each in units of its spread over Good images, added."""
        n = self.score_norm.to(dist.dtype)
        return (dist - n[0]) / n[1] + (dev.to(dist.dtype) - n[2]) / n[3]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        emb = self.net(x)
        score = self._score(x, emb)
        z = (score - self.calib[1]) * self.calib[0].exp()
        logits = torch.full((x.shape[0], self.num_labels), _FLOOR, device=x.device, dtype=score.dtype)
        logits[:, self.good_index] = F.logsigmoid(-z)
        share = self._problem_share(emb)
        others = [i for i in range(self.num_labels) if i != self.good_index]
        logits[:, others] = F.logsigmoid(z)[:, None] + share[:, others]
        return logits

    def _problem_share(self, emb: torch.Tensor) -> torch.Tensor:
        """Log-shares of the problem mass over the labels, N×L (Good's column unused)."""
        n, num = emb.shape[0], self.num_labels
        share = torch.full((n, num), _FLOOR, device=emb.device, dtype=emb.dtype)
        if self.label_bank.shape[0]:
            pooled = F.normalize(emb.mean(dim=(2, 3)), dim=1)
            dist = torch.cdist(pooled, self.label_bank.to(pooled.dtype))
            per_label = torch.full((n, num), float("inf"), device=emb.device, dtype=emb.dtype)
            for j in self.label_bank_idx.unique().tolist():
                per_label[:, j] = dist[:, self.label_bank_idx == j].min(dim=1).values
            known = torch.isfinite(per_label[0])
            share[:, known] = torch.log_softmax(-per_label[:, known] / 0.1, dim=1)
            return share
        targets = [self.labels.index(p) for p in self.problem_labels if p != self.labels[self.good_index]]
        targets = targets or [i for i in range(num) if i != self.good_index]
        share[:, targets] = -torch.log(torch.tensor(float(len(targets))))
        return share

    # --------------------------------------------------------------- training
    def _metric_loss(self, batch: Any, generator: torch.Generator | None, jitter: bool) -> torch.Tensor:
        images, targets, sw = self.unpack(batch)
        x01 = self.to_unit(images)
        is_good = targets.to(x01.device) == self.good_index
        views = self.augment(x01) if jitter else x01
        faulty = make_faulty(x01[is_good].cpu(), generator).to(x01.device)
        weights = torch.ones(len(targets), device=x01.device) if sw is None else sw.to(x01.device).float()
        all_x = torch.cat([views, faulty])
        all_good = torch.cat([is_good, torch.zeros(len(faulty), dtype=torch.bool, device=x01.device)])
        all_w = torch.cat([weights, torch.ones(len(faulty), device=x01.device)])
        emb = self.net(self.normalize(all_x))
        return center_loss(emb, all_good, self.hparams.margin, all_w)

    def training_loss(self, batch: Any) -> torch.Tensor:
        return self._metric_loss(batch, None, jitter=True)

    def validation_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss = self._metric_loss(batch, torch.Generator().manual_seed(batch_idx), jitter=False)
        self.log("val_loss", loss, prog_bar=True, batch_size=len(self.unpack(batch)[1]))
        return loss

    def on_fit_end(self) -> None:
        loader = getattr(self.trainer, "train_dataloader", None)
        loader = getattr(loader, "iterables", loader)
        if loader is not None:
            self.fit_reference_bank(loader)

    # -------------------------------------------------------- reference bank
    @torch.no_grad()
    def fit_reference_bank(self, batches: Iterable[Any], seed: int = 0) -> dict[str, float]:
        """Store Good reference embeddings and calibrate distance into weights.

        Args:
            batches: (images uint8 N×H×W×C, targets[, weights]) batches, e.g.
                the training dataloader; duplicates (oversampling) are skipped.
            seed: for the bank's subsample and the calibration faults.

        Returns:
            Calibration summary: median Good and faulty scores, slope, offset.
        """
        was_training = self.training
        self.eval()
        gen = torch.Generator().manual_seed(seed)
        good_imgs, other_imgs, other_idx = [], [], []
        for img, t in self.distinct_images(batches):
            if t == self.good_index:
                good_imgs.append(img.cpu())
            else:
                other_imgs.append(img.cpu())
                other_idx.append(t)
        if len(good_imgs) < 2:
            raise ValueError(f"the reference bank needs at least 2 Good images, got {len(good_imgs)}")
        pick = torch.randperm(len(good_imgs), generator=gen)[: self.hparams.bank_size]
        ref = torch.stack([good_imgs[i] for i in pick.tolist()])
        bank = torch.cat([self.net(self.preprocess(chunk.to(self.device))) for chunk in ref.split(64)])
        self.bank = bank
        good_scores = image_score(local_distances(bank, bank, self.hparams.k, exclude_self=True))
        if self.hparams.get("reference_score", False):
            good_dev = leave_one_out_deviation(
                self.to_unit(torch.stack(good_imgs)).float(),
                pick,
                floor=float(self.hparams.reference_floor),
                window=int(self.hparams.reference_window),
                top=int(self.hparams.reference_top),
                clip=self.z_clip,
            ).to(good_scores.device)
            (dist_c, dist_s), (dev_c, dev_s) = (
                median_spread(good_scores.float()),
                median_spread(good_dev.float()),
            )
            spreads = [max(float(v), 1e-3) for v in (dist_s, dev_s)]  # a floor keeps the units finite
            self.score_norm = torch.tensor(
                [float(dist_c), spreads[0], float(dev_c), spreads[1]], device=self.device
            )
            good_scores = self._combined(good_scores, good_dev)
        neg_scores = [
            self.score(self.normalize(make_faulty(self.to_unit(c), gen).to(self.device)))
            for c in ref.split(64)
        ]
        if other_imgs:
            emb, scores = [], []
            for chunk in torch.stack(other_imgs).split(64):
                x = self.preprocess(chunk.to(self.device))
                emb.append(self.net(x))
                scores.append(self._score(x, emb[-1]))
            emb = torch.cat(emb)
            neg_scores.append(torch.cat(scores))
            self.label_bank = F.normalize(emb.mean(dim=(2, 3)), dim=1)
            self.label_bank_idx = torch.tensor(other_idx, dtype=torch.long, device=self.device)
        bad_scores = torch.cat(neg_scores)
        self.calib = _fit_logistic(good_scores.float().cpu(), bad_scores.float().cpu()).to(self.device)
        self.train(was_training)
        return {
            "good_median": float(good_scores.median()),
            "faulty_median": float(bad_scores.median()),
            "slope": float(self.calib[0].exp()),
            "offset": float(self.calib[1]),
            "bank": float(bank.shape[0]),
        }

    def load_weights(self, state: dict[str, torch.Tensor]) -> None:
        for name in ("bank", "label_bank", "label_bank_idx"):
            if name in state:
                setattr(self, name, torch.empty_like(state[name]))
        # models saved before reference_score existed score by the embedding alone
        state = {"score_norm": self.score_norm, **state}
        super().load_weights(self.with_reference(state))

    # ----------------------------------------------------------------- Grad-CAM
    def cam_target_layers(self) -> list[nn.Module]:
        return [self.net.last_stage]

    def cam_model(self) -> nn.Module:
        return _DistanceView(self)

    def cam_targets(self, pred_idx: Sequence[int]) -> list[Callable[[torch.Tensor], torch.Tensor]]:
        return [DistanceToGood() for _ in pred_idx]


def _fit_logistic(good: torch.Tensor, bad: torch.Tensor, steps: int = 200) -> torch.Tensor:
    """[log slope, offset] of p(problem) = sigmoid(slope * (score - offset)), class-balanced.

    Targets are smoothed (0.02/0.98) so perfectly separated scores still give
    a finite slope and weights that grade rather than jump.
    """
    scores = torch.cat([good, bad])
    y = torch.cat([torch.full_like(good, 0.02), torch.full_like(bad, 0.98)])
    w = torch.cat([torch.full_like(good, 0.5 / len(good)), torch.full_like(bad, 0.5 / max(len(bad), 1))])
    spread = float(scores.std().clamp_min(1e-3))
    params = torch.tensor(
        [float(torch.log(torch.tensor(4.0 / spread))), float((good.median() + bad.median()) / 2)]
    )
    params.requires_grad_(True)
    opt = torch.optim.LBFGS([params], lr=0.5, max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        z = (scores - params[1]) * params[0].exp()
        loss = (F.binary_cross_entropy_with_logits(z, y, reduction="none") * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return params.detach()
