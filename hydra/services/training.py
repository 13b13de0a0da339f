"""Train a plot type's model from the labels in the database (``hydra train``).

The steps, in order: choose the training set (:mod:`hydra.data.sampling`)
and give every labelled image a cross-validation fold; for each fold, build
the head from its preset (or fine-tune a parent model), fit it with
Lightning on the other folds and weigh the fold's images through
:mod:`hydra.inference` (the code the serve layer runs). A classifier's fold
models then serve together when they learned from enough images
(:mod:`hydra.heads.ensemble`: the thresholds are chosen on the weights of
the models that serve); otherwise, for other heads, or with
``ensemble=False``, one more model is fitted on all labelled images. A
preset's ``companion`` (:mod:`hydra.heads.presets`) is fitted beside every
one of these models, and each serves with it (a fold's out-of-fold weights
are the pair's). The
out-of-fold weights of every labelled image set the max-F1 thresholds, fill
the enhanced confusion matrix and the Training report, so none of them
rests on a small test split and no label is kept from the models. The training set, the model, its
classifications and thresholds are recorded in one transaction; nothing is
written to the database when any step fails. ``folds`` 0 or 1 keeps the
older fixed train/val/test split with early stopping.

Everything is seeded (``seed``, recorded with the model): the same command on
the same labels gives the same weights on a CPU.

Example:
    >>> from hydra.services.training import TrainOptions, train
    >>> result = train(TrainOptions("cdc_occupancy", epochs=10), cfg=cfg, engine=engine)  # doctest: +SKIP
    >>> result.model_id, result.metrics["accuracy"]                                      # doctest: +SKIP
    (3, 0.97)
"""

from __future__ import annotations

import inspect
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.engine import Engine
from sqlmodel import Session

from hydra.config import HydraConfig
from hydra.data.sampling import SamplingError, TrainingPlan, plan_training_set
from hydra.db.engine import session_scope
from hydra.db.queries import activate_model, get_model, get_plot_type, labels_of

DEFAULT_EPOCHS = 30
ENSEMBLE = "ensemble"  # the head that serves the fold models together
# Below this many labelled images a fold model learns from too few: on the real-histogram benchmark at
# 40 labels the fold models together ranked worse (ROC AUC 0.949-0.957 over 3 seeds) than one model on
# all 40 (0.967-0.976); at 160 they ranked better (docs/performance.md).
ENSEMBLE_MIN_IMAGES = 100


class TrainError(ValueError):
    """Training cannot start or finish as asked; the message says what to change."""


@dataclass
class TrainOptions:
    """What ``hydra train`` was asked (the CLI's options, one to one)."""

    plot_type: str
    head: str | None = None
    config: str | None = None
    sampling: str = "all"
    max_images: int | None = None
    epochs: int | None = None  # None: the preset's max_epochs_hint, else DEFAULT_EPOCHS
    folds: int = 4  # on the real-histogram benchmark 4 found more than 3 (docs/performance.md)
    ensemble: bool = True  # serve the fold models together (a classifier with folds >= 2) ...
    ensemble_min_images: int = ENSEMBLE_MIN_IMAGES  # ... trained on at least this many labelled images
    parent: int | None = None
    activate: bool = False
    devices: str = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    accelerator: str = "auto"
    precision: str | None = None
    seed: int = 0
    batch_size: int | None = None  # None: 16 for small training sets, else 32
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    patience: int = 8
    train_labels: list[str] | None = None
    workers: int = 0
    progress: bool = True
    threads: int | None = None  # torch CPU threads; None: the cores this process may use (see cpu_threads)


@dataclass
class TrainResult:
    """What a training produced (the summary ``hydra train`` prints)."""

    model_id: int
    plot_type: str
    head: str
    path: str
    training_set_id: int
    labels: list[str]
    thresholds: dict[str, float]
    metrics: dict[str, Any]
    active: bool
    parent_id: int | None = None
    files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Context:
    plot_type_id: int
    mask: list
    labels: list[str]
    problem_labels: list[str]
    plan: TrainingPlan
    parent: Any = None
    folds: int = 0
    head_name: str = ""  # resolved once: the preset's head and its arguments (None: the parent)
    head_kwargs: dict[str, Any] | None = None
    companion: dict[str, Any] | None = None  # the arguments of the preset's companion model, if any

    def fit_arguments(self) -> list[dict[str, Any] | None]:
        """What each model of one fit is built from (:func:`_new_head`): the preset's head (or the
        parent, ``None``), then the companion's arguments, if any."""
        return [None] if self.companion is None else [None, self.companion]


