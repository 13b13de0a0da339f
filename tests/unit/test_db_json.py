"""How JSON columns are written (hydra.db.engine.json_text)."""

from __future__ import annotations

import json
import math

import sqlalchemy as sa

from hydra.db.engine import json_text, make_engine


def test_json_columns_are_always_valid_json_and_read_back_as_written(tmp_path):
    # MariaDB checks a JSON column with JSON_VALID: Infinity or NaN (json.dumps' output) would fail a batch
    value = {"keeper_ms": math.inf, "predict_ms": math.nan, "weights": [0.25, 1e-7], "who": "Müller"}
    text = json_text(value)
    assert text == '{"keeper_ms":null,"predict_ms":null,"weights":[0.25,1e-7],"who":"Müller"}'
    assert json.loads(text) == {
        "keeper_ms": None,
        "predict_ms": None,
        "weights": [0.25, 1e-7],
        "who": "Müller",
    }
    engine = make_engine(f"sqlite:///{tmp_path / 'j.db'}")
    table = sa.Table(
        "t", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True), sa.Column("v", sa.JSON)
    )
    table.create(engine)
    with engine.begin() as conn:
        conn.execute(table.insert(), [{"v": value}])
        assert conn.execute(sa.select(table.c.v)).scalar_one()["weights"] == [0.25, 1e-7]
        assert conn.exec_driver_sql("SELECT json_valid(v) FROM t").scalar_one() == 1
    engine.dispose()
