"""``configs/hydra.yaml``: the documented deployment file is complete and equals the defaults."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from hydra.config import HydraConfig, load_config

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "hydra.yaml"


@pytest.fixture(autouse=True)
def _no_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("HYDRA_"):
            monkeypatch.delenv(key)


def _model_keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    keys = set()
    for name, field in model.model_fields.items():
        keys.add(prefix + name)
        sub = field.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            keys |= _model_keys(sub, f"{prefix}{name}.")
    return keys


def _file_keys(data: dict, prefix: str = "") -> set[str]:
    keys = set()
    for name, value in data.items():
        keys.add(prefix + name)
        if isinstance(value, dict):
            keys |= _file_keys(value, f"{prefix}{name}.")
    return keys


def test_file_loads_and_equals_the_built_in_defaults() -> None:
    cfg = load_config(CONFIG)
    assert cfg.model_dump() == HydraConfig().model_dump()


def test_file_names_every_key_of_the_config() -> None:
    data = yaml.safe_load(CONFIG.read_text())
    assert _file_keys(data) == _model_keys(HydraConfig)


def test_every_key_has_a_comment_above_it() -> None:
    lines = CONFIG.read_text().splitlines()
    undocumented = []
    for i, line in enumerate(lines):
        match = re.match(r"^(\s*)([a-z_]+):", line)
        if match and not lines[i - 1].strip().startswith("#"):
            undocumented.append(match.group(2))
    assert undocumented == []