def _gpu_available() -> bool:
    import torch

    return torch.cuda.is_available()


def cpu_threads(requested: int | None = None) -> int:
    """Torch CPU threads for a training: ``requested``, else the cores this process may use.

    The count changes the order of floating-point sums, so it changes the
    weights: the default depends on the machine, never on its load, so the
    same command gives the same weights. On a shared, busy machine more
    threads than idle cores make every thread wait for the slowest one (a
    2-thread training ran several times slower than a 1-thread one on 2 busy
    cores): pass ``--threads`` there.
    """
    if requested is not None:
        return requested
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block with ``count`` torch CPU threads; restore the previous count after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def chosen_preset(opts: TrainOptions) -> tuple[str, dict[str, Any]]:
    """The head name and preset arguments that ``--config``/``--head`` choose (no labels yet)."""
    from hydra.heads import list_heads, load_head
    from hydra.heads.presets import find_preset, read_preset

    gpu = _gpu_available()
    if opts.config:
        name, kwargs = read_preset(opts.config)
        if opts.head and opts.head != name:
            raise TrainError(
                f"--head {opts.head!r} disagrees with the preset {opts.config}, which is for {name!r}"
            )
    else:
        wanted = opts.head or "classifier"
        candidates = [wanted] if opts.head and opts.head not in list_heads() else []
        if wanted == "classifier":
            candidates.append("classifier-inception" if gpu else "classifier-cpu")
        candidates.append(f"{wanted}-cpu")
        name, kwargs = wanted, {}
        for preset in candidates:
            try:
                find_preset(preset)
            except FileNotFoundError:
                continue
            name, kwargs = read_preset(preset)
            break
        else:
            load_head(wanted)  # an unknown name raises, listing the known heads
    return name, kwargs


def resolve_head(opts: TrainOptions, labels: list[str], problem: list[str]) -> tuple[str, dict[str, Any]]:
    """The head name and constructor arguments: preset (``--config``/``--head``) plus labels."""
    from hydra.heads import load_head

    name, kwargs = chosen_preset(opts)
    accepted = set()
    for klass in load_head(name).__mro__:
        if "__init__" in klass.__dict__:
            accepted |= set(inspect.signature(klass.__dict__["__init__"]).parameters)
    kwargs.update(labels=labels, problem_labels=[p for p in problem if p in labels])
    if "max_epochs_hint" in accepted:
        kwargs["max_epochs_hint"] = opts.epochs or kwargs.get("max_epochs_hint") or DEFAULT_EPOCHS
    return name, kwargs


def _prepare(opts: TrainOptions, engine: Engine) -> _Context:
    """Read the plot type and its labelled images; choose the training set."""
    from hydra.db.training import labelled_images
    from hydra.heads import load_head

    with session_scope(engine) as session:
        pt = get_plot_type(opts.plot_type, session=session)
        all_labels = labels_of(pt.id, session=session)
        images = labelled_images(pt.id, session=session)
        parent = get_model(opts.parent, session=session) if opts.parent is not None else None
    counts = {lab.name: 0 for lab in all_labels}
    for img in images:
        counts[img.label] = counts.get(img.label, 0) + 1
    problem = [lab.name for lab in all_labels if lab.is_problem]
    try:
        head_name = parent.head if parent is not None else chosen_preset(opts)[0]
        one_class = hasattr(load_head(head_name), "fit_reference_bank")
    except Exception:  # an unknown head or a broken preset: refused with its reason when the head is built
        one_class = False
    labels = [lab.name for lab in all_labels if lab.name != "Ignore" and (counts[lab.name] > 0 or one_class)]
    if parent is not None:
        if parent.plot_type_id != pt.id:
            raise TrainError(f"parent model {parent.id} belongs to another plot type, not {pt.name!r}")
        if labels != list(parent.labels) and not set(labels) <= set(parent.labels):
            raise TrainError(
                f"parent model {parent.id} has labels {parent.labels}; this plot type now has {labels}"
            )
        labels = list(parent.labels)
    if len(labels) < 2:
        raise TrainError(
            f"plot type {pt.name!r} has labelled images of {labels or 'no label'} only "
            f"(counts: {counts}); a model needs at least 2 labels with images "
            "(for Good-only data use --head siamese)"
        )
    good = "Good" if "Good" in labels else next((x for x in labels if x not in problem), labels[0])
    optional = [lab for lab in labels if lab != good] if one_class else []  # Good-only means Good only
    folds = opts.folds if opts.folds >= 2 else 0
    try:
        plan = plan_training_set(
            images,
            plot_type=pt.name,
            labels=labels,
            problem_labels=problem,
            method=opts.sampling,
            max_images=opts.max_images,
            val_fraction=opts.val_fraction,
            test_fraction=opts.test_fraction,
            seed=opts.seed,
            optional_labels=optional,
            train_labels=opts.train_labels,
            folds=folds,
        )
    except SamplingError as exc:
        raise TrainError(str(exc)) from None
    return _Context(pt.id, list(pt.mask or []), labels, problem, plan, parent, folds)


