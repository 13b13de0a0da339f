"""Ingest on SQLite and MariaDB: labels, idempotency, and bad input that writes nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlmodel import Session, func, select

from hydra.db.models import Image, ImageLabel, Label, PlotType
from hydra.services.ingest import IngestError, ingest


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


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares ``width`` x ``height`` pixels (no pixel data needed to refuse it)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )


def test_refuses_what_serve_refuses(engine, tmp_path):
    """A 90-megapixel image passes neither ingest nor the Feeder's decode, with the same limit."""
    from hydra.config import HydraConfig
    from hydra.data.images import ImageError, decode_image

    root = _make_folder(tmp_path / "plots")
    big = png_declaring(9500, 9500)
    (root / "a" / "fcal_occupancy-000001_0001.png").write_bytes(big)
    with pytest.raises(IngestError, match=r"fcal_occupancy-000001_0001.png: declared size 9500x9500 is over"):
        ingest(root, engine=engine, labels_csv=root / "labels.csv")
    assert _counts(engine) == (0, 0, 0, 0)
    with pytest.raises(ImageError, match="declared size 9500x9500 is over the limit of 40000000"):
        decode_image(big, "x.png", HydraConfig().serve.max_image_pixels)
    # the limits are the deployment's: lowered, a 40x30 image is refused too; an empty file always
    (root / "a" / "fcal_occupancy-000001_0001.png").unlink()
    with pytest.raises(IngestError, match="over the limit of 1000 pixels"):
        ingest(root, engine=engine, max_pixels=1000)
    with pytest.raises(IngestError, match="over the limit of 100 bytes"):
        ingest(root, engine=engine, max_bytes=100)
    (root / "b" / "cdc_occupancy-000002.png").write_bytes(b"")
    with pytest.raises(IngestError, match=r"cdc_occupancy-000002.png: the file is empty"):
        ingest(root, engine=engine)
    assert _counts(engine) == (0, 0, 0, 0)


@pytest.mark.parametrize("suffix", ["png", "jpg"])
def test_truncated_images_are_refused_like_the_feeder_refuses_them(sqlite_engine, tmp_path, suffix):
    import io

    from hydra.data.images import ImageError, decode_image

    root = _make_folder(tmp_path / "plots", n=2)
    buf = io.BytesIO()
    noise = np.random.default_rng(3).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    PILImage.fromarray(noise).save(buf, "PNG" if suffix == "png" else "JPEG")
    cut = buf.getvalue()[: len(buf.getvalue()) // 2]
    (root / "a" / f"fcal_occupancy-000009.{suffix}").write_bytes(cut)
    with pytest.raises(ImageError):
        decode_image(cut, "x")
    with pytest.raises(IngestError, match=rf"fcal_occupancy-000009.{suffix}: .*(truncated|Truncated)"):
        ingest(root, engine=sqlite_engine)
    assert _counts(sqlite_engine) == (0, 0, 0, 0)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("../outside/fcal_occupancy-000001.png", "points outside the folder"),
        ("a/../../outside/fcal_occupancy-000001.png", "points outside the folder"),
        ("{outside}/fcal_occupancy-000001.png", "is an absolute path"),
        ("C:\\plots\\fcal_occupancy-000001.png", "is an absolute path"),
        (
            "b/fcal_occupancy-100000000000000000000000.png",
            "run number 100000000000000000000000 is out of range",
        ),
        ("b/..%2F..-000001.png", "file name"),
        ("labels.csv", "file name"),
    ],
)
def test_csv_rows_outside_or_out_of_range_are_refused(engine, tmp_path, row, message):
    root = _make_folder(tmp_path / "plots")
    outside = tmp_path / "outside"
    outside.mkdir()
    PILImage.new("RGB", (4, 4)).save(outside / "fcal_occupancy-000001.png")
    PILImage.new("RGB", (4, 4)).save(root / "b" / "fcal_occupancy-100000000000000000000000.png")
    row = row.format(outside=outside)
    (root / "bad.csv").write_text(f"filename,label\nb/fcal_occupancy-001000_0000.png,Good\n{row},Good\n")
    with pytest.raises(IngestError) as err:
        ingest(root, engine=engine, labels_csv=root / "bad.csv")
    assert "bad.csv line 3: " in str(err.value) and message in str(err.value)
    assert _counts(engine) == (0, 0, 0, 0)


def test_out_of_range_names_are_skipped_with_the_reason(sqlite_engine, tmp_path):
    root = _make_folder(tmp_path / "plots", n=2)
    PILImage.new("RGB", (4, 4)).save(root / "fcal_occupancy-100000000000000000000000.png")
    report = ingest(root, engine=sqlite_engine)
    assert report.added == 2
    assert "fcal_occupancy-100000000000000000000000.png" in report.skipped
    assert any("out of range" in why for why in report.skip_reasons)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"filename,label\nb/fcal_occupancy-001000_0000.png,Go\x00od\n", "characters a label cannot have"),
        (b"filename,label\nb/fcal_occupancy-001000_0000.png\x00,Good\n", "contains a NUL character"),
        (b"\xff\xfe\x00\x00binary", "not a UTF-8 text file"),
        (b"", "missing column(s) filename, label"),
        (b'filename,label\n"' + b"x" * 200_000 + b'",Good\n', "not a valid CSV file"),
    ],
)
def test_unreadable_csv_is_one_clear_error(sqlite_engine, tmp_path, content, message):
    root = _make_folder(tmp_path / "plots", n=2)
    (root / "bad.csv").write_bytes(content)
    with pytest.raises(IngestError, match="bad.csv") as err:
        ingest(root, engine=sqlite_engine, labels_csv=root / "bad.csv")
    assert message in str(err.value)
    with pytest.raises(IngestError, match="plot type name '../x' is not valid"):
        ingest(root, engine=sqlite_engine, plot_type="../x")
