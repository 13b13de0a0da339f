"""Training-set sampling: which labelled images a model learns from, and the split.

Methods (the ``--sampling`` of ``hydra train``):

- ``all``: every labelled image.
- ``undersample``: every label is reduced to the problem label's count (the
  largest problem label when there are several), so Good does not drown Bad.
- ``oversample``: in the train split, every label is repeated up to the
  largest label's count (``copies`` per image); validation and test keep
  one copy of each image so their metrics stay honest.
- ``recent``: the newest N images (``max_images``), for a detector that changed.

The ``Ignore`` label is never trained on. Per-image training weights travel
with every image. The split into train/val/test is stratified per label and
seeded, and fails with a message naming the plot type, the label, how many
images it has and how many it needs.

Example:
    >>> imgs = [Candidate(i, "Good" if i % 3 else "Bad") for i in range(60)]
    >>> plan = plan_training_set(imgs, plot_type="cdc", labels=["Good", "Bad"], problem_labels=["Bad"])
    >>> {s: len(v) for s, v in plan.splits.items()}
    {'train': 42, 'val': 9, 'test': 9}
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

METHODS = ("all", "undersample", "oversample", "recent")
IGNORE = "Ignore"
SPLITS = ("train", "val", "test")


class SamplingError(ValueError):
    """The labelled images cannot make the asked training set; the message says why."""


@dataclass(frozen=True)
class Candidate:
    """A labelled image as sampling sees it."""

    image_id: int
    label: str
    weight: float = 1.0
    created_at: datetime | None = None
    path: str = ""


@dataclass(frozen=True)
class Member:
    """One image of a training set: its split and how many times it is repeated."""

    image_id: int
    label: str
    split: str
    weight: float = 1.0
    copies: int = 1
    path: str = ""
    fold: int = -1  # cross-validation fold of a train image (-1: none)


@dataclass
class TrainingPlan:
    """The chosen images per split, ready to record as TrainingSetImage rows."""

    method: str
    labels: list[str]
    members: list[Member] = field(default_factory=list)

    @property
    def splits(self) -> dict[str, list[Member]]:
        return {s: [m for m in self.members if m.split == s] for s in SPLITS}

    def label_counts(self) -> dict[str, dict[str, int]]:
        """Images per split per label (copies counted in train)."""
        counts = {s: dict.fromkeys(self.labels, 0) for s in SPLITS}
        for m in self.members:
            counts[m.split][m.label] = counts[m.split].get(m.label, 0) + m.copies
        return counts


def _by_label(images: Sequence[Candidate], labels: Sequence[str]) -> dict[str, list[Candidate]]:
    groups: dict[str, list[Candidate]] = {lab: [] for lab in labels}
    for img in images:
        if img.label in groups:
            groups[img.label].append(img)
    return groups


def _stratified_cap(groups: dict[str, list[Candidate]], cap: int, rng: np.random.Generator) -> None:
    """Keep at most ``cap`` images in total, in proportion to each label's count."""
    total = sum(len(g) for g in groups.values())
    if total <= cap:
        return
    for lab, g in groups.items():
        keep = max(min(len(g), 3), int(round(len(g) * cap / total)))
        groups[lab] = [g[i] for i in sorted(rng.choice(len(g), size=keep, replace=False))]


def select(
    images: Sequence[Candidate],
    *,
    labels: Sequence[str],
    problem_labels: Sequence[str],
    method: str = "all",
    max_images: int | None = None,
    seed: int = 0,
) -> dict[str, list[Candidate]]:
    """The images a method keeps, grouped by label (Ignore and unknown labels dropped)."""
    if method not in METHODS:
        raise SamplingError(f"unknown sampling method {method!r}; choose one of {', '.join(METHODS)}")
    if max_images is not None and max_images < 1:
        raise SamplingError(f"max_images must be at least 1, got {max_images}")
    rng = np.random.default_rng(seed)
    trainable = [lab for lab in labels if lab != IGNORE]
    pool = [img for img in images if img.label in trainable]
    if method == "recent":
        if max_images is None:
            raise SamplingError("sampling 'recent' needs max_images (the newest N images to train on)")
        pool = sorted(pool, key=lambda c: (c.created_at or datetime.min, c.image_id))[-max_images:]
    groups = _by_label(pool, trainable)
    if method == "undersample":
        present = [len(groups[p]) for p in problem_labels if groups.get(p)]
        target = max(present) if present else min((len(g) for g in groups.values() if g), default=0)
        for lab, g in groups.items():
            if len(g) > target:
                groups[lab] = [g[i] for i in sorted(rng.choice(len(g), size=target, replace=False))]
    if max_images is not None and method != "recent":
        _stratified_cap(groups, max_images, rng)
    return groups


