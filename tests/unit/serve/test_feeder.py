"""The Feeder's judgement of one file, and the duration syntax of ``hydra results``."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from PIL import Image

from hydra.cli.serve import parse_duration
from hydra.config import load_config
from hydra.db import session_scope
from hydra.db.queries import create_plot_type
from hydra.serve.catalog import ModelCatalog
from hydra.serve.feeder import deadline_s, examine
from hydra.serve.messages import ErrorNotice, InferenceOrder, Registration
from tests.helpers.models import add_active_model


@pytest.fixture
def world(sqlite_engine, tmp_path):
    cfg = load_config(None, home=tmp_path / "home", serve={"max_image_pixels": 10_000_000})
    cfg.ensure_dirs()
    with session_scope(sqlite_engine) as s:
        pt, _ = add_active_model("fcal", (12, 16), session=s)
        pt.mask = [[0.0, 0.0, 0.5, 1.0]]
        create_plot_type("cdc", ["Good", "Bad"], session=s)
    catalog = ModelCatalog(sqlite_engine, refresh_s=60)
    catalog.refresh(force=True)
    return cfg, catalog


def write(cfg, name: str, data: bytes | None = None):
    path = cfg.input_dir / name
    if data is None:
        Image.new("RGB", (64, 48), (0, 0, 0)).save(path)
    else:
        path.write_bytes(data)
    return str(path)


def test_a_good_image_becomes_a_masked_resized_order(world):
    cfg, catalog = world
    import io

    img = Image.new("RGB", (64, 48), (0, 0, 0))  # a dark canvas with bright content in the left half
    img.paste((255, 255, 255), (8, 8, 24, 40))
    data = io.BytesIO()
    img.save(data, format="PNG")
    msg = examine(write(cfg, "fcal-000012_0003.png", data.getvalue()), cfg, catalog, seen=1.0)
    assert isinstance(msg, InferenceOrder)
    assert msg.pixels.shape == (12, 16, 3) and msg.pixels.dtype == np.uint8
    assert (msg.image_width, msg.image_height) == (64, 48)  # the file's own size, for the heat map
    assert (msg.pixels == 0).all()  # left half masked with the canvas colour, the right half empty
    assert (msg.run, msg.chunk, msg.plot_type) == (12, 3, "fcal")
    assert {"file", "seen", "feed0", "feed1"} <= set(msg.times)


@pytest.mark.parametrize(
    "name,data,kind",
    [
        ("fcal-000001_0001.png", b"", "empty"),
        ("fcal-000001_0002.png", b"not an image at all" * 10, "not_image"),
        ("no-convention.png", None, "bad_name"),
    ],
)
def test_bad_inputs_become_error_notices(world, name, data, kind):
    cfg, catalog = world
    msg = examine(write(cfg, name, data), cfg, catalog, seen=1.0)
    assert isinstance(msg, ErrorNotice) and msg.kind == kind and name in msg.message


def test_truncated_and_bomb_images(world, tmp_path):
    cfg, catalog = world
    src = tmp_path / "x.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (100, 100, 3), dtype=np.uint8)).save(src)
    data = src.read_bytes()
    msg = examine(write(cfg, "fcal-000001_0003.png", data[: len(data) // 2]), cfg, catalog, seen=1.0)
    assert isinstance(msg, ErrorNotice) and msg.kind == "truncated"
    Image.new("1", (5000, 5000)).save(src, optimize=True)
    msg = examine(write(cfg, "fcal-000001_0004.png", src.read_bytes()), cfg, catalog, seen=1.0)
    assert isinstance(msg, ErrorNotice) and msg.kind == "too_large" and "5000x5000" in msg.message


def test_no_model_is_registered_and_unknown_plot_type_only_when_onboarding(world):
    cfg, catalog = world
    msg = examine(write(cfg, "cdc-000001_0001.png"), cfg, catalog, seen=1.0)
    assert isinstance(msg, Registration) and msg.filename == "cdc-000001_0001.png"
    msg = examine(write(cfg, "FCAL-000001_0001.png"), cfg, catalog, seen=1.0)  # a wrong-case name
    assert isinstance(msg, ErrorNotice) and msg.kind == "unknown_plot_type"
    assert "unknown plot type 'FCAL' (did you mean 'fcal'?)" in msg.message
    onboarding = cfg.model_copy(
        update={"serve": cfg.serve.model_copy(update={"onboard_new_plot_types": True})}
    )
    msg = examine(write(cfg, "brand_new-000001_0001.png"), onboarding, catalog, seen=1.0)
    assert isinstance(msg, Registration) and msg.filename == "brand_new-000001_0001.png"


def test_a_plot_type_added_since_the_last_read_is_known(world, sqlite_engine):
    cfg, catalog = world
    with session_scope(sqlite_engine) as s:
        create_plot_type("late", ["Good", "Bad"], session=s)
    msg = examine(write(cfg, "late-000001_0001.png"), cfg, catalog, seen=1.0)
    assert isinstance(msg, Registration)


def test_vanished_file_is_nothing(world):
    cfg, catalog = world
    assert examine(str(cfg.input_dir / "fcal-000001_0009.png"), cfg, catalog, seen=1.0) is None


def test_deadline_doubles_per_attempt_up_to_eight_times(world):
    cfg, _ = world
    base = cfg.serve.order_deadline_s
    assert [deadline_s(cfg, a) / base for a in (1, 2, 3, 4, 9)] == [1, 2, 4, 8, 8]


def test_durations():
    assert parse_duration("90s") == timedelta(seconds=90)
    assert parse_duration("1h") == timedelta(hours=1)
    assert parse_duration("2d") == timedelta(days=2)
    assert parse_duration("15") == timedelta(seconds=15)
    with pytest.raises(ValueError, match="expected e.g. 30s"):
        parse_duration("soon")
