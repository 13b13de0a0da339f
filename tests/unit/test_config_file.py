"""The deployment files: ``configs/hydra.yaml`` and the package's ``hydra/deploy/``.

``hydra.yaml`` is complete and equals the defaults; the Grafana dashboard is
valid and every SQL query in it runs on MariaDB against Hydra's schema; the
systemd units start commands that exist.
"""

from __future__ import annotations

import json
import re
import shlex
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from hydra.config import HydraConfig, load_config
from hydra.deploy import dashboard, systemd_units

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


def _dashboard_sql(dashboard: dict) -> list[str]:
    queries = [t["rawSql"] for p in dashboard["panels"] for t in p.get("targets", []) if "rawSql" in t]
    queries += [v["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    queries += [a["target"]["rawSql"] for a in dashboard["annotations"]["list"] if "target" in a]
    return queries


def _expand_grafana_macros(sql: str) -> str:
    """What Grafana's MySQL data source makes of its macros, for a wide time range."""
    span = "BETWEEN FROM_UNIXTIME(0) AND FROM_UNIXTIME(2000000000)"
    sql = re.sub(r"\$__timeFilter\(([^)]+)\)", rf"\1 {span}", sql)
    sql = sql.replace("$__timeFrom()", "FROM_UNIXTIME(0)").replace("$__timeTo()", "FROM_UNIXTIME(2000000000)")
    sql = re.sub(r"\$__timeGroupAlias\(([^,]+), 1m\)", r"UNIX_TIMESTAMP(\1) DIV 60 * 60 AS time", sql)
    return sql.replace("$plot_type", "'fcal_occ'")


def test_grafana_dashboard_is_valid_and_uses_both_data_sources() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 30
    kinds = {p["datasource"]["type"] for p in dashboard["panels"] if "datasource" in p}
    assert kinds == {"mysql", "prometheus"}
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert any("FROM inference" in q for q in _dashboard_sql(dashboard))
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


@pytest.mark.mariadb
@pytest.mark.parametrize("db_url", ["mariadb"], indirect=True)  # the dashboard speaks MySQL
def test_grafana_queries_run_on_mariadb(db_url: str) -> None:
    from sqlalchemy import text

    from hydra.db.engine import make_engine, session_scope
    from hydra.db.migrate import upgrade_to_head
    from hydra.db.models import Alarm, ErrorRecord, Inference, Model, Threshold, utcnow
    from hydra.db.queries import create_plot_type

    engine = make_engine(db_url)
    try:
        upgrade_to_head(engine)
        with session_scope(engine) as s:
            pt = create_plot_type("fcal_occ", ["Good", "Bad", "NoData"], session=s)
            s.flush()
            labels = ["Good", "Bad", "NoData"]
            model = Model(
                plot_type_id=pt.id, head="classifier", path="m", input_height=8, input_width=8, labels=labels
            )
            model.active = True
            s.add(model)
            s.flush()
            s.add_all(Threshold(model_id=model.id, label=lab, value=0.6) for lab in labels)
            for k in range(5):
                s.add(
                    Inference(
                        source_key=f"k{k}", path="p", filename="f.png", plot_type_id=pt.id, run=1, model_id=model.id,
                        label="Good", weights={"Good": 0.9, "Bad": 0.1, "NoData": 0.0}, confirmed=True,
                        timings={"feeder": 20.0, "predict": 5.0, "total": 40.0}, created_at=utcnow() - timedelta(minutes=k),
                    )
                )  # fmt: skip
            s.add(Alarm(plot_type_id=pt.id, run=1, label="Bad", message="3 in a row"))
            s.add(ErrorRecord(path="p", filename="f", stage="feeder", kind="truncated", message="m"))
        with engine.connect() as conn:
            for sql in _dashboard_sql(json.loads(DASHBOARD.read_text())):
                rows = conn.execute(text(_expand_grafana_macros(sql))).fetchall()
                assert rows, f"no rows from:\n{sql}"
    finally:
        engine.dispose()


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
