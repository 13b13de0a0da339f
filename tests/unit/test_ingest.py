"""Ingest refuses what the Feeder refuses, skips out-of-range names and names a bad CSV (SQLite).

Labels, idempotency and bad input on both database backends: tests/integration/db/test_ingest.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image as PILImage

from hydra.services.ingest import IngestError, ingest
from tests.helpers.ingest import counts, make_folder


@pytest.mark.parametrize("suffix", ["png", "jpg"])
def test_truncated_images_are_refused_like_the_feeder_refuses_them(sqlite_engine, tmp_path, suffix):
    import io

    from hydra.data.images import ImageError, decode_image

    root = make_folder(tmp_path / "plots", n=2)
    buf = io.BytesIO()
    noise = np.random.default_rng(3).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    PILImage.fromarray(noise).save(buf, "PNG" if suffix == "png" else "JPEG")
    cut = buf.getvalue()[: len(buf.getvalue()) // 2]
    (root / "a" / f"fcal_occupancy-000009.{suffix}").write_bytes(cut)
    with pytest.raises(ImageError):
        decode_image(cut, "x")
    with pytest.raises(IngestError, match=rf"fcal_occupancy-000009.{suffix}: .*(truncated|Truncated)"):
        ingest(root, engine=sqlite_engine)
    assert counts(sqlite_engine) == (0, 0, 0, 0)


def test_out_of_range_names_are_skipped_with_the_reason(sqlite_engine, tmp_path):
    root = make_folder(tmp_path / "plots", n=2)
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
    root = make_folder(tmp_path / "plots", n=2)
    (root / "bad.csv").write_bytes(content)
    with pytest.raises(IngestError, match="bad.csv") as err:
        ingest(root, engine=sqlite_engine, labels_csv=root / "bad.csv")
    assert message in str(err.value)
    with pytest.raises(IngestError, match="plot type name '../x' is not valid"):
        ingest(root, engine=sqlite_engine, plot_type="../x")
