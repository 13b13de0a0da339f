"""Shadow models on both backends: the Keeper stores their verdicts and nothing else; the services.

A shadow model's results never alarm, never reach RunTime (the Run page),
never keep or move a file, and follow their image's live result; making a
shadow is admin-only, one per plot type, and activating it ends its shadow.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from sqlmodel import select

from hydra.auth import PermissionDenied, create_user
from hydra.db import session_scope
from hydra.db.migrate import current_revision
from hydra.db.models import LIVE, SHADOW, Alarm, Image, Inference, Model, PlotType, RunTime
from hydra.services import library, run, shadow
from hydra.services.access import OPERATOR
from hydra.services.log import log_entries
from hydra.services.shadow import ShadowError
from tests.helpers.store import batch_of, make_report, make_store


def _model(engine, plot_type_id: int, *, shadow: bool = False, size=(8, 8)) -> int:
    """A model row of the plot type (no files: the Keeper and the services never load it)."""
    with session_scope(engine) as s:
        m = Model(plot_type_id=plot_type_id, head="classifier", path="y", input_height=size[0],
                  input_width=size[1], labels=["Good", "Bad"], shadow=shadow)  # fmt: skip
        s.add(m)
        s.flush()
        return m.id


def _shadow_model(engine, plot_type_id: int, size=(8, 8)) -> int:
    return _model(engine, plot_type_id, shadow=True, size=size)


def _as_shadow(report, model_id: int):
    return replace(report, model_id=model_id, label="Bad", weight=0.99, weights={"Good": 0.01, "Bad": 0.99},
                   confirmed=True, is_problem=True, shadow=True)  # fmt: skip


def test_a_shadow_models_results_never_alarm(engine, tmp_path):
    cfg, store, (pt_id, model_id) = make_store(engine, tmp_path, consecutive=2)
    cand = _shadow_model(engine, pt_id)
    live = [make_report(cfg, f"fcal-000007_{i:04d}.png", pt_id, model_id) for i in range(4)]
    shadows = [_as_shadow(r, cand) for r in live]
    shadows[0] = replace(shadows[0], heatmap=np.full((8, 8, 1), 200, np.uint8))
    # the shadow verdicts of the first two come in the live results' batch, the others in the next one
    out = store.write(batch_of(*live[:2], *shadows[:2]))
    assert out.shadows == 2 and not out.alarms and len(out.stored) == 2
    assert sorted(src for src, _ in out.moves) == sorted(
        r.path for r in live[:2]
    )  # the live ones' files only
    store.tracker = out.tracker
    out = store.write(batch_of(*live[2:]))
    store.tracker = out.tracker
    out = store.write(batch_of(*shadows[2:]))
    assert out.shadows == 2 and not out.alarms and not out.moves and not out.retry and not out.stored
    with session_scope(engine) as s:
        rows = {(i.filename, i.origin): i for i in s.exec(select(Inference)).all()}
        runtime = s.exec(select(RunTime)).all()
        assert not s.exec(select(Alarm)).all()
        assert not s.exec(select(Image)).all()  # a confirmed Bad shadow verdict keeps nothing
        frames = {f.plot_type: f for f in run.run_frames(session=s)}
        logged = log_entries(session=s, since=datetime(2000, 1, 1, tzinfo=timezone.utc))
    assert len(rows) == 8
    assert {r.inference_id for r in runtime} == {rows[(r.filename, LIVE)].id for r in live}
    for r in live:
        mine, theirs = rows[(r.filename, SHADOW)], rows[(r.filename, LIVE)]
        assert (mine.model_id, mine.label, mine.path, mine.kept_image_id) == (cand, "Bad", theirs.path, None)
        assert "short_term" in mine.path
    assert rows[(live[0].filename, SHADOW)].heatmap_path.endswith(f"-m{cand}.png")
    assert Path(rows[(live[0].filename, SHADOW)].heatmap_path).is_file()
    assert frames["fcal"].label == "Good" and not logged  # the Run and Log pages see the active model only


def test_a_shadow_result_before_its_live_one_is_dropped_and_duplicates_move_nothing(engine, tmp_path):
    cfg, store, (pt_id, model_id) = make_store(engine, tmp_path)
    cand = _shadow_model(engine, pt_id, size=(16, 16))
    live = make_report(cfg, "fcal-000007_0001.png", pt_id, model_id)
    early = _as_shadow(live, cand)
    out = store.write(batch_of(early))
    assert out.shadows == 0 and not out.moves and not out.retry
    with session_scope(engine) as s:
        assert not s.exec(select(Inference)).all()
    store.write(batch_of(live, early))
    out = store.write(batch_of(early))  # the same shadow verdict again: stored once, no file moved
    assert out.duplicates == 1 and out.shadows == 0 and not out.moves
    with session_scope(engine) as s:
        assert sorted(i.origin for i in s.exec(select(Inference)).all()) == [LIVE, SHADOW]


def test_shadow_services(engine, tmp_path):
    cfg, store, (pt_id, model_id) = make_store(engine, tmp_path)
    ids = _model(engine, pt_id), _model(engine, pt_id)
    with session_scope(engine) as s:
        expert = create_user("ex", "pw", session=s, role="expert")
    with session_scope(engine) as s, pytest.raises(PermissionDenied):
        shadow.set_shadow(expert, ids[0], session=s)
    with session_scope(engine) as s, pytest.raises(ShadowError, match="active"):
        shadow.set_shadow(OPERATOR, model_id, session=s)
    for mid in ids:  # one shadow per plot type: the second replaces the first
        with session_scope(engine) as s:
            shadow.set_shadow(OPERATOR, mid, session=s)
    with session_scope(engine) as s:
        assert shadow.shadow_of(pt_id, session=s).id == ids[1]
        assert [m.id for m in s.exec(select(Model).where(Model.shadow)).all()] == [ids[1]]
    with session_scope(engine) as s:
        library.activate(OPERATOR, ids[1], session=s)
    with session_scope(engine) as s:
        now = s.get(Model, ids[1])
        assert now.active and not now.shadow and shadow.shadow_of(pt_id, session=s) is None
        assert not s.get(Model, model_id).active
    with session_scope(engine) as s:
        shadow.set_shadow(OPERATOR, ids[0], session=s)
    with session_scope(engine) as s:
        assert shadow.clear_shadow(OPERATOR, pt_id, session=s).id == ids[0]
        assert shadow.clear_shadow(OPERATOR, pt_id, session=s) is None


def test_compare_a_candidate_with_the_active_model(engine, tmp_path):
    cfg, store, (pt_id, model_id) = make_store(engine, tmp_path)
    cand = _shadow_model(engine, pt_id)
    live = [make_report(cfg, f"fcal-000007_{i:04d}.png", pt_id, model_id) for i in range(4)]
    store.write(batch_of(*live))
    # the candidate agrees on two of them as a shadow, and disagrees on the other two (one of them reprocessed)
    agree = [replace(r, model_id=cand, shadow=True) for r in live[:2]]
    store.write(batch_of(*agree, _as_shadow(live[2], cand)))
    with session_scope(engine) as s:
        row = s.exec(select(Inference).where(Inference.filename == live[3].filename)).one()
        again = {**row.model_dump(exclude={"id"}), "model_id": cand, "label": "Bad", "origin": "reprocess"}
        s.add(Inference(**again))
    with session_scope(engine) as s:
        cmp = shadow.compare(cand, session=s)
    assert (cmp.overall.images, cmp.overall.agree) == (4, 2)
    assert cmp.agreement[shadow.LIVE_IMAGES].rate == pytest.approx(2 / 3)
    assert cmp.agreement[shadow.REPROCESSED].rate == 0.0
    assert sorted(d.filename for d in cmp.disagreements) == sorted(r.filename for r in live[2:])
    assert {(d.candidate_label, d.active_label) for d in cmp.disagreements} == {("Bad", "Good")}
    with session_scope(engine) as s, pytest.raises(ShadowError):
        shadow.compare(model_id, session=s)
    with session_scope(engine) as s:
        s.get(Model, model_id).active = False
        name = s.get(PlotType, pt_id).name
    with (
        session_scope(engine) as s,
        pytest.raises(ShadowError, match=f"plot type '{name}' has no active model"),
    ):
        shadow.compare(cand, session=s)  # named, not numbered


def test_the_schema_downgrades_from_0005_and_upgrades_again(engine):
    from alembic import command
    from sqlalchemy import inspect

    from hydra.db.migrate import alembic_config, upgrade_to_head

    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0004")
    assert current_revision(engine) == "0004"
    insp = inspect(engine)
    assert "origin" not in {c["name"] for c in insp.get_columns("inference")}
    assert "shadow" not in {c["name"] for c in insp.get_columns("model")}
    upgrade_to_head(engine)
    insp = inspect(engine)
    assert "origin" in {c["name"] for c in insp.get_columns("inference")}
    assert ("model_id", "created_at") in {tuple(ix["column_names"]) for ix in insp.get_indexes("inference")}


def test_the_shadow_commands(hydra_home):
    import json

    from typer.testing import CliRunner

    from hydra.cli import app
    from hydra.config import load_config
    from hydra.db import make_engine
    from tests.helpers.models import add_active_model

    engine = make_engine(load_config().database_url)
    with session_scope(engine) as s:
        pt, active = add_active_model("fcal", (8, 8), session=s)
        pt_id, active_id = pt.id, active.id
    cand = _model(engine, pt_id)
    cli = CliRunner()
    done = cli.invoke(app, ["models", "shadow", str(cand)])
    assert done.exit_code == 0 and "now runs as the shadow" in done.output, done.output
    listed = cli.invoke(app, ["models", "list", "--json"])
    assert {json.loads(line)["id"]: json.loads(line)["shadow"] for line in listed.stdout.splitlines()} == {
        active_id: False,
        cand: True,
    }
    refused = cli.invoke(app, ["models", "shadow", str(active_id)])
    assert refused.exit_code == 1 and "active model" in refused.output
    assert cli.invoke(app, ["models", "shadow", str(cand), "--off"]).exit_code == 0
    assert cli.invoke(app, ["models", "shadow", str(cand), "--off"]).exit_code == 1  # not a shadow any more
    cli.invoke(app, ["models", "shadow", str(cand)])
    cleared = cli.invoke(app, ["models", "shadow", "--clear", "fcal"])
    assert cleared.exit_code == 0 and f"model {cand} no longer shadows fcal" in cleared.output
    with session_scope(engine) as s:
        assert shadow.shadow_of(pt_id, session=s) is None
    engine.dispose()
