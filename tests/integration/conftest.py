"""Fixtures of the serve and fault suites: deployments in a temp dir (``tests/helpers/serve.py``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers.serve import Deployment


@pytest.fixture
def deployment_factory(tmp_path: Path) -> Iterator[Callable[..., Deployment]]:
    made: list[Deployment] = []

    def make(db_url: str | None = None, **serve: object) -> Deployment:
        dep = Deployment(
            tmp_path / f"d{len(made)}", db_url or f"sqlite:///{tmp_path}/d{len(made)}.db", **serve
        )
        made.append(dep)
        return dep

    yield make
    for dep in made:
        dep.close()
