"""Admin service: the mask preview and mask edits (SQLite).

Every change needing the admin role, on both database backends: tests/integration/db/test_admin_service.py.
"""

from __future__ import annotations

from PIL import Image as PILImage

from hydra.db import session_scope
from hydra.db.queries import create_plot_type
from hydra.services import admin


def test_mask_preview_draws_rectangles(tmp_path, sqlite_engine):
    img = PILImage.new("RGB", (100, 50), "white")
    out = admin.mask_preview(img, [[0.0, 0.0, 0.5, 0.5]])
    assert out.size == (100, 50)
    assert out.getpixel((10, 10)) != (255, 255, 255)  # inside: tinted
    assert out.getpixel((80, 40)) == (255, 255, 255)  # outside: untouched
    with session_scope(sqlite_engine) as s:
        pt = create_plot_type("p", ["Good"], session=s)
        assert admin.recent_image_path(pt.id, session=s) is None


def test_mask_after_table_edits():
    original = [[0.0, 0.0, 0.5, 0.5], [0.6, 0.6, 0.9, 0.9]]
    edits = {
        "edited_rows": {"0": {"x1": 0.4}},
        "deleted_rows": [1],
        "added_rows": [{"x0": 0.1, "y0": 0.2, "x1": 0.3, "y1": 0.4}, {"x0": 0.5}],
    }
    assert admin.mask_after_edits(original, edits) == [[0.0, 0.0, 0.4, 0.5], [0.1, 0.2, 0.3, 0.4]]
    assert admin.mask_after_edits(original, None) == original
