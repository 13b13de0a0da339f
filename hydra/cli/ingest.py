"""``hydra ingest`` and ``hydra images list``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from hydra.cli.common import ConfigOption, JsonOption, console, engine_for, fail, get_config, print_json_lines

if TYPE_CHECKING:
    from hydra.services.ingest import IngestReport

images_app = typer.Typer(help="Images registered for training and labeling.", no_args_is_help=True)


def ingest(
    directory: Path = typer.Argument(..., help="Folder of plot images (searched recursively)."),
    labels: Path = typer.Option(None, "--labels", help="CSV with at least the columns filename,label."),
    plot_type: str = typer.Option(None, "--plot-type", help="Only register images of this plot type."),
    json: bool = JsonOption,
    config: str = ConfigOption,
) -> None:
    """Register every image under DIR that follows the naming convention, with its label.

    Plot types that do not exist yet are created with the labels the CSV uses.
    Ingesting the same folder twice adds nothing; a bad CSV row (a path
    outside DIR, a name off the convention, a run number out of range) or a
    file that hydra-serve would refuse (over serve.max_file_bytes or
    serve.max_image_pixels, not an image) stops the run with one line naming
    it, and nothing is written.

    Example: hydra ingest plots/ --labels plots/labels.csv
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    from sqlalchemy.exc import SQLAlchemyError

    from hydra.services.ingest import IngestError
    from hydra.services.ingest import ingest as run_ingest

    cfg = get_config(config)
    columns = (TextColumn("ingest"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("ingest", total=None)

        def progress(done: int, total: int) -> None:
            if done % 200 == 0 or done == total:
                bar.update(task, completed=done, total=total)

        try:
            report = run_ingest(
                directory,
                engine=engine_for(cfg),
                labels_csv=labels,
                plot_type=plot_type,
                pattern=cfg.naming_regex,
                progress=progress,
                max_bytes=cfg.serve.max_file_bytes,
                max_pixels=cfg.serve.max_image_pixels,
                collect_percent=cfg.plot_types.collect_percent,
            )
        except IngestError as exc:
            fail(f"{exc}; nothing was written")
        except SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
            fail(f"the database refused the ingest ({exc.__class__.__name__}: {reason}); nothing was written")
    _print_report(report, json)


def _print_report(report: IngestReport, json: bool) -> None:
    """What the ingest did: one JSON line, or a line for people (and the skipped files, if any)."""
    summary = {
        "scanned": report.scanned,
        "added": report.added,
        "labeled": report.labeled,
        "relabeled": report.relabeled,
        "already_known": report.already_known,
        "skipped": len(report.skipped),
        "created_plot_types": report.created_plot_types,
    }
    if json:
        print_json_lines([summary])
        return
    console.print(
        f"[green]{report.added} images added[/] ({report.labeled} labeled), "
        f"{report.already_known} already known, {report.relabeled} relabeled"
    )
    if report.created_plot_types:
        console.print(f"new plot types: {', '.join(report.created_plot_types)}")
    if report.skipped:
        shown = ", ".join(report.skipped[:5]) + (" ..." if len(report.skipped) > 5 else "")
        console.print(
            f"[yellow]{len(report.skipped)} files skipped: names do not follow the convention[/] ({shown}); "
            f"e.g. {report.skip_reasons[0]}",
            highlight=False,
        )


@images_app.command("list")
def images_list(
    plot_type: str = typer.Option(None, "--plot-type", help="Only this plot type."),
    labeled: bool = typer.Option(
        None, "--labeled/--unlabeled", help="Only labeled or only unlabeled images."
    ),
    limit: int = typer.Option(0, "--limit", min=0, help="At most this many (0: all)."),
    json: bool = JsonOption,
    config: str = ConfigOption,
) -> None:
    """List registered images with their plot type, run and label.

    Example: hydra images list --plot-type fcal_occupancy --unlabeled --json
    """
    from dataclasses import asdict

    from hydra.db.engine import session_scope
    from hydra.db.queries import NotFoundError
    from hydra.services.ingest import registered_images

    cfg = get_config(config)
    with session_scope(engine_for(cfg)) as session:
        try:
            found = registered_images(session=session, plot_type=plot_type, labeled=labeled, limit=limit)
        except NotFoundError as exc:
            fail(str(exc))
        rows = [asdict(image) for image in found]
    if json:
        print_json_lines(rows)
        return
    for r in rows:
        typer.echo(
            f"{r['id']:>7} {r['plot_type']:24} run {r['run']:>7} {r['label'] or '(unlabeled)':12} {r['path']}"
        )
    console.print(f"{len(rows)} images")


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest)
    app.add_typer(images_app, name="images")
