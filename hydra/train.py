"""Train a plot type's model from the labels in the database (``hydra train``).

The steps, in order: choose and split the training set (:mod:`hydra.data.sampling`),
build the head from its preset (or fine-tune a parent model), fit it with
Lightning (early stopping on validation loss, the best weights kept),
save it, evaluate the saved model on the held-out split through
:mod:`hydra.inference` (the code the serve layer runs, so the stored
evaluation is what serving will do), set max-F1 thresholds, and record the
training set, the model, its classifications and thresholds in one
transaction. Nothing is written to the database when any step fails.

Example:
    >>> from hydra.train import TrainOptions, train
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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.engine import Engine

from hydra.config import HydraConfig
from hydra.data.sampling import SamplingError, TrainingPlan, plan_training_set
from hydra.db.engine import session_scope
from hydra.db.queries import activate_model, get_model, get_plot_type, labels_of


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
    epochs: int = 30
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
    threads: int | None = None  # torch CPU threads; None: the idle cores (see cpu_threads)


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


def _gpu_available() -> bool:
    import torch

    return torch.cuda.is_available()


def cpu_threads(requested: int | None = None) -> int:
    """Torch CPU threads for a training: ``requested``, else the cores not already busy.

    On a shared machine, more threads than idle cores make every thread wait
    for the slowest one at each step (a 2-thread training ran several times
    slower than a 1-thread one on 2 busy cores), so the default is the cores
    this process may use minus the 1-minute load average, at least 1.
    """
    if requested is not None:
        return requested
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cores, cores - round(os.getloadavg()[0])))


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


def resolve_head(opts: TrainOptions, labels: list[str], problem: list[str]) -> tuple[str, dict[str, Any]]:
    """The head name and constructor arguments: preset (``--config``/``--head``) plus labels."""
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
    accepted = set()
    for klass in load_head(name).__mro__:
        if "__init__" in klass.__dict__:
            accepted |= set(inspect.signature(klass.__dict__["__init__"]).parameters)
    kwargs.update(labels=labels, problem_labels=[p for p in problem if p in labels])
    if "max_epochs_hint" in accepted:
        kwargs["max_epochs_hint"] = opts.epochs
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
    head_name = parent.head if parent is not None else (opts.head or "classifier")
    try:
        one_class = hasattr(load_head(head_name), "fit_reference_bank")
    except Exception:  # the preset path decides the head; checked again when it is built
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
    optional = [p for p in problem if one_class]
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
        )
    except SamplingError as exc:
        raise TrainError(str(exc)) from None
    return _Context(pt.id, list(pt.mask or []), labels, problem, plan, parent)


def _loaders(ctx: _Context, head: Any, opts: TrainOptions):
    import torch
    from torch.utils.data import DataLoader

    from hydra.data.datasets import DatasetItem, PlotImageDataset

    index = {lab: i for i, lab in enumerate(ctx.labels)}
    splits = ctx.plan.splits

    def dataset(split: str, with_copies: bool) -> PlotImageDataset:
        items = [
            DatasetItem(m.path, index[m.label], m.weight, m.image_id)
            for m in splits[split]
            for _ in range(m.copies if with_copies else 1)
        ]
        return PlotImageDataset(items, head.input_size, head.channels, ctx.mask)

    train_ds, val_ds = dataset("train", True), dataset("val", False)
    gen = torch.Generator().manual_seed(opts.seed)
    batch = opts.batch_size or (16 if len(train_ds) < 500 else 32)  # enough steps per epoch on small sets
    kw = {"batch_size": batch, "num_workers": opts.workers, "persistent_workers": opts.workers > 0}
    train_dl = DataLoader(train_ds, shuffle=True, generator=gen, drop_last=len(train_ds) > batch, **kw)
    val_dl = DataLoader(val_ds, shuffle=False, **kw) if len(val_ds) else None
    return train_dl, val_dl


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


def _fit(head: Any, train_dl, val_dl, opts: TrainOptions, workdir: Path) -> tuple[Any, dict[str, Any]]:
    """Fit with Lightning; restore the best validation weights. Returns (trainer, fit info)."""
    import pytorch_lightning as pl
    import torch
    from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint, RichProgressBar

    _quiet_lightning()
    callbacks: list[Any] = []
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
    if opts.progress:
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
        enable_progress_bar=opts.progress,
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


def evaluate(model_dir: Path, ctx: _Context, split: str = "test") -> tuple[list[Any], np.ndarray, np.ndarray]:
    """Weights of the saved model on a split, through the serving code path.

    Returns the split's members, their weights (N x L) and human label indices.
    """
    from hydra import inference
    from hydra.data.images import load_image, prepare

    loaded = inference.LoadedModel.from_dir(model_dir)
    size, channels = tuple(loaded.input_size), loaded.channels
    members = ctx.plan.splits[split]
    index = {lab: i for i, lab in enumerate(ctx.labels)}
    weights = []
    for start in range(0, len(members), 64):
        chunk = members[start : start + 64]
        pixels = np.stack([prepare(load_image(m.path), size, channels, ctx.mask) for m in chunk])
        weights.append(np.asarray(inference.predict_batch(loaded, pixels), dtype=np.float64))
    w = np.concatenate(weights) if weights else np.zeros((0, len(ctx.labels)))
    return members, w, np.array([index[m.label] for m in members], dtype=np.int64)


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


def train(opts: TrainOptions, *, cfg: HydraConfig, engine: Engine) -> TrainResult | None:
    """Train, evaluate, set thresholds and register a model for ``opts.plot_type``.

    Returns the result on the process that records it (``None`` on the other
    ranks of a multi-process training).

    Raises:
        TrainError: bad options or too few labelled images (nothing recorded).
        hydra.db.queries.NotFoundError: unknown plot type or parent model.
    """
    from hydra.db import training as q
    from hydra.heads import create_head, load_model
    from hydra.thresholds import max_f1_thresholds

    if opts.epochs < 1:
        raise TrainError(f"--epochs must be at least 1, got {opts.epochs}")
    if opts.threads is not None and opts.threads < 1:
        raise TrainError(f"--threads must be at least 1, got {opts.threads}")
    started = time.perf_counter()
    ctx = _prepare(opts, engine)
    if ctx.parent is not None:
        head = load_model(ctx.parent.path)
        head.train()
        head_name = ctx.parent.head
    else:
        head_name, kwargs = resolve_head(opts, ctx.labels, ctx.problem_labels)
        head = create_head(head_name, **kwargs)
    import pytorch_lightning as pl

    pl.seed_everything(opts.seed, workers=True, verbose=False)
    models_dir = cfg.path("models")
    models_dir.mkdir(parents=True, exist_ok=True)
    tmp = models_dir / f".tmp-{uuid.uuid4().hex}"
    try:
        with tempfile.TemporaryDirectory(prefix="hydra-train-") as work:
            train_dl, val_dl = _loaders(ctx, head, opts)
            threads = cpu_threads(opts.threads)
            with torch_threads(threads):
                trainer, fit_info = _fit(head, train_dl, val_dl, opts, Path(work))
            fit_info["threads"] = threads
        if not trainer.is_global_zero:
            return None
        head.save(tmp)
        members, w, truth = evaluate(tmp, ctx)
        choices = max_f1_thresholds(w, truth, ctx.labels)
        thresholds = {lab: c.value for lab, c in choices.items()}
        metrics = _metrics(ctx, w, truth, thresholds) | fit_info
        metrics["train_seconds"] = time.perf_counter() - started
        metrics["threshold_f1"] = {lab: c.f1 for lab, c in choices.items()}
        with session_scope(engine) as session:
            params = {k: v for k, v in asdict(opts).items() if k not in ("progress", "activate")}
            ts = q.record_training_set(ctx.plot_type_id, ctx.plan, params, session=session)
            model = q.register_model(
                session=session,
                plot_type_id=ctx.plot_type_id,
                head=head_name,
                path=str(tmp),
                config=head.config(),
                input_size=head.input_size,
                channels=head.channels,
                labels=ctx.labels,
                training_set_id=ts.id,
                parent_id=ctx.parent.id if ctx.parent is not None else None,
                metrics=metrics,
            )
            final = _final_dir(models_dir, model.id)
            os.replace(tmp, final)
            model.path = str(final)
            session.add(model)
            preds = w.argmax(1) if len(w) else []
            q.store_classifications(
                model.id,
                (
                    (m.image_id, m.label, ctx.labels[int(p)], dict(zip(ctx.labels, row.tolist())))
                    for m, p, row in zip(members, preds, w)
                ),
                session=session,
            )
            q.set_thresholds(
                model.id, thresholds, session=session, methods={lab: c.method for lab, c in choices.items()}
            )
            if opts.activate:
                activate_model(model.id, session=session)
            result = TrainResult(
                model_id=int(model.id),
                plot_type=opts.plot_type,
                head=head_name,
                path=str(final),
                training_set_id=int(ts.id),
                labels=list(ctx.labels),
                thresholds=thresholds,
                metrics=metrics,
                active=bool(opts.activate),
                parent_id=model.parent_id,
                files=sorted(str(p) for p in final.iterdir()),
            )
        return result
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
