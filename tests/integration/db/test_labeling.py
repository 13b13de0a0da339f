"""The Labeler's service layer on real SQLite and MariaDB databases."""

from __future__ import annotations

from datetime import timedelta

import pytest

from hydra.auth import PermissionDenied, create_user, grant
from hydra.db import session_scope
from hydra.db.models import Image, ImageLabel, utcnow
from hydra.db.queries import create_plot_type, labels_of
from hydra.services.labeling import (
    LabelingError,
    apply_labels,
    count_unlabeled,
    editor_page,
    history,
    leaderboard,
    next_page,
    relabel,
)


@pytest.fixture
def world(engine):
    """Two plot types, three users (labeler with rights, one without, admin), 60 images."""
    t0 = utcnow() - timedelta(days=1)
    with session_scope(engine) as s:
        pt = create_plot_type("cdc_occ", ["Good", "Bad", "NoData"], session=s)
        other = create_plot_type("fcal_occ", ["Good", "Bad"], session=s)
        create_user("ann", "pw", session=s)
        create_user("bob", "pw", session=s)
        create_user("root", "pw", session=s, role="admin")
        grant("ann", "cdc_occ", session=s)
        for i in range(60):
            s.add(
                Image(
                    path=f"/x/cdc_occ-{i}.png",
                    filename=f"cdc_occ-{i}.png",
                    plot_type_id=pt.id,
                    run=1000 + i,
                    created_at=t0 + timedelta(minutes=i),
                    content_hash=f"h{i}",
                    doubt=(i % 7) / 10,
                )
            )
        s.add(Image(path="/x/f.png", filename="f.png", plot_type_id=other.id, content_hash="f"))
        s.flush()
        labels = {lb.name: lb.id for lb in labels_of(pt.id, session=s)}
        ids = dict(pt=pt.id, other=other.id, labels=labels)
    return engine, ids


def _user(s, name):
    from hydra.auth import get_user

    return get_user(name, session=s)


def test_next_page_orders(world):
    engine, ids = world
    with session_scope(engine) as s:
        oldest = next_page(ids["pt"], session=s, limit=48)
        assert len(oldest) == 48
        assert [g.run for g in oldest[:3]] == [1000, 1001, 1002]
        doubtful = next_page(ids["pt"], session=s, order="doubtful", limit=10)
        assert all(g.doubt == pytest.approx(0.6) for g in doubtful[:8])
        assert doubtful[0].run == 1006  # ties: oldest first
        newest = next_page(ids["pt"], session=s, order="newest", limit=1)
        assert newest[0].run == 1059
        rest = next_page(ids["pt"], session=s, exclude=[g.id for g in oldest], limit=48)
        assert len(rest) == 12
        with pytest.raises(LabelingError, match="unknown order"):
            next_page(ids["pt"], session=s, order="random")  # type: ignore[arg-type]


def test_apply_stores_page_in_one_transaction_and_brings_next(world):
    engine, ids = world
    good, bad = ids["labels"]["Good"], ids["labels"]["Bad"]
    with session_scope(engine) as s:
        page = next_page(ids["pt"], session=s, limit=48)
        painted = {g.id: good for g in page}
        painted[page[5].id] = bad
        result = apply_labels(_user(s, "ann"), ids["pt"], painted, session=s)
    assert result.stored == 48 and result.skipped == ()
    with session_scope(engine) as s:
        assert count_unlabeled(ids["pt"], session=s) == 12
        nxt = next_page(ids["pt"], session=s, limit=48)
        assert {g.id for g in nxt}.isdisjoint(painted)
        img = s.get(Image, page[5].id)
        assert img.label_id == bad and img.labeled_at is not None
        rows = s.exec(__import__("sqlmodel").select(ImageLabel)).all()
        assert len(rows) == 48 and {r.source for r in rows} == {"labeler"}
        assert leaderboard(ids["pt"], session=s) == [("ann", 48)]


