"""Pieces of the stages that decide things: balancing, settling, keeping, alarms, conditions."""

from __future__ import annotations

import json
import os
import time

import pytest

from hydra.serve.alarms import AlarmTracker, DueAlarm, HookRunner
from hydra.serve.balancer import Workers, stamp
from hydra.serve.conditions import CommandCondition
from hydra.serve.messages import Report
from hydra.serve.store import keep_reason
from hydra.serve.watch import Settler, ignored, scan


def test_least_loaded_picks_the_worker_with_most_credit_and_waits_when_all_are_full():
    w = Workers("least_loaded")
    w.ready(b"a", 2)
    w.ready(b"b", 1)
    picks = []
    for _ in range(3):
        ident = w.pick()
        picks.append(ident)
        w.sent(ident)
    assert sorted(picks) == [b"a", b"a", b"b"]
    assert w.pick() is None
    w.ready(b"b", 1)
    assert w.pick() == b"b"


def test_round_robin_takes_turns_whatever_the_load():
    w = Workers("round_robin")
    for ident in (b"a", b"b", b"c"):
        w.ready(ident, 1)
    picks = []
    for _ in range(6):
        ident = w.pick()
        picks.append(ident)
        w.sent(ident)
    assert picks == [b"a", b"b", b"c", b"a", b"b", b"c"]
    w.forget(b"b")
    assert [w.pick() for _ in range(2)] == [b"a", b"c"]


def test_unknown_policy_names_the_known_ones():
    with pytest.raises(ValueError, match="least_loaded, round_robin"):
        Workers("random")


def test_balancer_stamps_its_time_and_drops_expired_orders():
    header = {"deadline": time.time() + 10, "times": {"feed1": 1.0}}
    frames = stamp([b"order", json.dumps(header).encode(), b"pixels"], t_in=5.0)
    out = json.loads(frames[1])
    assert out["times"]["bal_in"] == 5.0 and out["times"]["bal_out"] >= 5.0 and out["times"]["feed1"] == 1.0
    assert frames[2] == b"pixels"
    header["deadline"] = time.time() - 1
    assert stamp([b"order", json.dumps(header).encode(), b"pixels"], t_in=5.0) is None


def test_settler_waits_for_a_stable_file(tmp_path):
    s = Settler(settle_ms=200)
    f = tmp_path / "a.png"
    f.write_bytes(b"x")
    s.add(str(f))
    assert s.settled() == []  # an mtime of just now: maybe still being written
    f.write_bytes(b"xy")
    assert s.settled() == []
    time.sleep(0.3)
    assert s.settled() == [str(f)]
    old = tmp_path / "b.png"
    old.write_bytes(b"x")
    os.utime(old, (time.time() - 60, time.time() - 60))
    s.add(str(old))
    assert s.settled() == [str(old)]  # untouched for a minute: complete at once


def test_scan_skips_hidden_and_temporary_files(tmp_path):
    for name in ("b.png", ".a.png.123.tmp", "c.png.part", "a.png"):
        (tmp_path / name).write_bytes(b"x")
    assert [os.path.basename(p) for p in scan(tmp_path)] in (["b.png", "a.png"], ["a.png", "b.png"])
    assert ignored(".x") and ignored("y.tmp") and not ignored("y.png")


def report(**kw) -> Report:
    base = dict(
        order_id="o", path="p", filename="f", source_key="0" * 64, plot_type="t", plot_type_id=1, run=1,
        chunk=None, model_id=1, label="Good", weight=0.9, weights={}, confirmed=True, is_problem=False,
    )  # fmt: skip
    base.update(kw)
    return Report(**base)


def test_keep_reasons():
    assert keep_reason(report(is_problem=True), 0) == "problem"
    assert keep_reason(report(confirmed=False), 0) == "unconfirmed"
    assert keep_reason(report(), 0) is None
    assert keep_reason(report(), 100) == "collect"
    keys = [f"{i:08x}" + "0" * 56 for i in range(0, 2**32, 2**32 // 1000)]
    share = sum(keep_reason(report(source_key=k), 25) == "collect" for k in keys) / len(keys)
    assert 0.15 < share < 0.35
    assert keep_reason(report(source_key="f" * 64), 30) == keep_reason(report(source_key="f" * 64), 30)


def test_alarm_once_per_streak_and_snapshot_is_independent():
    t = AlarmTracker(3)
    seen = [t.observe(1, confirmed_problem=True) for _ in range(5)]
    assert seen == [False, False, True, False, False]
    copy = t.snapshot()
    assert t.observe(1, confirmed_problem=False) is False
    assert copy.streak[1] == 5 and t.streak[1] == 0
    assert [t.observe(2, confirmed_problem=True) for _ in range(3)][-1] is True


def test_condition_command_gates_and_an_unknown_value_does_not_hide_alarms(tmp_path):
    assert CommandCondition(None, 1.0).check().ok
    beam = tmp_path / "beam"
    beam.write_text("0.0")
    c = CommandCondition(f"cat {beam}", 5.0, "beam current", cache_s=0)
    cond = c.check()
    assert not cond.ok and cond.text == "beam current=0 < 5"
    beam.write_text("120.5\n")
    assert c.check().ok
    bad = CommandCondition("exit 3", 5.0, cache_s=0).check()
    assert bad.ok and "unknown" in bad.text


def test_hook_gets_the_alarm_in_its_environment(tmp_path):
    out = tmp_path / "hook.txt"
    hooks = HookRunner(f'echo "$HYDRA_ALARM_PLOT_TYPE $HYDRA_ALARM_RUN $HYDRA_ALARM_LABEL" > {out}')
    hooks.fire(DueAlarm(1, "fcal", 42, "Bad", "k", 1, "fcal: 3 confirmed Bad"), 9)
    hooks.close()
    assert out.read_text().strip() == "fcal 42 Bad"


def test_a_whole_png_renamed_in_is_complete_at_once(tmp_path):
    from PIL import Image

    s = Settler(settle_ms=10_000)
    png = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(png)
    half = tmp_path / "b.png"
    half.write_bytes(png.read_bytes()[:-20])
    s.add(str(png))
    s.add(str(half))
    assert s.settled() == [str(png)]
    assert str(half) in s


def test_a_worker_never_blocks_on_credit_a_balancer_does_not_take_and_owes_it_instead(tmp_path):
    import types

    import zmq

    from hydra.serve.predict import Worker

    ctx = zmq.Context()
    try:
        work = ctx.socket(zmq.DEALER)
        work.setsockopt(zmq.SNDHWM, 1)
        work.setsockopt(zmq.LINGER, 0)
        work.connect(f"ipc://{tmp_path}/nobody-binds-this")  # a hub that is gone or refused this worker
        worker = types.SimpleNamespace(refund=0, instance="me")
        t0 = time.monotonic()
        for _ in range(20):
            Worker._grant(worker, work, 3)
        assert time.monotonic() - t0 < 2.0  # a blocking send would hang here for ever
        assert 0 < worker.refund <= 20 * 3 and worker.refund % 3 == 0  # what could not go is owed
        work.close()
    finally:
        ctx.term()
