"""The ``ensemble`` head: its fold models' mean weights, saved and loaded as one model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hydra.heads import create_head, load_model
from hydra.heads.ensemble import EnsembleHead
from tests.helpers.heads import dataset

LABELS = ["Good", "Bad", "NoData"]
SIZE = (32, 40)


def _member(seed: int):
    torch.manual_seed(seed)
    head = create_head(
        "classifier", labels=LABELS, problem_labels=["Bad", "NoData"], input_size=SIZE, backbone="plotnet",
        reference=True, cam_guide=True,
    )  # fmt: skip
    head.ref_median.uniform_(0.2, 0.8)  # each member keeps its own Good reference
    head.set_logit_bias([0.3 * seed, 0.0, -0.3 * seed])
    return head.eval()


@pytest.fixture(scope="module")
def members():
    return [_member(s) for s in (1, 2, 3)]


def test_the_weights_are_the_mean_of_the_members_weights(members):
    ensemble = EnsembleHead.of(members)
    pixels = torch.from_numpy(dataset(6, *SIZE, seed=5)[0])
    with torch.inference_mode():
        expected = torch.stack([m.weights(m.preprocess(pixels)) for m in members]).mean(0)
        got = ensemble.weights(ensemble.preprocess(pixels))
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)
    # members differ (or the mean would hide nothing): their weights are not all the same
    assert float((members[0].weights(members[0].preprocess(pixels)) - expected).abs().max()) > 1e-3


def test_a_saved_ensemble_loads_as_one_model_with_the_same_weights(members, tmp_path):
    ensemble = EnsembleHead.of(members)
    ensemble.set_logit_bias([0.5, -0.25, -0.25])
    ensemble.save(tmp_path / "model")
    loaded = load_model(tmp_path / "model")
    assert isinstance(loaded, EnsembleHead) and len(loaded.members) == 3
    assert loaded.labels == LABELS and loaded.input_size == SIZE
    pixels = torch.from_numpy(dataset(4, *SIZE, seed=6)[0])
    with torch.inference_mode():
        torch.testing.assert_close(
            loaded.weights(loaded.preprocess(pixels)), ensemble.weights(ensemble.preprocess(pixels))
        )
    # a new training starts from one member: a classifier with that member's weights and reference
    first = loaded.first_member()
    assert first.registered_name() == "classifier"
    torch.testing.assert_close(first.ref_median, members[0].ref_median)


def test_grad_cam_is_the_mean_of_the_members_own_maps(members):
    from hydra.heads.cam import grad_cam

    ensemble = EnsembleHead.of(members)
    pixels = torch.from_numpy(dataset(3, *SIZE, seed=7)[0])
    maps = grad_cam(ensemble, ensemble.preprocess(pixels), [1, 1, 0])
    assert maps.shape == (3, *SIZE) and maps.min() >= 0.0 and maps.max() <= 1.0 and maps.max() > 0.0
    # each member explains its own verdict through its own layers and reference (cam_guide)
    own = [grad_cam(m, m.preprocess(pixels), [1, 1, 0]) for m in members]
    np.testing.assert_allclose(maps, np.mean(own, axis=0), atol=1e-5)
    assert float(np.abs(own[0] - own[1]).max()) > 1e-2  # the members do not all point alike


def test_members_of_another_kind_or_config_are_refused(members):
    with pytest.raises(ValueError, match="one class with one config"):
        EnsembleHead.of([members[0], create_head("classifier", labels=LABELS, problem_labels=["Bad"],
                                                 input_size=SIZE, backbone="plotnet")])  # fmt: skip
    with pytest.raises(ValueError, match="must be classifiers"):
        EnsembleHead(member="siamese", member_hparams={}, labels=LABELS, problem_labels=["Bad"])
    with pytest.raises(ValueError, match="at least one member"):
        EnsembleHead(member="classifier", size=0, labels=LABELS, problem_labels=["Bad"])


def test_members_that_trained_differently_serve_together_and_others_are_refused(members):
    """A preset's companion: another starting point and learning rate, the same model once trained."""

    def member(**kw):
        return create_head("classifier", labels=LABELS, problem_labels=["Bad", "NoData"], input_size=SIZE,
                           backbone="plotnet", reference=True, cam_guide=True, **kw)  # fmt: skip

    companion = member(lr=0.0123, weight_decay=0.0, synth_faults=0.5, drop_rate=0.2)
    both = EnsembleHead.of([members[0], companion])
    assert len(both.members) == 2 and both.hparams["member_hparams"]["lr"] == members[0].hparams["lr"]
    with pytest.raises(ValueError, match="differ only in weights_file, lr"):
        EnsembleHead.of([members[0], member(reference_clip=16)])  # it reads its input otherwise
