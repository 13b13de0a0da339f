"""Every SQL query of the Grafana dashboard (the package's ``hydra/deploy/``) runs on MariaDB.

The dashboard speaks MySQL, so this runs on MariaDB only, against Hydra's
schema with a few rows in it; the rest of the deployment files are checked in
tests/unit/test_config_file.py.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from hydra.deploy import dashboard
from tests.helpers.grafana import dashboard_sql, expand_grafana_macros

DASHBOARD = dashboard()


@pytest.fixture(autouse=True)
def _no_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("HYDRA_"):
            monkeypatch.delenv(key)


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
            for sql in dashboard_sql(json.loads(DASHBOARD.read_text())):
                rows = conn.execute(text(expand_grafana_macros(sql))).fetchall()
                assert rows, f"no rows from:\n{sql}"
    finally:
        engine.dispose()
