"""ZeroMQ CURVE for every socket that reaches beyond this host.

An address bound or connected over TCP on anything but loopback is
encrypted and authenticated with CURVE; ``ipc://`` and loopback TCP stay
plain (they never leave the host, and the ipc sockets sit in the home's
private ``run/`` folder). The keys live in ``$HYDRA_HOME/keys/``:

* ``server.key`` / ``server.key_secret``: the main host's pair, made by
  ``hydra-serve keys`` (or automatically the first time a stage binds beyond
  loopback); local stages use it as their client pair too;
* ``clients/NAME.key``: public keys of remote Predict workers allowed in,
  added by ``hydra-serve keys --client NAME``; read again on every new
  connection, so adding one needs no restart;
* on a remote host: ``server.key`` (the main host's public key, copied) and
  ``client.key_secret`` (that host's pair, copied from the main host).

A client whose key is not allowed is refused during the handshake: it never
gets an order and nothing it sends reaches a stage.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from hydra.config import HydraConfig

log = logging.getLogger("hydra.serve.security")

_LOOPBACK = re.compile(r"^tcp://(127\.\d+\.\d+\.\d+|localhost|\[::1\]|::1):\d+$")


class KeyMissing(RuntimeError):
    """A CURVE key needed for an address is missing; the message says how to make it."""


def needs_curve(address: str) -> bool:
    """Whether ``address`` leaves this host (TCP on anything but loopback)."""
    return address.startswith("tcp://") and not _LOOPBACK.match(address)


def keys_dir(cfg: HydraConfig) -> Path:
    return cfg.home.resolve() / "keys"


def _pair(path: Path) -> tuple[bytes, bytes]:
    public, secret = zmq.auth.load_certificate(path)
    if secret is None:
        raise KeyMissing(f"{path} holds no secret key")
    return public, secret


def make_server_keys(cfg: HydraConfig) -> Path:
    """The server pair, made once (existing keys are kept); its ``.key_secret`` path."""
    d = keys_dir(cfg)
    secret = d / "server.key_secret"
    if not secret.exists():
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        (d / "clients").mkdir(exist_ok=True, mode=0o700)
        zmq.auth.create_certificates(d, "server")
        os.chmod(secret, 0o600)
        log.info("made the CURVE server keys in %s", d)
    return secret


def make_client_keys(cfg: HydraConfig, name: str) -> tuple[Path, Path]:
    """A client pair ``NAME``: allowed in (public key in ``clients/``); its secret file and public file."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name) or name in (".", ".."):
        raise KeyMissing(f"client name {name!r}: use letters, digits, '_', '.' and '-'")
    make_server_keys(cfg)
    d = keys_dir(cfg) / "clients"
    public, secret = d / f"{name}.key", d / f"{name}.key_secret"
    if not public.exists():
        zmq.auth.create_certificates(d, name)
        os.chmod(secret, 0o600)
    return secret, public


def server_public(cfg: HydraConfig) -> bytes:
    path = keys_dir(cfg) / "server.key"
    if not path.exists():
        raise KeyMissing(
            f"no CURVE server key at {path}: run 'hydra-serve keys' on the main host "
            "(on a remote worker host, copy the main host's keys/server.key there)"
        )
    return zmq.auth.load_certificate(path)[0]


def client_pair(cfg: HydraConfig) -> tuple[bytes, bytes]:
    """This host's client pair: ``client.key_secret``, else the server pair (the main host)."""
    d = keys_dir(cfg)
    for path in (d / "client.key_secret", d / "server.key_secret"):
        if path.exists():
            return _pair(path)
    raise KeyMissing(
        f"no CURVE client key in {d}: on the main host run 'hydra-serve keys --client NAME' "
        f"and copy keys/clients/NAME.key_secret to {d / 'client.key_secret'} here, with keys/server.key"
    )


class _Allowed:
    """The keys allowed in: the server's own and ``clients/*.key``, re-read when that folder changes."""

    def __init__(self, cfg: HydraConfig) -> None:
        self.dir = keys_dir(cfg) / "clients"
        self.own = zmq.auth.load_certificate(keys_dir(cfg) / "server.key")[0]
        self.stamp: float | None = None
        self.keys: set[bytes] = set()

    def callback(self, domain: str, key: bytes) -> bool:
        try:
            stamp = self.dir.stat().st_mtime
        except OSError:
            stamp = None
        if stamp != self.stamp:
            self.stamp = stamp
            self.keys = set(zmq.auth.load_certificates(self.dir)) if stamp is not None else set()
        ok = key == self.own or key in self.keys
        if not ok:
            log.warning("refused a connection with an unknown CURVE key %s", key.decode(errors="replace"))
        return ok


class Curve:
    """Applies CURVE to the sockets of one process, with one authenticator thread if it binds."""

    def __init__(self, cfg: HydraConfig) -> None:
        self.cfg = cfg
        self.auth: ThreadAuthenticator | None = None

    def server(self, ctx: zmq.Context, sock: zmq.Socket) -> None:
        make_server_keys(self.cfg)
        if self.auth is None:
            self.auth = ThreadAuthenticator(ctx)
            self.auth.start()
            self.auth.configure_curve_callback("*", _Allowed(self.cfg))
        public, secret = _pair(keys_dir(self.cfg) / "server.key_secret")
        sock.curve_publickey = public
        sock.curve_secretkey = secret
        sock.curve_server = True

    def client(self, sock: zmq.Socket) -> None:
        public, secret = client_pair(self.cfg)
        sock.curve_serverkey = server_public(self.cfg)
        sock.curve_publickey = public
        sock.curve_secretkey = secret

    def close(self) -> None:
        if self.auth is not None:
            self.auth.stop()
            self.auth = None
