"""The one codec of the serve messages: round trips, zero-copy arrays, bad frames."""

from __future__ import annotations

import numpy as np
import pytest
import zmq

from hydra.serve.messages import (
    ErrorNotice,
    InferenceOrder,
    MessageError,
    Report,
    decode_message,
    encode_message,
    stage_timings,
)


def order(**kw) -> InferenceOrder:
    base = dict(
        order_id="o1", path="/in/fcal-000001_0001.png", filename="fcal-000001_0001.png", source_key="k" * 64,
        plot_type="fcal", plot_type_id=3, run=1, chunk=1, model_id=7, deadline=123.5,
        pixels=np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3), times={"file": 1.0, "seen": 1.5},
    )  # fmt: skip
    base.update(kw)
    return InferenceOrder(**base)


def test_order_round_trip_keeps_header_and_pixels():
    o = order()
    back = decode_message([bytes(f) for f in encode_message(o)])
    assert isinstance(back, InferenceOrder)
    assert back.times == o.times and back.deadline == 123.5 and back.chunk == 1
    np.testing.assert_array_equal(back.pixels, o.pixels)
    assert back.pixels.dtype == np.uint8


def test_report_heatmap_is_optional():
    r = Report(
        order_id="o", path="p", filename="f", source_key="k", plot_type="t", plot_type_id=1, run=2, chunk=None,
        model_id=3, label="Bad", weight=0.9, weights={"Good": 0.1, "Bad": 0.9}, confirmed=True, is_problem=True,
    )  # fmt: skip
    frames = encode_message(r)
    assert len(frames) == 2
    assert decode_message(frames).heatmap is None
    r.heatmap = np.full((4, 5, 3), 7, np.uint8)
    back = decode_message(encode_message(r))
    assert back.heatmap.shape == (4, 5, 3) and back.weights == {"Good": 0.1, "Bad": 0.9}


def test_pixels_travel_over_a_real_socket_without_copy():
    with zmq.Context() as ctx, ctx.socket(zmq.PAIR) as a, ctx.socket(zmq.PAIR) as b:
        port = a.bind_to_random_port("tcp://127.0.0.1")
        b.connect(f"tcp://127.0.0.1:{port}")
        big = np.random.default_rng(0).integers(0, 255, (299, 299, 3), dtype=np.uint8)
        a.send_multipart(encode_message(order(pixels=big)), copy=False)
        got = decode_message(b.recv_multipart(copy=False))
        np.testing.assert_array_equal(got.pixels, big)


def test_unknown_kind_and_bad_headers_are_named():
    with pytest.raises(MessageError, match="unknown message kind b'nope'"):
        decode_message([b"nope", b"{}"])
    with pytest.raises(MessageError, match="at least 2 frames"):
        decode_message([b"order"])
    frames = encode_message(order())
    with pytest.raises(MessageError, match="names 1 arrays but 0 frames"):
        decode_message(frames[:2])
    with pytest.raises(MessageError, match="bad header"):
        decode_message([b"error", b'{"path": "x", "_arrays": []}'])


def test_error_notice_round_trip():
    e = ErrorNotice("/in/x.png", "x.png", "feeder", "truncated", "x.png: damaged")
    assert decode_message(encode_message(e)) == e


def test_stage_timings_in_ms():
    t = {"file": 10.0, "seen": 10.01, "feed0": 10.02, "feed1": 10.03, "bal_in": 10.031, "bal_out": 10.0311,
         "recv": 10.04, "pred0": 10.05, "pred1": 10.07, "keep": 10.08}  # fmt: skip
    out = stage_timings(t, committed=10.1)
    assert out["feeder"] == pytest.approx(10.0, abs=0.01)
    assert out["balancer"] == pytest.approx(0.1, abs=0.01)
    assert out["queue"] == pytest.approx(10.0, abs=0.01)
    assert out["predict"] == pytest.approx(20.0, abs=0.01)
    assert out["keeper"] == pytest.approx(20.0, abs=0.01)
    assert out["total"] == pytest.approx(100.0, abs=0.01)
    assert "cam" not in out


@pytest.mark.parametrize(
    "frames,match",
    [
        ([b"report", b"\xff\xfe not utf-8"], "not JSON"),
        ([b"report", b"{not json"], "not JSON"),
        ([b"report", b"[1, 2, 3]"], "JSON list, not an object"),
        ([b"report", b'"text"'], "JSON str, not an object"),
        ([b"order", b'{"_arrays": [["pixels", "complex128", [2, 2, 3]]]}', b"x" * 192], "bad array"),
        ([b"order", b'{"_arrays": [["pixels", "uint8", [2, 2, 3]]]}', b"x" * 5], "does not match its frame"),
        ([b"order", b'{"_arrays": [["pixels", "uint8", [-1]]]}', b""], "bad array shape"),
        ([b"order", b'{"_arrays": [["__class__", "uint8", [1]]]}', b"x"], "bad array"),
        ([b"order", b'{"_arrays": "pixels"}'], "no list of arrays"),
        ([b"order"], "at least 2 frames"),
        ([b"hb", b'{"process": 5, "pid": 1, "host": "h"}'], "field process"),
        ([b"hb", b'{"process": "p", "pid": true, "host": "h"}'], "field pid"),
        (
            [b"error", b'{"path": "x", "filename": "x", "stage": "s", "kind": "k", "message": ["m"]}'],
            "message",
        ),
    ],
)
def test_every_malformed_message_is_a_message_error(frames, match):
    with pytest.raises(MessageError, match=match):
        decode_message(frames)


def test_weights_must_be_finite_numbers_and_every_message_carries_its_instance():
    r = Report(
        order_id="o", path="p", filename="f", source_key="k", plot_type="t", plot_type_id=1, run=2, chunk=None,
        model_id=3, label="Bad", weight=0.9, weights={"Good": 0.1}, confirmed=True, is_problem=True, instance="i1",
    )  # fmt: skip
    assert decode_message(encode_message(r)).instance == "i1"
    tag, header = encode_message(r)
    with pytest.raises(MessageError, match="weights"):
        decode_message([tag, header.replace(b'"Good":0.1', b'"Good":"x"')])
    with pytest.raises(MessageError, match="weight"):
        decode_message([tag, header.replace(b'"weight":0.9', b'"weight":NaN')])
