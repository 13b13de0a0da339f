"""Fixtures for the head tests: quiet, small, deterministic training (``tests/helpers/heads.py``)."""

from __future__ import annotations

import pytest

from tests.helpers.heads import quiet_lightning


@pytest.fixture(autouse=True)
def _quiet_lightning():
    with quiet_lightning():
        yield
