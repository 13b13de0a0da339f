"""The Feeder's decode processes: right pixels, errors as values, deaths survived, no shared memory left.

Real worker processes (forkserver) and real POSIX shared memory under /dev/shm.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hydra.serve.decode_pool import SHM_PREFIX, DecodeJob, DecodePool, decode_file

pytestmark = pytest.mark.slow

SHM = Path("/dev/shm")


def _shm_names(prefix: str) -> list[str]:
    return sorted(p.name for p in SHM.iterdir() if p.name.startswith(prefix)) if SHM.is_dir() else []


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie that no init reaped counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _collect_all(pool: DecodePool, n: int, timeout: float = 60.0) -> dict:
    got: dict = {}
    deadline = time.monotonic() + timeout
    while len(got) < n:
        assert time.monotonic() < deadline, f"only {len(got)} of {n} results in {timeout} s"
        for tag, res in pool.collect(timeout=0.5):
            got[tag] = res
    return got


def _write(folder: Path, name: str, img: Image.Image, fmt: str = "PNG") -> str:
    path = folder / name
    buf = io.BytesIO()
    img.save(buf, fmt)
    path.write_bytes(buf.getvalue())
    return str(path)


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(5)
    noise = Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8))
    good = {f"good-{i}.png": _write(tmp_path, f"good-{i}.png", noise.rotate(i * 7)) for i in range(6)}
    good["good.jpg"] = _write(tmp_path, "good.jpg", noise, "JPEG")
    good["grey.png"] = _write(tmp_path, "grey.png", noise.convert("L"))
    png = Path(good["good-0.png"]).read_bytes()
    bad = {
        "empty.png": b"",
        "text.png": b"not an image at all" * 10,
        "cut.png": png[: len(png) // 2],
    }
    for name, data in bad.items():
        (tmp_path / name).write_bytes(data)
    return tmp_path, good, {n: str(tmp_path / n) for n in bad}


def test_results_match_the_in_process_decode_and_bad_files_are_values(files):
    folder, good, bad = files
    jobs = {n: DecodeJob(p, size=(30, 40)) for n, p in {**good, **bad}.items()}
    jobs["gone.png"] = DecodeJob(str(folder / "gone.png"), size=(30, 40))
    jobs["folder"] = DecodeJob(str(folder), size=(30, 40))  # unreadable as a file: no fault of an image
    jobs["decode-only.png"] = DecodeJob(good["good-1.png"])
    jobs["grey-1ch.png"] = DecodeJob(
        good["grey.png"], size=(30, 40), channels=1, mask=((0.0, 0.0, 0.5, 1.0),)
    )
    with DecodePool(2) as pool:
        for name, job in jobs.items():
            pool.submit(job, tag=name)
        got = _collect_all(pool, len(jobs))
        assert len(pool) == 0
    for name in good:
        ref = decode_file(jobs[name])
        assert got[name].status == "ok" and ref.status == "ok", name
        assert got[name].pixels.shape == (30, 40, 3)
        assert np.array_equal(got[name].pixels, ref.pixels), name
        assert (got[name].digest, got[name].key, got[name].image_size) == (ref.digest, ref.key, (160, 120))
    assert got["grey-1ch.png"].pixels.shape == (30, 40, 1)
    assert np.array_equal(got["grey-1ch.png"].pixels, decode_file(jobs["grey-1ch.png"]).pixels)
    assert got["decode-only.png"].status == "ok" and got["decode-only.png"].pixels is None
    assert {n: (got[n].status, got[n].kind) for n in bad} == {
        "empty.png": ("error", "empty"),
        "text.png": ("error", "not_image"),
        "cut.png": ("error", "truncated"),
    }
    assert got["cut.png"].key and "cut.png" in got["cut.png"].message
    assert got["gone.png"].status == "missing"
    assert got["folder"].status == "failed" and "IsADirectoryError" in got["folder"].message


def test_a_larger_model_input_grows_its_slot(files):
    _, good, _ = files
    with DecodePool(1, slot_bytes=100) as pool:
        before = set(pool.block_names())
        pool.submit(DecodeJob(good["good-0.png"], size=(90, 120)), tag="big")
        res = _collect_all(pool, 1)["big"]
        assert res.status == "ok" and res.pixels.shape == (90, 120, 3)
        assert np.array_equal(res.pixels, decode_file(DecodeJob(good["good-0.png"], size=(90, 120))).pixels)
        grown = set(pool.block_names()) - before
        assert len(grown) == 1
        assert _shm_names(pool.prefix) == sorted(pool.block_names())  # the replaced block is unlinked


def test_a_killed_worker_is_replaced_and_its_file_is_not_lost(files):
    _, good, _ = files
    with DecodePool(1) as pool:
        pool.submit(DecodeJob(good["good-0.png"], size=(30, 40)), tag="warm")
        assert _collect_all(pool, 1)["warm"].status == "ok"
        (pid,) = pool.pids()
        os.kill(pid, signal.SIGSTOP)  # it holds the next job but cannot start it ...
        pool.submit(DecodeJob(good["good-1.png"], size=(30, 40)), tag="victim")
        pool.submit(DecodeJob(good["good-2.png"], size=(30, 40)), tag="queued")
        os.kill(pid, signal.SIGKILL)  # ... and dies with both
        got = _collect_all(pool, 2)
        assert got["victim"].status == "ok" and got["queued"].status == "ok"
        ref = decode_file(DecodeJob(good["good-1.png"], size=(30, 40)))
        assert np.array_equal(got["victim"].pixels, ref.pixels)
        assert pool.replaced == 1 and pool.crashed == 0
        assert pool.pids() and pool.pids()[0] != pid
        pool.submit(DecodeJob(good["good-3.png"], size=(30, 40)), tag="after")
        assert _collect_all(pool, 1)["after"].status == "ok"


def test_a_worker_that_dies_holding_several_files_blames_none_and_sends_each_again_alone(files):
    """Answers come one message per batch, so a death with several files in hand names no culprit."""
    _, good, _ = files
    with DecodePool(1, depth=4) as pool:
        pool.submit(DecodeJob(good["good-0.png"], size=(30, 40)), tag="warm")
        assert _collect_all(pool, 1)["warm"].status == "ok"
        (pid,) = pool.pids()
        os.kill(pid, signal.SIGSTOP)
        names = ["good-1.png", "good-2.png", "good-3.png"]
        pool.submit_many([(DecodeJob(good[n], size=(30, 40)), n) for n in names])  # one message
        assert len(pool._workers[0].tasks) == 3
        os.kill(pid, signal.SIGKILL)
        got, most_in_hand = {}, 0
        deadline = time.monotonic() + 60
        while len(got) < 3:
            assert time.monotonic() < deadline, f"only {sorted(got)} back"
            got.update(pool.collect(timeout=0.5))
            most_in_hand = max(most_in_hand, *(len(w.tasks) for w in pool._workers))
        assert all(got[n].status == "ok" for n in names)
        assert most_in_hand == 1  # each went again alone, where a second death would name its file
        assert pool.replaced == 1 and pool.crashed == 0
        pool.submit_many([(DecodeJob(good[n], size=(30, 40)), n) for n in names])  # batches again after
        assert len(pool._workers[0].tasks) == 3
        assert all(r.status == "ok" for r in _collect_all(pool, 3).values())


def test_a_file_that_kills_its_decoder_twice_is_given_up_and_the_pool_goes_on(tmp_path, files):
    """A decode that outlives ``task_timeout_s`` gets its worker killed: twice is a ``decoder_crash``."""
    _, good, _ = files
    huge = _write(tmp_path, "huge.png", Image.new("RGB", (6000, 6000), (255, 255, 255)))  # 36 Mpx: >= 0.1 s
    with DecodePool(1, task_timeout_s=0.02) as pool:
        pool.submit(DecodeJob(huge, size=(299, 299)), tag="huge")
        res = _collect_all(pool, 1)["huge"]
        assert (res.status, res.kind) == ("crashed", "decoder_crash")
        assert "huge.png" in res.message and "twice" in res.message
        assert pool.replaced == 2 and pool.crashed == 1
        pool.task_timeout_s = 60.0
        pool.submit(DecodeJob(good["good-0.png"], size=(30, 40)), tag="next")
        assert _collect_all(pool, 1)["next"].status == "ok"


def test_close_unlinks_every_block_and_stops_the_workers(files):
    _, good, _ = files
    pool = DecodePool(2)
    for i in range(8):
        pool.submit(DecodeJob(good[f"good-{i % 6}.png"], size=(30, 40)), tag=i)
    _collect_all(pool, 8)
    pool.submit(DecodeJob(good["good-0.png"], size=(30, 40)), tag="left")  # one not collected
    names, pids = pool.block_names(), pool.pids()
    assert len(names) == 2 * pool.depth and _shm_names(pool.prefix) == sorted(names)
    pool.close()
    assert _shm_names(pool.prefix) == []
    assert not any(_alive(p) for p in pids)
    pool.close()  # twice is harmless


def test_a_killed_parent_leaves_no_shared_memory_and_no_worker(tmp_path, files):
    _, good, _ = files
    script = textwrap.dedent(
        f"""
        import sys, time
        from hydra.serve.decode_pool import DecodeJob, DecodePool
        if __name__ == "__main__":
            pool = DecodePool(2, depth=2)
            pool.submit(DecodeJob({good["good-0.png"]!r}, size=(30, 40)))
            while not pool.collect(timeout=1.0):
                pass
            print(pool.prefix, *pool.pids(), flush=True)
            time.sleep(60)
        """
    )
    (tmp_path / "parent.py").write_text(script)
    proc = subprocess.Popen(
        [sys.executable, str(tmp_path / "parent.py")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline().split()
        assert line, proc.stderr.read()
        prefix, pids = line[0], [int(p) for p in line[1:]]
        assert prefix.startswith(SHM_PREFIX) and len(_shm_names(prefix)) == 4
        proc.kill()
        proc.wait(10)
        deadline = time.monotonic() + 20
        while (_shm_names(prefix) or any(map(_alive, pids))) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _shm_names(prefix) == []
        assert not any(map(_alive, pids))
    finally:
        if proc.poll() is None:
            proc.kill()


def test_the_decode_benchmark_runs_and_reports_pixels_equal(capsys):
    import importlib.util

    path = Path(__file__).resolve().parents[3] / "benchmarks" / "bench_decode.py"
    spec = importlib.util.spec_from_file_location("bench_decode", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    report = bench.main(["--quick", "--images", "4", "--size", "320x240", "--format", "both", "--procs", "1"])
    for fmt in ("png", "jpeg"):
        entry = report["formats"][fmt]
        rows = {k: v for k, v in entry["decoders"].items() if "skipped" not in v}
        assert {"pillow", "hydra", "hydra_pillow_only"} <= set(rows)
        assert all(r.get("decode_max_diff", 0) == 0 for r in rows.values())
        assert rows["hydra"]["prepare_299x299_max_diff"] == 0
        assert [p["processes"] for p in entry["scaling"]["pools"]][0] == 1
        assert all(p["per_s"] > 0 for p in entry["scaling"]["pools"])