def _split_counts(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    n_val = max(1, int(round(n * val_fraction))) if val_fraction > 0 else 0
    n_test = max(1, int(round(n * test_fraction))) if test_fraction > 0 else 0
    return n - n_val - n_test, n_val, n_test


def min_images_per_label(val_fraction: float, test_fraction: float) -> int:
    """The fewest images of a label that still put one in every split."""
    return 1 + (val_fraction > 0) + (test_fraction > 0)


def plan_training_set(
    images: Sequence[Candidate],
    *,
    plot_type: str,
    labels: Sequence[str],
    problem_labels: Sequence[str] = ("Bad",),
    method: str = "all",
    max_images: int | None = None,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
    optional_labels: Sequence[str] = (),
    train_labels: Sequence[str] | None = None,
    folds: int = 0,
) -> TrainingPlan:
    """Choose and split a plot type's training set.

    With ``folds`` >= 2 there is no val or test split: every image of a
    trained label goes to train with a cross-validation fold (stratified by
    label), so out-of-fold weights exist for all of them.

    Args:
        images: the plot type's labelled images.
        plot_type: its name (for error messages).
        labels: the model's labels, in output order (Ignore never among them).
        problem_labels: the labels ``undersample`` balances down to.
        method: one of :data:`METHODS`.
        max_images: the most distinct images to use (the N of ``recent``).
        val_fraction, test_fraction: held-out shares per label.
        seed: the same seed and images give the same plan.
        optional_labels: labels allowed to have too few images (an anomaly
            head trained without Bad examples); what they have goes to test.
        train_labels: if given, only these labels are trained on (train and
            val splits); images of the other labels all go to test, to measure
            e.g. a head trained on Good images only.
        folds: cross-validation folds (0 or 1: fixed val/test fractions).

    Raises:
        SamplingError: too few images of a label for every split, or none at all.
    """
    if not (0 <= val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise SamplingError(
            f"val_fraction {val_fraction} and test_fraction {test_fraction} must be in [0, 1) "
            "with test > 0 and their sum below 1"
        )
    labels = [lab for lab in labels if lab != IGNORE]
    unknown = [lab for lab in (train_labels or ()) if lab not in labels]
    if unknown:
        raise SamplingError(f"train_labels {unknown} are not labels of plot type {plot_type!r} ({labels})")
    groups = select(
        images, labels=labels, problem_labels=problem_labels, method=method, max_images=max_images, seed=seed
    )
    rng = np.random.default_rng([seed, 1])
    need = 2 if folds >= 2 else min_images_per_label(val_fraction, test_fraction)
    plan = TrainingPlan(method=method, labels=list(labels))
    for lab in labels:
        g = groups[lab]
        order = [g[i] for i in rng.permutation(len(g))]
        held_out_only = (train_labels is not None and lab not in train_labels) or (
            lab in optional_labels and len(g) < need
        )
        if held_out_only:
            plan.members += [Member(c.image_id, lab, "test", c.weight, 1, c.path) for c in order]
            continue
        if len(g) < need:
            what = f"sampling {method!r} leaves" if method != "all" else "has"
            raise SamplingError(
                f"plot type {plot_type!r} {what} {len(g)} labelled image(s) of label {lab!r}; needs at least "
                f"{need} ({'to train on and to check it' if folds >= 2 else 'one per train/val/test split'}). "
                "Label more images, or remove the label from the plot type if it is never used."
            )
        if folds >= 2:
            offset = int(rng.integers(folds))  # labels with few images do not all fill fold 0 first
            plan.members += [
                Member(c.image_id, lab, "train", c.weight, 1, c.path, (offset + i) % folds)
                for i, c in enumerate(order)
            ]
            continue
        n_train, n_val, _ = _split_counts(len(g), val_fraction, test_fraction)
        for i, c in enumerate(order):
            split = "train" if i < n_train else "val" if i < n_train + n_val else "test"
            plan.members.append(Member(c.image_id, lab, split, c.weight, 1, c.path))
    trained = [m for m in plan.members if m.split == "train"]
    if not trained:
        raise SamplingError(f"plot type {plot_type!r} has no images to train on (labels {labels})")
    if method == "oversample":
        plan.members = _oversample(plan.members, rng)
    return plan


def _oversample(members: list[Member], rng: np.random.Generator) -> list[Member]:
    """Give train images copies so every label reaches the largest label's train count."""
    train_by_label: dict[str, list[int]] = {}
    for i, m in enumerate(members):
        if m.split == "train":
            train_by_label.setdefault(m.label, []).append(i)
    target = max(len(v) for v in train_by_label.values())
    out = list(members)
    for idx in train_by_label.values():
        base, extra = divmod(target, len(idx))
        bonus = set(rng.choice(idx, size=extra, replace=False).tolist()) if extra else set()
        for i in idx:
            m = out[i]
            out[i] = Member(m.image_id, m.label, m.split, m.weight, base + (i in bonus), m.path, m.fold)
    return out
