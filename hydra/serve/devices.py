"""Which devices the Predict workers of this host run on, and torch.compile's cache.

``serve.device`` decides the local workers (:func:`worker_devices`):

* ``auto``: one worker per visible GPU, each pinned to its own ``cuda:i``;
  on a host without a GPU, ``serve.workers`` CPU workers;
* ``cuda``: one worker per visible GPU; a host without one is an error;
* ``cuda:N``: ``serve.workers`` workers, all on that GPU;
* ``cpu``: ``serve.workers`` CPU workers.

On GPUs ``serve.workers`` only matters as 0, which starts no worker at all
(a hub whose workers all run on other hosts). "Visible" is what torch sees, so ``CUDA_VISIBLE_DEVICES``
limits the GPUs as usual; the children inherit it, so ``cuda:i`` means the
same GPU in the supervisor and in the worker. A single worker started by hand
(``hydra-serve predict --device auto``) takes ``cuda:0`` or the CPU
(:func:`resolve_device`).

Example:
    >>> worker_devices("auto", 2, gpus=4)
    ['cuda:0', 'cuda:1', 'cuda:2', 'cuda:3']
    >>> worker_devices("auto", 2, gpus=0)
    ['cpu', 'cpu']
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

from hydra.config import ConfigError, HydraConfig

COMPILE_CACHE = Path("cache") / "torch-compile"


def _gpu_device_nodes() -> bool:
    """Whether this host has an NVIDIA (or ROCm) device node at all."""
    return bool(glob.glob("/dev/nvidia[0-9]*")) or os.path.exists("/dev/kfd")


def gpu_count() -> int:
    """GPUs torch can use here (0 without CUDA); torch is imported only where a GPU may exist."""
    if not _gpu_device_nodes():
        return 0  # skip importing torch (seconds) for nothing
    try:
        import torch

        return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0
    except Exception:  # noqa: BLE001 - a broken driver means no GPU, not a crash
        return 0


def worker_devices(device: str, workers: int, gpus: int | None = None) -> list[str]:
    """The device of each local Predict worker, in order (``predict-0``, ``predict-1``, ...).

    Raises:
        ConfigError: ``cuda`` or ``cuda:N`` on a host without that GPU.
    """
    device = device.strip().lower()
    if workers == 0:
        return []
    if device == "cpu":
        return ["cpu"] * workers
    n = gpu_count() if gpus is None else gpus
    if device in ("auto", "cuda"):
        if n > 0:
            return [f"cuda:{i}" for i in range(n)]
        if device == "cuda":
            raise ConfigError("serve.device is cuda but no GPU is visible here (use auto or cpu)")
        return ["cpu"] * workers
    return [_checked(device, n)] * workers


def resolve_device(device: str, gpus: int | None = None) -> str:
    """The device of one worker: ``auto`` is ``cuda:0`` or ``cpu``; ``cuda`` is ``cuda:0``.

    Raises:
        ConfigError: a GPU that is not visible here.
    """
    device = device.strip().lower()
    if device == "cpu":
        return device
    n = gpu_count() if gpus is None else gpus
    if device == "auto":
        return "cuda:0" if n > 0 else "cpu"
    return _checked("cuda:0" if device == "cuda" else device, n)


def _checked(device: str, gpus: int) -> str:
    if not device.startswith("cuda:") or not device[5:].isdigit():
        raise ConfigError(f"serve.device {device!r}: expected auto, cpu, cuda or cuda:N")
    index = int(device[5:])
    if index >= gpus:
        seen = f"{gpus} GPU(s) visible" if gpus else "no GPU visible"
        raise ConfigError(f"serve.device {device}: {seen} here")
    return device


def cpu_threads(workers: int, configured: int) -> int:
    """Torch threads of each CPU worker: the configured number, else the cores shared out."""
    return configured or max(1, (os.cpu_count() or 1) // max(workers, 1))


def compile_cache_dir(cfg: HydraConfig) -> Path:
    """Where torch.compile keeps its compiled code: ``HYDRA_HOME/cache/torch-compile``."""
    return cfg.home.resolve() / COMPILE_CACHE
