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
    to_dict,
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
        ([b"hb", b'{"process": "p", "pid": 1.0, "host": "h"}'], "field pid"),
        ([b"hb", b'{"process": "p", "pid": 1, "host": "h", "info": {}, "extra": 1}'], "bad header.*extra"),
        ([b"hb", b'{"process": "' + b"p" * 4097 + b'", "pid": 1, "host": "h"}'], "field process"),
        ([b"hb", b'{"process": "p", "pid": ' + b"9" * 20 + b', "host": "h"}'], "field pid"),
        ([b"event", b'{"name": "n", "process": "p", "detail": "\\ud800"}'], "not JSON"),
        ([b"event", b'{"name": "n", "process": "p", "detail": "\xff"}'], "not JSON"),
        ([b"event", b'{"name": ' + b"[" * 5000 + b"]" * 5000 + b', "process": "p"}'], "not JSON"),
        ([b"order", b'{"_arrays": [["pixels", ["uint8"], [1]]]}', b"x"], "bad array"),
        ([b"order", b'{"_arrays": [["pixels", "uint8", [true]]]}', b"x"], "bad array shape"),
        (
            [b"order", b'{"_arrays": [["pixels", "uint8", [1]], ["pixels", "uint8", [1]]]}', b"x", b"y"],
            "twice",
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


def report_frames(**kw) -> list[bytes]:
    base = dict(
        order_id="o", path="p", filename="f", source_key="k", plot_type="t", plot_type_id=1, run=2, chunk=None,
        model_id=3, label="Bad", weight=0.9, weights={"Good": 0.1, "Bad": 0.9}, confirmed=True, is_problem=True,
    )  # fmt: skip
    base.update(kw)
    return [bytes(f) for f in encode_message(Report(**base))]


@pytest.mark.parametrize(
    "old,new,match",
    [
        # an int past any float: once an OverflowError that escaped decode_message (and ended the Keeper)
        (b'"weight":0.9', b'"weight":' + b"9" * 400, "field weight"),
        (b'"Good":0.1', b'"Good":' + b"9" * 400, "field weights"),
        (b'"weight":0.9', b'"weight":-Infinity', "field weight"),
        (b'"Good":0.1', b'"Good":true', "field weights"),
        (b'"run":2', b'"run":2.0', "field run"),
        (b'"chunk":null', b'"chunk":"1"', "field chunk"),
        (b'"confirmed":true', b'"confirmed":1', "field confirmed"),
        # an array only ever travels as a frame: in the header it was once a Report whose heat map was 5
        (b'"_arrays":[]', b'"heatmap":5,"_arrays":[]', "bad header.*heatmap"),
        (b'"_arrays":[]', b'"heatmap":[[1]],"_arrays":[]', "bad header.*heatmap"),
    ],
)
def test_a_forged_report_field_is_refused_by_name(old, new, match):
    tag, header = report_frames()
    assert old in header
    with pytest.raises(MessageError, match=match):
        decode_message([tag, header.replace(old, new)])


def test_large_whole_numbers_pass_as_floats_and_text_round_trips_as_utf8():
    tag, header = report_frames(weight=1.0, weights={"Gööd ✓": 1.0, "Bad": 0.0}, worker="wörker")
    assert "Gööd ✓".encode() in header  # raw UTF-8, not \\u escapes
    back = decode_message([tag, header.replace(b'"weight":1.0', b'"weight":' + b"1" + b"0" * 300)])
    assert back.weight == 10**300 and back.weights["Gööd ✓"] == 1.0 and back.worker == "wörker"


def test_a_missing_field_is_named_and_a_frame_may_be_a_bytearray():
    tag, header = report_frames()
    with pytest.raises(MessageError, match="bad header.*label"):
        decode_message([tag, header.replace(b'"label":"Bad",', b"")])
    o = order()
    frames = encode_message(o)
    back = decode_message([bytearray(frames[0]), bytearray(frames[1]), bytearray(frames[2])])
    np.testing.assert_array_equal(back.pixels, o.pixels)


def test_a_field_that_is_not_json_is_a_type_error():
    with pytest.raises(TypeError, match="report"):
        encode_message(Report(**{**to_dict(decode_message(report_frames())), "weight": np.float32(0.5)}))


def test_stage_timings_round_to_the_microsecond_and_survive_forged_stamps():
    t = {"file": 1e9, "seen": 1e9 + 0.0123456, "feed0": 5.0, "feed1": 4.0, "keep": -1e308}
    out = stage_timings(t, committed=1e308)
    assert out["wait"] == round(0.0123456 * 1000, 3) == 12.346
    assert out["feeder"] == 0.0  # a clock that went back
    assert out["keeper"] == float("inf") and out["total"] > 1e300
    for d in (0.0005, 0.0015, 0.1234565, 3.9999999, 1234.5678905):
        assert stage_timings({"file": 0.0}, committed=d)["total"] == round(d * 1000.0, 3)
