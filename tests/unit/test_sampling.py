"""Training-set sampling: balancing, Ignore, stratified split, clear errors."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

from hydra.data.sampling import Candidate, SamplingError, plan_training_set, select

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


def _images(**counts: int) -> list[Candidate]:
    out, i = [], 0
    for label, n in counts.items():
        for _ in range(n):
            out.append(Candidate(i, label, 1.0 + (i % 3), T0 + timedelta(minutes=i)))
            i += 1
    return out


LABELS = ["Good", "Bad", "NoData"]


def _plan(images, **kw):
    kw.setdefault("labels", LABELS)
    return plan_training_set(images, plot_type="cdc_occupancy", problem_labels=["Bad"], **kw)


def test_undersample_balances_down_to_the_problem_label():
    groups = select(
        _images(Good=80, Bad=20, NoData=10), labels=LABELS, problem_labels=["Bad"], method="undersample"
    )
    assert {k: len(v) for k, v in groups.items()} == {"Good": 20, "Bad": 20, "NoData": 10}


def test_oversample_repeats_train_images_up_to_the_largest_label_and_keeps_held_out_single():
    plan = _plan(_images(Good=80, Bad=20, NoData=10), method="oversample")
    counts = plan.label_counts()
    assert counts["train"]["Good"] == counts["train"]["Bad"] == counts["train"]["NoData"]
    assert all(m.copies == 1 for m in plan.members if m.split != "train")
    assert max(m.copies for m in plan.members) > 1
    assert len({m.image_id for m in plan.members}) == 110  # copies, not new images


def test_ignore_is_never_trained_on_and_weights_travel():
    images = _images(Good=30, Bad=30, Ignore=12)
    plan = _plan(images, labels=["Good", "Bad", "Ignore"])
    assert plan.labels == ["Good", "Bad"]
    assert all(m.label != "Ignore" for m in plan.members)
    weights = {c.image_id: c.weight for c in images}
    assert all(m.weight == weights[m.image_id] for m in plan.members)
    assert {m.weight for m in plan.members} == {1.0, 2.0, 3.0}


def test_split_is_stratified_disjoint_and_seeded():
    images = _images(Good=100, Bad=40, NoData=20)
    plan = _plan(images, seed=7)
    per_split = {s: Counter(m.label for m in ms) for s, ms in plan.splits.items()}
    assert per_split["test"] == {"Good": 15, "Bad": 6, "NoData": 3}
    assert per_split["val"] == {"Good": 15, "Bad": 6, "NoData": 3}
    ids = [m.image_id for m in plan.members]
    assert len(ids) == len(set(ids)) == 160
    again, other = _plan(images, seed=7), _plan(images, seed=8)
    assert [(m.image_id, m.split) for m in again.members] == [(m.image_id, m.split) for m in plan.members]
    assert {m.image_id for m in other.splits["test"]} != {m.image_id for m in plan.splits["test"]}


def test_recent_keeps_the_newest_and_needs_a_count():
    images = _images(Good=50, Bad=50)
    groups = select(images, labels=["Good", "Bad"], problem_labels=["Bad"], method="recent", max_images=30)
    kept = sorted(c.image_id for g in groups.values() for c in g)
    assert kept == list(range(70, 100))
    with pytest.raises(SamplingError, match="needs max_images"):
        select(images, labels=["Good", "Bad"], problem_labels=["Bad"], method="recent")


def test_max_images_caps_in_proportion():
    groups = select(_images(Good=200, Bad=100), labels=["Good", "Bad"], problem_labels=["Bad"], max_images=60)
    assert {k: len(v) for k, v in groups.items()} == {"Good": 40, "Bad": 20}


def test_too_few_images_of_a_label_names_counts():
    with pytest.raises(
        SamplingError, match=r"'cdc_occupancy' has 2 labelled image\(s\) of label 'Bad'; needs at least 3"
    ):
        _plan(_images(Good=50, Bad=2, NoData=10))
    with pytest.raises(SamplingError, match="unknown sampling method 'smote'"):
        _plan(_images(Good=50, Bad=20), method="smote")


def test_optional_and_held_out_only_labels_go_to_test():
    plan = _plan(_images(Good=50, Bad=2), labels=["Good", "Bad"], optional_labels=["Bad"])
    assert [m.split for m in plan.members if m.label == "Bad"] == ["test", "test"]
    plan = _plan(_images(Good=50, Bad=30), labels=["Good", "Bad"], train_labels=["Good"])
    assert {m.split for m in plan.members if m.label == "Bad"} == {"test"}
    assert Counter(m.split for m in plan.members if m.label == "Good") == {"train": 34, "val": 8, "test": 8}


def test_folds_put_every_image_in_train_once_stratified_and_seeded():
    images = _images(Good=41, Bad=17, NoData=4)
    plan = _plan(images, folds=5, seed=3)
    assert {m.split for m in plan.members} == {"train"}
    assert sorted(m.image_id for m in plan.members) == [c.image_id for c in images]
    for label, n in (("Good", 41), ("Bad", 17), ("NoData", 4)):
        sizes = Counter(m.fold for m in plan.members if m.label == label)
        assert sum(sizes.values()) == n and set(sizes) <= set(range(5))
        assert (
            max(sizes.values()) - min(sizes.get(f, 0) for f in range(5)) <= 1
        )  # as even as the count allows
    assert [(m.image_id, m.fold) for m in _plan(images, folds=5, seed=3).members] == [
        (m.image_id, m.fold) for m in plan.members
    ]
    assert [m.fold for m in _plan(images, folds=5, seed=4).members] != [m.fold for m in plan.members]


def test_folds_need_two_images_of_a_trained_label():
    with pytest.raises(SamplingError, match="1 labelled image"):
        _plan(_images(Good=10, Bad=5, NoData=1), folds=5)
    plan = _plan(_images(Good=10, Bad=0, NoData=0), folds=5, optional_labels=["Bad", "NoData"])
    assert {m.label for m in plan.members} == {"Good"}
