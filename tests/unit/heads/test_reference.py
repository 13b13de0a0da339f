"""The reference-aware classifier and the shared synthetic faults."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from hydra.heads import create_head, load_model
from hydra.heads.faults import KINDS, apply_fault, make_faulty_with_kinds
from tests.helpers.heads import dataset

SIZE = (32, 40)
LABELS = ["Good", "Bad", "NoData"]


def _head(**kw):
    args = {"backbone": "plotnet", "reference": True, "input_size": SIZE}
    return create_head("classifier", labels=LABELS, problem_labels=["Bad", "NoData"], **(args | kw))


def test_reference_is_the_median_of_the_good_images_only_each_counted_once():
    head = _head()
    good = torch.full((3, *SIZE, 3), 100, dtype=torch.uint8)
    good[1] = 120
    good[2] = 200
    bad = torch.zeros((4, *SIZE, 3), dtype=torch.uint8)
    # a Good image listed twice (oversampled) must not tip the median
    images = torch.cat([good, good[2:], bad])
    targets = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2])
    assert head.fit_reference([(images, targets)]) == 3
    assert torch.allclose(head.ref_median, torch.full_like(head.ref_median, 120 / 255))
    assert bool(head.ref_ready)
    x = head.preprocess(good[:1])
    assert tuple(x.shape) == (1, 6, *SIZE)
    z = x[:, 3:]  # (100 - 120) / 255 over the spread: a negative deviation everywhere
    assert torch.all(z < 0)


def test_reference_travels_with_the_weights_and_old_models_load_without_one(tmp_path):
    head = _head()
    images, labels = dataset(12, *SIZE, seed=1)
    head.fit_reference([(torch.from_numpy(images), torch.from_numpy(labels))])
    head.eval()
    head.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert torch.equal(loaded.ref_median, head.ref_median) and torch.equal(loaded.ref_scale, head.ref_scale)
    batch = torch.from_numpy(images[:4])
    with torch.no_grad():
        assert torch.allclose(loaded.weights(loaded.preprocess(batch)), head.weights(head.preprocess(batch)))
    # a model saved before the reference existed: the buffers are missing from its file
    state = load_file(str(tmp_path / "m" / "model.safetensors"))
    save_file(
        {k: v for k, v in state.items() if not k.startswith("ref_")},
        str(tmp_path / "m" / "model.safetensors"),
    )
    old = load_model(tmp_path / "m")
    assert not bool(old.ref_ready) and torch.all(old.ref_median == 0.5)


def test_synthetic_faults_join_the_batch_with_problem_labels():
    head = _head(synth_faults=1.0, synth_weight=0.5)
    assert head._synthetic_label("dead_band") == LABELS.index("Bad")
    assert head._synthetic_label("empty") == LABELS.index("NoData")
    images, labels = dataset(8, *SIZE, seed=2)
    seen = {}
    original = head.net.forward

    def spy(x):
        seen["n"] = x.shape[0]
        return original(x)

    head.net.forward = spy
    head.train()
    loss = head.training_loss((torch.from_numpy(images), torch.from_numpy(labels)))
    assert torch.isfinite(loss)
    assert seen["n"] == 8 + int((labels == 0).sum())  # every Good image also came in as a fault
    without = _head(synth_faults=0.0)
    without.net.forward = spy
    without.training_loss((torch.from_numpy(images), torch.from_numpy(labels)))
    assert seen["n"] == 8


@pytest.mark.parametrize("kind", KINDS)
def test_every_fault_changes_a_plot_visibly(kind):
    images, labels = dataset(6, 60, 80, seed=5)
    img = torch.from_numpy(images[labels == 0][0]).permute(2, 0, 1).float() / 255
    out = apply_fault(img, kind, torch.Generator().manual_seed(3))
    changed = int(((out - img).abs().amax(dim=0) > 0.05).sum())
    assert out.shape == img.shape and changed >= 4, kind
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_faults_are_seeded_and_name_their_kind():
    images, _ = dataset(4, 60, 80, seed=6)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    a, kinds_a = make_faulty_with_kinds(x, torch.Generator().manual_seed(9))
    b, kinds_b = make_faulty_with_kinds(x, torch.Generator().manual_seed(9))
    assert kinds_a == kinds_b and set(kinds_a) <= set(KINDS) and torch.equal(a, b)
    assert np.all([k in KINDS for k in kinds_a])
