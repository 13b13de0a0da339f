"""A torch Dataset over labelled images, prepared exactly as serving prepares them.

Every item goes through :func:`hydra.data.images.load_image` and
:func:`hydra.data.images.prepare` with the head's input size, channels and
the plot type's mask, so a model is trained on the very pixels the Feeder
will send it. Items are ``(uint8 H×W×C tensor, label index, weight)``; the
head does the scaling.

Small sets (the usual case on a CPU-only site) are cached in memory after the
first epoch, since decoding and resizing a PNG costs more than a training
step of a small network.

Example:
    >>> ds = PlotImageDataset([DatasetItem("a.png", 0)], input_size=(96, 128))  # doctest: +SKIP
    >>> pixels, label, weight = ds[0]                                            # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from hydra.data.images import ImageError, load_image, prepare

DEFAULT_CACHE_BYTES = 1 << 30


@dataclass(frozen=True)
class DatasetItem:
    """One image to learn from or evaluate on."""

    path: str | Path
    label: int
    weight: float = 1.0
    image_id: int | None = None


class PlotImageDataset(Dataset):
    """Labelled plot images as ``(pixels, label, weight)``.

    Args:
        items: the images; an item with ``copies`` > 1 is simply listed again.
        input_size: (height, width) of the head's input.
        channels: 1 or 3, as the head expects.
        mask: the plot type's rectangles to ignore (fractions of the image).
        cache: keep prepared arrays in memory; ``None`` caches when the whole
            set fits in ``cache_bytes``.
        cache_bytes: the memory the automatic cache may use.
    """

    def __init__(
        self,
        items: Sequence[DatasetItem],
        input_size: Sequence[int],
        channels: int = 3,
        mask: Sequence[Sequence[float]] | None = None,
        *,
        cache: bool | None = None,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        self.items = list(items)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.channels = int(channels)
        self.mask = [list(r) for r in mask] if mask else None
        per_image = self.input_size[0] * self.input_size[1] * self.channels
        distinct = len({str(it.path) for it in self.items})
        self.cache_enabled = cache if cache is not None else distinct * per_image <= cache_bytes
        self._cache: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.items)

    def pixels(self, index: int) -> np.ndarray:
        """The prepared uint8 H×W×C array of item ``index``."""
        item = self.items[index]
        key = str(item.path)
        arr = self._cache.get(key)
        if arr is None:
            try:
                arr = prepare(load_image(item.path), self.input_size, self.channels, self.mask)
            except ImageError as exc:
                raise ImageError(exc.kind, f"training image {item.path}: {exc}") from None
            if self.cache_enabled:
                self._cache[key] = arr
        return arr

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, float]:
        item = self.items[index]
        return torch.from_numpy(self.pixels(index)), int(item.label), float(item.weight)

    def labels(self) -> np.ndarray:
        return np.array([it.label for it in self.items], dtype=np.int64)

    def stack(self) -> torch.Tensor:
        """All items' pixels as one uint8 N×H×W×C tensor (for evaluation)."""
        return torch.from_numpy(np.stack([self.pixels(i) for i in range(len(self))]))
