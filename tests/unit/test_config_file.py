"""The deployment files: ``configs/hydra.yaml`` and the package's ``hydra/deploy/``.

``hydra.yaml`` is complete and equals the defaults; the Grafana dashboard is
valid (that every SQL query in it runs on MariaDB against Hydra's schema is
tests/integration/db/test_grafana_queries.py); the systemd units start
commands that exist.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from hydra.config import HydraConfig, load_config
from hydra.deploy import dashboard, systemd_units
from tests.helpers.grafana import dashboard_sql

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "hydra.yaml"
DASHBOARD = dashboard()


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


def test_grafana_dashboard_is_valid_and_uses_both_data_sources() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 30
    kinds = {p["datasource"]["type"] for p in dashboard["panels"] if "datasource" in p}
    assert kinds == {"mysql", "prometheus"}
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert any("FROM inference" in q for q in dashboard_sql(dashboard))
    promql = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", []) if "expr" in t]
    assert {m for e in promql for m in re.findall(r"hydra_[a-z_]+", e)} <= {
        "hydra_images_total",
        "hydra_stage_latency_ms_bucket",
        "hydra_queue_depth",
        "hydra_keeper_pending",
        "hydra_errors_total",
        "hydra_worker_restarts_total",
        "hydra_keeper_flush_failures_total",
    }


def test_systemd_units_start_commands_that_exist() -> None:
    from hydra.cli import app
    from hydra.serve.launcher import STAGES

    commands = {c.name for c in app.registered_commands} | {g.name for g in app.registered_groups}
    units = systemd_units()
    assert {u.name for u in units} >= {"hydra-serve.service", "hydra-app.service", "hydra-predict@.service"}
    for unit in units:
        text_ = unit.read_text()
        assert "[Service]" in text_ and "[Install]" in text_, unit.name
        (exec_start,) = re.findall(r"^ExecStart=(.+)$", text_, flags=re.M)
        argv = shlex.split(exec_start)
        program, args = Path(argv[0]).name, argv[1:]
        if program == "hydra-serve":
            assert not args or args[0] in (*STAGES, "%i"), unit.name
        else:
            assert program == "hydra" and args[0] in commands, unit.name
