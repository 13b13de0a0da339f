"""MariaDB for the tests: whether the server is there, and a fresh database per test.

The server is reached at ``HYDRA_TEST_MYSQL_URL`` (default
``mysql+pymysql://root@127.0.0.1:3306/test``). Without a server a test that
needs one skips with the reason, except under ``CI=true`` where it fails.
"""

from __future__ import annotations

import os
import uuid

import pytest
from sqlalchemy.engine import make_url

MYSQL_URL = os.environ.get("HYDRA_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test")
IN_CI = os.environ.get("CI", "").lower() == "true"


def _mysql_server_error() -> str | None:
    import pymysql

    url = make_url(MYSQL_URL)
    try:
        conn = pymysql.connect(
            host=url.host,
            port=url.port or 3306,
            user=url.username,
            password=url.password or "",
            connect_timeout=3,
        )
        conn.close()
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means no server
        return f"MariaDB not reachable at {url.render_as_string(hide_password=True)}: {exc}"


def require_mysql() -> None:
    err = _mysql_server_error()
    if err:
        if IN_CI:
            pytest.fail(f"{err} (CI=true: MariaDB tests must run)")
        pytest.skip(err)


def make_mysql_database() -> tuple[str, callable]:
    """Create a fresh MariaDB database; returns its URL and a function that drops it."""
    import pymysql

    require_mysql()
    url = make_url(MYSQL_URL)
    name = f"hydra_t_{uuid.uuid4().hex[:10]}"
    kw = dict(host=url.host, port=url.port or 3306, user=url.username, password=url.password or "")
    with pymysql.connect(**kw) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")

    def drop() -> None:
        from hydra.db.engine import get_engine

        get_engine.cache_clear()
        with pymysql.connect(**kw) as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")

    return url.set(database=name).render_as_string(hide_password=False), drop
