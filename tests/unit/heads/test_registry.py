"""The registry finds heads through package metadata, lazily and robustly.

An installed plugin and a broken one, in child processes: tests/integration/heads/test_registry.py.
"""

from __future__ import annotations

import pytest

from hydra.heads import HeadLoadError, UnknownHeadError, create_head, list_heads, load_head
from hydra.heads.presets import create_from_preset, list_presets, read_preset


def test_builtin_heads_are_listed_and_loaded():
    assert {"classifier", "siamese"} <= set(list_heads())
    assert list_heads("sia*") == ["siamese"]
    assert load_head("classifier").__name__ == "ClassifierHead"
    assert load_head("siamese").registered_name() == "siamese"


def test_unknown_head_lists_the_known_ones():
    with pytest.raises(UnknownHeadError) as info:
        load_head("resnet_magic")
    message = str(info.value)
    assert "resnet_magic" in message and "classifier" in message and "siamese" in message
    with pytest.raises(UnknownHeadError):
        create_head("resnet_magic")


def test_presets_hold_only_constructor_arguments():
    assert {"classifier-inception", "classifier-cpu", "siamese-cpu"} <= set(list_presets())
    name, kwargs = read_preset("classifier-inception")
    assert name == "classifier" and kwargs["backbone"] == "inception_v3"
    assert kwargs["input_size"] == [299, 299]
    for preset in ("classifier-cpu", "siamese-cpu"):
        head = create_from_preset(preset, labels=["Good", "Bad"], problem_labels=["Bad"])
        assert head.labels == ["Good", "Bad"]


def test_a_companion_may_change_only_how_its_member_trains(tmp_path):
    """``companion``: what a second model trained beside each one does differently (tests/integration/test_train.py)."""
    (tmp_path / "start.safetensors").write_bytes(b"")
    path = tmp_path / "mine.yaml"
    path.write_text(
        "head: classifier\nbackbone: plotnet\nlr: 0.003\n"
        "companion:\n  weights_file: start.safetensors\n  lr: 0.001\n"
    )
    name, kwargs = read_preset(path)
    assert name == "classifier" and kwargs["lr"] == 0.003
    assert kwargs["companion"] == {"weights_file": str(tmp_path / "start.safetensors"), "lr": 0.001}
    head = create_from_preset(path, labels=["Good", "Bad"], problem_labels=["Bad"])  # the head alone
    assert "companion" not in head.hparams and head.hparams["lr"] == 0.003
    path.write_text("head: classifier\ncompanion:\n  backbone: resnet18\n  lr: 0.001\n")
    with pytest.raises(ValueError, match=r"may change only how its member trains .*not \['backbone'\]"):
        read_preset(path)
    path.write_text("head: classifier\ncompanion: 3\n")
    with pytest.raises(ValueError, match="companion must be a mapping"):
        read_preset(path)


def test_head_load_error_is_an_import_error():
    assert issubclass(HeadLoadError, ImportError)
