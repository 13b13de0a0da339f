"""Ingest on SQLite and MariaDB: labels, idempotency, and bad input that writes nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlmodel import Session, func, select

from hydra.db.models import Image, ImageLabel, Label, PlotType
from hydra.ingest import IngestError, ingest


def _make_folder(root: Path, n: int = 12) -> Path:
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


def _counts(engine) -> tuple[int, int, int, int]:
    with Session(engine) as s:
        return tuple(
            s.exec(select(func.count()).select_from(t)).one() for t in (Image, ImageLabel, PlotType, Label)
        )


def test_ingest_with_labels_and_twice(engine, tmp_path):
    root = _make_folder(tmp_path / "plots")
    report = ingest(root, engine=engine, labels_csv=root / "labels.csv")
    assert (report.added, report.labeled) == (12, 10)
    assert report.skipped == ["not-following.png"]
    assert sorted(report.created_plot_types) == ["cdc_occupancy", "fcal_occupancy"]
    with Session(engine) as s:
        labels = {(pt, lb) for pt, lb in s.exec(select(PlotType.name, Label.name).join(Label))}
        assert ("fcal_occupancy", "Bad") in labels and ("cdc_occupancy", "Good") in labels
        img = s.exec(select(Image).where(Image.filename == "fcal_occupancy-001000_0000.png")).one()
        assert (img.run, img.chunk) == (1000, 0)
        assert s.get(Label, img.label_id).name == "Bad"
        assert s.exec(select(func.count()).select_from(Image).where(Image.label_id.is_(None))).one() == 2
    before = _counts(engine)
    again = ingest(root, engine=engine, labels_csv=root / "labels.csv")
    assert (again.added, again.already_known, again.relabeled) == (0, 12, 0)
    assert _counts(engine) == before


def test_relabel_keeps_history(engine, tmp_path):
    root = _make_folder(tmp_path / "plots", n=4)
    ingest(root, engine=engine, labels_csv=root / "labels.csv")
    text = (root / "labels.csv").read_text().replace(",Bad,", ",Good,")
    (root / "labels.csv").write_text(text)
    report = ingest(root, engine=engine, labels_csv=root / "labels.csv")
    assert report.relabeled == 1
    with Session(engine) as s:
        img = s.exec(select(Image).where(Image.filename == "fcal_occupancy-001000_0000.png")).one()
        history = s.exec(select(ImageLabel).where(ImageLabel.image_id == img.id)).all()
        assert len(history) == 2


def test_plot_type_filter(engine, tmp_path):
    root = _make_folder(tmp_path / "plots")
    report = ingest(root, engine=engine, plot_type="cdc_occupancy")
    assert report.added == 6 and report.labeled == 0
    with pytest.raises(IngestError, match="no image of plot type 'nope'"):
        ingest(root, engine=engine, plot_type="nope")


@pytest.mark.parametrize(
    ("csv_text", "message"),
    [
        ("filename,lbl\nx.png,Good\n", "missing column(s) label"),
        ("filename,label\nb/fcal_occupancy-001000_0000.png,\n", "line 2: empty label"),
        (
            "filename,label\nb/fcal_occupancy-001000_0000.png,Good\nnot-following.png,Good\n",
            "line 3: file name",
        ),
        (
            "filename,label\nb/cdc_occupancy-009999_0001.png,Good\n",
            "line 2: file 'b/cdc_occupancy-009999_0001.png' does not exist",
        ),
        (
            "filename,label\nb/fcal_occupancy-001000_0000.png,Good\nb/fcal_occupancy-001000_0000.png,Bad\n",
            "line 3: duplicate filename 'b/fcal_occupancy-001000_0000.png' (first on line 2)",
        ),
        ("filename,label\nb/fcal_occupancy-001000_0000.png,Go;od\n", "line 2: label 'Go;od'"),
    ],
)
def test_bad_csv_writes_nothing(engine, tmp_path, csv_text, message):
    root = _make_folder(tmp_path / "plots")
    (root / "bad.csv").write_text(csv_text)
    before = _counts(engine)
    with pytest.raises(IngestError) as err:
        ingest(root, engine=engine, labels_csv=root / "bad.csv")
    assert message in str(err.value)
    assert _counts(engine) == before


def test_corrupt_image_aborts_whole_run(engine, tmp_path):
    root = _make_folder(tmp_path / "plots")
    (root / "a" / "cdc_occupancy-000001_0001.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(IngestError, match="cdc_occupancy-000001_0001.png: not a readable image"):
        ingest(root, engine=engine, labels_csv=root / "labels.csv")
    assert _counts(engine) == (0, 0, 0, 0)


def test_missing_csv_and_dir(engine, tmp_path):
    with pytest.raises(IngestError, match="is not a directory"):
        ingest(tmp_path / "nope", engine=engine)
    root = _make_folder(tmp_path / "plots", n=2)
    with pytest.raises(IngestError, match="does not exist"):
        ingest(root, engine=engine, labels_csv=root / "nope.csv")
