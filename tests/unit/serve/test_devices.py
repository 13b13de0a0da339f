"""Which device each Predict worker gets: ``serve.device`` auto/cpu/cuda/cuda:N, the supervisor's plan.

No GPU is needed: torch's device count is monkeypatched (the GPU path itself is measured by
benchmarks/gpu_serve.py on a GPU host).
"""

from __future__ import annotations

import pytest

from hydra.config import ConfigError
from hydra.serve import devices
from hydra.serve.devices import compile_cache_dir, resolve_device, worker_devices
from hydra.serve.stage import Addresses
from tests.helpers.serve import cfg_at


@pytest.fixture
def gpus(monkeypatch):
    """Pretend this host has ``n`` visible GPUs (``gpus(n)``), as torch would report them."""
    import torch

    def set_count(n: int) -> None:
        monkeypatch.setattr(devices, "_gpu_device_nodes", lambda: n > 0)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)

    return set_count


def test_auto_is_one_worker_per_gpu_else_the_configured_cpu_workers(gpus):
    gpus(4)
    assert devices.gpu_count() == 4
    assert worker_devices("auto", 2) == ["cuda:0", "cuda:1", "cuda:2", "cuda:3"]
    assert worker_devices("cuda", 7) == ["cuda:0", "cuda:1", "cuda:2", "cuda:3"]
    assert worker_devices("cuda:2", 3) == ["cuda:2"] * 3
    assert worker_devices("cpu", 3) == ["cpu"] * 3
    assert worker_devices("auto", 0) == []  # a hub: every worker runs on another host
    gpus(0)
    assert devices.gpu_count() == 0
    assert worker_devices("auto", 3) == ["cpu"] * 3
    assert worker_devices("cpu", 1) == ["cpu"]


def test_a_gpu_that_is_not_there_is_a_config_error(gpus):
    gpus(0)
    with pytest.raises(ConfigError, match="no GPU is visible"):
        worker_devices("cuda", 2)
    with pytest.raises(ConfigError, match="no GPU visible"):
        worker_devices("cuda:0", 1)
    gpus(2)
    with pytest.raises(ConfigError, match="cuda:2: 2 GPU"):
        worker_devices("cuda:2", 1)


def test_one_worker_started_by_hand_resolves_its_device(gpus):
    gpus(2)
    assert resolve_device("auto") == "cuda:0"
    assert resolve_device("cuda") == "cuda:0"
    assert resolve_device("cuda:1") == "cuda:1"
    assert resolve_device("cpu") == "cpu"
    gpus(0)
    assert resolve_device("auto") == "cpu"
    with pytest.raises(ConfigError):
        resolve_device("cuda:0")


def test_no_device_node_means_no_gpu_without_asking_torch(monkeypatch):
    import torch

    monkeypatch.setattr(devices, "_gpu_device_nodes", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: pytest.fail("torch was asked"))
    assert devices.gpu_count() == 0


def _predict_children(sup) -> list[tuple[str, str, str]]:
    out = []
    for c in sup.children:
        if c.name.startswith("predict-"):
            argv = c.argv
            out.append((c.name, argv[argv.index("--device") + 1], argv[argv.index("--threads") + 1]))
    return out


def test_the_supervisor_starts_one_pinned_worker_per_gpu(tmp_path, gpus):
    from hydra.serve.supervisor import GPU_WORKER_THREADS, Supervisor

    gpus(3)
    cfg = cfg_at(tmp_path, device="auto", workers=2, compile=True)
    sup = Supervisor(cfg, Addresses.from_config(cfg))
    assert sup.devices == ["cuda:0", "cuda:1", "cuda:2"]
    assert _predict_children(sup) == [
        (f"predict-{i}", f"cuda:{i}", str(GPU_WORKER_THREADS)) for i in range(3)
    ]
    assert all("--compile" in c.argv for c in sup.children if c.name.startswith("predict-"))
    assert [c.name for c in sup.children if not c.name.startswith("predict-")] == [
        "keeper",
        "balancer",
        "feeder",
    ]

    gpus(0)
    cfg = cfg_at(tmp_path, "cpu-host", device="auto", workers=2, torch_threads=3)
    sup = Supervisor(cfg, Addresses.from_config(cfg))
    assert _predict_children(sup) == [("predict-0", "cpu", "3"), ("predict-1", "cpu", "3")]
    assert not any("--compile" in c.argv for c in sup.children)

    hub = cfg_at(tmp_path, "hub", device="auto", workers=0)
    sup = Supervisor(hub, Addresses.from_config(hub))
    assert _predict_children(sup) == [] and len(sup.children) == 3

    with pytest.raises(ConfigError, match="no GPU"):
        bad = cfg_at(tmp_path, "bad", device="cuda")
        Supervisor(bad, Addresses.from_config(bad))


def test_device_setting_is_checked_and_the_compile_cache_lives_in_the_home(tmp_path):
    from hydra.config import load_config

    assert cfg_at(tmp_path, device="CUDA:1").serve.device == "cuda:1"
    assert cfg_at(tmp_path, workers=0).serve.workers == 0
    with pytest.raises(ConfigError, match="serve.device"):
        load_config(None, home=tmp_path / "h", serve={"device": "gpu0"})
    cfg = cfg_at(tmp_path, compile=True)
    assert cfg.serve.compile is True
    assert compile_cache_dir(cfg) == (tmp_path / "home").resolve() / "cache" / "torch-compile"


def test_command_line_device_workers_and_compile_reach_the_config(tmp_path, monkeypatch):
    from hydra.serve.launcher import _parser, config_for

    monkeypatch.setenv("HYDRA_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("HYDRA_CONFIG", raising=False)
    cfg = config_for(_parser().parse_args(["--workers", "0", "--device", "auto", "--compile"]))
    assert (cfg.serve.workers, cfg.serve.device, cfg.serve.compile) == (0, "auto", True)
    with pytest.raises(ConfigError, match="serve.device"):
        config_for(_parser().parse_args(["--device", "tpu"]))
