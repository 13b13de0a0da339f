"""``hydra reprocess``: a chosen model's verdicts on the stored images of a plot type."""

from __future__ import annotations

import typer

from hydra.cli.common import ConfigOption, JsonOption, console, engine_for, fail, get_config, print_json_lines


def reprocess(
    plot_type: str = typer.Option(..., "--plot-type", help="The plot type whose stored images to score."),
    model: int = typer.Option(..., "--model", help="The model to score them with (any of that plot type)."),
    since: str = typer.Option(None, "--since", help="Only images stored in the last DURATION (12h, 30d)."),
    workers: int = typer.Option(2, "--workers", min=0, help="Processes that decode the files (0: none)."),
    device: str = typer.Option("cpu", "--device", help="Torch device: cpu, cuda, cuda:N or auto."),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Images per forward pass and per commit."),
    limit: int = typer.Option(None, "--limit", min=0, help="Score at most N images this time."),
    heatmaps: str = typer.Option(
        None, "--heatmaps", help="problem | all | none (default: serve.heatmaps_for)."
    ),
    json: bool = JsonOption,
    config: str = ConfigOption,
) -> None:
    """Score PLOT_TYPE's stored images (kept and short-term storage) with MODEL; store the verdicts.

    The verdicts are stored as that model's (the active model's stay as they
    are); the Run page, the alarms and the files are left alone. Images the
    model has scored already are skipped, so an interrupted run (Ctrl-C)
    carries on where it stopped when started again. Compare the model with
    the active one on the Library page.

    Example: hydra reprocess --plot-type fcal_occupancy --model 7 --since 30d --workers 4 --device auto
    """
    from hydra.cli.serve import parse_duration
    from hydra.db.queries import NotFoundError
    from hydra.services.reprocess import ReprocessError, ReprocessOptions
    from hydra.services.reprocess import reprocess as run_reprocess

    cfg = get_config(config)
    try:
        window = parse_duration(since) if since else None
    except ValueError as exc:
        fail(str(exc))
    opts = ReprocessOptions(
        plot_type=plot_type, model_id=model, since=window, workers=workers, device=device,
        batch_size=batch_size, limit=limit, heatmaps=heatmaps,
    )  # fmt: skip
    try:
        if json:
            result = run_reprocess(cfg, engine_for(cfg), opts)
        else:
            result = _with_progress(cfg, opts, run_reprocess)
    except (ReprocessError, NotFoundError) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: what was stored stays; run the same command again to go on")
        raise typer.Exit(130) from None
    if json:
        print_json_lines([result.to_dict()])
        return
    labels = ", ".join(f"{k} {v}" for k, v in sorted(result.labels.items())) or "-"
    console.print(
        f"model [bold]{result.model_id}[/] on {result.plot_type}: [green]{result.scored} scored[/] "
        f"({labels}) in {result.seconds:.1f} s, {result.per_second:.0f}/s on {result.device}; "
        f"{result.already} of {result.found} stored images were scored before"
        + (f"; {result.missing} missing" if result.missing else "")
        + (f"; [red]{result.failed} unreadable[/]" if result.failed else "")
        + (f"; {result.left} left for the next run (--limit)" if result.left else ""),
        highlight=False,
    )


def _with_progress(cfg, opts, run_reprocess):
    """Run with a rich progress bar on stderr."""
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("[bold]reprocessing[/] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    ) as bar:
        task = bar.add_task(f"{opts.plot_type} with model {opts.model_id}", total=None, rate="")
        first: list[tuple[int, float]] = []  # the rate counts from the first batch: loading is not scoring

        def progress(done: int, total: int) -> None:
            now = time.perf_counter()
            first[:] = first or [(done, now)]
            n, spent = done - first[0][0], now - first[0][1]
            bar.update(task, completed=done, total=total, rate=f"{n / spent:.0f}/s" if spent > 0 else "")

        return run_reprocess(cfg, engine_for(cfg), opts, progress=progress)


def register(app: typer.Typer) -> None:
    app.command("reprocess")(reprocess)