def _input_shape(ctx: _Context) -> tuple[tuple[int, int], int]:
    """(height, width) and channels of the heads this training builds, without building one when known."""
    if ctx.head_kwargs is None:
        return (int(ctx.parent.input_height), int(ctx.parent.input_width)), int(ctx.parent.channels)
    probe = _new_head(ctx)  # the constructor's defaults decide what the preset leaves out
    return probe.input_size, probe.channels


def _dataset(ctx: _Context, input_size: tuple[int, int], channels: int) -> tuple[Any, dict[int, int]]:
    """One dataset over every distinct image of the plan (decoded once, shared by all fits).

    Returns it and the dataset index of each image id.
    """
    from hydra.data.datasets import DatasetItem, PlotImageDataset

    index = {lab: i for i, lab in enumerate(ctx.labels)}
    items, where = [], {}
    for m in ctx.plan.members:
        if m.image_id not in where:
            where[m.image_id] = len(items)
            items.append(DatasetItem(m.path, index[m.label], m.weight, m.image_id))
    return PlotImageDataset(items, input_size, channels, ctx.mask), where


def _loader(base: Any, where: dict[int, int], members: list[Any], opts: TrainOptions, train: bool, seed: int):
    import torch
    from torch.utils.data import DataLoader, Subset

    idx = [where[m.image_id] for m in members for _ in range(m.copies if train else 1)]
    data = Subset(base, idx)
    batch = opts.batch_size or (16 if len(idx) < 500 else 32)  # enough steps per epoch on small sets
    kw = {"batch_size": batch, "num_workers": opts.workers, "persistent_workers": opts.workers > 0}
    if not train:
        return DataLoader(data, shuffle=False, **kw)
    gen = torch.Generator().manual_seed(seed)
    return DataLoader(data, shuffle=True, generator=gen, drop_last=len(idx) > batch, **kw)


