"""The one serving contract: training evaluation, ``hydra predict``, the Predict stage, the report.

A :class:`ServingModel` is everything that turns an image into a verdict,
kept together: the loaded head, its label order, the per-label thresholds,
the problem labels and the preprocessing (input size, channels, the plot
type's mask). It is built in one place (:meth:`ServingModel.load` for a
registered model, :meth:`ServingModel.from_dir` for a saved folder), and
every caller goes through its methods (:meth:`~ServingModel.prepare`,
:meth:`~ServingModel.weights`, :meth:`~ServingModel.decide`,
:meth:`~ServingModel.classify`, :meth:`~ServingModel.cam`), so evaluation,
offline prediction, serving and the Training report can never disagree.

A label without a stored threshold is compared with
:data:`hydra.thresholds.DEFAULT_THRESHOLD` when the verdict is decided
(:func:`decide`); nothing fills the missing thresholds in beforehand.

Example:
    >>> from hydra.inference import ServingModel
    >>> model = ServingModel.load(session, 7, "var/models")            # doctest: +SKIP
    >>> weights, verdicts = model.classify(model.prepare(image)[None])  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hydra.thresholds import DEFAULT_THRESHOLD

if TYPE_CHECKING:
    import torch
    from PIL import Image
    from sqlmodel import Session

    from hydra.db.models import Model
    from hydra.heads.base import Head

__all__ = [
    "ServingModel",
    "Verdict",
    "cam_batch",
    "decide",
    "model_dir",
    "needs_cam",
    "predict_batch",
    "use_compile_cache",
    "weights_dict",
]

log = logging.getLogger("hydra.inference")


@dataclass(frozen=True)
class Verdict:
    """The classification of one image: the winning label and whether it is trusted."""

    label: str
    weight: float
    confirmed: bool
    is_problem: bool


@dataclass
class ServingModel:
    """A trained head ready to serve, with everything its verdicts need around it.

    Attributes:
        model_id: the ``Model`` row's id (None for a folder loaded on its own).
        head: the network, in eval mode on ``device``.
        labels: the output order of the weights.
        input_size: (height, width) of the prepared pixels.
        channels: 1 (grey) or 3 (RGB).
        problem_labels: the labels that count as a problem.
        thresholds: ``{label: threshold}`` as stored; a missing label uses
            :data:`DEFAULT_THRESHOLD` when a verdict is decided.
        mask: the plot type's rectangles blanked before resizing (fractions).
        device: the torch device.

    On CUDA, pixels travel as uint8 through a pinned host buffer that the
    model keeps and reuses (an asynchronous copy), are normalised (and
    resized, if they are not at the input size yet) on the GPU, and the
    network runs in bf16 autocast with channels_last; on the CPU nothing of
    that applies (float32, the pixels at the input size).
    """

    model_id: int | None
    head: Head
    labels: list[str]
    input_size: tuple[int, int]
    channels: int
    problem_labels: list[str]
    thresholds: dict[str, float] = field(default_factory=dict)
    mask: list = field(default_factory=list)
    device: str = "cpu"
    # the torch.compile'd network (see compile()); the pinned host buffer for uploads (False:
    # page-locked memory was refused, plain copies) and the event of its last copy
    _net: Any = field(default=None, init=False, repr=False, compare=False)
    _pinned: Any = field(default=None, init=False, repr=False, compare=False)
    _copied: Any = field(default=None, init=False, repr=False, compare=False)

    # ------------------------------------------------------------ building
    @classmethod
    def from_dir(
        cls,
        path: str | Path,
        model_id: int | None = None,
        thresholds: Mapping[str, float] | None = None,
        device: str = "cpu",
        problem_labels: Sequence[str] | None = None,
        mask: Sequence[Sequence[float]] | None = None,
    ) -> ServingModel:
        """Load a saved model directory (``config.json`` + ``model.safetensors``).

        Without ``problem_labels`` the head's own are used. On CUDA the
        network is put in channels_last memory format; inference then runs
        under bf16 autocast (see :func:`predict_batch`).
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
            mask=[list(r) for r in mask or []],
            device=str(device),
        )

    @classmethod
    def load(
        cls, session: Session, model: int | Model, models_root: str | Path | None, device: str = "cpu"
    ) -> ServingModel:
        """Load a registered model with its thresholds, problem labels and plot type's mask.

        The problem labels come from the database's ``Label.is_problem``
        (experts may change them) and fall back to the head's own.

        Raises:
            LookupError: no model with that id.
            ValueError: the database's label order differs from the saved model's.
        """
        from hydra.db.models import Model

        row = session.get(Model, model) if isinstance(model, int) else model
        if row is None:
            raise LookupError(f"no model with id {model}")
        thresholds, problems, mask = _settings(session, row)
        loaded = cls.from_dir(
            model_dir(row, models_root),
            model_id=row.id,
            thresholds=thresholds,
            device=device,
            problem_labels=problems or None,
            mask=mask,
        )
        if list(row.labels or loaded.labels) != loaded.labels:
            raise ValueError(
                f"model {row.id}: database label order {row.labels} differs from the saved {loaded.labels}"
            )
        return loaded

    def refresh(self, session: Session) -> bool:
        """Re-read the thresholds, problem labels and mask as :meth:`load` reads them.

        Returns whether the thresholds changed.

        Raises:
            hydra.db.queries.NotFoundError: the model is no longer registered.
        """
        from hydra.db.queries import get_model

        thresholds, problems, mask = _settings(session, get_model(int(self.model_id), session=session))
        changed = thresholds != self.thresholds
        self.thresholds = thresholds
        self.problem_labels = problems or list(self.head.problem_labels)
        self.mask = mask
        return changed

    # ------------------------------------------------------------ serving
    @property
    def on_cuda(self) -> bool:
        return self.device.startswith("cuda")

    def prepare(self, image: Image.Image) -> np.ndarray:
        """A decoded image as this model's input: uint8 H×W×C, masked and resized."""
        from hydra.data.images import prepare

        return prepare(image, self.input_size, self.channels, self.mask or None)

    def to_tensor(self, pixels: np.ndarray) -> torch.Tensor:
        """Checked uint8 N×H×W×C pixels as a tensor on the model's device.

        On the CPU the pixels must be at the model's input size. On CUDA they
        are copied asynchronously from the model's pinned host buffer and may
        have any height and width: :meth:`net_input` resizes them on the GPU
        (they must be masked already, as :meth:`prepare` does).
        """
        import torch

        arr = np.asarray(pixels)
        h, w = self.input_size
        if arr.ndim == 3:
            arr = arr[None]
        ok = arr.ndim == 4 and arr.dtype == np.uint8 and arr.shape[3] == self.channels
        if ok:
            ok = min(arr.shape[1:3]) > 0 if self.on_cuda else arr.shape[1:3] == (h, w)
        if not ok:
            raise ValueError(
                f"model {self.model_id} expects uint8 N x {h} x {w} x {self.channels} pixels, "
                f"got {arr.dtype} {arr.shape} (prepare images with hydra.data.images.prepare)"
            )
        if self.on_cuda:
            return self._upload(arr)
        return torch.from_numpy(np.ascontiguousarray(arr))

    def _upload(self, arr: np.ndarray) -> torch.Tensor:
        """uint8 pixels to the GPU through the reused pinned buffer (a non-blocking copy)."""
        import torch

        if arr.size == 0:
            return torch.empty(arr.shape, dtype=torch.uint8, device=self.device)
        if self._copied is not None:
            self._copied.synchronize()  # the previous copy has left the buffer: it may be refilled
            self._copied = None
        if self._pinned is not False and (self._pinned is None or self._pinned.numel() < arr.size):
            grown = max(arr.size, 0 if self._pinned is None else self._pinned.numel() * 5 // 4)
            try:
                self._pinned = torch.empty(grown, dtype=torch.uint8, pin_memory=True)
            except RuntimeError as exc:  # page-locked memory refused (ulimit -l, a container)
                log.warning("no pinned memory (%s); copying pixels to %s synchronously", exc, self.device)
                self._pinned = False
        if self._pinned is False:
            return torch.from_numpy(np.ascontiguousarray(arr)).to(self.device)
        host = self._pinned[: arr.size].view(arr.shape)
        np.copyto(host.numpy(), arr)
        gpu = host.to(self.device, non_blocking=True)
        self._copied = torch.cuda.Event()
        self._copied.record(torch.cuda.current_stream(gpu.device))
        return gpu

    def net_input(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 N×H×W×C on the model's device to the network's float input N×C×H×W.

        The head's own preprocessing (on the GPU when the pixels are there):
        :meth:`~hydra.heads.base.Head.to_unit`, then, for pixels not yet at
        the input size (CUDA), a resize on the device (area averaging when
        shrinking, the CPU path's box filter; antialiased bilinear
        otherwise), then :meth:`~hydra.heads.base.Head.normalize`, which
        compares with a Good reference kept at the input size; channels_last
        on CUDA.
        """
        import torch

        unit = self.head.to_unit(x)
        if tuple(unit.shape[-2:]) != tuple(self.input_size):
            unit = _resize(unit, self.input_size)
        inp = self.head.normalize(unit)
        if self.on_cuda:
            inp = inp.contiguous(memory_format=torch.channels_last)
        return inp

    def network(self) -> torch.nn.Module:
        """What :meth:`weights` runs: the compiled network after :meth:`compile`, else the head."""
        return self.head if self._net is None else self._net

    def compile(self, cache_dir: str | Path | None = None, **options: Any) -> None:
        """Run :meth:`weights` through ``torch.compile(head, **options)`` from now on.

        Grad-CAM keeps the plain head (it hooks its layers). The first batch
        compiles (minutes for inception_v3 on a GPU), and a second batch size
        once more with a dynamic batch dimension; with ``cache_dir`` (see
        :func:`use_compile_cache`) a process started later reuses the code.
        """
        import torch

        if cache_dir is not None:
            use_compile_cache(cache_dir)
        if self._net is None:
            self._net = torch.compile(self.head, **options)

    def weights(self, pixels: np.ndarray, max_batch: int | None = None) -> np.ndarray:
        """Output weights of prepared pixels: float32 N×L (see :func:`predict_batch`)."""
        return predict_batch(self, pixels, max_batch)

    def decide(self, weights_row: Sequence[float] | np.ndarray) -> Verdict:
        """The verdict for one row of weights at this model's thresholds (see :func:`decide`)."""
        return decide(weights_row, self.labels, self.thresholds, self.problem_labels)

    def classify(self, pixels: np.ndarray, max_batch: int | None = None) -> tuple[np.ndarray, list[Verdict]]:
        """Weights (float32 N×L) and one verdict per image of prepared pixels."""
        weights = self.weights(pixels, max_batch)
        return weights, [self.decide(row) for row in weights]

    def cam(self, pixels: np.ndarray, class_indices: Sequence[int]) -> np.ndarray:
        """Grad-CAM maps of prepared pixels, float32 N×H×W in [0, 1] (see :func:`cam_batch`)."""
        return cam_batch(self, pixels, class_indices)

    def weights_dict(self, row: Any) -> dict[str, float]:
        """``{label: weight}`` of one output row, as plain floats for JSON."""
        return weights_dict(self.labels, row)


def _settings(session: Session, row: Model) -> tuple[dict[str, float], list[str], list]:
    """A registered model's thresholds, its plot type's problem labels and mask, as stored now."""
    from sqlmodel import col, select

    from hydra.db.models import Label, PlotType
    from hydra.db.queries import thresholds_of

    problems = session.exec(
        select(Label.name).where(Label.plot_type_id == row.plot_type_id, col(Label.is_problem))
    ).all()
    pt = session.get(PlotType, row.plot_type_id)
    mask = list(pt.mask or []) if pt is not None else []
    return thresholds_of(row.id, session=session), list(problems), mask


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Float N×C×H×W to ``size`` on its device: area averaging to shrink, antialiased bilinear to grow."""
    import torch.nn.functional as F

    if x.shape[-2] >= size[0] and x.shape[-1] >= size[1]:
        return F.interpolate(x, size=tuple(size), mode="area")
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False, antialias=True)


def use_compile_cache(path: str | Path) -> Path:
    """Keep torch.compile's caches in ``path``, so a restarted process does not compile again.

    Sets the environment (inherited by child processes) before anything is
    compiled: Inductor's cache (FX graphs, AOTAutograd, autotuning) in
    ``path/inductor`` and Triton's kernels in ``path/triton``. Returns ``path``.
    """
    path = Path(path).expanduser().resolve()
    (path / "inductor").mkdir(parents=True, exist_ok=True)
    (path / "triton").mkdir(parents=True, exist_ok=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(path / "inductor")
    os.environ["TRITON_CACHE_DIR"] = str(path / "triton")
    os.environ.setdefault("TORCHINDUCTOR_FX_GRAPH_CACHE", "1")
    os.environ.setdefault("TORCHINDUCTOR_AUTOGRAD_CACHE", "1")
    return path


def _autocast(model: ServingModel) -> contextlib.AbstractContextManager:
    import torch

    if model.on_cuda:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def predict_batch(model: ServingModel, pixels: np.ndarray, max_batch: int | None = None) -> np.ndarray:
    """Output weights (softmax over ``model.labels``) of prepared images: float32 N×L.

    On CUDA: one asynchronous upload of the uint8 pixels from pinned memory,
    normalisation (and resizing) on the GPU, bf16 autocast, channels_last,
    the compiled network after :meth:`ServingModel.compile`, and one
    synchronisation when the weights come back.

    Args:
        model: the loaded head.
        pixels: uint8 N×H×W×C at the model's input size and channels (on
            CUDA any height and width, resized on the GPU).
        max_batch: split larger inputs into chunks of this size (memory bound).
    """
    import torch

    x = model.to_tensor(pixels)
    if x.shape[0] == 0:
        return np.zeros((0, len(model.labels)), dtype=np.float32)
    step = max_batch or x.shape[0]
    net = model.network()
    out = []
    with torch.inference_mode(), _autocast(model):
        for chunk in x.split(step):
            out.append(torch.softmax(net(model.net_input(chunk)).float(), dim=-1))
    return torch.cat(out).cpu().numpy().astype(np.float32, copy=False)


def decide(
    weights_row: Sequence[float] | np.ndarray,
    labels: Sequence[str],
    thresholds: Mapping[str, float] | None,
    problem_labels: Sequence[str],
) -> Verdict:
    """The verdict for one image: argmax label, confirmed iff its weight > its threshold.

    A label missing from ``thresholds`` (or ``thresholds`` None) is compared
    with :data:`DEFAULT_THRESHOLD` (0.5).
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


def cam_batch(model: ServingModel, pixels: np.ndarray, class_indices: Sequence[int]) -> np.ndarray:
    """Grad-CAM maps for prepared images, float32 N×H×W in [0, 1] (float32, not bf16).

    One batch for all the images given (the Predict stage gives only those
    that need a map: problems and unconfirmed); on CUDA the pixels go up and
    are normalised as in :func:`predict_batch`. The maps are at the model's
    input size.
    """
    from hydra.heads.cam import grad_cam

    x = model.to_tensor(pixels)
    return grad_cam(model.head, model.net_input(x), list(class_indices))


# ----------------------------------------------------------------- database
def model_dir(model: Model, models_root: str | Path | None) -> Path:
    """Where a registered model's files are (``Model.path``, relative to the models folder)."""
    path = Path(model.path)
    if not path.is_absolute() and models_root is not None:
        path = Path(models_root) / path
    return path


def weights_dict(labels: Sequence[str], row: Any) -> dict[str, float]:
    """``{label: weight}`` of one output row, as plain floats for JSON."""
    return {label: float(w) for label, w in zip(labels, row)}
