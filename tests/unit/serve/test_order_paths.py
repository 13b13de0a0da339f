"""A Predict worker checks an order's path: a malformed one is dropped and counted, and a shadow
model reads a file only from this host's input folder (else it uses the delivered pixels)."""

from __future__ import annotations

import numpy as np
import zmq
from PIL import Image

from hydra.data.images import prepare
from hydra.serve.messages import InferenceOrder, encode_message
from hydra.serve.predict import Worker
from hydra.serve.stage import StopFlag
from tests.helpers.serve import cfg_at

NAME = "fcal-000001_0001.png"


def order(path: str, filename: str = NAME, **kw) -> InferenceOrder:
    fields = dict(
        order_id="o", path=path, filename=filename, source_key="k", plot_type="fcal", plot_type_id=1, run=1,
        chunk=1, model_id=1, deadline=9e12, pixels=np.zeros((4, 4, 3), np.uint8), instance="me",
    )  # fmt: skip
    fields.update(kw)
    return InferenceOrder(**fields)


class Served:
    """What ``_shadow_pixels`` needs of a served model: its input and its ``prepare``."""

    input_size = (4, 4)
    channels = 3

    def prepare(self, image: Image.Image) -> np.ndarray:
        return prepare(image, self.input_size, self.channels)


def worker(tmp_path) -> Worker:
    cfg = cfg_at(tmp_path).model_copy(update={"db_url": f"sqlite:///{tmp_path / 'h.db'}"})
    cfg.input_dir.mkdir(parents=True, exist_ok=True)
    return Worker(cfg, device="cpu", name="w", stop=StopFlag(), instance="me")


def test_an_order_with_a_malformed_path_is_dropped_and_counted(tmp_path):
    w = worker(tmp_path)
    bad = [
        order(NAME),  # relative
        order(f"../in/{NAME}"),
        order(f"/srv/in/../etc/{NAME}"),
        order("/etc/passwd"),  # not the file the order names
        order(f"/srv/in/{NAME}", filename=f"../{NAME}"),
        order("/srv/in/a\0b/" + NAME),
    ]
    good = [order(f"/srv/in/{NAME}"), order(str(w.cfg.input_dir / NAME))]  # another host's folder, or ours
    with zmq.Context() as ctx, ctx.socket(zmq.ROUTER) as back, ctx.socket(zmq.DEALER) as work:
        back.linger = work.linger = 0
        port = back.bind_to_random_port("tcp://127.0.0.1")
        work.identity = b"w"
        work.connect(f"tcp://127.0.0.1:{port}")
        work.send_multipart([b"ready", b"8", b"me"])
        assert back.poll(2000)
        back.recv_multipart()
        for o in (*bad, *good):
            back.send_multipart([b"w", *encode_message(o)])
        for _ in range(50):
            w._receive(work, 100)
            if sum(w.dropped.counts.values()) + sum(len(v) for v in w.pending.values()) == 8:
                break
    assert w.dropped.counts == {"malformed": len(bad), "foreign": 0}
    assert [o.path for v in w.pending.values() for o in v] == [o.path for o in good]
    assert w.refund == len(bad)  # their credit is given back


def test_a_shadow_model_reads_only_files_of_this_hosts_input_folder(tmp_path):
    w = worker(tmp_path)
    white = Image.new("RGB", (8, 8), (255, 255, 255))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    white.save(elsewhere / NAME)
    white.save(w.cfg.input_dir / NAME)
    served = Served()
    # a file outside the input folder is never opened: the delivered (black) pixels are used
    for path in (str(elsewhere / NAME), f"{w.cfg.input_dir}/../elsewhere/{NAME}"):
        assert (w._shadow_pixels(served, order(path)) == 0).all(), path
    # the file in the input folder is read (white)
    assert (w._shadow_pixels(served, order(str(w.cfg.input_dir / NAME))) == 255).all()
