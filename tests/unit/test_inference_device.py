"""The device-aware parts of :mod:`hydra.inference` that a CPU can check.

The CPU path stays the plain one (the same numbers as the head itself); resizing on the
device (what CUDA does with pixels not yet at the input size) matches the CPU's box filter;
torch.compile is used for the weights only, with its cache where the caller says. The CUDA
upload (pinned buffer, non-blocking copy, bf16) runs in benchmarks/gpu_serve.py and
benchmarks/gpu_heads.py on a GPU host.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

from hydra.inference import ServingModel, cam_batch, predict_batch, use_compile_cache
from tests.helpers.heads import dataset

SIZE = (32, 40)


def _serving(**hparams) -> ServingModel:
    from hydra.heads import create_head

    torch.manual_seed(0)
    head = create_head(
        "classifier", labels=["Good", "Bad"], problem_labels=["Bad"], input_size=SIZE, backbone="plotnet",
        **hparams,
    ).eval()  # fmt: skip
    return ServingModel(
        model_id=1, head=head, labels=head.labels, input_size=SIZE, channels=3, problem_labels=["Bad"]
    )


@pytest.fixture(scope="module")
def model() -> ServingModel:
    return _serving()


@pytest.fixture(scope="module")
def reference_model() -> ServingModel:
    """A head that reads the deviation from its Good reference, which is kept at the input size."""
    serving = _serving(reference=True)
    serving.head.ref_median.uniform_(0.2, 0.8)
    return serving


def test_the_cpu_path_is_the_head_itself(model):
    pixels = dataset(5, *SIZE, seed=2)[0]
    with torch.inference_mode():
        x = model.head.preprocess(torch.from_numpy(pixels))
        expected = torch.softmax(model.head(x).float(), dim=-1).numpy()
    got = predict_batch(model, pixels)
    np.testing.assert_array_equal(got, expected)
    assert model.network() is model.head and not model.on_cuda
    assert torch.equal(model.net_input(torch.from_numpy(pixels)), x)  # the head's preprocessing, as is
    with pytest.raises(ValueError, match="uint8 N x 32 x 40 x 3"):  # the CPU never resizes
        model.to_tensor(np.zeros((1, 64, 80, 3), np.uint8))


@pytest.mark.parametrize("which", ["model", "reference_model"])
def test_resizing_on_the_device_matches_the_cpu_box_filter(which, request):
    model = request.getfixturevalue(which)
    channels = model.head.input_channels()
    big = dataset(3, 2 * SIZE[0], 2 * SIZE[1], seed=3)[0]
    on_device = model.net_input(torch.from_numpy(big))
    assert tuple(on_device.shape) == (3, channels, *SIZE)
    boxed = np.stack(
        [
            np.asarray(Image.fromarray(im).resize(SIZE[::-1], Image.Resampling.BOX, reducing_gap=None))
            for im in big
        ]
    )
    reference = model.head.preprocess(torch.from_numpy(boxed))
    # the CPU path rounds to uint8 first: about half a grey level apart (1/255 in [-1, 1] units)
    # (the deviation channels are z-scores over 4: a grey level apart is as close there)
    assert float((on_device - reference).abs().max()) <= 2.0 / 255.0
    small = model.net_input(torch.from_numpy(dataset(1, 20, 24, seed=4)[0]))  # growing: bilinear
    assert tuple(small.shape) == (1, channels, *SIZE) and float(small[:, :3].abs().max()) <= 1.0 + 1e-5


def test_compile_is_for_the_weights_only_and_its_cache_is_where_asked(model, tmp_path, monkeypatch):
    for key in ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR", "TORCHINDUCTOR_FX_GRAPH_CACHE",
                "TORCHINDUCTOR_AUTOGRAD_CACHE"):  # fmt: skip
        monkeypatch.setenv(key, "unset")  # restored after the test
        monkeypatch.delenv(key)
    cache = use_compile_cache(tmp_path / "cache" / "torch-compile")
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(cache / "inductor")
    assert os.environ["TRITON_CACHE_DIR"] == str(cache / "triton")
    assert os.environ["TORCHINDUCTOR_FX_GRAPH_CACHE"] == "1" and (cache / "inductor").is_dir()

    pixels = dataset(4, *SIZE, seed=5)[0]
    plain = predict_batch(model, pixels)
    compiled = ServingModel(
        model_id=1, head=model.head, labels=model.labels, input_size=SIZE, channels=3, problem_labels=["Bad"]
    )
    compiled.compile(backend="eager")  # dynamo without a C compiler: what compile changes here
    net = compiled.network()
    compiled.compile(backend="eager")
    assert compiled.network() is net is not model.head  # once per model
    np.testing.assert_allclose(predict_batch(compiled, pixels), plain, atol=1e-6)
    maps = cam_batch(compiled, pixels[:2], [1, 1])  # Grad-CAM hooks the plain head
    assert maps.shape == (2, *SIZE) and maps.dtype == np.float32
