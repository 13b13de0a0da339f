"""The fault suite's database: each case that writes results runs on SQLite and on MariaDB."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture
def db(db_url: str) -> Iterator[str | None]:
    """The case's database URL: None (SQLite in the deployment's folder) or a fresh MariaDB database.

    The Keeper is the one writer, so a fault that hits it (its kill, a full
    disk, forged reports) behaves differently on a server database that
    commits over a socket than on a local file. Without a MariaDB server the
    ``mariadb`` cases skip, except under ``CI=true`` where they fail (``db_url``
    of tests/conftest.py).
    """
    yield None if db_url.startswith("sqlite") else db_url
