"""The one inference path: training evaluation, ``hydra predict`` and the Predict stage.

Everything that turns prepared pixels (uint8 N×H×W×C from
:func:`hydra.data.images.prepare`) into output weights, verdicts and Grad-CAM
maps goes through here, so evaluation, offline prediction and serving can
never disagree.

Example:
    >>> from hydra.inference import LoadedModel, decide, predict_batch
    >>> model = LoadedModel.from_dir("var/models/7", model_id=7)       # doctest: +SKIP
    >>> weights = predict_batch(model, pixels)                          # doctest: +SKIP
    >>> verdict = decide(weights[0], model.labels, model.thresholds,
    ...                  model.problem_labels)                          # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch
    from sqlmodel import Session

    from hydra.db.models import Model
    from hydra.heads.base import Head

DEFAULT_THRESHOLD = 0.5


@dataclass
class LoadedModel:
    """A trained head ready to serve, with what the verdict needs around it."""

    model_id: int | None
    head: Head
    labels: list[str]
    input_size: tuple[int, int]
    channels: int
    problem_labels: list[str]
    thresholds: dict[str, float] = field(default_factory=dict)
    device: str = "cpu"

    @classmethod
    def from_dir(
        cls,
        path: str | Path,
        model_id: int | None = None,
        thresholds: Mapping[str, float] | None = None,
        device: str = "cpu",
        problem_labels: Sequence[str] | None = None,
    ) -> LoadedModel:
        """Load a saved model directory (``config.json`` + ``model.safetensors``).

        On CUDA the network is put in channels_last memory format; inference
        then runs under bf16 autocast (see :func:`predict_batch`).
        """
        import torch

        from hydra.heads.registry import load_model

        head = load_model(path, map_location=device)
        if torch.device(device).type == "cuda":
            head = head.to(memory_format=torch.channels_last)
        head.eval()
        return cls(
            model_id=model_id,
            head=head,
            labels=head.labels,
            input_size=head.input_size,
            channels=head.channels,
            problem_labels=list(head.problem_labels if problem_labels is None else problem_labels),
            thresholds=dict(thresholds or {}),
            device=str(device),
        )

    @property
    def on_cuda(self) -> bool:
        return self.device.startswith("cuda")

    def to_tensor(self, pixels: np.ndarray) -> torch.Tensor:
        """Checked uint8 N×H×W×C pixels as a tensor on the model's device."""
        import torch

        arr = np.asarray(pixels)
        h, w = self.input_size
        if arr.ndim == 3:
            arr = arr[None]
        if arr.ndim != 4 or arr.shape[1:] != (h, w, self.channels) or arr.dtype != np.uint8:
            raise ValueError(
                f"model {self.model_id} expects uint8 N x {h} x {w} x {self.channels} pixels, "
                f"got {arr.dtype} {arr.shape} (prepare images with hydra.data.images.prepare)"
            )
        tensor = torch.from_numpy(np.ascontiguousarray(arr))
        return tensor.to(self.device, non_blocking=True) if self.on_cuda else tensor


@dataclass(frozen=True)
class Verdict:
    """The classification of one image: the winning label and whether it is trusted."""

    label: str
    weight: float
    confirmed: bool
    is_problem: bool


def _autocast(model: LoadedModel) -> contextlib.AbstractContextManager:
    import torch

    if model.on_cuda:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def predict_batch(model: LoadedModel, pixels: np.ndarray, max_batch: int | None = None) -> np.ndarray:
    """Output weights (softmax over ``model.labels``) of prepared images: float32 N×L.

    Args:
        model: the loaded head.
        pixels: uint8 N×H×W×C at the model's input size and channels.
        max_batch: split larger inputs into chunks of this size (memory bound).
    """
    import torch

    x = model.to_tensor(pixels)
    if x.shape[0] == 0:
        return np.zeros((0, len(model.labels)), dtype=np.float32)
    step = max_batch or x.shape[0]
    out = []
    with torch.inference_mode(), _autocast(model):
        for chunk in x.split(step):
            inp = model.head.preprocess(chunk)
            if model.on_cuda:
                inp = inp.contiguous(memory_format=torch.channels_last)
            out.append(torch.softmax(model.head(inp).float(), dim=-1).cpu())
    return torch.cat(out).numpy().astype(np.float32, copy=False)


def decide(
    weights_row: Sequence[float] | np.ndarray,
    labels: Sequence[str],
    thresholds: Mapping[str, float] | None,
    problem_labels: Sequence[str],
) -> Verdict:
    """The verdict for one image: argmax label, confirmed iff its weight > its threshold.

    A label without a threshold uses 0.5.
    """
    row = np.asarray(weights_row, dtype=np.float64)
    if row.shape != (len(labels),):
        raise ValueError(f"{row.shape[0] if row.ndim else 0} weights for {len(labels)} labels {list(labels)}")
    idx = int(np.argmax(row))
    label = labels[idx]
    weight = float(row[idx])
    threshold = float((thresholds or {}).get(label, DEFAULT_THRESHOLD))
    return Verdict(
        label=label, weight=weight, confirmed=weight > threshold, is_problem=label in problem_labels
    )


def needs_cam(verdict: Verdict) -> bool:
    """Whether the image deserves a heat map: a problem, or not confirmed."""
    return verdict.is_problem or not verdict.confirmed


def cam_batch(model: LoadedModel, pixels: np.ndarray, class_indices: Sequence[int]) -> np.ndarray:
    """Grad-CAM maps for prepared images, float32 N×H×W in [0, 1] (float32, not bf16)."""
    from hydra.heads.cam import grad_cam

    x = model.to_tensor(pixels)
    return grad_cam(model.head, model.head.preprocess(x), list(class_indices))


# ----------------------------------------------------------------- database
def load_thresholds(session: Session, model_id: int) -> dict[str, float]:
    """The current per-label thresholds of a model (labels without one use 0.5)."""
    from sqlmodel import select

    from hydra.db.models import Threshold

    rows = session.exec(select(Threshold).where(Threshold.model_id == model_id)).all()
    return {row.label: float(row.value) for row in rows}


def model_dir(model: Model, models_root: str | Path | None) -> Path:
    """Where a registered model's files are (``Model.path``, relative to the models folder)."""
    path = Path(model.path)
    if not path.is_absolute() and models_root is not None:
        path = Path(models_root) / path
    return path


def load_model_from_db(
    session: Session, model: int | Model, models_root: str | Path | None, device: str = "cpu"
) -> LoadedModel:
    """Load a registered model with its thresholds and the plot type's problem labels.

    The problem labels come from the database's ``Label.is_problem`` (experts
    may change them) and fall back to the head's own.

    Raises:
        LookupError: no model with that id.
    """
    from sqlmodel import select

    from hydra.db.models import Label, Model

    row = session.get(Model, model) if isinstance(model, int) else model
    if row is None:
        raise LookupError(f"no model with id {model}")
    problems = session.exec(
        select(Label.name).where(Label.plot_type_id == row.plot_type_id, Label.is_problem)
    ).all()
    loaded = LoadedModel.from_dir(
        model_dir(row, models_root),
        model_id=row.id,
        thresholds=load_thresholds(session, row.id),
        device=device,
        problem_labels=list(problems) or None,
    )
    if list(row.labels or loaded.labels) != loaded.labels:
        raise ValueError(
            f"model {row.id}: database label order {row.labels} differs from the saved {loaded.labels}"
        )
    return loaded


def weights_dict(labels: Sequence[str], row: Any) -> dict[str, float]:
    """``{label: weight}`` of one output row, as plain floats for JSON."""
    return {label: float(w) for label, w in zip(labels, row)}
