"""The Siamese head's plain network and distance scoring, importable without Lightning.

The embedding keeps its spatial grid: monitoring plots are aligned (the same
bin is always at the same place), so each position of an image is compared
with the same position of the Good references. A one-bin fault then changes
one local embedding instead of being averaged away.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class EmbeddingNet(nn.Module):
    """A small CNN (4 stride-2 stages) giving L2-normalised local embeddings N×D×H/16×W/16.

    Args:
        channels: input channels.
        width: channels of the first stage (doubling to 4× at the end).
        embed_dim: size of each local embedding.
    """

    def __init__(self, channels: int = 3, width: int = 32, embed_dim: int = 64) -> None:
        super().__init__()
        widths = [width, 2 * width, 4 * width, 4 * width]
        stages, cin = [], channels
        for cout in widths:
            stages.append(_block(cin, cout))
            cin = cout
        self.stages = nn.Sequential(*stages)
        self.proj = nn.Conv2d(cin, embed_dim, 1)

    @property
    def last_stage(self) -> nn.Module:
        return self.stages[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.proj(self.stages(x)).float(), dim=1)


def local_distances(
    emb: torch.Tensor, bank: torch.Tensor, k: int = 3, exclude_self: bool = False
) -> torch.Tensor:
    """Per-position distance to the ``k`` nearest Good references: N×H'×W'.

    Args:
        emb: local embeddings N×D×H'×W' (unit vectors).
        bank: Good reference embeddings K×D×H'×W'.
        k: neighbours averaged.
        exclude_self: ``emb`` is the bank itself; skip each item's own entry
            (leave-one-out scores for calibration).
    """
    n, _, h, w = emb.shape
    if bank.shape[0] == 0:
        return emb.new_zeros(n, h, w)
    sim = torch.einsum("ndhw,kdhw->nkhw", emb, bank.to(emb.dtype))
    if exclude_self:
        eye = torch.eye(n, dtype=torch.bool, device=emb.device)[:, :, None, None]
        sim = sim.masked_fill(eye, -2.0)
    dist = (2.0 - 2.0 * sim).clamp_min(0.0).add(1e-8).sqrt()
    kk = min(k, bank.shape[0] - (1 if exclude_self else 0))
    return dist.topk(max(kk, 1), dim=1, largest=False).values.mean(dim=1)


def image_score(dist_map: torch.Tensor, top: int = 3) -> torch.Tensor:
    """An image's distance to Good: the mean of its ``top`` most distant positions."""
    flat = dist_map.flatten(1)
    return flat.topk(min(top, flat.shape[1]), dim=1).values.mean(dim=1)


def center_loss(
    emb: torch.Tensor, is_good: torch.Tensor, margin: float = 1.0, sample_weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Deep-SAD-style metric loss on local embeddings.

    Good images are pulled to the batch's per-position Good centre; other
    images (real problem labels and synthetic faults) are pushed beyond
    ``margin`` (squared distance) at their most distant positions. Negatives
    keep the embedding from collapsing, so Good-only data trains.
    """
    good = emb[is_good]
    if good.shape[0] == 0:
        return emb.sum() * 0.0
    center = F.normalize(good.mean(dim=0, keepdim=True), dim=1)
    sq = (emb - center).pow(2).sum(dim=1)
    score = image_score(sq, top=3)
    per = torch.where(is_good, score, F.relu(margin - score).pow(2) * 4.0)
    if sample_weights is None:
        return per.mean()
    w = sample_weights.to(per.dtype)
    return (per * w).sum() / w.sum().clamp_min(1e-12)
