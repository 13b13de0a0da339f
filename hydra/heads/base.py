"""The Head contract: what every model that classifies a plot type provides.

A head is a LightningModule whose constructor signature *is* its config
(explicit typed arguments with defaults, saved with ``save_hyperparameters``).
Training uses Lightning; serving needs only :meth:`Head.load` and the
methods below, so the Predict stage never imports a Trainer.

Batches are ``(images, targets, sample_weights)``: uint8 images N×H×W×C (as
:func:`hydra.data.images.prepare` makes them), label indices N, and optional
per-image training weights N. Preprocessing (scaling, normalisation) lives in
the head, so every caller feeds the same raw pixels.

Example:
    >>> from hydra.heads import create_head, load_model
    >>> head = create_head("classifier", labels=["Good", "Bad"], problem_labels=["Bad"],
    ...                    backbone="mobilenetv3_small_100", input_size=(128, 160))  # doctest: +SKIP
    >>> head.save("models/7")                                                      # doctest: +SKIP
    >>> same = load_model("models/7")                                              # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
FORMAT_VERSION = 1


def to_jsonable(value: Any) -> Any:
    """Tuples to lists, paths to strings: the config as plain JSON."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"hyperparameter value {value!r} ({type(value).__name__}) cannot be saved as JSON")


class Head(pl.LightningModule):
    """Base class of every head; subclasses build the network and ``forward``.

    Subclasses pass the common arguments through to this constructor and add
    their own typed arguments; all of them end up in ``self.hparams`` and in
    the saved ``config.json``.

    Args:
        labels: the plot type's label names, in output order.
        problem_labels: the labels that count as a problem (Bad, NoData, ...).
        input_size: (height, width) of the model input; need not be square.
        channels: 1 (grey) or 3 (RGB).
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        max_epochs_hint: the cosine schedule's length in epochs (0: constant lr).
        jitter: brightness/noise jitter amplitude during training (0: none);
            never flips or shifts, which would change a plot's meaning.
    """

    head_name: ClassVar[str] = ""

    def __init__(
        self,
        labels: Sequence[str] = ("Good", "Bad"),
        problem_labels: Sequence[str] = ("Bad",),
        input_size: Sequence[int] = (128, 160),
        channels: int = 3,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        max_epochs_hint: int = 0,
        jitter: float = 0.0,
    ) -> None:
        super().__init__()
        labels = [str(x) for x in labels]
        if len(labels) < 2:
            raise ValueError(f"a head needs at least 2 labels, got {labels}")
        if len(set(labels)) != len(labels):
            raise ValueError(f"labels must be unique, got {labels}")
        unknown = [p for p in problem_labels if p not in labels]
        if unknown:
            raise ValueError(f"problem_labels {unknown} are not among the labels {labels}")
        if len(input_size) != 2 or min(input_size) < 8:
            raise ValueError(f"input_size must be (height, width) of at least 8 pixels, got {input_size}")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        self._labels = labels
        self._problem_labels = [str(p) for p in problem_labels]
        self._input_size = (int(input_size[0]), int(input_size[1]))
        self._channels = int(channels)
        self.save_hyperparameters()

    # ------------------------------------------------------------------ shape
    @property
    def labels(self) -> list[str]:
        return list(self._labels)

    @property
    def problem_labels(self) -> list[str]:
        return list(self._problem_labels)

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) of the input the head expects."""
        return self._input_size

    @property
    def channels(self) -> int:
        return self._channels

    @property
    def num_labels(self) -> int:
        return len(self._labels)

    # ------------------------------------------------------------- inference
    def to_unit(self, batch_uint8: torch.Tensor) -> torch.Tensor:
        """uint8 N×H×W×C to float N×C×H×W in [0, 1] (channels_last in memory)."""
        if batch_uint8.ndim != 4 or batch_uint8.shape[-1] != self.channels:
            raise ValueError(
                f"expected uint8 images N x H x W x {self.channels}, got shape {tuple(batch_uint8.shape)}"
            )
        x = batch_uint8.permute(0, 3, 1, 2)
        return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Map [0, 1] to [-1, 1]: plots have no ImageNet statistics to borrow."""
        return x * 2.0 - 1.0

    def unnormalize(self, x: torch.Tensor) -> torch.Tensor:
        """The network input back to [0, 1] images (the inverse of :meth:`normalize`)."""
        return (x + 1.0) / 2.0

    def preprocess(self, batch_uint8: torch.Tensor) -> torch.Tensor:
        """Raw pixels (uint8 N×H×W×C) to the network's float input N×C×H×W."""
        return self.normalize(self.to_unit(batch_uint8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """Preprocessed input N×C×H×W to logits N×L."""
        raise NotImplementedError

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """Output weights (softmax over the labels, each row sums to 1)."""
        return torch.softmax(self(x).float(), dim=-1)

    def cam_from_input(self, x: torch.Tensor) -> np.ndarray | None:
        """A heat map (N×H×W in [0, 1]) the head draws from its input alone, or None for Grad-CAM."""
        return None

    def cam_target_layers(self) -> list[nn.Module]:  # pragma: no cover - abstract
        """The layer(s) whose activations Grad-CAM weighs (usually the last conv stage)."""
        raise NotImplementedError

    def cam_model(self) -> nn.Module:
        """The module whose output the CAM targets read (the logits by default)."""
        return self

    def refine_cam(self, x: torch.Tensor, maps: np.ndarray) -> np.ndarray:
        """Sharpen Grad-CAM maps (N×H×W in [0, 1]) with what the input itself shows; as they are by default."""
        return maps

    def cam_targets(self, pred_idx: Sequence[int]) -> list[Callable[[torch.Tensor], torch.Tensor]]:
        """One pytorch-grad-cam target per image: the logit of the given class."""
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        return [ClassifierOutputTarget(int(i)) for i in pred_idx]

    # --------------------------------------------------------------- training
    def augment(self, x01: torch.Tensor) -> torch.Tensor:
        """Plot-preserving jitter on [0, 1] images: brightness and pixel noise only."""
        amp = float(self.hparams.get("jitter", 0.0))
        if amp <= 0:
            return x01
        n = x01.shape[0]
        scale = 1.0 + amp * (2 * torch.rand(n, 1, 1, 1, device=x01.device) - 1)
        noise = amp * 0.5 * torch.randn_like(x01)
        return (x01 * scale + noise).clamp_(0.0, 1.0)

    @staticmethod
    def unpack(batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(images, targets[, sample_weights]) from a batch tuple or dict."""
        if isinstance(batch, dict):
            return batch["images"], batch["targets"], batch.get("weights")
        images, targets, *rest = batch
        return images, targets, (rest[0] if rest else None)

    @classmethod
    def distinct_images(cls, batches: Any) -> Iterator[tuple[torch.Tensor, int]]:
        """Every (image, label index) of training batches once: oversampled copies are skipped."""
        seen: set[bytes] = set()
        for batch in batches:
            images, targets, _ = cls.unpack(batch)
            for img, t in zip(images, targets.tolist()):
                digest = hashlib.blake2b(img.cpu().numpy().tobytes(), digest_size=16).digest()
                if digest not in seen:
                    seen.add(digest)
                    yield img, int(t)

    def good_index_for(self, preferred: str) -> int | None:
        """The index of the label meaning "nothing wrong": ``preferred``, else the first
        label that is not a problem; None when every label is a problem."""
        if preferred in self._labels:
            return self._labels.index(preferred)
        others = [i for i, lab in enumerate(self._labels) if lab not in self._problem_labels]
        return others[0] if others else None

    @staticmethod
    def weighted_mean(values: torch.Tensor, sample_weights: torch.Tensor | None) -> torch.Tensor:
        """Mean of per-sample values, honouring per-image training weights."""
        if sample_weights is None:
            return values.mean()
        w = sample_weights.to(values.dtype)
        return (values * w).sum() / w.sum().clamp_min(1e-12)

    def training_loss(self, batch: Any) -> torch.Tensor:
        """Weighted cross-entropy of the (jittered) batch, without logging; heads may override."""
        images, targets, sw = self.unpack(batch)
        x = self.normalize(self.augment(self.to_unit(images)))
        logits = self(x)
        return self.weighted_mean(F.cross_entropy(logits.float(), targets.long(), reduction="none"), sw)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss = self.training_loss(batch)
        self.log("train_loss", loss, prog_bar=True, batch_size=len(self.unpack(batch)[1]))
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        images, targets, sw = self.unpack(batch)
        logits = self(self.preprocess(images))
        loss = self.weighted_mean(F.cross_entropy(logits.float(), targets.long(), reduction="none"), sw)
        acc = (logits.argmax(-1) == targets).float().mean()
        self.log("val_loss", loss, prog_bar=True, batch_size=len(targets))
        self.log("val_acc", acc, prog_bar=True, batch_size=len(targets))
        return loss

    def configure_optimizers(self) -> Any:
        params = [p for p in self.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        epochs = int(self.hparams.get("max_epochs_hint", 0) or 0)
        if epochs <= 0:
            return opt
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}

    # ------------------------------------------------------------ save / load
    def config(self) -> dict[str, Any]:
        """The resolved config: ``{"head": name, "hparams": {...}}`` as plain JSON."""
        return {
            "head": self.registered_name(),
            "format": FORMAT_VERSION,
            "hparams": to_jsonable(dict(self.hparams)),
        }

    @classmethod
    def registered_name(cls) -> str:
        """The entry-point name of this class (``head_name``, else the registry's)."""
        if cls.head_name:
            return cls.head_name
        from hydra.heads.registry import name_of

        return name_of(cls)

    @classmethod
    def config_for_load(cls, hparams: dict[str, Any]) -> dict[str, Any]:
        """Adjust saved hparams before rebuilding (e.g. drop an init weights file)."""
        return hparams

    def save(self, directory: str | Path) -> Path:
        """Write ``model.safetensors`` and ``config.json`` into ``directory``.

        Tensors only (no pickle), so loading a model can never run code.
        """
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        seen: dict[int, str] = {}
        for key, tensor in list(state.items()):
            ptr = tensor.untyped_storage().data_ptr() if tensor.numel() else -1
            if ptr in seen and ptr != -1:
                state[key] = tensor.clone()  # safetensors refuses shared storage
            seen.setdefault(ptr, key)
        save_file(state, str(out / WEIGHTS_FILE), metadata={"head": self.registered_name()})
        (out / CONFIG_FILE).write_text(json.dumps(self.config(), indent=2, sort_keys=True) + "\n")
        return out

    def load_weights(self, state: dict[str, torch.Tensor]) -> None:
        """Load a saved state strictly; heads with variable-size buffers resize first."""
        self.load_state_dict(state, strict=True)

    @classmethod
    def load(cls, directory: str | Path, map_location: str | torch.device = "cpu") -> Head:
        """Rebuild a saved head of this class from ``config.json`` + safetensors."""
        config = read_config(directory)
        if cls is not Head and config["head"] != cls.registered_name():
            raise ValueError(f"{directory} holds a {config['head']!r} head, not {cls.registered_name()!r}")
        if cls is Head:
            from hydra.heads.registry import load_head

            return load_head(config["head"]).load(directory, map_location)
        head = cls(**cls.config_for_load(dict(config["hparams"])))
        state = load_file(str(Path(directory) / WEIGHTS_FILE), device=str(map_location))
        head.load_weights(state)
        head.to(map_location)
        head.eval()
        return head


class LogitBias:
    """A ``logit_bias`` buffer added to a head's logits, fitted after training (the calibration).

    Synthetic faults make problem examples more common in training than in a
    hall; the bias, fitted on out-of-fold verdicts, gives the labels back the
    balance the labelled images have. A head with it can be calibrated by
    ``hydra train`` and served as an ensemble (:mod:`hydra.heads.ensemble`).
    """

    def init_logit_bias(self) -> None:
        self.register_buffer("logit_bias", torch.zeros(len(self.labels)))

    def set_logit_bias(self, bias: Sequence[float]) -> None:
        """Add ``bias`` to the logits from now on."""
        value = torch.as_tensor(list(bias), dtype=self.logit_bias.dtype, device=self.logit_bias.device)
        if value.shape != self.logit_bias.shape:
            raise ValueError(f"need one bias per label ({len(self.labels)}), got {tuple(value.shape)}")
        self.logit_bias = value


def read_config(directory: str | Path) -> dict[str, Any]:
    """The ``config.json`` of a saved model, checked for its required keys."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: not a saved Hydra model directory")
    config = json.loads(path.read_text())
    if not isinstance(config, dict) or "head" not in config or "hparams" not in config:
        raise ValueError(f"{path} must hold {{'head': NAME, 'hparams': {{...}}}}")
    return config
