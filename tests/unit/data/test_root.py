"""ROOT histograms -> naming-convention PNGs, on real files written by uproot."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

uproot = pytest.importorskip("uproot")
pytest.importorskip("mplhep")

from uproot.writing.identify import to_TAxis, to_TH1x, to_TH2x  # noqa: E402

from hydra.data.naming import parse_name  # noqa: E402
from hydra.data.root import (  # noqa: E402
    RootError,
    read_histograms,
    render_file,
    render_histogram,
    run_and_chunk_from_name,
    watch,
)


def _th1f(name: str, title: str, counts: np.ndarray, lo: float, hi: float) -> object:
    """A TH1F (float32 contents, with under/overflow bins), as ROOT stores it."""
    data = np.concatenate([[0], counts, [0]]).astype(np.float32)
    n = float(counts.sum())
    axis = to_TAxis("xaxis", "", len(counts), lo, hi)
    return to_TH1x(name, title, data, n, n, n, 0.0, 0.0, data.astype(np.float64), axis)


def _th2f(name: str, title: str, counts: np.ndarray) -> object:
    nx, ny = counts.shape
    padded = np.zeros((nx + 2, ny + 2), np.float32)
    padded[1:-1, 1:-1] = counts
    data = padded.T.reshape(-1)  # ROOT's bin order: x runs fastest
    n = float(counts.sum())
    xa = to_TAxis("xaxis", "channel", nx, 0.0, float(nx))
    ya = to_TAxis("yaxis", "layer", ny, 0.0, float(ny))
    return to_TH2x(name, title, data, n, n, n, 0, 0, 0, 0, 0, data.astype(np.float64), xa, ya)


def _occupancy(rng: np.random.Generator, dead: int | None = None) -> np.ndarray:
    counts = rng.poisson(200, size=48).astype(np.float64)
    if dead is not None:
        counts[dead] = 0
    return counts


@pytest.fixture
def root_file(tmp_path: Path) -> Path:
    rng = np.random.default_rng(7)
    path = tmp_path / "hd_root_041230_003.root"
    with uproot.recreate(path) as f:
        f["fcal_occ"] = _th1f("fcal_occ", "FCAL occupancy;channel;hits", _occupancy(rng), 0.0, 48.0)
        f["timing"] = np.histogram(rng.normal(0, 5, 5000), bins=60, range=(-30, 30))
        f["cdc/map"] = _th2f("map", "CDC occupancy", rng.poisson(30, size=(24, 16)).astype(np.float64))
        f["bcal_map"] = np.histogram2d(rng.normal(size=4000), rng.normal(size=4000), bins=20)
    return path


def test_root_file_holds_the_four_classes(root_file: Path) -> None:
    with uproot.open(root_file) as f:
        classes = f.classnames(recursive=True, cycle=False)
    assert {classes[k] for k in ("fcal_occ", "timing", "cdc/map", "bcal_map")} == {
        "TH1F",
        "TH1D",
        "TH2F",
        "TH2D",
    }


def test_renders_every_histogram_with_the_naming_convention(root_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "input"
    plots = render_file(root_file, out)
    assert {p.histogram for p in plots} == {"fcal_occ", "timing", "cdc/map", "bcal_map"}
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(p.path.name for p in plots)  # no temporary files left behind
    parsed = {parse_name(n) for n in names}
    assert {p.plot_type for p in parsed} == {"fcal_occ", "timing", "cdc_map", "bcal_map"}
    assert {(p.run, p.chunk) for p in parsed} == {(41230, 3)}
    for name in names:
        with Image.open(out / name) as img:
            assert img.size == (800, 600)
            assert img.format == "PNG"


def test_axis_labels_come_from_the_histogram(root_file: Path) -> None:
    hists = {h.path: h for h in read_histograms(root_file)}
    assert hists["fcal_occ"].title == "FCAL occupancy"
    assert hists["fcal_occ"].labels == ("channel", "hits")
    assert hists["cdc/map"].labels[:2] == ("channel", "layer")
    assert hists["cdc/map"].values.shape == (24, 16)
    assert hists["fcal_occ"].values.shape == (48,)


def test_hist_glob_recurses_into_directories(root_file: Path, tmp_path: Path) -> None:
    plots = render_file(root_file, tmp_path / "o", pattern="cdc/*", run=7, chunk=None)
    assert [(p.plot_type, p.path.name) for p in plots] == [("cdc_map", "cdc_map-000007.png")]


def test_a_dead_bin_changes_the_image_and_the_style_is_fixed(tmp_path: Path) -> None:
    def render(dead: int | None, name: str) -> np.ndarray:
        path = tmp_path / f"{name}_100.root"
        with uproot.recreate(path) as f:
            f["occ"] = _th1f(
                "occ", "occupancy;channel;hits", _occupancy(np.random.default_rng(3), dead), 0, 48
            )
        (plot,) = render_file(path, tmp_path / name)
        return np.asarray(Image.open(plot.path).convert("L"), dtype=np.int16)

    good, again, dead = render(None, "a"), render(None, "b"), render(20, "c")
    assert np.array_equal(good, again)  # same content, same pixels
    changed = np.abs(good - dead) > 60
    assert changed.sum() > 500  # a whole bar's worth of pixels
    cols = np.nonzero(changed.any(axis=0))[0]
    assert cols.max() - cols.min() < 40  # ... and only where the dead channel is


def test_empty_2d_histogram_renders(tmp_path: Path) -> None:
    path = tmp_path / "run_55.root"
    with uproot.recreate(path) as f:
        f["empty"] = _th2f("empty", "nothing", np.zeros((4, 4)))
    (plot,) = render_file(path, tmp_path / "o")
    assert Image.open(plot.path).size == (800, 600)


def test_run_and_chunk_from_file_name() -> None:
    assert run_and_chunk_from_name("hd_root_041230_003.root") == (41230, 3)
    assert run_and_chunk_from_name("/x/mon12_run5123.root") == (5123, None)
    with pytest.raises(RootError, match=r"monitor\.root.*--run"):
        run_and_chunk_from_name("monitor.root")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"this is not a ROOT file at all " * 100, "not a readable ROOT file"),
        (None, "not a readable ROOT file"),  # truncated
    ],
)
def test_bad_files_get_a_message_naming_them(root_file: Path, tmp_path: Path, content, expected) -> None:
    bad = tmp_path / "broken_42.root"
    bad.write_bytes(content if content is not None else root_file.read_bytes()[:3000])
    with pytest.raises(RootError, match=expected) as info:
        render_file(bad, tmp_path / "o")
    assert "broken_42.root" in str(info.value)
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_no_matching_histogram_lists_what_the_file_has(root_file: Path, tmp_path: Path) -> None:
    with pytest.raises(
        RootError, match=r"hd_root_041230_003\.root: no TH1/TH2 histogram matches 'nope\*'.*fcal_occ"
    ):
        render_file(root_file, tmp_path / "o", pattern="nope*")


def test_missing_extra_says_how_to_install(monkeypatch: pytest.MonkeyPatch, root_file: Path) -> None:
    monkeypatch.setitem(sys.modules, "uproot", None)  # as if the extra were not installed
    with pytest.raises(RootError, match=r"pip install 'hydra-dqm\[root\]'"):
        read_histograms(root_file)


def test_cli_renders_good_files_and_reports_bad_ones(root_file: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from hydra.cli import app

    bad = tmp_path / "junk_9.root"
    bad.write_bytes(b"\0" * 1000)
    out = tmp_path / "png"
    result = CliRunner().invoke(app, ["render-root", str(bad), str(root_file), "--out", str(out), "--json"])
    assert result.exit_code == 1
    said = " ".join(result.output.split())  # the console wraps long lines
    assert "junk_9.root: not a readable ROOT file" in said
    assert "1 of 2 file(s) not rendered" in said
    assert len(list(out.glob("*.png"))) == 4


def test_watch_renders_files_once_complete(root_file: Path, tmp_path: Path) -> None:
    incoming, out = tmp_path / "incoming", tmp_path / "png"
    incoming.mkdir()
    stop = threading.Event()
    rendered: list[str] = []
    errors: list[str] = []
    thread = threading.Thread(
        target=watch,
        args=([incoming], out),
        kwargs={
            "pattern": "fcal*",
            "stop": stop,
            "on_render": lambda p: rendered.append(p.path.name),
            "on_error": lambda p, e: errors.append(str(e)),
        },
        daemon=True,
    )
    thread.start()
    try:
        time.sleep(0.3)  # let the observer start
        staged = tmp_path / "staged.tmp"
        staged.write_bytes(root_file.read_bytes())
        os.replace(staged, incoming / "mon_000777_002.root")  # renamed into place
        (incoming / "mon_000778.root").write_bytes(root_file.read_bytes())  # written in place
        (incoming / "notes.txt").write_text("ignored")
        deadline = time.monotonic() + 15
        while len(rendered) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()
    assert sorted(rendered) == ["fcal_occ-000777_0002.png", "fcal_occ-000778.png"]
    assert errors == []


def test_render_histogram_is_atomic(root_file: Path, tmp_path: Path) -> None:
    (hist,) = read_histograms(root_file, "timing")
    out = tmp_path / "out"
    out.mkdir()
    dest = out / "timing-000001.png"
    dest.write_bytes(b"old")
    render_histogram(hist, dest)
    assert dest.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # replaced whole
    assert [p.name for p in out.iterdir()] == ["timing-000001.png"]  # no temporary file left
