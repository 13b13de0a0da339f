"""The Balancer writes its stamps into an order's header without encoding it again, with the same result."""

from __future__ import annotations

import json
import time

import numpy as np

from hydra.serve.balancer import _stamped, stamp
from hydra.serve.messages import InferenceOrder, decode_message, encode_message


def _order(times: dict[str, float], filename: str = "fcal-000001_0001.png") -> list[bytes]:
    o = InferenceOrder(
        order_id="a", path=f"/in/{filename}", filename=filename, source_key="k", plot_type="fcal",
        plot_type_id=1, run=1, chunk=1, model_id=2, deadline=time.time() + 60,
        pixels=np.zeros((2, 2, 3), np.uint8), times=times, instance="me",
    )  # fmt: skip
    return [bytes(f) for f in encode_message(o)]


def test_stamps_land_in_times_as_a_full_decode_and_encode_would_put_them():
    for times, name in [
        ({"file": 1.5, "seen": 2.25}, "fcal-000001_0001.png"),
        ({}, "fcal-000001_0001.png"),
        ({"file": 1.0}, 'fcal"times":{-000001.png'),  # the text inside a string is escaped: no match
    ]:
        frames = _order(times, name)
        out = decode_message(stamp(frames, 7.25, "me"))
        assert out.times == {**times, "bal_in": 7.25, "bal_out": out.times["bal_out"]}
        assert out.filename == name and out.pixels.shape == (2, 2, 3)
        assert time.time() - 5 < out.times["bal_out"] <= time.time()


def test_headers_the_splice_does_not_fit_are_encoded_again():
    again = _order({"bal_in": 1.0, "file": 2.0})  # stamps there already: replaced, not duplicated
    assert decode_message(stamp(again, 7.25, "me")).times["bal_in"] == 7.25
    for raw in (
        json.dumps({"times": {"a": 1}, "x": {"times": {}}}, separators=(",", ":")).encode(),  # two
        json.dumps({"times": {"a": 1}}).encode(),  # not compact
    ):
        out = json.loads(_stamped(raw, json.loads(raw), 1.0, 2.0))
        assert out["times"] == {"a": 1, "bal_in": 1.0, "bal_out": 2.0}
