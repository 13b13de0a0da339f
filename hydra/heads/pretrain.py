"""Pretrain the CPU classifier's backbone on many made-up plot types.

A new plot type comes with a few dozen labels; a network that starts from
random weights must learn from them what a plot is, where its bins are and
what a dead strip looks like next to its reference. This module teaches
that once, on hundreds of plot types made up by :mod:`hydra.data.plotbank`
(random histograms, random styles, faults injected into the histograms),
and writes the backbone's weights as one safetensors file. Hydra ships the
result beside its presets: ``classifier-cpu``'s companion and
``classifier-cpu-pretrained`` start from it (``weights_file``), so a plot
type trained with them fine-tunes from it, as from a parent model; nothing
is downloaded.

Each batch holds the images of one made-up plot type, given to the network
exactly as :class:`hydra.heads.classifier.ClassifierHead` gives it a real
one: the image and its deviation from that type's Good reference (fitted by
the head's own :meth:`fit_reference`), with the head's synthetic faults
mixed in. Plot types held back from training report how well the backbone
tells faults apart on plot types it never saw, before any fine-tuning.

Rebuild the shipped file (8 minutes on 2 cores, 6 of them rendering, on
2026-11-29)::

    python -m hydra.heads.pretrain --out hydra/heads/presets/plotnet-pretrained.safetensors

The backbone learns to read the deviation as ``--preset`` (``classifier-cpu``)
gives it (its ``reference_clip``, 16 spreads), so a preset that starts from
it must read it so too, as ``classifier-cpu-pretrained`` does.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hydra.data.plotbank import LABELS, TypeBank, render_type

DEFAULT_PRESET = "classifier-cpu"


@dataclass(frozen=True)
class PretrainOptions:
    # the defaults built the shipped plotnet-pretrained.safetensors
    types: int = 250  # made-up plot types to train on
    held_out: int = 30  # more, never trained on: the report's zero-shot figures
    images: int = 40  # per plot type, half Good
    epochs: int = 6
    batch_size: int = 20
    lr: float = 3e-3
    seed: int = 0
    workers: int = 2
    threads: int = 2
    preset: str = DEFAULT_PRESET


def _render(opts: PretrainOptions, size: tuple[int, int], channels: int, progress: Any) -> list[TypeBank]:
    count = opts.types + opts.held_out
    job = partial(render_type, images=opts.images, input_size=size, channels=channels)
    seeds = [opts.seed * 100_000 + i for i in range(count)]
    task = progress.add_task("rendering made-up plot types", total=count)
    banks: list[TypeBank] = []
    with ProcessPoolExecutor(opts.workers) if opts.workers > 1 else nullcontext() as pool:
        for bank in pool.map(job, seeds, chunksize=4) if pool else map(job, seeds):
            banks.append(bank)
            progress.advance(task)
    return banks


@dataclass(frozen=True)
class PlotTypeBatch:
    """One made-up plot type as the head trains on it: all its images, their labels, its Good reference."""

    images: torch.Tensor  # uint8 N x H x W x C
    targets: torch.Tensor  # indices into LABELS
    reference: tuple[Any, ...]  # the head's whole Good reference for this type (reference_state)

    def use_reference(self, head: Any) -> None:
        head.use_reference_state(self.reference)


@torch.no_grad()
def prepare_types(head: Any, banks: Sequence[TypeBank]) -> list[PlotTypeBatch]:
    """Each bank as tensors, with the Good reference the head's own :meth:`fit_reference` gives it."""
    out = []
    for bank in banks:
        images = torch.from_numpy(bank.pixels)
        targets = torch.tensor([LABELS.index(lab) for lab in bank.labels])
        head.fit_reference([(images, targets)])
        out.append(PlotTypeBatch(images, targets, head.reference_state()))
    return out


@torch.no_grad()
def zero_shot(head: Any, types: Sequence[PlotTypeBatch]) -> dict:
    """Problem-vs-Good ROC AUC and accuracy of the head on each plot type, as it is (no fine-tuning)."""
    from hydra.thresholds import roc_auc

    head.eval()
    good = LABELS.index("Good")
    aucs, correct, total = [], 0, 0
    for t in types:
        t.use_reference(head)
        w = head.weights(head.preprocess(t.images))
        truth = (t.targets != good).numpy()
        if 0 < truth.sum() < len(truth):
            aucs.append(float(roc_auc((1.0 - w[:, good]).numpy(), truth)))
        correct += int((w.argmax(1) == t.targets).sum())
        total += len(t.targets)
    return {
        "types": len(types),
        "accuracy": round(correct / max(total, 1), 4),
        "roc_auc_median": round(float(np.median(aucs)), 4) if aucs else None,
        "roc_auc_min": round(float(np.min(aucs)), 4) if aucs else None,
    }


def pretrain(out: str | Path, opts: PretrainOptions = PretrainOptions()) -> dict[str, Any]:
    """Render the made-up plot types, train the preset's backbone on them, write its weights to ``out``.

    Returns the report (also stored in the file's metadata): options,
    seconds, and the zero-shot figures on the held-back plot types before
    and after pretraining.
    """
    from rich.progress import Progress
    from safetensors.torch import save_file

    from hydra.heads.presets import create_from_preset

    torch.manual_seed(opts.seed)
    torch.set_num_threads(opts.threads)
    head = create_from_preset(
        opts.preset, labels=list(LABELS), problem_labels=list(LABELS[1:]), weights_file=None
    )
    if not head.uses_reference:
        raise ValueError(f"preset {opts.preset!r} gives its head no Good reference; pretraining expects one")
    size, channels = head.input_size, head.channels
    started = time.perf_counter()
    with Progress() as progress:
        types = prepare_types(head, _render(opts, size, channels, progress))
        rendered = time.perf_counter() - started
        train_types, test_types = types[: opts.types], types[opts.types :]
        before = zero_shot(head, test_types)
        per_type = -(-opts.images // opts.batch_size)
        steps = opts.epochs * opts.types * per_type
        opt = torch.optim.AdamW(head.parameters(), lr=opts.lr, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=opts.lr, total_steps=steps, pct_start=0.1)
        gen = torch.Generator().manual_seed(opts.seed)
        task = progress.add_task("pretraining", total=steps)
        head.train()
        losses: list[float] = []
        for _ in range(opts.epochs):
            for i in torch.randperm(opts.types, generator=gen).tolist():
                t = train_types[i]
                t.use_reference(head)
                for idx in torch.randperm(len(t.targets), generator=gen).split(opts.batch_size):
                    loss = head.training_loss((t.images[idx], t.targets[idx], None))
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
                    losses.append(float(loss))
                    progress.advance(task)
        after = zero_shot(head, test_types)
    report = {
        "options": asdict(opts),
        "input_size": list(size),
        "channels": channels,
        "labels": list(LABELS),
        "render_s": round(rendered, 1),
        "total_s": round(time.perf_counter() - started, 1),
        "final_loss": round(float(np.mean(losses[-200:])), 4),
        "held_out_before": before,
        "held_out_after": after,
    }
    state = {k: v.detach().contiguous().cpu() for k, v in head.net.state_dict().items()}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    save_file(state, str(tmp), metadata={"hydra_pretrain": json.dumps(report)})
    tmp.replace(out)
    return report


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="the safetensors file to write")
    for field, default in asdict(PretrainOptions()).items():
        p.add_argument(f"--{field.replace('_', '-')}", type=type(default), default=default)
    args = vars(p.parse_args(argv))
    out = args.pop("out")
    print(json.dumps(pretrain(out, PretrainOptions(**args)), indent=1))


if __name__ == "__main__":
    main()
