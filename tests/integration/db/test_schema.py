"""Schema creation and migration on SQLite and MariaDB."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlmodel import SQLModel

import hydra.db.models  # noqa: F401
from hydra.db import make_engine, session_scope, upgrade_to_head
from hydra.db.migrate import current_revision, head_revision
from hydra.db.models import Inference, Label, Model, PlotType


def test_upgrade_from_empty_twice(db_url):
    engine = make_engine(db_url)
    assert current_revision(engine) is None
    before, after = upgrade_to_head(engine)
    assert before is None and after == head_revision()
    assert upgrade_to_head(engine) == (head_revision(), head_revision())
    tables = set(inspect(engine).get_table_names())
    assert set(SQLModel.metadata.tables) <= tables
    engine.dispose()


def test_migrations_match_the_models(engine):
    """A model change without a migration shows up here."""
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert diff == []


def test_indexes_for_the_pages(engine):
    insp = inspect(engine)
    inference = {tuple(ix["column_names"]) for ix in insp.get_indexes("inference")}
    assert ("plot_type_id", "created_at") in inference
    assert ("run",) in inference
    image = {tuple(ix["column_names"]) for ix in insp.get_indexes("image")}
    assert ("plot_type_id", "label_id", "created_at") in image


def test_roundtrip_json_and_times(engine):
    with session_scope(engine) as s:
        pt = PlotType(name="cdc_occupancy", mask=[[0.0, 0.0, 0.1, 0.1]])
        s.add(pt)
        s.flush()
        s.add(Label(plot_type_id=pt.id, name="Good"))
        m = Model(
            plot_type_id=pt.id,
            head="classifier",
            path="/m",
            input_height=96,
            input_width=128,
            labels=["Good", "Bad"],
        )
        s.add(m)
        s.flush()
        s.add(
            Inference(
                source_key="k" * 64,
                path="/p",
                filename="f",
                plot_type_id=pt.id,
                model_id=m.id,
                label="Good",
                weights={"Good": 0.9, "Bad": 0.1},
                timings={"feeder": 1.5},
            )
        )
    with session_scope(engine) as s:
        inf = s.query(Inference).one()
        assert inf.weights == {"Good": 0.9, "Bad": 0.1}
        assert inf.created_at.tzinfo is not None
        assert s.query(PlotType).one().mask == [[0.0, 0.0, 0.1, 0.1]]
