"""Back-pressure: a Keeper whose backlog is full (database down) holds the Feeder until a commit empties it.

A real Keeper loop in a thread with its database unreachable, its real PUB control socket,
and a Feeder whose ``_take_done``/``_dispatch`` are driven here on a real SUB socket and
real decode processes.
"""

from __future__ import annotations

import logging
import socket
import threading
import time

import zmq
from PIL import Image

from hydra.serve import feeder as feeder_mod
from hydra.serve.decode_pool import DecodePool
from hydra.serve.feeder import Feeder, topics
from hydra.serve.keeper import BACKOFF_S, Keeper
from hydra.serve.messages import encode_message
from hydra.serve.stage import Addresses, StopFlag
from tests.helpers.serve import wait_until
from tests.helpers.store import make_report, make_store

DOWN = "mysql+pymysql://root@127.0.0.1:1/hydra"  # nothing listens on port 1: refused at once


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tcp_addresses() -> Addresses:
    return Addresses(*(f"tcp://127.0.0.1:{free_port()}" for _ in range(4)))


def subscriber(ctx: zmq.Context, addrs: Addresses, instance: str) -> zmq.Socket:
    sub = ctx.socket(zmq.SUB)
    sub.linger = 0
    sub.connect(addrs.control)
    for topic in topics(instance):
        sub.setsockopt(zmq.SUBSCRIBE, topic)
    return sub


def drive(feeder: Feeder, sub: zmq.Socket, until, timeout: float, what: str) -> None:
    """Let the Feeder take the Keeper's announcements until ``until()`` holds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        feeder._take_done(sub)
        if until():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def images(cfg, run: int, n: int) -> list[str]:
    paths = []
    for chunk in range(1, n + 1):
        path = cfg.input_dir / f"fcal-{run:06d}_{chunk:04d}.png"
        Image.new("RGB", (16, 12), (chunk, 0, 0)).save(path)
        paths.append(str(path))
    return paths


def test_a_full_keeper_holds_the_feeder_until_a_commit_empties_its_backlog(sqlite_engine, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="hydra.serve")
    cfg, store, (pt_id, model_id) = make_store(sqlite_engine, tmp_path)
    serve = {"keeper_max_pending": 2, "keeper_flush_ms": 20, "metrics_port": 0}
    cfg = cfg.model_copy(update={"serve": cfg.serve.model_copy(update=serve)})
    live = cfg.model_copy(update={"db_url": sqlite_engine.url.render_as_string(hide_password=False)})
    addrs = tcp_addresses()
    stop = StopFlag()
    keeper = Keeper(cfg.model_copy(update={"db_url": DOWN}), stop, instance="me")
    thread = threading.Thread(target=keeper.run, args=(addrs,), daemon=True)
    thread.start()
    feeder = Feeder(live, addrs, decoders=1, stop=StopFlag(), instance="me")
    feeder.catalog.refresh(force=True)
    hold = topics("me")[2]
    try:
        with zmq.Context() as ctx, DecodePool(1) as pool:
            sub, raw = subscriber(ctx, addrs, "me"), subscriber(ctx, addrs, "me")
            push = ctx.socket(zmq.PUSH)
            push.linger = 0
            push.connect(addrs.keeper)
            reports = [make_report(cfg, f"fcal-000007_000{i}.png", pt_id, model_id) for i in (1, 2, 3)]
            for i, r in enumerate(reports, 1):
                r.chunk, r.instance = i, "me"
                push.send_multipart(encode_message(r))
            assert not feeder.held() and feeder.gauges()["held"] == 0
            drive(feeder, sub, feeder.held, 15, "the Keeper's hold")
            assert feeder.gauges()["held"] == 1
            assert "the Keeper's backlog is full: sending paused" in caplog.text
            assert keeper.deferred == {reports[2].path}  # dropped, to be asked for again
            waiting = images(cfg, 8, 2)
            for path in waiting:
                feeder._candidate(path, complete=True)
            feeder._dispatch(pool)
            assert not feeder.in_flight and not feeder.busy and list(feeder.ready) == waiting
            # the hold is said again while the backlog stays full (a Feeder that connects late learns it),
            # every second even once the Keeper retries the database only every 5 s
            wait_until(lambda: keeper.failures >= len(BACKOFF_S), 15, 0.1, "the Keeper's longest backoff")
            while raw.poll(0):  # what was said before: only the window below counts
                raw.recv_multipart()
            said = []
            end = time.monotonic() + 2.5
            while time.monotonic() < end:
                if raw.poll(100):
                    said.append(raw.recv_multipart())
            assert said.count([hold, b"on"]) >= 2, said
            feeder._take_done(sub)
            feeder._dispatch(pool)
            assert not feeder.in_flight and feeder.held()

            keeper.store = store  # the database is back
            drive(feeder, sub, lambda: not feeder.held(), 15, "the release")
            assert "the Keeper takes results again: sending resumed" in caplog.text
            assert "no hold announced" not in caplog.text  # released by the Keeper, not by the time-out
            feeder._dispatch(pool)
            assert set(feeder.in_flight) == set(waiting) and not feeder.ready
            said = [f for f in iter(lambda: raw.recv_multipart() if raw.poll(1000) else None, None)]
            assert said[-1] == [hold, b"off"] and [topics("me")[1], reports[2].path.encode()] in said
            assert {f[1].decode() for f in said if f[0] == topics("me")[0]} == {r.path for r in reports[:2]}
    finally:
        stop.stopped = True
        thread.join(timeout=30)
    assert not thread.is_alive()


def test_a_hold_ends_by_itself_and_a_garbled_one_is_dropped(sqlite_engine, tmp_path, caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger="hydra.serve")
    cfg, _, _ = make_store(sqlite_engine, tmp_path)
    live = cfg.model_copy(update={"db_url": sqlite_engine.url.render_as_string(hide_password=False)})
    monkeypatch.setattr(feeder_mod, "HOLD_S", 0.5)
    addrs = tcp_addresses()
    feeder = Feeder(live, addrs, decoders=1, stop=StopFlag(), instance="me")
    hold = topics("me")[2]
    with zmq.Context() as ctx, ctx.socket(zmq.PUB) as pub:
        pub.linger = 0
        pub.bind(addrs.control)
        sub = subscriber(ctx, addrs, "me")
        time.sleep(0.3)  # the subscription reaches the publisher
        for frames in ([hold, b"maybe"], [hold], [hold, b"on", b"x"], [hold, b"on"]):
            pub.send_multipart(frames)
        drive(feeder, sub, feeder.held, 5, "the hold")
        assert feeder.dropped.counts["malformed"] == 3
        pub.send_multipart([topics("other")[2], b"on"])  # another instance's Keeper: not heard
        time.sleep(0.6)
        feeder._take_done(sub)
        assert not feeder.held()
        assert "the Keeper takes results again: sending resumed (no hold announced" in caplog.text
        assert caplog.text.count("sending paused") == 1


def test_a_release_without_a_hold_is_quiet(sqlite_engine, tmp_path, caplog):
    cfg, _, _ = make_store(sqlite_engine, tmp_path)
    live = cfg.model_copy(update={"db_url": sqlite_engine.url.render_as_string(hide_password=False)})
    feeder = Feeder(live, tcp_addresses(), decoders=1, stop=StopFlag(), instance="me")
    feeder._hold(b"off")
    assert not feeder.held() and "sending resumed" not in caplog.text