def test_apply_refuses_without_permission_and_writes_nothing(world):
    engine, ids = world
    good = ids["labels"]["Good"]
    with pytest.raises(PermissionDenied, match="bob may not label"), session_scope(engine) as s:
        page = next_page(ids["pt"], session=s, limit=3)
        apply_labels(_user(s, "bob"), ids["pt"], {g.id: good for g in page}, session=s)
    with pytest.raises(PermissionDenied, match="anonymous"), session_scope(engine) as s:
        apply_labels(None, ids["pt"], {1: good}, session=s)
    with session_scope(engine) as s:
        assert count_unlabeled(ids["pt"], session=s) == 60
        # the admin may label every plot type
        page = next_page(ids["pt"], session=s, limit=2)
        assert apply_labels(_user(s, "root"), ids["pt"], {g.id: good for g in page}, session=s).stored == 2


def test_apply_rejects_foreign_images_and_labels(world):
    engine, ids = world
    good = ids["labels"]["Good"]
    with session_scope(engine) as s:
        ann = _user(s, "ann")
        foreign = next_page(ids["other"], session=s, limit=1)[0].id
        with pytest.raises(LabelingError, match="another plot type"):
            apply_labels(ann, ids["pt"], {foreign: good}, session=s)
        with pytest.raises(LabelingError, match="not labels of this plot type"):
            apply_labels(ann, ids["pt"], {1: 9999}, session=s)
        with pytest.raises(LabelingError, match="unknown image"):
            apply_labels(ann, ids["pt"], {123456: good}, session=s)


def test_labeler_skips_images_labeled_meanwhile(world):
    engine, ids = world
    good, bad = ids["labels"]["Good"], ids["labels"]["Bad"]
    with session_scope(engine) as s:
        page = next_page(ids["pt"], session=s, limit=4)
        apply_labels(_user(s, "root"), ids["pt"], {page[0].id: bad}, session=s)
    with session_scope(engine) as s:
        result = apply_labels(_user(s, "ann"), ids["pt"], {g.id: good for g in page}, session=s)
        assert result.stored == 3 and result.skipped == (page[0].id,)
        assert s.get(Image, page[0].id).label_id == bad


def test_editor_filters_and_relabel_keeps_history(world):
    engine, ids = world
    good, bad, nodata = (ids["labels"][n] for n in ("Good", "Bad", "NoData"))
    with session_scope(engine) as s:
        page = next_page(ids["pt"], session=s, limit=20)
        painted = {g.id: (bad if i < 5 else good) for i, g in enumerate(page)}
        apply_labels(_user(s, "ann"), ids["pt"], painted, session=s)
    with session_scope(engine) as s:
        assert len(editor_page(ids["pt"], session=s)) == 20
        bads = editor_page(ids["pt"], session=s, label_ids=[bad])
        assert {g.id for g in bads} == {g.id for g in page[:5]}
        window = editor_page(ids["pt"], session=s, start=page[2].created_at, end=page[4].created_at)
        assert [g.id for g in window] == [page[3].id, page[2].id]
        assert len(editor_page(ids["pt"], session=s, run_min=1003, run_max=1004)) == 2
        with pytest.raises(LabelingError, match="starts"):
            editor_page(ids["pt"], session=s, start=page[4].created_at, end=page[2].created_at)
        target = page[0].id
        assert relabel(_user(s, "ann"), target, nodata, session=s) is True
        assert relabel(_user(s, "ann"), target, nodata, session=s) is False
        with pytest.raises(PermissionDenied):
            relabel(_user(s, "bob"), target, good, session=s)
    with session_scope(engine) as s:
        assert s.get(Image, target).label_id == nodata
        steps = history(target, session=s)
        assert [(h.label, h.user, h.source) for h in steps] == [
            ("Bad", "ann", "labeler"),
            ("NoData", "ann", "editor"),
        ]
        assert leaderboard(ids["pt"], session=s) == [("ann", 21)]
        assert leaderboard(ids["pt"], session=s, since=utcnow() + timedelta(hours=1)) == []
