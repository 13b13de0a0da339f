"""A private MariaDB server for tests that stop and restart the database.

Runs ``mariadbd`` from the system on a free port with its own data directory
(made once per server with ``mariadb-install-db``), with grant tables
skipped: only the test talks to it, over 127.0.0.1. Without the server's
programs a test skips with the reason, except under ``CI=true`` where it fails.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers.db import IN_CI

MARIADBD = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
INSTALL_DB = shutil.which("mariadb-install-db")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateMariaDB:
    """Start, stop and restart a throwaway server; ``url`` names its database ``hydra``."""

    def __init__(self, root: Path) -> None:
        if not INSTALL_DB or not Path(MARIADBD).exists():
            reason = "mariadbd / mariadb-install-db not installed"
            if IN_CI:
                pytest.fail(f"{reason} (CI=true: the database outage case must run)")
            pytest.skip(reason)
        self.root = root
        self.data = root / "data"
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        root.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [INSTALL_DB, "--no-defaults", f"--datadir={self.data}", "--user=root", "--skip-test-db",
             "--skip-name-resolve", "--auth-root-authentication-method=normal"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        self.start()
        import pymysql

        with pymysql.connect(host="127.0.0.1", port=self.port, user="root") as conn, conn.cursor() as cur:
            cur.execute("CREATE DATABASE hydra CHARACTER SET utf8mb4")

    @property
    def url(self) -> str:
        return f"mysql+pymysql://root@127.0.0.1:{self.port}/hydra"

    def start(self, timeout: float = 60.0) -> None:
        log = (self.root / "server.log").open("ab")
        self.proc = subprocess.Popen(
            [MARIADBD, "--no-defaults", f"--datadir={self.data}", f"--socket={self.root / 'sock'}",
             f"--port={self.port}", "--bind-address=127.0.0.1", "--user=root", "--skip-grant-tables",
             "--skip-name-resolve", "--innodb-buffer-pool-size=32M", f"--pid-file={self.root / 'pid'}"],
            stdout=log, stderr=log,
        )  # fmt: skip
        log.close()
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"mariadbd exited: {(self.root / 'server.log').read_text()[-2000:]}"
                    ) from None
                time.sleep(0.2)
        raise RuntimeError("mariadbd did not start in time")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
