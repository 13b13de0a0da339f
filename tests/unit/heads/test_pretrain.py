"""The pretrained backbone shipped with ``classifier-cpu-pretrained``, and the code that makes it."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest
import torch

pytest.importorskip("mplhep", reason="needs the root extra (mplhep, matplotlib)")

from safetensors import safe_open  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from hydra.heads.presets import create_from_preset, find_preset, read_preset  # noqa: E402
from hydra.heads.pretrain import PretrainOptions, prepare_types, pretrain, zero_shot  # noqa: E402

LABELS = ["Good", "Bad", "NoData"]
PRESET = "classifier-cpu-pretrained"


def _head(preset: str = PRESET, **overrides):
    """A three-label head of ``preset`` (``weights_file=None``: from random weights)."""
    return create_from_preset(preset, labels=LABELS, problem_labels=LABELS[1:], **overrides)


def _shipped():
    name, kwargs = read_preset(PRESET)
    return kwargs["weights_file"]


def test_the_pretrained_preset_names_a_backbone_shipped_beside_it():
    path = _shipped()
    assert path.startswith(str(find_preset(PRESET).parent))
    head = _head()
    state = load_file(path)
    net = head.net.state_dict()
    assert set(state) == set(net)
    assert all(torch.equal(state[k], net[k]) for k in state)  # every tensor, the classifier layer too
    two = create_from_preset(PRESET, labels=["Good", "Bad"], problem_labels=["Bad"])
    assert torch.equal(two.net.state_dict()["features.0.0.weight"], state["features.0.0.weight"])
    assert not torch.equal(two.net.state_dict()["fc.weight"][:2], state["fc.weight"][:2])  # fc: 2 labels, new


def test_the_shipped_backbone_tells_faults_apart_on_plot_types_it_never_saw():
    """Zero-shot, before any fine-tuning: made-up plot types beyond the pretraining's seeds."""
    from hydra.data.plotbank import render_type

    with safe_open(_shipped(), "pt") as f:
        report = json.loads(f.metadata()["hydra_pretrain"])
    # the defaults built it: `python -m hydra.heads.pretrain --out FILE` rebuilds it
    assert report["options"] == asdict(PretrainOptions())
    trained = report["options"]["types"] + report["options"]["held_out"]
    banks = [render_type(seed, images=24) for seed in range(trained + 500, trained + 504)]
    fresh, shipped = _head("classifier-cpu", weights_file=None), _head()
    untrained = zero_shot(fresh, prepare_types(fresh, banks))
    pretrained = zero_shot(shipped, prepare_types(shipped, banks))
    assert pretrained["roc_auc_median"] >= 0.85, pretrained
    assert pretrained["roc_auc_median"] > untrained["roc_auc_median"] + 0.2, (pretrained, untrained)


def test_pretraining_writes_the_backbone_and_its_report(tmp_path):
    out = tmp_path / "bb.safetensors"
    opts = PretrainOptions(types=3, held_out=1, images=8, epochs=1, batch_size=8, workers=1, threads=1)
    report = pretrain(out, opts)
    assert report["options"]["types"] == 3 and report["held_out_after"]["types"] == 1
    torch.manual_seed(opts.seed)  # the weights the pretraining started from
    start = _head("classifier-cpu", weights_file=None).net.state_dict()
    state = load_file(str(out))
    assert set(state) == set(start)
    assert not torch.equal(state["features.0.0.weight"], start["features.0.0.weight"])  # it trained
    with safe_open(str(out), "pt") as f:
        assert json.loads(f.metadata()["hydra_pretrain"])["labels"] == LABELS
    assert not list(tmp_path.glob(".*.tmp"))  # written whole, then renamed
    again = tmp_path / "again.safetensors"
    pretrain(again, opts)
    assert all(torch.equal(state[k], v) for k, v in load_file(str(again)).items())  # seeded: the same weights


def test_a_site_presets_weights_file_is_read_beside_the_preset(tmp_path):
    site = tmp_path / "heads"
    site.mkdir()
    (site / "mine.yaml").write_text("head: classifier\nbackbone: plotnet\nweights_file: ours.safetensors\n")
    (site / "abs.yaml").write_text(
        f"head: classifier\nbackbone: plotnet\nweights_file: {tmp_path / 'x.pt'}\n"
    )
    assert read_preset(site / "mine.yaml")[1]["weights_file"] == str(site / "ours.safetensors")
    assert read_preset(site / "abs.yaml")[1]["weights_file"] == str(tmp_path / "x.pt")
    with pytest.raises(FileNotFoundError, match="ours.safetensors does not exist"):
        create_from_preset(site / "mine.yaml", labels=["Good", "Bad"], problem_labels=["Bad"])


def test_each_made_up_plot_type_trains_against_its_own_whole_reference():
    """Swapping a plot type's reference in swaps all of it: its Good images read their leave-one-out
    deviation from the other Good images of *that* type, as right after fitting it."""
    from hydra.data.plotbank import render_type

    head = _head(weights_file=None)
    types = prepare_types(head, [render_type(seed, images=8) for seed in (1, 2)])
    first = types[0]
    fresh = _head(weights_file=None)
    fresh.fit_reference([(first.images, first.targets)])
    x = fresh.to_unit(first.images)
    member = first.targets == LABELS.index("Good")
    expected = fresh.training_input(x, x, member)
    first.use_reference(head)  # the last type prepared was the other one
    assert torch.allclose(head.training_input(x, x, member), expected)
    assert torch.allclose(head.preprocess(first.images), fresh.preprocess(first.images))
