"""Worker credit carries the instance: a worker of another instance takes no orders.

Real ROUTER/DEALER sockets on loopback: the Balancer's credit handling driven directly, the
whole Balancer loop in a thread, and a Predict worker's announcements and WELCOME handling.
"""

from __future__ import annotations

import socket
import threading
import time

import numpy as np
import zmq

from hydra.serve import balancer
from hydra.serve.balancer import Workers, _take_credit
from hydra.serve.messages import ALIVE, ORDER, READY, WELCOME, InferenceOrder, encode_message
from hydra.serve.predict import Worker
from hydra.serve.stage import Addresses, Dropped, StopFlag
from tests.helpers.serve import cfg_at


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dealer(ctx: zmq.Context, address: str, ident: bytes) -> zmq.Socket:
    d = ctx.socket(zmq.DEALER)
    d.linger = 0
    d.identity = ident
    d.connect(address)
    return d


def received(sock: zmq.Socket, wait_s: float = 0.3) -> list[list[bytes]]:
    out = []
    while sock.poll(int(wait_s * 1000)):
        out.append(sock.recv_multipart())
    return out


def test_credit_of_another_instance_registers_no_worker_and_is_counted():
    workers, dropped = Workers("least_loaded", cap=8), Dropped()
    with zmq.Context() as ctx, ctx.socket(zmq.ROUTER) as back:
        back.linger = 0
        port = back.bind_to_random_port("tcp://127.0.0.1")
        honest, foreign, learner = (dealer(ctx, f"tcp://127.0.0.1:{port}", n) for n in (b"h", b"f", b"l"))
        honest.send_multipart([READY, b"4", b"me"])
        foreign.send_multipart([READY, b"4", b"other"])
        foreign.send_multipart([ALIVE, b"4", b"other"])
        learner.send_multipart([READY, b"2", b""])  # a remote worker that does not know its instance yet
        for garbage in ([READY, b"abc", b"me"], [ALIVE], [READY, b"1", b"\xff"], [READY, b"1", b"me", b"x"]):
            honest.send_multipart(garbage)
        for _ in range(8):
            assert back.poll(2000)
            _take_credit(back, back.recv_multipart(), workers, "me", dropped)
        assert workers.credit == {b"h": 4, b"l": 2}
        assert dropped.counts == {"malformed": 4, "foreign": 2}
        assert received(foreign) == [[WELCOME, b"me"]] * 2  # told whose Balancer this is, given nothing
        assert received(learner) == [[WELCOME, b"me"]]
        # a worker known until now that announces another instance is forgotten
        honest.send_multipart([ALIVE, b"4", b"other"])
        assert back.poll(2000)
        _take_credit(back, back.recv_multipart(), workers, "me", dropped)
        assert b"h" not in workers.credit and dropped.counts["foreign"] == 3
        for d in (honest, foreign, learner):
            d.close()


def test_a_foreign_worker_gets_no_orders_from_a_running_balancer(tmp_path):
    cfg = cfg_at(tmp_path)
    addrs = Addresses(*(f"tcp://127.0.0.1:{free_port()}" for _ in range(4)))
    stop = StopFlag()
    thread = threading.Thread(
        target=balancer.run, args=(cfg, addrs), kwargs={"stop": stop, "instance": "me"}, daemon=True
    )
    thread.start()
    try:
        with zmq.Context() as ctx, ctx.socket(zmq.PUSH) as front, ctx.socket(zmq.PULL) as keeper:
            keeper.bind(addrs.keeper)
            front.linger = 0
            front.connect(addrs.frontend)
            foreign = dealer(ctx, addrs.backend, b"foreign")
            honest = dealer(ctx, addrs.backend, b"honest")
            foreign.send_multipart([READY, b"8", b"other"])
            assert received(foreign, 2.0) == [[WELCOME, b"me"]]
            honest.send_multipart([READY, b"8", b"me"])
            assert received(honest, 2.0) == [[WELCOME, b"me"]]
            for i in range(6):
                order = InferenceOrder(
                    order_id=f"o{i}", path=f"/in/a-{i}.png", filename=f"a-{i}.png", source_key="k",
                    plot_type="a", plot_type_id=1, run=1, chunk=None, model_id=1, deadline=time.time() + 60,
                    pixels=np.zeros((2, 2, 3), np.uint8), instance="me",
                )  # fmt: skip
                front.send_multipart(encode_message(order))
            got = received(honest, 2.0)
            assert [f[0] for f in got] == [ORDER] * 6
            assert received(foreign, 0.5) == []
            foreign.close()
            honest.close()
    finally:
        stop.stopped = True
        thread.join(timeout=10)
    assert not thread.is_alive()


def test_a_worker_announces_its_instance_and_takes_the_one_it_is_welcomed_to(tmp_path):
    cfg = cfg_at(tmp_path).model_copy(update={"db_url": f"sqlite:///{tmp_path / 'h.db'}"})
    with zmq.Context() as ctx, ctx.socket(zmq.ROUTER) as back:
        back.linger = 0
        port = back.bind_to_random_port("tcp://127.0.0.1")
        work = dealer(ctx, f"tcp://127.0.0.1:{port}", b"w")
        learner = Worker(cfg, device="cpu", name="w", stop=StopFlag())
        learner._grant(work, 3)
        assert received(back, 2.0) == [[b"w", READY, b"3", b""]]  # no instance yet
        learner._welcome("me")
        assert learner.instance == "me" and learner.refund == 0  # that Balancer has its credit already
        learner._grant(work, 1)
        assert received(back, 2.0) == [[b"w", READY, b"1", b"me"]]
        learner._welcome("other")  # its Balancer is now another instance's: credit announced again
        assert learner.instance == "other" and learner.refund == learner.free_credit() > 0
        bound = Worker(cfg, device="cpu", name="b", stop=StopFlag(), instance="me")
        bound._welcome("other")
        assert bound.instance == "me" and bound.refund == 0
        work.close()
