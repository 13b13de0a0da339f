"""``hydra predict``: classify image files offline with the serving code path."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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

_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}

_HELP = """Classify plot images with the active model of their plot type (or --model ID).

The plot type comes from each file's name (the deployment's naming convention).
Images are prepared and classified exactly as the serve layer does it.
A file that cannot be used (unreadable, badly named, no active model) gets an
error line and the others carry on; the exit code is 1 if any failed.

[bold]Examples[/]

  hydra predict var/input/fcal_occupancy-041230_0003.png
  hydra predict var/kept/ --json > verdicts.jsonl
  hydra predict plots/*.png --model 7 --cam heatmaps/
"""


@dataclass
class _Item:
    index: int
    path: Path
    plot_type: str | None = None
    model_id: int | None = None
    image: Any = None
    pixels: Any = None
    result: dict | None = None
    error: str | None = None


@dataclass
class _Resolver:
    """Finds (and caches) the model of each plot type, and the loaded heads."""

    session: Any
    models_root: Path
    device: str
    forced: int | None
    by_type: dict[str, Any] = field(default_factory=dict)
    loaded: dict[int, Any] = field(default_factory=dict)

    def model_for(self, plot_type: str | None) -> Any:
        from hydra.db.models import Model
        from hydra.services import models

        if self.forced is not None:
            row = self.session.get(Model, self.forced)
            if row is None:
                raise LookupError(f"no model with id {self.forced} (see 'hydra models list')")
            return row
        if plot_type not in self.by_type:
            pt = models.plot_type_named(plot_type, session=self.session)
            if pt is None:
                raise LookupError(f"unknown plot type {plot_type!r} (see 'hydra plot-type list')")
            row = models.serving_model(pt.id, session=self.session)
            if row is None:
                raise LookupError(
                    f"plot type {plot_type!r} has no active model (train one: 'hydra train {plot_type}')"
                )
            self.by_type[plot_type] = row
        return self.by_type[plot_type]

    def load(self, row: Any) -> Any:
        """The :class:`hydra.inference.ServingModel` of a model row (loaded once)."""
        from hydra.inference import ServingModel

        if row.id not in self.loaded:
            self.loaded[row.id] = ServingModel.load(self.session, row, self.models_root, device=self.device)
        return self.loaded[row.id]


def _expand(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files.extend(sorted(f for f in p.iterdir() if f.suffix.lower() in _IMAGE_SUFFIXES))
        else:
            files.append(p)
    return files


def _prepare(item: _Item, resolver: _Resolver, pattern: Any) -> None:
    from hydra.data.images import ImageError, load_image
    from hydra.data.naming import NamingError, parse_name

    try:
        if resolver.forced is None:
            item.plot_type = parse_name(item.path.name, pattern).plot_type
        row = resolver.model_for(item.plot_type)
        loaded = resolver.load(row)
        if item.plot_type is None:
            from hydra.db.models import PlotType

            pt = resolver.session.get(PlotType, row.plot_type_id)
            item.plot_type = pt.name if pt is not None else None
        item.model_id = row.id
        item.image = load_image(item.path)
        item.pixels = loaded.prepare(item.image)
    except (ImageError, NamingError, LookupError, FileNotFoundError, ValueError) as exc:
        item.error = str(exc)


def _run_model(items: list[_Item], loaded: Any, cam_dir: Path | None, batch_size: int) -> None:
    import numpy as np

    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        pixels = np.stack([it.pixels for it in chunk])
        weights, verdicts = loaded.classify(pixels)
        for it, w, v in zip(chunk, weights, verdicts):
            it.result = {
                "path": str(it.path),
                "plot_type": it.plot_type,
                "model_id": loaded.model_id,
                "label": v.label,
                "weights": loaded.weights_dict(w),
                "confirmed": v.confirmed,
            }
        if cam_dir is not None:
            _write_cams(chunk, loaded, pixels, [loaded.labels.index(v.label) for v in verdicts], cam_dir)


def _write_cams(chunk: list[_Item], loaded: Any, pixels: Any, classes: list[int], cam_dir: Path) -> None:
    import numpy as np
    from PIL import Image

    from hydra.heads.cam import overlay

    maps = loaded.cam(pixels, classes)
    cam_dir.mkdir(parents=True, exist_ok=True)
    for it, cam in zip(chunk, maps):
        out = cam_dir / f"{it.path.stem}_cam.png"
        Image.fromarray(overlay(np.asarray(it.image.convert("RGB")), cam)).save(out)
        it.result["heatmap"] = str(out)


def _print_table(items: list[_Item]) -> None:
    from rich.table import Table

    table = Table(title="hydra predict")
    for col in ("file", "plot type", "model", "label", "weight", "confirmed"):
        table.add_column(col)
    for it in items:
        if it.result is None:
            continue
        r = it.result
        colour = "green" if r["confirmed"] else "yellow"
        table.add_row(
            it.path.name, str(r["plot_type"]), str(r["model_id"]), r["label"],
            f"{r['weights'][r['label']]:.3f}", f"[{colour}]{r['confirmed']}[/]",
        )  # fmt: skip
    out.print(table)


def register(app: typer.Typer) -> None:
    @app.command("predict", help=_HELP)
    def predict(
        paths: list[Path] = typer.Argument(..., help="Image files or folders of images."),
        model: int | None = typer.Option(None, "--model", "-m", help="Use this model id for every image."),
        json_out: bool = JsonOption,
        cam: Path | None = typer.Option(None, "--cam", help="Write Grad-CAM overlay PNGs into this folder."),
        device: str = typer.Option("cpu", "--device", help="Torch device, e.g. cpu or cuda:0."),
        batch_size: int = typer.Option(32, "--batch-size", min=1, help="Images per forward pass."),
        config: str | None = ConfigOption,
    ) -> None:
        from sqlmodel import Session

        cfg = get_config(config)
        items = [_Item(i, p) for i, p in enumerate(_expand(paths))]
        if not items:
            fail("no image files given")
        with Session(engine_for(cfg)) as session:
            resolver = _Resolver(session, cfg.path("models"), device, model)
            for it in items:
                _prepare(it, resolver, cfg.naming_regex)
            for model_id, loaded in resolver.loaded.items():
                group = [it for it in items if it.error is None and it.model_id == model_id]
                if group:
                    _run_model(group, loaded, cam, batch_size)
        for it in items:
            if it.error is not None:
                console.print(f"[bold red]error:[/] {it.path}: {it.error}", highlight=False, soft_wrap=True)
        if json_out:
            print_json_lines(it.result for it in items if it.result is not None)
        else:
            _print_table(items)
        if any(it.error is not None for it in items):
            raise typer.Exit(1)
