"""One home, one instance: locks, instance ids, private addresses, checks of what messages name.

Across real processes and sockets (another process's lock, a killed parent, CURVE): tests/integration/serve/test_instance.py.
"""

from __future__ import annotations

import socket

import numpy as np
import pytest

from hydra.config import load_config
from hydra.serve.balancer import ForeignError, Workers, credit_cap, parse_credit, stamp
from hydra.serve.checks import Invalid, check_message
from hydra.serve.instance import InUseError, check_free, default_address, instance_id
from hydra.serve.messages import ErrorNotice, MessageError, Registration, Report, encode_message
from hydra.serve.stage import Addresses
from tests.helpers.serve import cfg_at


def test_a_home_has_one_stable_instance_id_and_private_sockets(tmp_path):
    a, b = cfg_at(tmp_path, "a"), cfg_at(tmp_path, "b")
    assert instance_id(a) == instance_id(a) != instance_id(b)
    addrs = Addresses.from_config(a)
    assert addrs.keeper == default_address(a, "keeper") and addrs.keeper.startswith("ipc://")
    assert Addresses.from_config(b).keeper != addrs.keeper
    assert (a.home / "run").stat().st_mode & 0o077 == 0  # private to the user
    deep = cfg_at(tmp_path, "x" * 120)  # too long for a Unix socket path: a per-home folder in /tmp
    far = Addresses.from_config(deep)
    assert far.frontend.startswith("ipc:///tmp/hydra-") and len(far.frontend) < 100
    assert far.frontend != Addresses.from_config(cfg_at(tmp_path, "y" * 120)).frontend
    given = Addresses.from_config(cfg_at(tmp_path, keeper_address="tcp://127.0.0.1:7000"))
    assert given.keeper == "tcp://127.0.0.1:7000"


def test_a_taken_port_or_live_socket_is_named(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(InUseError, match=f"serve.keeper_address tcp://127.0.0.1:{port} cannot be bound"):
            check_free(f"tcp://127.0.0.1:{port}", "serve.keeper_address")
    check_free(f"tcp://127.0.0.1:{port}", "serve.keeper_address")
    path = tmp_path / "sock"
    with socket.socket(socket.AF_UNIX) as u:
        u.bind(str(path))
        u.listen()
        with pytest.raises(InUseError, match="in use"):
            check_free(f"ipc://{path}", "socket")
    check_free(f"ipc://{path}", "socket")  # a file left by a dead process is no obstacle


def test_credit_is_capped_and_a_keep_alive_registers_a_worker_the_balancer_lost():
    w = Workers("least_loaded", cap=8)
    assert w.ready(b"rogue", 1_000_000)
    assert w.credit[b"rogue"] == 8
    assert w.alive(b"honest", 5) is True and w.credit[b"honest"] == 5
    assert w.alive(b"honest", 5) is False and w.credit[b"honest"] == 5  # known: credit unchanged
    for bad in ([b"abc"], [b"-1"], [b"1e9"], [b"1", b"2"], [], [b"9" * 12]):
        with pytest.raises(MessageError):
            parse_credit(bad)
    assert parse_credit([b"12"]) == 12
    assert credit_cap(load_config(None, serve={"max_batch": 32})) == 128


def test_the_balancer_drops_orders_of_another_instance_and_garbage():
    from hydra.serve.messages import InferenceOrder

    o = InferenceOrder(
        order_id="o", path="/in/a-1.png", filename="a-1.png", source_key="k", plot_type="a", plot_type_id=1,
        run=1, chunk=None, model_id=1, deadline=9e12, pixels=np.zeros((2, 2, 3), np.uint8), instance="me",
    )  # fmt: skip
    frames = encode_message(o)
    assert stamp(frames, 1.0, "me") is not None
    with pytest.raises(ForeignError):
        stamp(frames, 1.0, "other")
    for bad in ([b"order", b"\xff"], [b"order", b"[1]"], [b"order"], [b"report", b"{}", b"x"]):
        with pytest.raises(MessageError):
            stamp([*bad, b"p"] if len(bad) == 2 else bad, 1.0, "me")


def report_at(cfg, **kw):
    base = dict(
        order_id="o", path=str(cfg.input_dir / "fcal-000001_0001.png"), filename="fcal-000001_0001.png",
        source_key="k", plot_type="fcal", plot_type_id=1, run=1, chunk=1, model_id=1, label="Good",
        weight=0.9, weights={"Good": 0.9, "Bad": 0.1}, confirmed=True, is_problem=False,
    )  # fmt: skip
    base.update(kw)
    return Report(**base)


def test_the_keeper_acts_only_on_files_of_its_input_folder_and_names_by_the_rule(tmp_path):
    cfg = cfg_at(tmp_path)
    check_message(cfg, report_at(cfg))
    outside = str(tmp_path / "elsewhere" / "fcal-000001_0001.png")
    bad = [
        report_at(cfg, path=outside),
        report_at(cfg, path=str(cfg.input_dir / ".." / "fcal-000001_0001.png")),
        report_at(cfg, filename="../fcal-000001_0001.png"),
        report_at(cfg, plot_type="../../x"),
        report_at(cfg, plot_type="cdc"),  # not what the file name says
        report_at(cfg, run=2),
        report_at(cfg, model_id=0),
        report_at(cfg, label="Nope"),
        report_at(cfg, heatmap=np.zeros((4, 4), np.uint8)),
        report_at(cfg, heatmap=np.zeros((4, 4, 3), np.float32)),
        ErrorNotice("/etc/passwd", "passwd", "feeder", "empty", "x"),
        Registration(
            str(cfg.input_dir / "x-000001.png"), "x-000001.png", "../../../regdir", 1, None, "h", "k"
        ),
    ]
    for msg in bad:
        with pytest.raises(Invalid):
            check_message(cfg, msg)


def test_hydra_serve_keys_makes_the_server_pair_once_and_a_client_pair(hydra_home):
    from typer.testing import CliRunner

    from hydra.cli import app

    runner = CliRunner()
    first = runner.invoke(app, ["serve", "keys"])
    assert first.exit_code == 0, first.output
    secret = hydra_home / "keys" / "server.key_secret"
    assert secret.stat().st_mode & 0o077 == 0
    before = secret.read_bytes()
    out = runner.invoke(app, ["serve", "keys", "--client", "gpu01"])
    assert out.exit_code == 0, out.output
    assert secret.read_bytes() == before  # kept, so workers already out there keep working
    assert (hydra_home / "keys" / "clients" / "gpu01.key").is_file()
    assert "client.key_secret" in out.output
    bad = runner.invoke(app, ["serve", "keys", "--client", "../x"])
    assert bad.exit_code != 0 and not (hydra_home / "x.key").exists()
    assert runner.invoke(app, ["serve", "nope"]).exit_code != 0


def test_waiting_orders_past_their_deadline_are_recognised():
    from hydra.serve.balancer import expired_order

    assert expired_order([b"order", b'{"deadline": 1.0}', b"p"])
    assert not expired_order([b"order", b'{"deadline": 9e12}', b"p"])
    assert not expired_order([b"order", b"\xff"])  # garbage is dropped when it reaches the front
