"""Library service on SQLite and MariaDB: model table, confusion cells, disagreements, thresholds with permission."""

from __future__ import annotations

import pytest
from sqlmodel import select

from hydra.auth import PermissionDenied, create_user, get_user, grant
from hydra.db import session_scope
from hydra.db.models import (
    Image,
    Model,
    ModelClassification,
    Threshold,
    ThresholdChange,
    TrainingSet,
    TrainingSetImage,
)
from hydra.db.queries import active_model, create_plot_type, labels_of
from hydra.services import library
from hydra.services.labeling import relabel

# (human, predicted, weight of Good) for eight held-out images
VERDICTS = [
    ("Good", "Good", 0.95),
    ("Good", "Good", 0.55),
    ("Good", "Bad", 0.30),
    ("Bad", "Bad", 0.05),
    ("Bad", "Bad", 0.40),
    ("Bad", "Good", 0.90),
    ("Bad", "Good", 0.60),
    ("Good", "Good", 0.80),
]


@pytest.fixture
def lib(engine):
    with session_scope(engine) as s:
        pt = create_plot_type("cdc_occ", ["Good", "Bad"], session=s)
        for name, role in (("root", "admin"), ("ann", "expert"), ("bob", "labeler")):
            create_user(name, "pw", session=s, role=role)
        grant("ann", "cdc_occ", session=s, label=True, thresholds=True)
        grant("bob", "cdc_occ", session=s, label=True, thresholds=False)
        labels = {lb.name: lb.id for lb in labels_of(pt.id, session=s)}
        ts = TrainingSet(plot_type_id=pt.id, sampling="undersample", label_counts={"Good": 3, "Bad": 3})
        s.add(ts)
        s.flush()
        old = Model(
            plot_type_id=pt.id,
            head="classifier",
            path="/m/old",
            input_height=8,
            input_width=8,
            labels=["Good", "Bad"],
            active=True,
        )
        new = Model(
            plot_type_id=pt.id,
            head="classifier",
            path="/m/new",
            input_height=8,
            input_width=8,
            labels=["Good", "Bad"],
            training_set_id=ts.id,
            metrics={"accuracy": 0.75},
        )
        s.add_all([old, new])
        s.flush()
        for i, (human, pred, wg) in enumerate(VERDICTS):
            img = Image(
                path=f"/x/{i}.png",
                filename=f"{i}.png",
                plot_type_id=pt.id,
                content_hash=str(i),
                label_id=labels[human],
            )
            s.add(img)
            s.flush()
            s.add(
                TrainingSetImage(training_set_id=ts.id, image_id=img.id, split="test", label_id=labels[human])
            )
            s.add(
                ModelClassification(
                    model_id=new.id,
                    image_id=img.id,
                    human_label=human,
                    predicted_label=pred,
                    weights={"Good": wg, "Bad": round(1 - wg, 4)},
                )
            )
        s.add(Threshold(model_id=new.id, label="Good", value=0.5))
        ids = dict(pt=pt.id, old=old.id, new=new.id, labels=labels)
    return engine, ids


def test_models_of_lists_training_facts(lib):
    engine, ids = lib
    with session_scope(engine) as s:
        models = library.models_of(ids["pt"], session=s)
    by_id = {m.id: m for m in models}
    assert set(by_id) == {ids["old"], ids["new"]}
    new = by_id[ids["new"]]
    assert (new.sampling, new.training_size, new.label_counts) == ("undersample", 8, {"Good": 3, "Bad": 3})
    assert new.metrics["accuracy"] == 0.75 and not new.active
    assert by_id[ids["old"]].active and by_id[ids["old"]].sampling is None


def test_confusion_cells_hold_weights_of_each_cell(lib):
    engine, ids = lib
    with session_scope(engine) as s:
        rows = library.classifications(ids["new"], session=s)
    cells = library.confusion_cells(rows, ["Good", "Bad"])
    assert sorted(cells) == [("Bad", "Bad"), ("Bad", "Good"), ("Good", "Bad"), ("Good", "Good")]
    assert sorted(cells[("Bad", "Good")]) == [0.6, 0.9]
    assert sorted(cells[("Good", "Bad")]) == [0.7]  # weight of the predicted label
    assert sum(len(v) for v in cells.values()) == len(VERDICTS)


