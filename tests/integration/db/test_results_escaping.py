"""The Keeper's MariaDB statements escape every value exactly as pymysql does, and read back unchanged.

``hydra.db.results`` writes a batch's rows as literal SQL, a column at a
time; a string that escaped wrongly would corrupt a stored path or, worse,
end its literal early. These run against the real server.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy.engine import make_url

from hydra.db.results import _literals, _strings
from tests.helpers.db import MYSQL_URL, require_mysql

# every character pymysql escapes, the column separator the fast path uses, quotes, and non-ASCII
ALPHABET = ["\\", "\0", "\n", "\r", "\x1a", "'", '"', "\x01", "a", "/", " ", "é", "😀", "%", "_", "`", ";"]


@pytest.fixture(scope="module")
def conn():
    import pymysql

    require_mysql()
    url = make_url(MYSQL_URL)
    connection = pymysql.connect(
        host=url.host,
        port=url.port or 3306,
        user=url.username,
        password=url.password or "",
        charset="utf8mb4",
    )
    yield connection
    connection.close()


def _awkward(rng: random.Random, n: int) -> list[str]:
    return ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 12))) for _ in range(n)]


def test_string_columns_are_escaped_as_pymysql_escapes_them(conn):
    from pymysql.converters import escape_string

    rng = random.Random(0)
    for n in (1, 2, 5, 40):
        values = _awkward(rng, n)
        assert _strings(conn, values) == ["'" + escape_string(v) + "'" for v in values], values
    assert _strings(conn, []) == []


def test_awkward_strings_read_back_unchanged_from_the_server(conn):
    values = [*_awkward(random.Random(1), 30), "", "'; DROP TABLE inference; --", "a\x01b\x01"]
    literals = _literals(conn, values)
    with conn.cursor() as cur:
        cur.execute("SELECT " + ", ".join(literals))
        assert list(cur.fetchone()) == values


def test_datetimes_are_written_as_pymysql_writes_them(conn):
    base = datetime(2026, 11, 28, 4, 5, 6)
    values = [base, base + timedelta(microseconds=250), base.replace(tzinfo=timezone.utc), None,
              datetime(999, 1, 2, 3, 4, 5, 6)]  # fmt: skip
    expected = ["NULL" if v is None else conn.escape(v) for v in values]
    assert list(_literals(conn, values)) == expected
