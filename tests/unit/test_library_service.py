"""Library service: the Training report's heat map, computed once and cached.

Model table, confusion cells, disagreements and thresholds on both database
backends: tests/integration/db/test_library_service.py.
"""

from __future__ import annotations

import pytest

from hydra.services import library


def test_report_heatmap_is_computed_once_and_cached(tmp_path):
    from PIL import Image as PILImage

    from hydra.heads import create_head
    from hydra.inference import ServingModel

    head = create_head(
        "classifier", labels=["Good", "Bad"], input_size=(32, 40), backbone="mobilenetv3_small_050"
    )
    head.save(tmp_path / "model")
    loaded = ServingModel.from_dir(tmp_path / "model")
    src = tmp_path / "plot.png"
    PILImage.new("RGB", (80, 60), "white").save(src)
    cache = tmp_path / "cache" / "7.png"
    out = library.report_heatmap(loaded, src, "Bad", cache, mask=[[0, 0, 0.5, 0.5]])
    assert out == cache and cache.is_file()
    with PILImage.open(cache) as img:
        assert img.size == (80, 60)  # drawn on the original image, not the model input
    stamp = cache.stat().st_mtime_ns
    assert library.report_heatmap(loaded, src, "Bad", cache) == cache
    assert cache.stat().st_mtime_ns == stamp  # served from the cache
    with pytest.raises(library.LibraryError, match="not one of the model's labels"):
        library.report_heatmap(loaded, src, "Cosmic", tmp_path / "other.png")