def test_disagreements_ranked_by_confidence_and_fixable(lib):
    engine, ids = lib
    with session_scope(engine) as s:
        rows = library.disagreements(ids["new"], session=s)
        assert [(d.human, d.predicted, d.weight) for d in rows] == [
            ("Bad", "Good", 0.9),
            ("Good", "Bad", 0.7),
            ("Bad", "Good", 0.6),
        ]
        assert not any(d.fixed for d in rows)
        with pytest.raises(PermissionDenied):
            relabel(None, rows[0].image_id, ids["labels"]["Good"], session=s, source="report")
        relabel(
            get_user("bob", session=s), rows[0].image_id, ids["labels"]["Good"], session=s, source="report"
        )
    with session_scope(engine) as s:
        top = library.disagreements(ids["new"], session=s)[0]
        assert top.fixed and top.current_label == "Good"


def test_save_thresholds_needs_permission_and_records_who(lib):
    engine, ids = lib
    with session_scope(engine) as s:
        with pytest.raises(PermissionDenied, match="bob may not thresholds"):
            library.save_thresholds(get_user("bob", session=s), ids["new"], {"Good": 0.7}, session=s)
        ann = get_user("ann", session=s)
        with pytest.raises(library.LibraryError, match="between 0 and 1"):
            library.save_thresholds(ann, ids["new"], {"Good": 1.5}, session=s)
        with pytest.raises(library.LibraryError, match="not labels"):
            library.save_thresholds(ann, ids["new"], {"Cosmic": 0.5}, session=s)
        assert library.save_thresholds(ann, ids["new"], {"Good": 0.7, "Bad": 0.6}, session=s) == 2
        assert library.save_thresholds(ann, ids["new"], {"Good": 0.7, "Bad": 0.6}, session=s) == 0
    with session_scope(engine) as s:
        assert library.thresholds_of(ids["new"], session=s) == {"Good": 0.7, "Bad": 0.6}
        good = s.exec(select(Threshold).where(Threshold.label == "Good")).one()
        assert good.set_by == get_user("ann", session=s).id and good.method == "manual"
        changes = s.exec(select(ThresholdChange).order_by(ThresholdChange.label)).all()
        assert [(c.label, c.old_value, c.new_value) for c in changes] == [
            ("Bad", None, 0.6),
            ("Good", 0.5, 0.7),
        ]
        assert library.threshold_changes(ids["new"], session=s)[0][3] == "ann"


def test_activate_is_admin_only(lib):
    engine, ids = lib
    with session_scope(engine) as s:
        with pytest.raises(PermissionDenied):
            library.activate(get_user("ann", session=s), ids["new"], session=s)
        library.activate(get_user("root", session=s), ids["new"], session=s)
    with session_scope(engine) as s:
        assert active_model(ids["pt"], session=s).id == ids["new"]
        assert not s.get(Model, ids["old"]).active


def test_live_metrics_follow_the_thresholds(lib):
    engine, ids = lib
    with session_scope(engine) as s:
        rows = library.classifications(ids["new"], session=s)
        defaults = library.default_thresholds(ids["new"], rows, ["Good", "Bad"], session=s)
    assert defaults["Good"] == 0.5  # stored
    assert 0.0 <= defaults["Bad"] <= 0.99  # filled by max-F1
    low = library.live_metrics(rows, ["Good", "Bad"], {"Good": 0.5, "Bad": 0.5})
    high = library.live_metrics(rows, ["Good", "Bad"], {"Good": 0.85, "Bad": 0.5})
    assert low.total == 8 and low.unconfirmed == 0
    # raising Good's threshold leaves the Good verdicts at 0.55, 0.6 and 0.8 unconfirmed
    assert high.unconfirmed == 3
    assert low.per_label["Good"]["precision"] == pytest.approx(3 / 5)
    assert high.per_label["Good"]["precision"] == pytest.approx(1 / 2)
    assert high.per_label["Good"]["recall"] == pytest.approx(1 / 4)