def _min_epochs(epochs: int, val_dl: Any) -> int:
    """Epochs before early stopping may end the training.

    From scratch, validation loss is erratic for the first epochs (batch-norm
    statistics settle), and on a small validation split (a few dozen images)
    it can bottom out before the rare faults (one dead channel) are learned:
    there the whole schedule runs and the best checkpoint is kept.
    """
    if val_dl is not None and len(val_dl.dataset) < 50:
        return epochs
    return min(epochs, max(5, epochs // 2))


def _quiet_lightning() -> None:
    """Keep Lightning's banners and tips out of the CLI's output; warnings stay."""
    import logging
    import warnings

    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*NumPy array is not writable.*")


def _fit(
    head: Any, train_dl, val_dl, opts: TrainOptions, workdir: Path, progress: Any = None
) -> tuple[Any, dict[str, Any]]:
    """Fit with Lightning; restore the best validation weights. Returns (trainer, fit info).

    A head with a Good reference (``fit_reference``) takes it from the
    training batches first. ``progress`` (a callback) replaces Lightning's bar.
    """
    import pytorch_lightning as pl
    import torch
    from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint, RichProgressBar

    _quiet_lightning()
    if hasattr(head, "fit_reference"):
        head.fit_reference(train_dl)
    callbacks: list[Any] = [progress] if progress is not None else []
    checkpoint = None
    if val_dl is not None:
        checkpoint = ModelCheckpoint(
            dirpath=workdir / "checkpoints",
            monitor="val_loss",
            mode="min",
            save_top_k=1,
            save_weights_only=True,
        )
        callbacks += [checkpoint, EarlyStopping(monitor="val_loss", mode="min", patience=opts.patience)]
    if opts.progress and progress is None:
        callbacks.append(RichProgressBar())
    gpu = opts.accelerator in ("gpu", "cuda") or (opts.accelerator == "auto" and _gpu_available())
    trainer = pl.Trainer(
        max_epochs=opts.epochs,
        min_epochs=_min_epochs(opts.epochs, val_dl),
        accelerator=opts.accelerator,
        devices=opts.devices,
        num_nodes=opts.num_nodes,
        strategy=opts.strategy,
        precision=opts.precision or ("bf16-mixed" if gpu else "32-true"),
        callbacks=callbacks,
        logger=False,
        enable_progress_bar=opts.progress and progress is None,
        enable_model_summary=False,
        default_root_dir=str(workdir),
        log_every_n_steps=1,
        num_sanity_val_steps=0,
    )
    started = time.perf_counter()
    trainer.fit(head, train_dataloaders=train_dl, val_dataloaders=val_dl)
    info: dict[str, Any] = {
        "epochs": int(trainer.current_epoch),
        "fit_seconds": time.perf_counter() - started,
    }
    if checkpoint is not None and checkpoint.best_model_path:
        state = torch.load(checkpoint.best_model_path, map_location="cpu", weights_only=True)["state_dict"]
        head.load_weights(state)
        info["best_val_loss"] = float(checkpoint.best_model_score)
    head.cpu()
    if hasattr(head, "fit_reference_bank"):  # an anomaly head keeps Good references with its weights
        head.fit_reference_bank(train_dl, seed=opts.seed)
    head.eval()
    return trainer, info


def evaluate(
    model_dir: Path, members: list[Any], base: Any, where: dict[int, int], labels: list[str]
) -> np.ndarray:
    """Weights (N x L) of the saved model for ``members``, through the serving code path.

    The pixels are the ones :func:`hydra.data.images.prepare` made for the
    training set (the Feeder's preparation, with the dataset's mask); the
    model is loaded back from its files as a
    :class:`hydra.inference.ServingModel`, the object the Predict stage and
    ``hydra predict`` serve with.
    """
    from hydra.inference import ServingModel

    served = ServingModel.from_dir(model_dir, mask=getattr(base, "mask", None))
    if served.labels != labels:
        raise TrainError(f"the saved model's labels {served.labels} differ from the plot type's {labels}")
    weights = []
    for start in range(0, len(members), 64):
        chunk = members[start : start + 64]
        pixels = np.stack([base.pixels(where[m.image_id]) for m in chunk])
        weights.append(np.asarray(served.weights(pixels), dtype=np.float64))
    return np.concatenate(weights) if weights else np.zeros((0, len(labels)))


def _metrics(ctx: _Context, w: np.ndarray, truth: np.ndarray, thresholds: dict[str, float]) -> dict[str, Any]:
    from hydra.thresholds import (
        accuracy,
        confusion_matrix,
        label_metrics,
        predicted,
        roc_auc,
        unconfirmed_count,
    )

    problem_cols = [i for i, lab in enumerate(ctx.labels) if lab in ctx.problem_labels]
    auc = roc_auc(w[:, problem_cols].sum(1), np.isin(truth, problem_cols)) if problem_cols else float("nan")
    good = ctx.labels.index("Good") if "Good" in ctx.labels else 0
    faulty_auc = roc_auc(1.0 - w[:, good], truth != good) if len(w) else float("nan")
    counts = ctx.plan.label_counts()
    return {
        "accuracy": accuracy(w, truth),
        "per_label": label_metrics(w, truth, ctx.labels, thresholds),
        "confusion": confusion_matrix(truth, predicted(w), len(ctx.labels)).tolist(),
        "unconfirmed": unconfirmed_count(w, ctx.labels, thresholds),
        "problem_roc_auc": None if np.isnan(auc) else auc,
        "faulty_roc_auc": None if np.isnan(faulty_auc) else faulty_auc,
        "n_test": int(len(truth)),
        "split_counts": counts,
    }


def _final_dir(models_dir: Path, model_id: int) -> Path:
    final = models_dir / str(model_id)
    return final if not final.exists() else models_dir / f"{model_id}-{uuid.uuid4().hex[:8]}"


def _resolve(ctx: _Context, opts: TrainOptions) -> TrainOptions:
    """Resolve the head once (preset or parent) into ``ctx``; the options with their epochs settled.

    Epochs: ``--epochs``, else the preset's (or the parent's) ``max_epochs_hint``, else 30.
    A preset's ``companion`` (:mod:`hydra.heads.presets`) is fitted beside every model;
    a parent is fine-tuned alone.
    """
    from hydra.heads import load_head
    from hydra.heads.ensemble import can_serve_together
    from hydra.heads.presets import COMPANION

    if ctx.parent is not None:
        hparams = (ctx.parent.config or {}).get("hparams", {})
        ctx.head_name, ctx.head_kwargs = ctx.parent.head, None
        if ctx.parent.head == ENSEMBLE:  # a new training starts from one of its members
            ctx.head_name, hparams = hparams.get("member", "classifier"), hparams.get("member_hparams", {})
        hint = hparams.get("max_epochs_hint")
    else:
        ctx.head_name, ctx.head_kwargs = resolve_head(opts, ctx.labels, ctx.problem_labels)
        companion = ctx.head_kwargs.pop(COMPANION, None)
        if companion is not None:
            if not can_serve_together(load_head(ctx.head_name)):
                raise TrainError(
                    f"a preset's {COMPANION} needs a classifier head; {ctx.head_name!r} is not one"
                )
            ctx.companion = {**ctx.head_kwargs, **companion}
        hint = ctx.head_kwargs.get("max_epochs_hint")
    return replace(opts, epochs=opts.epochs or hint or DEFAULT_EPOCHS)


def fit_logit_bias(
    weights: np.ndarray, truth: np.ndarray, l2: float = 0.01, limit: float = 5.0
) -> np.ndarray:
    """The per-label logit bias that best explains ``truth`` from out-of-fold ``weights``.

    Minimises the cross-entropy of ``softmax(log(weights) + bias)`` (plus a
    small L2 penalty, so a label with few images cannot swing it) over the
    bias vector. Returns it, each value within ``±limit``, summing to zero.
    """
    import torch

    logw = torch.log(torch.as_tensor(weights, dtype=torch.float64).clamp_min(1e-12))
    t = torch.as_tensor(truth, dtype=torch.long)
    bias = torch.zeros(logw.shape[1], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([bias], lr=0.5, max_iter=100, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(logw + bias, t) + l2 * (bias**2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    out = bias.detach().clamp(-limit, limit)
    return (out - out.mean()).numpy()


def apply_logit_bias(weights: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """``softmax(log(weights) + bias)`` row by row: the weights a biased model would give."""
    z = np.log(np.clip(weights, 1e-12, None)) + bias
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _new_head(ctx: _Context, kwargs: dict[str, Any] | None = None) -> Any:
    """A fresh head of the resolved preset (``kwargs``: a companion's arguments), or the parent model to fine-tune."""
    from hydra.heads import create_head, load_model

    if kwargs is not None:
        return create_head(ctx.head_name, **kwargs)
    if ctx.head_kwargs is None:
        head = load_model(ctx.parent.path)
        if hasattr(head, "first_member"):
            head = head.first_member()
        head.train()
        return head
    return create_head(ctx.head_name, **ctx.head_kwargs)


class _Fits:
    """The fits of one training (cross-validation folds, then the final model) under one progress bar."""

    def __init__(self, opts: TrainOptions, total: int) -> None:
        self.opts, self.total, self.done = opts, total, 0
        self._progress = None
        if opts.progress:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                transient=False,
            )  # fmt: skip
            self._task = self._progress.add_task("training", total=total * opts.epochs)

    def __enter__(self) -> _Fits:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def callback(self, what: str) -> Any:
        if self._progress is None:
            return None
        import pytorch_lightning as pl

        progress, task = self._progress, self._task
        progress.update(task, description=f"{what} ({self.done + 1}/{self.total})")

        class _Epochs(pl.Callback):
            def on_train_epoch_end(self, trainer: Any, module: Any) -> None:
                progress.advance(task)

        return _Epochs()

    def finished(self) -> None:
        self.done += 1
        if self._progress is not None:
            self._progress.update(self._task, completed=self.done * self.opts.epochs)


def _fit_one(ctx, opts, fits, members, val, base, where, seed, what, kwargs=None):  # noqa: ANN001 - internal
    """Seed, build and fit one head on ``members`` (validating on ``val`` if any); ``kwargs``: see :func:`_new_head`."""
    import pytorch_lightning as pl

    pl.seed_everything(seed, workers=True, verbose=False)
    head_name, head = ctx.head_name, _new_head(ctx, kwargs)
    train_dl = _loader(base, where, members, opts, True, seed)
    val_dl = _loader(base, where, val, opts, False, seed) if val else None
    with tempfile.TemporaryDirectory(prefix="hydra-train-") as work:
        threads = cpu_threads(opts.threads)
        with torch_threads(threads):
            trainer, info = _fit(head, train_dl, val_dl, opts, Path(work), fits.callback(what))
    fits.finished()
    info["threads"] = threads
    return head_name, head, trainer, info


@dataclass
class _Folds:
    """What the cross-validation leaves: the fold models and the out-of-fold weights."""

    checked: list[Any]  # the trained images, each weighed by the model that did not see it
    oof: np.ndarray  # their weights (N x L)
    heads: list[Any]  # the fold models, fitted (when they will serve)
    trainer: Any  # the last fold's
    info: dict[str, Any]  # epochs and seconds of the fits


def _cross_validate(ctx, opts, fits, base, where, tmp: Path, keep: bool) -> _Folds:  # noqa: ANN001
    """Fit a model per fold; weigh every trained image with the one that did not see it.

    ``keep``: hold on to the fold models (they will serve); else each is let go once it has weighed.
    """
    trained = ctx.plan.splits["train"]
    weights = np.zeros((len(trained), len(ctx.labels)))
    heads, trainer, infos = [], None, []
    for fold in range(ctx.folds):
        inside = [m for m in trained if m.fold != fold]
        out_idx = [i for i, m in enumerate(trained) if m.fold == fold]
        if not out_idx:
            continue
        made, trainer, fold_infos = _fit_variants(
            ctx, opts, fits, inside, base, where, opts.seed + 1000 * (fold + 1), f"fold {fold + 1}"
        )
        if keep:
            heads.extend(made)
        infos.extend(fold_infos)
        if trainer.is_global_zero:
            _together(made).save(tmp / f"fold{fold}")
            weights[out_idx] = evaluate(
                tmp / f"fold{fold}", [trained[i] for i in out_idx], base, where, ctx.labels
            )
            shutil.rmtree(tmp / f"fold{fold}", ignore_errors=True)
    return _Folds(trained, weights, heads, trainer, _fit_summary(infos))


def _fit_summary(infos: list[dict[str, Any]]) -> dict[str, Any]:
    """Epochs (the most), fit seconds (all together) and threads of several fits."""
    return {
        "epochs": max((i["epochs"] for i in infos), default=0),
        "fit_seconds": sum(i["fit_seconds"] for i in infos),
        "threads": infos[-1]["threads"] if infos else None,
    }


def _serves_folds(ctx: _Context, opts: TrainOptions) -> bool:
    """Whether the fold models serve (as an ensemble) instead of one more model fitted on all images.

    A classifier's, with folds, when each fold model learns from enough images (``ensemble_min_images``).
    """
    from hydra.heads import load_head
    from hydra.heads.ensemble import can_serve_together

    enough = len(ctx.plan.splits["train"]) >= opts.ensemble_min_images
    return bool(opts.ensemble and ctx.folds and enough and can_serve_together(load_head(ctx.head_name)))


def train(opts: TrainOptions, *, cfg: HydraConfig, engine: Engine) -> TrainResult | None:
    """Train, evaluate, set thresholds and register a model for ``opts.plot_type``.

    Returns the result on the process that records it (``None`` on the other
    ranks of a multi-process training).

    Raises:
        TrainError: bad options or too few labelled images (nothing recorded).
        hydra.db.queries.NotFoundError: unknown plot type or parent model.
    """
    _check_options(opts)
    started = time.perf_counter()
    ctx = _prepare(opts, engine)
    opts = _resolve(ctx, opts)
    models_dir = cfg.path("models")
    models_dir.mkdir(parents=True, exist_ok=True)
    tmp = models_dir / f".tmp-{uuid.uuid4().hex}"
    base, where = _dataset(ctx, *_input_shape(ctx))
    try:
        fitted = _fit_models(ctx, opts, base, where, tmp)
        if not fitted.trainer.is_global_zero:
            return None
        scored = _score(ctx, opts, fitted, base, where, tmp, started)
        return _record(engine, ctx, opts, fitted, scored, tmp, models_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _check_options(opts: TrainOptions) -> None:
    """Refuse options no training can run with, before anything is read."""
    if opts.epochs is not None and opts.epochs < 1:
        raise TrainError(f"--epochs must be at least 1, got {opts.epochs}")
    if opts.threads is not None and opts.threads < 1:
        raise TrainError(f"--threads must be at least 1, got {opts.threads}")
    if opts.folds < 0:
        raise TrainError(f"--folds must be 0 (a fixed split) or at least 2, got {opts.folds}")


@dataclass
class _Fitted:
    """The model that serves, fitted, and the cross-validation's out-of-fold weights (if any)."""

    head_name: str
    head: Any
    trainer: Any
    info: dict[str, Any]
    checked: list[Any]  # the trained images with out-of-fold weights (none with a fixed split)
    oof: np.ndarray  # their weights (N x L)


def _fit_variants(ctx, opts, fits, members, base, where, seed, what, val=()):  # noqa: ANN001 - internal
    """Fit the preset's head and its companion (if any) on ``members``: the heads, the last trainer, their infos."""
    heads, infos, trainer = [], [], None
    for i, kwargs in enumerate(ctx.fit_arguments()):
        label = what if kwargs is None else f"{what}, companion"
        _, head, trainer, info = _fit_one(
            ctx, opts, fits, members, list(val), base, where, seed + 100 * i, label, kwargs
        )
        heads.append(head)
        infos.append(info)
    return heads, trainer, infos


def _fit_served(ctx, opts, fits, members, val, base, where, what):  # noqa: ANN001 - internal
    """Fit the model that serves on ``members``: one head, or with a companion both as an ensemble."""
    heads, trainer, infos = _fit_variants(ctx, opts, fits, members, base, where, opts.seed, what, val)
    if len(heads) == 1:
        return ctx.head_name, heads[0], trainer, infos[0]
    return ENSEMBLE, _together(heads), trainer, {**_fit_summary(infos), "members": len(heads)}


def _together(heads: list[Any]) -> Any:
    """One head, or several served together as an ensemble."""
    from hydra.heads.ensemble import EnsembleHead

    return heads[0] if len(heads) == 1 else EnsembleHead.of(heads)


def _fit_models(ctx: _Context, opts: TrainOptions, base: Any, where: dict[int, int], tmp: Path) -> _Fitted:
    """Fit the cross-validation folds (if any), then the model that serves, under one progress bar."""
    from hydra.heads.ensemble import EnsembleHead

    splits = ctx.plan.splits
    ensemble = _serves_folds(ctx, opts)
    per_fit = len(ctx.fit_arguments())
    with _Fits(opts, ((ctx.folds or 0) + (0 if ensemble else 1)) * per_fit) as fits:
        if ctx.folds:
            folds = _cross_validate(ctx, opts, fits, base, where, tmp, keep=ensemble)
            checked, oof = folds.checked, folds.oof
            if ensemble:
                head_name, head, trainer = ENSEMBLE, EnsembleHead.of(folds.heads), folds.trainer
                fit_info = {**folds.info, "members": len(folds.heads)}
            else:
                head_name, head, trainer, fit_info = _fit_served(
                    ctx, opts, fits, splits["train"], [], base, where, "final model"
                )
        else:
            head_name, head, trainer, fit_info = _fit_served(
                ctx, opts, fits, splits["train"], splits["val"], base, where, "model"
            )
            checked, oof = [], np.zeros((0, len(ctx.labels)))
    return _Fitted(head_name, head, trainer, fit_info, checked, oof)


def _calibrate(fitted: _Fitted, index: dict[str, int]) -> np.ndarray | None:
    """Fit the logit bias of a head that has one to the out-of-fold weights; the bias, or None.

    The head takes the bias on (a parent's bias carries over), and the
    out-of-fold weights become the ones the biased model gives.
    """
    if not (len(fitted.checked) and hasattr(fitted.head, "set_logit_bias")):
        return None
    calibration = fit_logit_bias(fitted.oof, np.array([index[m.label] for m in fitted.checked]))
    fitted.head.set_logit_bias(fitted.head.logit_bias.cpu().numpy() + calibration)
    fitted.oof = apply_logit_bias(fitted.oof, calibration)
    return calibration


@dataclass
class _Scored:
    """Every evaluated image's weights (out-of-fold ones first, then the test split), thresholds, metrics."""

    members: list[Any]
    weights: np.ndarray
    choices: dict[str, Any]  # label -> its max-F1 threshold choice
    thresholds: dict[str, float]
    metrics: dict[str, Any]


def _score(
    ctx: _Context,
    opts: TrainOptions,
    fitted: _Fitted,
    base: Any,
    where: dict[int, int],
    tmp: Path,
    started: float,
) -> _Scored:
    """Save the model; weigh the images it never trained on; choose max-F1 thresholds; the metrics."""
    from hydra.thresholds import max_f1_thresholds

    index = {lab: i for i, lab in enumerate(ctx.labels)}
    calibration = _calibrate(fitted, index)
    fitted.head.save(tmp / "model")
    # images the model never trained on (a fixed test split, or untrained labels)
    rest = ctx.plan.splits["test"]
    w_rest = evaluate(tmp / "model", rest, base, where, ctx.labels)
    members = fitted.checked + rest
    w = np.concatenate([fitted.oof, w_rest])
    truth = np.array([index[m.label] for m in members], dtype=np.int64)
    choices = max_f1_thresholds(w, truth, ctx.labels)
    thresholds = {lab: c.value for lab, c in choices.items()}
    metrics = _metrics(ctx, w, truth, thresholds) | fitted.info
    metrics["evaluation"] = f"{ctx.folds}-fold cross-validation" if ctx.folds else "held-out test split"
    metrics["folds"] = ctx.folds
    metrics["seed"] = opts.seed
    if calibration is not None:
        metrics["logit_bias"] = dict(zip(ctx.labels, np.round(calibration, 4).tolist()))
    metrics["train_seconds"] = time.perf_counter() - started
    metrics["threshold_f1"] = {lab: c.f1 for lab, c in choices.items()}
    return _Scored(members, w, choices, thresholds, metrics)


def _record(
    engine: Engine,
    ctx: _Context,
    opts: TrainOptions,
    fitted: _Fitted,
    scored: _Scored,
    tmp: Path,
    models_dir: Path,
) -> TrainResult:
    """Record the training set, the model (its files moved to their own folder), its held-out
    classifications and thresholds, in one transaction; activate it if asked."""
    from hydra.services.library import write_thresholds

    thresholds, choices = scored.thresholds, scored.choices
    with session_scope(engine) as session:
        ts, model = _register(ctx, opts, fitted, scored, tmp, session=session)
        final = _final_dir(models_dir, model.id)
        os.replace(tmp / "model", final)
        model.path = str(final)
        session.add(model)
        _store_classifications(model.id, ctx.labels, scored, len(fitted.checked), session=session)
        write_thresholds(
            model.id,
            thresholds,
            session=session,
            method="max_f1",
            methods={lab: c.method for lab, c in choices.items()},
        )
        if opts.activate:
            activate_model(model.id, session=session)
        result = TrainResult(
            model_id=int(model.id),
            plot_type=opts.plot_type,
            head=fitted.head_name,
            path=str(final),
            training_set_id=int(ts.id),
            labels=list(ctx.labels),
            thresholds=thresholds,
            metrics=scored.metrics,
            active=bool(opts.activate),
            parent_id=model.parent_id,
            files=sorted(str(p) for p in final.iterdir()),
        )
    return result


def _register(
    ctx: _Context, opts: TrainOptions, fitted: _Fitted, scored: _Scored, tmp: Path, *, session: Session
) -> tuple[Any, Any]:
    """Record the training set and the model (its files still in ``tmp``); both rows."""
    from hydra.db import training as training_db

    head = fitted.head
    params = {k: v for k, v in asdict(opts).items() if k not in ("progress", "activate")}
    ts = training_db.record_training_set(ctx.plot_type_id, ctx.plan, params, session=session)
    model = training_db.register_model(
        session=session,
        plot_type_id=ctx.plot_type_id,
        head=fitted.head_name,
        path=str(tmp),
        config=head.config() | {"seed": opts.seed},
        input_size=head.input_size,
        channels=head.channels,
        labels=ctx.labels,
        training_set_id=ts.id,
        parent_id=ctx.parent.id if ctx.parent is not None else None,
        metrics=scored.metrics,
    )
    return ts, model


def _store_classifications(
    model_id: int, labels: list[str], scored: _Scored, n_oof: int, *, session: Session
) -> None:
    """Store the model's verdict on every evaluated image: the first ``n_oof`` out-of-fold, the rest test."""
    from hydra.db import training as training_db

    preds = scored.weights.argmax(1) if len(scored.weights) else []
    rows = [
        (m.image_id, m.label, labels[int(p)], dict(zip(labels, row.tolist())))
        for m, p, row in zip(scored.members, preds, scored.weights)
    ]
    training_db.store_classifications(model_id, rows[:n_oof], session=session, split="oof")
    training_db.store_classifications(model_id, rows[n_oof:], session=session, split="test")
