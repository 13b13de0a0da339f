"""A plot type's Good reference, for any head: the per-pixel deviation map a shifter looks at.

Data-quality checks compare a plot with a reference. A head that mixes in
:class:`GoodReference` keeps the per-pixel centre and spread of its Good
training images with its weights and gives its network, next to the image,
how far each pixel is from that reference (in units of the spread). It can
also sharpen its Grad-CAM maps with that deviation (``cam_guide``).

The buffers keep the names they had when only the classifier had a reference
(``ref_median``, ``ref_scale``, ``ref_ready``), so every saved model loads.

Example:
    >>> head = create_head("classifier", backbone="plotnet", reference=True)   # doctest: +SKIP
    >>> head.fit_reference(train_loader)                                       # doctest: +SKIP
    >>> head.preprocess(batch_uint8).shape[1]                                  # image + deviation   # doctest: +SKIP
    6
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

Z_CLIP = 8.0  # the default reference_clip: deviations beyond this many spreads all read the same
Z_RANGE = 2.0  # the network reads deviations scaled so that +-reference_clip becomes +-Z_RANGE
REFERENCE_STATS = ("mean", "median")
REFERENCE_BUFFERS = ("ref_median", "ref_scale", "ref_ready")
# the defaults of every head that mixes it in (see the class docstring for why the mean)
DEFAULT_STAT = "mean"
DEFAULT_FLOOR = 0.02
DEFAULT_WINDOW = 1  # the heads' constructors keep the old reference; the presets widen it
# cam_guide: Grad-CAM as it is, weighed by the deviation, or the deviation map itself (no gradients)
CAM_GUIDES = (False, True, "deviation")
# the plot frame (plot_frame): how dark a line pixel is, how far a line runs, how closed and large the box
FRAME_DARK = 0.35
FRAME_SPAN = 0.3
FRAME_CLOSED = 0.8
FRAME_MIN_AREA = 0.25


class GoodReference:
    """Mixin for a :class:`hydra.heads.Head` (listed before it): the Good reference and its deviation map.

    The head's hyperparameters say whether it is used (``reference``), how the
    spread is measured (``reference_stat``: ``mean`` for the mean and standard
    deviation, ``median`` for the median and scaled median absolute
    deviation), its floor (``reference_floor``), the window over which the
    spread is taken (``reference_window``), where deviations stop counting
    (``reference_clip``, in spreads) and its heat maps (``cam_guide``:
    see :meth:`refine_cam` and :meth:`cam_from_input`). On plots,
    where most pixels are canvas that a marker or a bin edge crosses now and
    then, the median deviation is zero almost everywhere, so every change
    saturates alike; the standard deviation keeps "sometimes drawn here"
    apart from "never drawn here".

    ``reference_window`` (odd, in input pixels) makes each pixel's spread the
    largest within that square around it. Among a few dozen Good images a bar
    top or a colour cell's edge lands within a pixel or two of where it
    landed before, yet often not on a pixel where it never did; without the
    window such a pixel reads as a fault at full strength (the spread there
    is the floor). On the real-histogram benchmark the deviation alone (no
    training; ``benchmarks/bench_reference.py --windows 1,5``) told faulty
    plots apart with ROC AUC 0.78-0.96 per plot type at window 1 and
    0.93-1.00 at window 5.
    """

    def init_reference(self) -> None:
        """Check ``reference_stat``, ``reference_window`` and ``reference_clip``; register the neutral
        reference (from the head's ``__init__``)."""
        stat = self.hparams.get("reference_stat", DEFAULT_STAT)
        if stat not in REFERENCE_STATS:
            raise ValueError(f"reference_stat must be one of {', '.join(REFERENCE_STATS)}, got {stat!r}")
        window = self.hparams.get("reference_window", DEFAULT_WINDOW)
        if not isinstance(window, int) or isinstance(window, bool) or window < 1 or window % 2 == 0:
            raise ValueError(f"reference_window must be an odd whole number of pixels >= 1, got {window!r}")
        clip = self.hparams.get("reference_clip", Z_CLIP)
        if isinstance(clip, bool) or not isinstance(clip, (int, float)) or not 0 < clip < float("inf"):
            raise ValueError(f"reference_clip must be a number of spreads > 0, got {clip!r}")
        guide = self.hparams.get("cam_guide", False)
        if type(guide) not in (bool, str) or guide not in CAM_GUIDES:  # 1 == True, yet not a yes
            raise ValueError(f"cam_guide must be true, false or 'deviation', got {guide!r}")
        h, w = self.input_size
        self.register_buffer("ref_median", torch.full((self.channels, h, w), 0.5))
        self.register_buffer("ref_scale", torch.ones(self.channels, h, w))
        self.register_buffer("ref_ready", torch.zeros((), dtype=torch.bool))
        self._member_sums: tuple[torch.Tensor, torch.Tensor, int] | None = None  # for training_input
        self._frame_cache: tuple[torch.Tensor, int, tuple[int, int, int, int] | None] | None = None

    @property
    def uses_reference(self) -> bool:
        return bool(self.hparams.get("reference", False))

    @property
    def z_clip(self) -> float:
        """Deviations beyond this many spreads read the same (``reference_clip``; saved models without it: 8)."""
        return float(self.hparams.get("reference_clip", Z_CLIP))

    def input_channels(self) -> int:
        """Channels the network reads: the image's, twice over with a reference."""
        return self.channels * (2 if self.uses_reference else 1)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """[0, 1] images to the network input: the image in [-1, 1] (and its deviation map)."""
        scaled = super().normalize(x)
        if not self.uses_reference:
            return scaled
        return torch.cat(
            [scaled, self._deviation_input(x, self.ref_median.to(x.dtype), self.ref_scale.to(x.dtype))], dim=1
        )

    def _deviation_input(self, x: torch.Tensor, centre: torch.Tensor, spread: torch.Tensor) -> torch.Tensor:
        """The deviation channels the network reads: spreads clipped at ``reference_clip``, +-clip as +-Z_RANGE."""
        return deviation(x, centre, spread, self.z_clip) * (Z_RANGE / self.z_clip)

    def unnormalize(self, x: torch.Tensor) -> torch.Tensor:
        """The network input back to [0, 1] images (the deviation channels left out)."""
        return super().unnormalize(x[:, : self.channels])

    def training_input(self, x: torch.Tensor, sources: torch.Tensor, member: torch.Tensor) -> torch.Tensor:
        """:meth:`normalize` for a training batch: an image the reference rests on is not compared with itself.

        ``x``: [0, 1] images as the network will see them (augmented, some
        made faulty); ``sources``: the images they were made from, as the
        reference saw them; ``member``: which of those the reference rests on
        (the batch's Good images and the synthetic faults made from them).
        Their deviation is taken against the reference of the other Good
        images (:func:`leave_one_out`), so that a Good training image differs
        from its reference as much as a new Good plot does. Compared with
        itself, a Good image's rare features (an empty cell, a bar a pixel
        higher than ever) read a few spreads smaller than on a new plot; the
        network learned that any deviation means a fault, and new Good plots
        raised false alarms. On the real-histogram benchmark with 40 labels
        (``classifier-cpu``, seeds 0 / 1 / 2) Good false alarms fell from
        0.109 / 0.073 / 0.052 to 0.068 / 0.052 / 0.029, problem recall went
        from 0.935 / 0.921 / 0.916 to 0.921 / 0.914 / 0.904. With a
        ``median`` reference, or before :meth:`fit_reference`, it is
        :meth:`normalize`.
        """
        out = self.normalize(x)
        sums = self._member_sums
        if not self.uses_reference or sums is None or not bool(member.any()):
            return out
        total, squares, n = (t.to(x.device) if torch.is_tensor(t) else t for t in sums)
        rows = torch.nonzero(member).flatten()
        centre, spread = leave_one_out(
            total,
            squares,
            n,
            sources[rows].to(x.dtype),
            floor=float(self.hparams.get("reference_floor", DEFAULT_FLOOR)),
            window=int(self.hparams.get("reference_window", DEFAULT_WINDOW)),
        )
        z = out[:, self.channels :].clone()
        z[rows] = self._deviation_input(x[rows], centre, spread)
        return torch.cat([out[:, : self.channels], z], dim=1)

    def reference_state(self) -> tuple[Any, ...]:
        """The whole Good reference: its buffers and the sums :meth:`training_input` reads.

        Code that keeps several references and swaps them in (one per plot
        type, as :mod:`hydra.heads.pretrain` does) must swap all of it: with
        the buffers alone, training compares each plot type's Good images
        with the leave-one-out reference of another plot type.
        """
        return (self.ref_median, self.ref_scale, self.ref_ready, self._member_sums)

    def use_reference_state(self, state: tuple[Any, ...]) -> None:
        """Make ``state`` (from :meth:`reference_state`) the head's reference."""
        self.ref_median, self.ref_scale, self.ref_ready, self._member_sums = state

    def deviation_score(self, x: torch.Tensor, top: int) -> torch.Tensor:
        """:func:`top_deviation` of preprocessed images (the network input :meth:`normalize` gives), N."""
        return top_deviation(x[:, self.channels :] * (self.z_clip / Z_RANGE), top)

    @torch.no_grad()
    def fit_reference(self, batches: Iterable[Any]) -> int:
        """Set the Good reference from training batches; returns how many Good images it rests on.

        Duplicates (oversampled copies) count once. Without Good images the
        reference stays neutral and the head works on the image alone.
        """
        if not self.uses_reference:
            return 0
        goods = [img.cpu() for img, t in self.distinct_images(batches) if t == self.good_index]
        if not goods:
            return 0
        x = self.to_unit(torch.stack(goods))
        if self.hparams.get("reference_stat", DEFAULT_STAT) == "mean":
            centre, spread = x.mean(dim=0), x.std(dim=0, correction=0)
            self._member_sums = (x.sum(dim=0), x.pow(2).sum(dim=0), len(x)) if len(x) >= 2 else None
        else:
            centre, spread = median_spread(x)
            self._member_sums = None
        spread = widen_spread(spread, int(self.hparams.get("reference_window", DEFAULT_WINDOW)))
        self.ref_median = centre.to(self.ref_median.device)
        self.ref_scale = spread.clamp_min(float(self.hparams.get("reference_floor", DEFAULT_FLOOR))).to(
            self.ref_scale.device
        )
        self.ref_ready = torch.ones((), dtype=torch.bool, device=self.ref_ready.device)
        return len(goods)

    def on_train_start(self) -> None:
        if self.uses_reference and not bool(self.ref_ready):
            loader = getattr(self.trainer, "train_dataloader", None)
            loader = getattr(loader, "iterables", loader)
            if loader is not None:
                self.fit_reference(loader)

    def with_reference(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A saved state with the neutral reference added where the model was saved without one."""
        own = self.state_dict()
        return {**{k: own[k] for k in REFERENCE_BUFFERS if k not in state}, **state}

    def refine_cam(self, x: torch.Tensor, maps: np.ndarray) -> np.ndarray:
        """Grad-CAM weighed by how far each pixel is from the Good reference (``cam_guide: true``).

        Grad-CAM says which part of the last feature maps made the verdict,
        at their coarse resolution; the deviation channels say, pixel by
        pixel, where the plot differs from its reference. Their product
        (both scaled to a peak of 1) points at the bins that differ inside
        the area the network used, as guided Grad-CAM sharpens a map with
        the input's gradients. A map with no deviation under it stays as
        Grad-CAM drew it.

        The deviation is widened to the largest within 3x3 pixels (plus a
        hundredth of itself, so that the pixels that differ stay the peak),
        so a one-bin hot channel a pixel or two wide weighs as much as the
        broad change it causes elsewhere when the axis rescales. On the
        real-histogram benchmark (``benchmarks/bench_quality.py --sizes 160
        --seeds 0``, the same models before and after) the share of flagged
        localised faults whose heat-map peak lies in the fault rose from
        0.775 with the deviation averaged over 5x5 pixels to 0.796
        (docs/performance.md has the other seeds and windows).
        """
        if not (self.uses_reference and self.hparams.get("cam_guide", False) is True):
            return maps
        guided = maps * _peak_map(x[:, self.channels :].abs().amax(dim=1, keepdim=True).float())
        return self.in_frame(_renormalized(guided, otherwise=maps))

    def reference_frame(self) -> tuple[int, int, int, int] | None:
        """:func:`plot_frame` of the fitted reference, found once per reference, not once per heat map.

        The reference changes only when it is fitted (a new tensor) or loaded
        (copied in place, which bumps the tensor's version); the cache holds
        the tensor itself, so a new one can never pass for the old.
        """
        ref = self.ref_median
        cached = self._frame_cache
        if cached is None or cached[0] is not ref or cached[1] != ref._version:
            frame = plot_frame(ref) if bool(self.ref_ready) else None
            cached = self._frame_cache = (ref, ref._version, frame)
        return cached[2]

    def in_frame(self, maps: np.ndarray) -> np.ndarray:
        """Heat maps (N x H x W, peak 1) drawn inside the plot's frame only, where the reference has one.

        A fault lies among the bins, inside the axes box; what it moves
        outside (the tick labels of an axis or colour bar that rescales when
        a hot channel sets a new maximum) is a consequence, and the map's
        peak should not sit there. The frame is found in the Good reference
        (:func:`plot_frame`); a map with nothing inside it stays as it was.
        On the real-histogram benchmark (``siamese-cpu``, Good only, 160
        images, seeds 0 / 1 / 2) the share of flagged localised faults whose
        heat-map peak lies in the fault rose from 0.82 / 0.82 / 0.79 to
        0.88 / 0.89 / 0.87; on ``hpxpy``, where a hot cell rescales the colour
        bar, from 0.50-0.67 to 0.90-0.94.
        """
        frame = self.reference_frame()
        if frame is None or maps.shape[-2:] != tuple(self.ref_median.shape[-2:]):
            return maps
        top, bottom, left, right = frame
        mask = np.zeros(maps.shape[-2:], dtype=maps.dtype)
        mask[top : bottom + 1, left : right + 1] = 1.0
        return _renormalized(maps * mask, otherwise=maps)

    def cam_from_input(self, x: torch.Tensor) -> np.ndarray | None:
        """With ``cam_guide: deviation``, the heat map is where the plot differs most from its reference.

        Each pixel's deviation in spreads, the largest over the colour
        channels, *not* clipped (the network's input clips it at
        ``reference_clip``, where a broad change and a hot bin tie and the map's
        peak would fall on whichever comes first), widened as in
        :meth:`refine_cam`; N x H x W with a peak of 1. No gradients: for a
        head that scores by that deviation (the Siamese head's
        ``reference_score``) it is the honest account of its verdict, and
        its Grad-CAM, on an embedding a sixteenth of the input's size,
        pointed worse. On the real-histogram benchmark (``siamese-cpu``,
        Good only, 160 images, seeds 1 and 2, the same models) the share of
        flagged localised faults whose heat-map peak lies in the fault was
        0.69 and 0.62 with the weighed Grad-CAM, 0.76 with the clipped
        deviation (seed 1) and 0.82 and 0.79 with this map.
        """
        if not (self.uses_reference and self.hparams.get("cam_guide", False) == "deviation"):
            return None
        z = deviation(self.unnormalize(x).float(), self.ref_median.float(), self.ref_scale.float(), clip=None)
        return self.in_frame(_peak_map(z.abs().amax(dim=1, keepdim=True)))


def _renormalized(maps: np.ndarray, otherwise: np.ndarray) -> np.ndarray:
    """``maps`` scaled to a peak of 1; where one is all zero, ``otherwise``'s map instead."""
    peak = maps.reshape(len(maps), -1).max(axis=1)
    keep = peak > 1e-6
    out = otherwise.copy()
    out[keep] = maps[keep] / peak[keep, None, None]
    return out


def _longest_runs(dark: np.ndarray) -> np.ndarray:
    """The longest run of True along each row of a 2-D bool array."""
    best = np.zeros(dark.shape[0], dtype=np.int64)
    run = np.zeros(dark.shape[0], dtype=np.int64)
    for column in dark.T:
        run = np.where(column, run + 1, 0)
        best = np.maximum(best, run)
    return best


def plot_frame(reference: torch.Tensor) -> tuple[int, int, int, int] | None:
    """The plot's frame in a Good reference (C x H x W in [0, 1]): ``(top, bottom, left, right)`` pixels.

    Plots draw their axes box (and a colour bar's) as dark lines that every
    Good image has in the same place. The frame is bounded by the outermost
    rows and columns with a dark line across at least :data:`FRAME_SPAN` of
    the image; it counts only if those four lines close a rectangle (each
    spans most of its side) that covers at least :data:`FRAME_MIN_AREA` of
    the image. None where there is no such frame (a plot without axes lines):
    then nothing is masked. On all ten plot types of the real-histogram
    benchmark it is the axes box (with the colour bar on 2-D maps), and
    every injected fault lies inside it.
    """
    mean = reference.detach().float().cpu().numpy()
    dark = (1.0 - mean.min(axis=0)) > FRAME_DARK  # a coloured line is dark in some channel
    h, w = dark.shape
    rows = np.flatnonzero(_longest_runs(dark) >= FRAME_SPAN * w)
    cols = np.flatnonzero(_longest_runs(dark.T) >= FRAME_SPAN * h)
    if len(rows) < 2 or len(cols) < 2:
        return None
    top, bottom, left, right = int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])
    if (bottom - top + 1) * (right - left + 1) < FRAME_MIN_AREA * h * w:
        return None
    sides = (
        dark[top, left : right + 1],
        dark[bottom, left : right + 1],
        dark[top : bottom + 1, left],
        dark[top : bottom + 1, right],
    )
    if min(side.mean() for side in sides) < FRAME_CLOSED:
        return None
    return top, bottom, left, right


def _peak_map(dev: torch.Tensor) -> np.ndarray:
    """A deviation map N x 1 x H x W widened to the largest within 3x3 pixels (plus a hundredth of
    itself, so that the pixels that differ stay the peak), as N x H x W with a peak of 1."""
    dev = (F.max_pool2d(dev, 3, stride=1, padding=1) + 0.01 * dev)[:, 0].cpu().numpy()
    return dev / np.maximum(dev.reshape(len(dev), -1).max(axis=1), 1e-6)[:, None, None]


def widen_spread(spread: torch.Tensor, window: int) -> torch.Tensor:
    """Each pixel's spread (C x H x W, or N x C x H x W) replaced by the largest within a ``window`` x ``window`` square."""
    if window <= 1:
        return spread
    batch = spread if spread.dim() == 4 else spread[None]
    wide = F.max_pool2d(batch, window, stride=1, padding=window // 2)
    return wide if spread.dim() == 4 else wide[0]


def deviation(
    x: torch.Tensor, centre: torch.Tensor, spread: torch.Tensor, clip: float | None = Z_CLIP
) -> torch.Tensor:
    """How many spreads each pixel is from the reference, clipped at ``clip`` (None: not clipped)."""
    z = (x - centre) / spread
    return z if clip is None else z.clamp(-clip, clip)


def median_spread(x: torch.Tensor, dim: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Median and median absolute deviation (scaled to a normal's standard deviation) along ``dim``."""
    centre = x.median(dim=dim).values
    return centre, (x - centre.unsqueeze(dim)).abs().median(dim=dim).values * 1.4826


def top_deviation(z: torch.Tensor, top: int) -> torch.Tensor:
    """How far each image is from the Good reference, N: a shifter's "is it like the reference?".

    ``z`` is the deviation map N x C x H x W in spreads (:func:`deviation`);
    the score is the mean, over the ``top`` pixels that differ most, of each
    pixel's largest deviation over the colour channels.
    """
    per_pixel = z.abs().amax(dim=1).flatten(1)
    return per_pixel.topk(min(top, per_pixel.shape[1]), dim=1).values.mean(dim=1)


@torch.no_grad()
def leave_one_out_deviation(
    goods: torch.Tensor,
    pick: torch.Tensor,
    *,
    floor: float,
    window: int,
    top: int,
    clip: float = Z_CLIP,
    chunk: int = 32,
) -> torch.Tensor:
    """:func:`top_deviation` of Good images ``goods[pick]`` (N x C x H x W, [0, 1]), each against the
    mean reference of all the others: what a new Good image scores, not one the reference has seen.
    """
    n = goods.shape[0]
    if n < 2:
        raise ValueError(f"a leave-one-out reference needs at least 2 Good images, got {n}")
    total, squares = goods.sum(dim=0), goods.pow(2).sum(dim=0)
    out = []
    for idx in pick.split(chunk):
        x = goods[idx]
        centre, spread = leave_one_out(total, squares, n, x, floor=floor, window=window)
        out.append(top_deviation(deviation(x, centre, spread, clip), top))
    return torch.cat(out)


def leave_one_out(
    total: torch.Tensor, squares: torch.Tensor, n: int, x: torch.Tensor, *, floor: float, window: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean reference (centre and spread, N x C x H x W) of ``n`` images without each of ``x``.

    ``total`` and ``squares``: the sum and the sum of squares (C x H x W) of
    the ``n`` images, ``x`` among them; the spread is the standard deviation
    of the other ``n - 1``, widened over ``window`` and floored as the
    reference's own.
    """
    centre = (total - x) / (n - 1)
    spread = ((squares - x.pow(2)) / (n - 1) - centre.pow(2)).clamp_min(0.0).sqrt()
    return centre, widen_spread(spread, window).clamp_min(floor)
