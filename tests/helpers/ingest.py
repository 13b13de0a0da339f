"""A folder of plots to ingest, with a labels CSV, and the rows ingest wrote."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from sqlmodel import Session, func, select

from hydra.db.models import Image, ImageLabel, Label, PlotType


def make_folder(root: Path, n: int = 12) -> Path:
    """``n`` plots of two plot types in sub-folders, ``labels.csv`` for all but the last two, and clutter."""
    rng = np.random.default_rng(1)
    lines = ["filename,label,comment"]
    for i in range(n):
        plot = "cdc_occupancy" if i % 2 else "fcal_occupancy"
        sub = root / ("a" if i % 3 else "b")
        sub.mkdir(parents=True, exist_ok=True)
        name = f"{plot}-{1000 + i:06d}_{i:04d}.png"
        PILImage.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(sub / name)
        label = "Bad" if i % 4 == 0 else "Good" if i % 5 else "NoData"
        if i < n - 2:  # the last two stay unlabeled
            lines.append(f"{sub.name}/{name},{label},x")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    (root / "README.txt").write_text("not an image")
    PILImage.new("RGB", (4, 4)).save(root / "not-following.png")
    return root


def counts(engine) -> tuple[int, int, int, int]:
    """How many images, image labels, plot types and labels the database holds."""
    with Session(engine) as s:
        return tuple(
            s.exec(select(func.count()).select_from(t)).one() for t in (Image, ImageLabel, PlotType, Label)
        )
