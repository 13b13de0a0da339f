"""One home, one instance: its id, its lock, its private sockets.

A ``HYDRA_HOME`` is served by at most one ``hydra-serve``. Everything that
tells instances apart lives in the home's ``run/`` folder (mode 0700):

* ``instance``: a random id made once; every message carries it and a stage
  drops (and counts) messages of another instance;
* ``serve.lock`` (the supervisor) and ``<stage>.lock`` (a Keeper, Balancer
  or Feeder run alone): ``flock`` locks that the kernel releases however the
  holder dies, so a second instance on the same home is refused at once;
* the ``ipc://`` sockets the stages use when the config leaves an address
  empty (the default), so two homes on one host never meet.

Example:
    >>> from hydra.config import load_config
    >>> cfg = load_config(None, home="/tmp/h")
    >>> default_address(cfg, "keeper")  # doctest: +SKIP
    'ipc:///tmp/h/run/keeper'
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import secrets
import socket
from pathlib import Path

from hydra.config import HydraConfig

# the longest path a Unix socket may have (sun_path is 108 bytes with its NUL)
MAX_IPC_PATH = 100
EXIT_IN_USE = 78  # EX_CONFIG: the supervisor does not restart a stage that exits with it


class InUseError(RuntimeError):
    """The home is already served, or an address is taken; the message says which and what to do."""


def run_dir(cfg: HydraConfig) -> Path:
    """The home's private folder for its lock, instance id and sockets (made 0700)."""
    path = cfg.home.resolve() / "run"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def ipc_dir(cfg: HydraConfig) -> Path:
    """Where the home's ipc sockets live: ``run/``, or a per-home folder in /tmp when that path is too long."""
    path = cfg.home.resolve() / "run"
    if len(str(path)) + len("/frontend") <= MAX_IPC_PATH:
        return path
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:16]
    return Path(f"/tmp/hydra-{os.getuid()}-{digest}")


def default_address(cfg: HydraConfig, name: str) -> str:
    """The private ipc address of socket ``name`` (frontend, backend, keeper, control) of this home."""
    return f"ipc://{ipc_dir(cfg)}/{name}"


def instance_id(cfg: HydraConfig) -> str:
    """This home's instance id, made on first use (atomically: concurrent stages agree)."""
    path = run_dir(cfg) / "instance"
    with contextlib.suppress(FileNotFoundError):
        text = path.read_text().strip()
        if text:
            return text
    tmp = path.with_name(f".instance.{os.getpid()}")
    tmp.write_text(secrets.token_hex(8) + "\n")
    try:
        os.link(tmp, path)  # fails if another stage made it first
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return path.read_text().strip()


class HomeLock:
    """An exclusive ``flock`` on ``run/<name>.lock``, held while the context is open.

    Raises :class:`InUseError` naming the holder's pid when another process holds it.
    """

    def __init__(self, cfg: HydraConfig, name: str = "serve") -> None:
        self.home = cfg.home.resolve()
        self.path = run_dir(cfg) / f"{name}.lock"
        self.name = name
        self.fd: int | None = None

    def __enter__(self) -> HomeLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            what = "hydra-serve" if self.name == "serve" else f"a {self.name}"
            raise InUseError(
                f"HYDRA_HOME {self.home} is already served by {what} (pid {holder}); "
                "stop it first, or give this instance its own HYDRA_HOME"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _tcp_host_port(address: str) -> tuple[str, int] | None:
    rest = address[len("tcp://") :]
    host, _, port = rest.rpartition(":")
    if not host or not port.isdigit():
        return None
    host = host.strip("[]")
    return ("0.0.0.0" if host == "*" else host), int(port)


def check_free(address: str, what: str) -> None:
    """Raise :class:`InUseError` if ``address`` cannot be bound now (a port or live socket taken)."""
    if address.startswith("ipc://"):
        path = address[len("ipc://") :]
        if not os.path.exists(path):
            return
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(1.0)
            try:
                s.connect(path)
            except OSError:
                return  # a socket file left by a process that died: binding replaces it
        raise InUseError(f"{what} {address} is in use by another process; stop it or choose another address")
    if address.startswith("tcp://"):
        hp = _tcp_host_port(address)
        if hp is None:
            return
        family = socket.AF_INET6 if ":" in hp[0] else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(hp)
            except OSError as exc:
                raise InUseError(
                    f"{what} {address} cannot be bound ({exc.strerror}): another program or "
                    "hydra-serve holds it; stop it or choose another port"
                ) from None
