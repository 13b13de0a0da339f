"""Ingest on SQLite and MariaDB: labels, idempotency, and bad input that writes nothing."""

from __future__ import annotations

import pytest
from PIL import Image as PILImage
from sqlmodel import Session, func, select

from hydra.db.models import Image, ImageLabel, Label, PlotType
from hydra.services.ingest import IngestError, ingest
from tests.helpers.ingest import counts, make_folder


def test_ingest_with_labels_and_twice(engine, tmp_path):
    root = make_folder(tmp_path / "plots")
    report = ingest(root, engine=engine, labels_csv=root / "labels.csv")
    assert (report.added, report.labeled) == (12, 10)
    assert report.skipped == ["not-following.png"]
    assert sorted(report.created_plot_types) == ["cdc_occupancy", "fcal_occupancy"]
    with Session(engine) as s:
        labels = {(pt, lb) for pt, lb in s.exec(select(PlotType.name, Label.name).join(Label))}
        assert ("fcal_occupancy", "Bad") in labels and ("cdc_occupancy", "Good") in labels
        # the configured share of fine images is kept to watch the model, as for `hydra plot-type add`
        assert set(s.exec(select(PlotType.collect_percent)).all()) == {2.0}
        img = s.exec(select(Image).where(Image.filename == "fcal_occupancy-001000_0000.png")).one()
        assert (img.run, img.chunk) == (1000, 0)
        assert s.get(Label, img.label_id).name == "Bad"
        assert s.exec(select(func.count()).select_from(Image).where(Image.label_id.is_(None))).one() == 2
    before = counts(engine)
    again = ingest(root, engine=engine, labels_csv=root / "labels.csv")
    assert (again.added, again.already_known, again.relabeled) == (0, 12, 0)
    assert counts(engine) == before


def test_relabel_keeps_history(engine, tmp_path):
    root = make_folder(tmp_path / "plots", n=4)
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
    root = make_folder(tmp_path / "plots")
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
    root = make_folder(tmp_path / "plots")
    (root / "bad.csv").write_text(csv_text)
    before = counts(engine)
    with pytest.raises(IngestError) as err:
        ingest(root, engine=engine, labels_csv=root / "bad.csv")
    assert message in str(err.value)
    assert counts(engine) == before


def test_corrupt_image_aborts_whole_run(engine, tmp_path):
    root = make_folder(tmp_path / "plots")
    (root / "a" / "cdc_occupancy-000001_0001.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(IngestError, match="cdc_occupancy-000001_0001.png: not a readable image"):
        ingest(root, engine=engine, labels_csv=root / "labels.csv")
    assert counts(engine) == (0, 0, 0, 0)


def test_missing_csv_and_dir(engine, tmp_path):
    with pytest.raises(IngestError, match="is not a directory"):
        ingest(tmp_path / "nope", engine=engine)
    root = make_folder(tmp_path / "plots", n=2)
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

    root = make_folder(tmp_path / "plots")
    big = png_declaring(9500, 9500)
    (root / "a" / "fcal_occupancy-000001_0001.png").write_bytes(big)
    with pytest.raises(IngestError, match=r"fcal_occupancy-000001_0001.png: declared size 9500x9500 is over"):
        ingest(root, engine=engine, labels_csv=root / "labels.csv")
    assert counts(engine) == (0, 0, 0, 0)
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
    assert counts(engine) == (0, 0, 0, 0)


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
    root = make_folder(tmp_path / "plots")
    outside = tmp_path / "outside"
    outside.mkdir()
    PILImage.new("RGB", (4, 4)).save(outside / "fcal_occupancy-000001.png")
    PILImage.new("RGB", (4, 4)).save(root / "b" / "fcal_occupancy-100000000000000000000000.png")
    row = row.format(outside=outside)
    (root / "bad.csv").write_text(f"filename,label\nb/fcal_occupancy-001000_0000.png,Good\n{row},Good\n")
    with pytest.raises(IngestError) as err:
        ingest(root, engine=engine, labels_csv=root / "bad.csv")
    assert "bad.csv line 3: " in str(err.value) and message in str(err.value)
    assert counts(engine) == (0, 0, 0, 0)
