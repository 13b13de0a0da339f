"""Grad-CAM for any head, batched, with the hooks released after use.

The head says which layers to weigh (``cam_target_layers``), which module's
output the targets read (``cam_model``: the logits, or the Siamese head's
distance to its Good references) and what each image's target is
(``cam_targets``); a head made of several (``cam_parts``: an ensemble) gets
the mean of its members' maps. The maps come back at the model's input size.
A head that explains its verdict from the input alone (``cam_from_input``: the
deviation from its Good reference, ``cam_guide: deviation``) skips the gradients.

Example:
    >>> maps = grad_cam(head, head.preprocess(batch_uint8), [1, 0])   # doctest: +SKIP
    >>> png = overlay(pixels[0], maps[0])                              # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from hydra.heads.base import Head


def grad_cam(head: Head, x: torch.Tensor, class_indices: Sequence[int]) -> np.ndarray:
    """Grad-CAM maps, float32 N×H×W in [0, 1], for preprocessed inputs ``x``.

    Runs in float32 with gradients on (whatever the caller's mode), and puts
    the head back in eval mode; the CAM object is a context manager so its
    forward/backward hooks are removed even if a batch fails.
    """
    from pytorch_grad_cam import GradCAM

    if len(class_indices) != x.shape[0]:
        raise ValueError(f"need one class index per image: {len(class_indices)} for {x.shape[0]} images")
    if x.shape[0] == 0:
        return np.zeros((0, *x.shape[-2:]), dtype=np.float32)
    parts = getattr(head, "cam_parts", None)
    if parts is not None:  # an ensemble: each member explains its own verdict, the maps are averaged
        return np.mean([grad_cam(member, inp, class_indices) for member, inp in parts(x)], axis=0)
    x = x.detach().float().contiguous()
    own = head.cam_from_input(x)
    if own is not None:  # a head that shows where its input differs, with no gradients to take
        return _unit(own)
    was_training = head.training
    try:
        with torch.inference_mode(False), torch.enable_grad():
            x = x.clone()  # a tensor made under inference_mode cannot join autograd
            with GradCAM(model=head.cam_model(), target_layers=head.cam_target_layers()) as cam:
                maps = cam(input_tensor=x, targets=head.cam_targets(class_indices))
    finally:
        head.zero_grad(set_to_none=True)
        head.train(was_training)
    return _unit(head.refine_cam(x.detach(), _unit(maps)))


def _unit(maps: object) -> np.ndarray:
    """Heat maps as float32 in [0, 1], NaN (a flat map's 0/0) read as 0."""
    return np.clip(np.nan_to_num(np.asarray(maps, dtype=np.float32), nan=0.0), 0.0, 1.0)


def heat_map(cam: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
    """A CAM (H×W in [0, 1]) as a single-channel uint8 map (0..255), optionally resized to ``size`` (w, h).

    This is what is stored: a plain map, upsampled to the original image, that
    a page colours and blends over the image once, at the opacity it chooses.
    """
    from PIL import Image

    gray = np.clip(np.nan_to_num(np.asarray(cam, dtype=np.float32)), 0.0, 1.0)
    out = Image.fromarray((gray * 255.0 + 0.5).astype(np.uint8), mode="L")
    if size is not None and out.size != tuple(size):
        out = out.resize(tuple(size), Image.Resampling.BILINEAR)
    return np.asarray(out, dtype=np.uint8)


def overlay(pixels: np.ndarray, cam: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Blend a CAM (H×W in [0, 1]) over the image (uint8 H×W×C) as a heat map, uint8 RGB.

    The map is resized to the image if needed, so heat maps can be drawn on
    the original plot as well as on the model input.
    """
    from PIL import Image

    img = np.asarray(pixels)
    if img.ndim == 2:
        img = img[:, :, None]
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    h, w = img.shape[:2]
    cam = np.asarray(cam, dtype=np.float32)
    if cam.shape != (h, w):
        cam = np.asarray(Image.fromarray(cam).resize((w, h), Image.Resampling.BILINEAR), dtype=np.float32)
    heat = _jet(np.clip(cam, 0.0, 1.0))
    out = (1.0 - alpha) * img.astype(np.float32) + alpha * heat
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _jet(v: np.ndarray) -> np.ndarray:
    """The jet colour map (blue -> red) as float RGB 0..255, without OpenCV/matplotlib."""
    r = np.clip(1.5 - np.abs(4.0 * v - 3.0), 0.0, 1.0)
    g = np.clip(1.5 - np.abs(4.0 * v - 2.0), 0.0, 1.0)
    b = np.clip(1.5 - np.abs(4.0 * v - 1.0), 0.0, 1.0)
    return np.stack([r, g, b], axis=-1) * 255.0
