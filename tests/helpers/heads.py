"""For the head tests: small generated monitoring plots, small head settings, a quiet Trainer.

Histograms drawn like a ROOT canvas (no files, no network): white background,
black axes, blue bars with Poisson fluctuations; faults are the ones shifters
see (a dead bin, a hot bin, a shifted peak, an empty plot).
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

import numpy as np

FAULTS = ("dead", "hot", "shift", "empty")
# cheaper-than-default settings for the built-in heads; a plugin is tested with its defaults
SMALL = {
    "classifier": {"backbone": "plotnet", "reference": True, "synth_faults": 0.5},
    "siamese": {"width": 8, "embed_dim": 16, "bank_size": 32},
    "ensemble": {"member_hparams": {"backbone": "plotnet", "reference": True}, "size": 2},
}


def histogram_plot(
    height: int, width: int, rng: np.random.Generator, fault: str | None = None, bins: int = 40
) -> np.ndarray:
    """One plot as uint8 H×W×3."""
    img = np.full((height, width, 3), 255, dtype=np.uint8)
    left, right = int(0.10 * width), width - int(0.05 * width)
    top, bottom = int(0.08 * height), height - int(0.12 * height)
    img[top : bottom + 1, left] = 0
    img[bottom, left:right] = 0
    centres = (np.arange(bins) + 0.5) / bins
    mu = 0.5 + (0.18 if fault == "shift" else 0.0) + rng.normal(0, 0.01)
    expected = 400 * np.exp(-0.5 * ((centres - mu) / 0.15) ** 2) + 20
    counts = rng.poisson(expected).astype(float)
    if fault == "dead":
        lo = int(rng.integers(bins // 4, 3 * bins // 4))
        counts[lo : lo + 1] = 0
    elif fault == "hot":
        counts[int(rng.integers(2, bins - 2))] = 560
    elif fault == "empty":
        counts[:] = 0
    scale = (bottom - top - 2) / 600.0
    edges = np.linspace(left + 1, right, bins + 1).round().astype(int)
    for i, c in enumerate(counts):
        bar = int(round(c * scale))
        if bar > 0:
            img[bottom - bar : bottom, edges[i] : max(edges[i + 1], edges[i] + 1)] = (40, 70, 200)
    return img


def dataset(
    n: int, height: int, width: int, seed: int = 0, bad_fraction: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` plots and labels (0 Good, 1 Bad), Bad ones with a random fault."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < bad_fraction).astype(np.int64)
    images = np.stack(
        [
            histogram_plot(height, width, rng, FAULTS[int(rng.integers(len(FAULTS)))] if y else None)
            for y in labels
        ]
    )
    return images, labels


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC (probability a positive outranks a negative), ties counted half."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Lightning's loggers at ERROR and warnings ignored, while the block runs."""
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def make_trainer(**kwargs):
    """A Lightning Trainer with nothing written and nothing printed."""
    import pytorch_lightning as pl

    defaults = dict(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    defaults.update(kwargs)
    return pl.Trainer(**defaults)
