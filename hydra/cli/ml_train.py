"""``hydra synth``, ``hydra train`` and ``hydra models list|activate|shadow``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from hydra.cli.common import (
    ConfigOption,
    JsonOption,
    console,
    engine_for,
    fail,
    get_config,
    out,
    print_json_lines,
)

if TYPE_CHECKING:
    from hydra.config import HydraConfig
    from hydra.services.training import TrainOptions

models_app = typer.Typer(
    help="Trained models: list them, choose the active one and a shadow (candidate) beside it.",
    no_args_is_help=True,
)


def synth(
    out_dir: Path = typer.Argument(..., help="Folder for the PNGs and labels.csv (created)."),
    plot_types: int = typer.Option(1, "--plot-types", min=1, help="How many synthetic plot types."),
    images: int = typer.Option(100, "--images", min=1, help="Images per plot type."),
    seed: int = typer.Option(0, "--seed", help="The same seed writes the same files."),
    fault_rate: float = typer.Option(0.5, "--fault-rate", min=0.0, max=1.0, help="Share of faulty plots."),
    run_start: int = typer.Option(1000, "--run-start", min=0, help="First run number."),
    json: bool = JsonOption,
) -> None:
    """Write synthetic monitoring plots with labelled faults, and labels.csv for 'hydra ingest'.

    Example: hydra synth plots/ --plot-types 3 --images 200 && hydra ingest plots/ --labels plots/labels.csv
    """
    import time

    from hydra.data.synthetic import PLOT_SPECS, generate

    if plot_types > len(PLOT_SPECS):
        fail(
            f"--plot-types is at most {len(PLOT_SPECS)} (the synthetic plot types: "
            f"{', '.join(s.name for s in PLOT_SPECS)})"
        )
    t0 = time.perf_counter()
    labels = generate(
        out_dir, plot_types=plot_types, images=images, seed=seed, fault_rate=fault_rate, run_start=run_start
    )
    names = [s.name for s in PLOT_SPECS[:plot_types]]
    summary = {
        "labels_csv": str(labels),
        "images": images * plot_types,
        "plot_types": names,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    if json:
        print_json_lines([summary])
    else:
        console.print(
            f"[green]{summary['images']} plots[/] of {', '.join(names)} in {summary['seconds']} s; "
            f"labels in {labels}"
        )


# ``hydra train``'s options (one place, so the command's signature reads as a list)
_PLOT_TYPE = typer.Argument(..., help="The plot type to train a model for.")
_HEAD = typer.Option(None, "--head", help="Head name or preset (default: classifier, CPU or GPU preset).")
_PRESET = typer.Option(None, "--config", help="Head preset YAML (head: NAME plus its arguments).")
_SAMPLING = typer.Option("all", "--sampling", help="all | undersample | oversample | recent.")
_MAX_IMAGES = typer.Option(None, "--max-images", min=1, help="At most N images (N newest for recent).")
_EPOCHS = typer.Option(
    None, "--epochs", min=1, help="Epochs per fit (default: the preset's max_epochs_hint, else 30)."
)
_PARENT = typer.Option(None, "--parent", help="Fine-tune from this model id (same labels).")
_ACTIVATE = typer.Option(False, "--activate", help="Make the new model the active one.")
_DEVICES = typer.Option("auto", "--devices", help="Lightning devices (e.g. 4, or 0,1).")
_NUM_NODES = typer.Option(1, "--num-nodes", min=1, help="Lightning num_nodes.")
_STRATEGY = typer.Option("auto", "--strategy", help="Lightning strategy (e.g. ddp).")
_ACCELERATOR = typer.Option("auto", "--accelerator", help="cpu | gpu | auto.")
_PRECISION = typer.Option(None, "--precision", help="Default: bf16-mixed on GPUs, 32-true on CPU.")
_SEED = typer.Option(
    0, "--seed", help="Seed of the folds, the sampling and the weights (the same seed, the same weights)."
)
_FOLDS = typer.Option(
    4,
    "--folds",
    min=0,
    help="Cross-validation folds for thresholds and the report (0: a fixed test split).",
)
_ENSEMBLE = typer.Option(
    True,
    "--ensemble/--no-ensemble",
    help="A classifier with 100 labelled images or more: serve the fold models together (default), "
    "or fit one more model on all images (and the preset's companion, if it has one).",
)
_THREADS = typer.Option(
    None,
    "--threads",
    min=1,
    help="CPU threads for torch (default: this machine's cores; the count changes the weights).",
)
_BATCH_SIZE = typer.Option(None, "--batch-size", min=1, help="Default: 16 below 500 images, else 32.")
_TRAIN_LABELS = typer.Option(
    None,
    "--train-labels",
    help="Train on these labels only (comma list); "
    "the others all go to the test split (e.g. Good for an anomaly head).",
)
_VAL_FRACTION = typer.Option(0.15, "--val-fraction", help="With --folds 0 only.")
_TEST_FRACTION = typer.Option(0.15, "--test-fraction", help="With --folds 0 only.")
_DEPLOYMENT = typer.Option(None, "--deployment", help="Deployment YAML (default: $HYDRA_CONFIG, ...).")


def train(
    plot_type: str = _PLOT_TYPE,
    head: str = _HEAD,
    preset: str = _PRESET,
    sampling: str = _SAMPLING,
    max_images: int = _MAX_IMAGES,
    epochs: int = _EPOCHS,
    parent: int = _PARENT,
    activate: bool = _ACTIVATE,
    devices: str = _DEVICES,
    num_nodes: int = _NUM_NODES,
    strategy: str = _STRATEGY,
    accelerator: str = _ACCELERATOR,
    precision: str = _PRECISION,
    seed: int = _SEED,
    folds: int = _FOLDS,
    ensemble: bool = _ENSEMBLE,
    threads: int = _THREADS,
    batch_size: int = _BATCH_SIZE,
    train_labels: str = _TRAIN_LABELS,
    val_fraction: float = _VAL_FRACTION,
    test_fraction: float = _TEST_FRACTION,
    json: bool = JsonOption,
    deployment: str = _DEPLOYMENT,
) -> None:
    """Train a model for PLOT_TYPE from its labelled images; set max-F1 thresholds; register it.

    Example: hydra train cdc_occupancy --sampling undersample --epochs 20 --activate
    """
    from hydra.services.training import TrainOptions

    cfg = get_config(deployment)
    opts = TrainOptions(
        plot_type=plot_type, head=head, config=preset, sampling=sampling, max_images=max_images,
        epochs=epochs, parent=parent, activate=activate,
        devices=int(devices) if devices.isdigit() else devices, num_nodes=num_nodes, strategy=strategy,
        accelerator=accelerator, precision=precision,
        seed=seed, folds=folds, ensemble=ensemble, batch_size=batch_size, val_fraction=val_fraction, test_fraction=test_fraction,
        train_labels=[x.strip() for x in train_labels.split(",")] if train_labels else None,
        threads=threads, progress=not json,
    )  # fmt: skip
    _run_training(opts, cfg, json)


def _run_training(opts: TrainOptions, cfg: HydraConfig, json: bool) -> None:
    """Train as ``opts`` says; print the summary (or one JSON line); errors become one message."""
    from hydra.db.queries import NotFoundError
    from hydra.services.training import TrainError
    from hydra.services.training import train as run_train

    try:
        result = run_train(opts, cfg=cfg, engine=engine_for(cfg))
    except (TrainError, NotFoundError, FileNotFoundError) as exc:
        fail(f"{exc}\nnothing was recorded")
    except KeyError as exc:  # an unknown head name lists the known ones
        fail(f"{exc}\nnothing was recorded")
    if result is None:  # a non-zero rank of a multi-process training
        return
    if json:
        print_json_lines([result.to_dict()])
        return
    _print_summary(result)


def _print_summary(result) -> None:
    """The trained model's figures, on stdout (they are the command's result)."""
    from rich.table import Table

    m = result.metrics
    how = "out-of-fold weights of every labelled image" if m.get("folds") else "held-out split"
    table = Table(title=f"model {result.model_id} ({result.head}) for {result.plot_type}: {how}")
    for col in ("label", "precision", "recall", "F1", "images", "threshold"):
        table.add_column(col, justify="left" if col == "label" else "right")
    for label in result.labels:
        row = m["per_label"][label]
        table.add_row(
            label,
            f"{row['precision']:.3f}",
            f"{row['recall']:.3f}",
            f"{row['f1']:.3f}",
            str(row["support"]),
            f"{result.thresholds[label]:.2f}",
        )
    out.print(table)
    auc = m.get("problem_roc_auc")
    out.print(
        f"accuracy [bold]{m['accuracy']:.3f}[/] on {m['n_test']} "
        + ("labelled images (cross-validated)" if m.get("folds") else "held-out images")
        + (f", problem ROC AUC {auc:.3f}" if auc is not None else "")
        + f"; {m['unconfirmed']} unconfirmed at these thresholds; {m['epochs']} epochs in {m['train_seconds']:.1f} s"
    )
    state = (
        "[green]active[/]"
        if result.active
        else "not active (hydra models activate " + str(result.model_id) + ")"
    )
    out.print(f"model id [bold]{result.model_id}[/], {state}; training set {result.training_set_id}")
    out.print(f"files: {', '.join(result.files)}")


@models_app.command("list")
def models_list(
    plot_type: str = typer.Option(None, "--plot-type", help="Only models of this plot type."),
    json: bool = JsonOption,
    config: str = ConfigOption,
) -> None:
    """List trained models, newest first (the active one of each plot type marked)."""
    from hydra.db.engine import session_scope
    from hydra.services.models import list_models

    cfg = get_config(config)
    with session_scope(engine_for(cfg)) as session:
        rows = [
            {
                "id": m.id,
                "plot_type": name,
                "head": m.head,
                "active": m.active,
                "shadow": m.shadow,
                "labels": m.labels,
                "input": [m.input_height, m.input_width, m.channels],
                "accuracy": (m.metrics or {}).get("accuracy"),
                "training_set_id": m.training_set_id,
                "parent_id": m.parent_id,
                "path": m.path,
                "created_at": m.created_at,
            }
            for m, name in list_models(session=session, plot_type=plot_type)
        ]
    if json:
        print_json_lines(rows)
        return
    from rich.table import Table

    table = Table(title="models")
    for col in ("id", "plot type", "head", "active", "accuracy", "labels", "created"):
        table.add_column(col)
    for r in rows:
        acc = f"{r['accuracy']:.3f}" if isinstance(r["accuracy"], float) else "-"
        table.add_row(
            str(r["id"]),
            r["plot_type"],
            r["head"],
            "*" if r["active"] else ("shadow" if r["shadow"] else ""),
            acc,
            ",".join(r["labels"]),
            r["created_at"].strftime("%Y-%m-%d %H:%M"),
        )
    out.print(table)


@models_app.command("activate")
def models_activate(
    model_id: int = typer.Argument(..., help="The model to make active for its plot type."),
    config: str = ConfigOption,
) -> None:
    """Make a model the active one of its plot type (the previous one is deactivated)."""
    from hydra.db.engine import session_scope
    from hydra.db.models import PlotType
    from hydra.db.queries import NotFoundError
    from hydra.services.access import OPERATOR
    from hydra.services.library import activate

    cfg = get_config(config)
    try:
        with session_scope(engine_for(cfg)) as session:
            model = activate(OPERATOR, model_id, session=session)
            pt_name = session.get(PlotType, model.plot_type_id).name
    except NotFoundError as exc:
        fail(str(exc))
    console.print(f"model {model_id} is now active for {pt_name}")


@models_app.command("shadow")
def models_shadow(
    model_id: int = typer.Argument(None, help="The model to run beside its plot type's active model."),
    off: bool = typer.Option(False, "--off", help="Stop MODEL_ID running as a shadow."),
    clear: str = typer.Option(None, "--clear", metavar="PLOT_TYPE", help="Stop PLOT_TYPE's shadow model."),
    config: str = ConfigOption,
) -> None:
    """Run a candidate model beside the active one in hydra-serve: its verdicts are stored, never acted on.

    A shadow model scores every image its plot type's active model scores;
    its results never raise an alarm, never reach the Run page and never
    move or keep a file. Compare it with the active model (and activate it)
    on the Library page. One shadow per plot type: a new one replaces the old.

    Example: hydra models shadow 12
    Example: hydra models shadow --clear fcal_occupancy
    """
    from hydra.db.engine import session_scope
    from hydra.db.queries import NotFoundError, get_model, get_plot_type
    from hydra.services.access import OPERATOR
    from hydra.services.shadow import ShadowError, clear_shadow, plot_type_name, set_shadow

    if (model_id is None) == (clear is None):
        fail("give either a MODEL_ID (with --off to stop it) or --clear PLOT_TYPE")
    cfg = get_config(config)
    try:
        with session_scope(engine_for(cfg)) as session:
            if clear is not None or off:
                if clear is not None:
                    pt_id = get_plot_type(clear, session=session).id
                else:
                    row = get_model(model_id, session=session)
                    if not row.shadow:
                        raise ShadowError(f"model {model_id} is not a shadow model")
                    pt_id = row.plot_type_id
                gone = clear_shadow(OPERATOR, pt_id, session=session)
                name = plot_type_name(pt_id, session=session)
                message = (
                    f"model {gone.id} no longer shadows {name}" if gone else f"{name} had no shadow model"
                )
            else:
                model = set_shadow(OPERATOR, model_id, session=session)
                name = plot_type_name(model.plot_type_id, session=session)
                message = (
                    f"model {model_id} now runs as the shadow of {name}'s active model "
                    "(hydra-serve picks it up within serve.model_refresh_s)"
                )
    except (NotFoundError, ShadowError) as exc:
        fail(str(exc))
    console.print(message)


def register(app: typer.Typer) -> None:
    app.command("synth")(synth)
    app.command("train")(train)
    app.add_typer(models_app, name="models")
