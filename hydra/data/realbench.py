"""Labelled plots rendered from real histograms: the quality benchmark's data.

Every plot type is one histogram from a public ROOT file that PyPI's
``scikit-hep-testdata`` (0.3.0, which ships its files) carries: histograms
stored in the files, or filled from their event trees (CMS Z->mumu events,
a H->ZZ sample, Geant4 energy deposits). Each image draws fresh Poisson
statistics from that histogram and is rendered by :mod:`hydra.data.root`,
the renderer of ``hydra render-root``, in the plot type's own style.

Faults are injected into the histogram, never painted on the image, and
every one is recorded with its kind, whether it is subtle, and where it is
drawn (a box in fractions of the image, y from the top), so a benchmark can
score recall per fault kind and where Grad-CAM points.

Fault kinds (label ``Bad`` unless said otherwise): ``dead_channel`` (one
bin, or one row/column of a 2D map), ``dead_region`` (a band of bins; a
rectangle on a 2D map), ``hot_channel`` (1-3 bins several times hotter),
``gain_shift`` (part of the axis scaled up or down), ``timing_shift`` (the
distribution moved along x), ``noise`` (a flat background and bin-to-bin
jitter), ``low_stats`` (a few percent of the usual entries) and ``empty``
(label ``NoData``). About a third are *subtle*: narrow, weak or small.

Faults are ones a person can tell from a Good plot of the type: a dead
channel is a bin so full that no Good plot shows any hole that full in 1 %
of images (on a sparse 2D map Poisson statistics leave a few cells empty),
and a gain shift scales 20-80 % of the entries (scaling all of them is
what a run with more or less luminosity looks like, and Good images vary
x0.6-1.6; where the peak holds most entries, as on ``edep_response``, the
range is centred on any bin with entries, not only a populated one).
:func:`explain` replays what made each image of a generated folder.

Needs the optional extras ``root`` and ``bench`` (uproot, matplotlib,
mplhep, scikit-hep-testdata).

Example:
    >>> from hydra.data.realbench import generate
    >>> records = generate("bench-plots", plot_types=["hpx"], images=40, seed=1)  # doctest: +SKIP
    >>> records[0].fault, records[0].subtle, records[0].region                    # doctest: +SKIP
    ('dead_region', False, (0.41, 0.1, 0.52, 0.85))
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from hydra.data.naming import make_name
from hydra.data.root import Histogram, RenderStyle, RootError, render_histogram

FAULTS = ("dead_channel", "dead_region", "hot_channel", "gain_shift", "timing_shift", "noise", "low_stats")
NODATA = "empty"
SUBTLE_FRACTION = 0.35
# a dead bin is a fault only where a Good plot of the type shows so full a bin empty in under 1 % of images
CHANCE_HOLE = 0.01
# a gain shift scales part of the plot: 20-80 % of its entries (all of them would be a luminosity change)
GAIN_SHARE = (0.2, 0.8)
# bumped whenever the same seed would make different images; a data folder of another version is stale
GENERATOR_VERSION = 3
_SMALL = {"width_px": 320, "height_px": 240, "font_size": 7.0}
_BOX1D = (0.15, 0.16, 0.80, 0.72)
_BOX2D = (0.15, 0.16, 0.66, 0.72)
_CBAR = (0.84, 0.16, 0.03, 0.72)


@dataclass(frozen=True)
class Source:
    """One plot type: where its histogram comes from and how it is drawn.

    ``hist`` is a histogram path in ``file``; otherwise ``branches`` (one for
    1D, x and y for 2D; a jagged branch contributes every element) are
    histogrammed with ``bins`` and ``ranges``.
    """

    plot_type: str
    file: str
    title: str
    axis_labels: tuple[str, ...]
    style: RenderStyle
    hist: str | None = None
    branches: tuple[tuple[str, ...], ...] = ()
    bins: tuple[int, ...] = ()
    ranges: tuple[tuple[float, float], ...] = ()
    rebin: int = 1
    mean_count: float = 200.0  # expected entries of an average populated bin
    tuned: bool = True  # False: kept out of all tuning, reported apart


def _style(**kw) -> RenderStyle:
    return RenderStyle(**_SMALL, axes_1d=_BOX1D, axes_2d=_BOX2D, colorbar=_CBAR, **kw)


SOURCES: tuple[Source, ...] = (
    Source("hpx", "uproot-hepdata-example.root", "px distribution", ("px", "Entries"),
           _style(), hist="hpx"),
    Source("hpxpy", "uproot-hepdata-example.root", "py vs px", ("px", "py", "Entries"),
           _style(), hist="hpxpy", mean_count=60.0),
    Source("edep_inner", "uproot-from-geant4.root", "Edep in inner layer", ("Edep", "Entries"),
           _style(hist1d="step", color="#b02020"), hist="edep_inner", rebin=4, mean_count=150.0),
    Source("edep_response", "uproot-issue66.root", "E_dep final response", ("E_dep [keV]", "Entries"),
           _style(hist1d="errorbar", color="black", log_y=True), hist="E_{dep} in keV - final response",
           rebin=2, mean_count=300.0),
    Source("muon_etaphi", "uproot-Zmumu.root", "Muon occupancy", ("eta", "phi", "Muons"),
           _style(cmap="plasma", log_z=False), branches=(("eta1", "phi1"), ("eta2", "phi2")),
           bins=(24, 24), ranges=((-2.4, 2.4), (-3.1416, 3.1416)), mean_count=40.0),
    Source("muon_pt", "uproot-Zmumu.root", "Muon pT", ("pT [GeV]", "Muons"),
           _style(color="#208040", log_y=True), branches=(("pt1",), ("pt2",)),
           bins=(60,), ranges=((0.0, 120.0),), mean_count=250.0),
    Source("muon_pxpy", "uproot-HZZ.root", "Muon px vs py", ("px [GeV]", "py [GeV]", "Muons"),
           _style(cmap="magma"), branches=(("Muon_Px", "Muon_Py"),),
           bins=(30, 30), ranges=((-80.0, 80.0), (-80.0, 80.0)), mean_count=40.0),
    Source("cutflow", "uproot-issue243-new.root", "Four-tag cutflow", ("cut", "Events"),
           _style(color="#806000"), hist="FourTagCutflow", mean_count=2000.0),
    # kept out of all tuning of the heads: the benchmark reports them apart
    Source("dimuon_mass", "uproot-Zmumu.root", "Dimuon mass", ("M [GeV]", "Events"),
           _style(hist1d="step", color="#303090"), branches=(("M",),), bins=(60,),
           ranges=((60.0, 120.0),), mean_count=250.0, tuned=False),
    Source("jet_pxpy", "uproot-HZZ.root", "Jet px vs py", ("px [GeV]", "py [GeV]", "Jets"),
           _style(log_z=False), branches=(("Jet_Px", "Jet_Py"),), bins=(32, 32),
           ranges=((-120.0, 120.0), (-120.0, 120.0)), mean_count=40.0, tuned=False),
)  # fmt: skip
SOURCE_BY_NAME = {s.plot_type: s for s in SOURCES}


@dataclass(frozen=True)
class Record:
    """One generated image and the truth about it."""

    filename: str
    plot_type: str
    label: str
    fault: str | None
    subtle: bool
    region: tuple[float, float, float, float] | None
    tuned: bool


def _data_path(name: str) -> str:
    try:
        import skhep_testdata
    except ImportError as exc:
        raise RootError(
            "the quality benchmark needs scikit-hep-testdata 0.3.0: pip install 'hydra-dqm[bench]'"
        ) from exc
    return skhep_testdata.data_path(name)


def template(source: Source) -> Histogram:
    """The source's real histogram (non-negative, rebinned): the shape every image resamples."""
    import uproot

    with uproot.open(_data_path(source.file)) as f:
        if source.hist is not None:
            obj = f[source.hist]
            values = np.asarray(obj.values(flow=False), dtype=np.float64)
            edges = tuple(np.asarray(obj.axis(i).edges(flow=False)) for i in range(values.ndim))
        else:
            tree = f[f.keys(recursive=False)[0].split(";")[0]]
            values, edges = None, ()
            for group in source.branches:
                cols = [np.asarray(_flat(tree[b].array(library="np")), dtype=np.float64) for b in group]
                h, found = np.histogramdd(np.stack(cols, 1), bins=source.bins, range=source.ranges)
                values = h if values is None else values + h
                edges = tuple(np.asarray(e) for e in found)
    if source.rebin > 1:
        n = values.shape[0] // source.rebin * source.rebin
        values = values[:n].reshape(-1, source.rebin, *values.shape[1:]).sum(1)
        edges = (edges[0][: n + 1 : source.rebin], *edges[1:])
    values = np.clip(values, 0.0, None)
    labels = source.axis_labels
    classname = "TH1D" if values.ndim == 1 else "TH2D"
    return Histogram(source.plot_type, classname, source.title, labels, values, tuple(edges))


def _flat(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == object:  # a jagged branch: every element counts
        return np.concatenate([np.asarray(a, dtype=np.float64) for a in arr]) if len(arr) else arr
    return arr


# ------------------------------------------------------------------ faults
def _populated(lam: np.ndarray) -> np.ndarray:
    return lam > 0.05 * lam.max()


def _telling(lam: np.ndarray, pop: np.ndarray) -> np.ndarray:
    """Populated bins whose emptiness tells a fault from chance.

    Poisson statistics empty a bin of ``lam`` expected entries with
    probability ``exp(-lam)``; on a sparse 2D map a Good plot has a few such
    holes. These are the bins at least as full as the emptiest one for which
    a Good plot shows *any* hole that full in under :data:`CHANCE_HOLE` of
    images.
    """
    values, times = np.unique(lam[pop], return_counts=True)
    # rare[i]: a Good plot shows a hole among the bins with lam >= values[i] in under CHANCE_HOLE of images
    rare = np.cumsum((times * np.exp(-values))[::-1])[::-1] <= CHANCE_HOLE
    telling = pop & (lam >= (values[int(np.argmax(rare))] if rare.any() else np.inf))
    return telling if telling.any() else lam == lam.max()


def _gain_span(rng: np.random.Generator, lam: np.ndarray, pop_x: np.ndarray) -> tuple[int, int]:
    """A range of 35-55 % of the x bins holding a :data:`GAIN_SHARE` of the entries (the closest of 200 tries).

    The range is centred on a populated bin; where no such range holds that
    share (a plot whose peak holds most entries), on any bin with entries.
    """
    per_x = lam.reshape(lam.shape[0], -1).sum(1)
    total = max(per_x.sum(), 1e-12)
    best, best_miss = (0, 1), np.inf
    for centres in (pop_x, per_x > 0):
        for _ in range(200):
            x0, x1 = _span(rng, lam.shape[0], (0.35, 0.55), centres)
            share = per_x[x0:x1].sum() / total
            miss = max(GAIN_SHARE[0] - share, share - GAIN_SHARE[1], 0.0)
            if miss < best_miss:
                best, best_miss = (x0, x1), miss
            if miss == 0.0:
                return best
    return best


def _span(rng: np.random.Generator, n: int, frac: tuple[float, float], inside: np.ndarray) -> tuple[int, int]:
    """A contiguous range of about ``frac`` of ``n`` bins, centred on a populated bin."""
    width = max(1, int(round(n * rng.uniform(*frac))))
    centres = np.flatnonzero(inside) if inside.any() else np.arange(n)
    c = int(rng.choice(centres))
    lo = int(np.clip(c - width // 2, 0, max(0, n - width)))
    return lo, lo + width


def inject(
    lam: np.ndarray, kind: str, subtle: bool, rng: np.random.Generator
) -> tuple[np.ndarray, tuple[tuple[int, int], tuple[int, int] | None] | None]:
    """Apply one fault to expected counts ``lam``; returns them and the bins it touched.

    The bins are ``((x0, x1), (y0, y1) or None)``, half-open; ``None`` for a
    fault of the whole plot.
    """
    lam = lam.astype(np.float64, copy=True)
    nx = lam.shape[0]
    ny = lam.shape[1] if lam.ndim == 2 else None
    pop = _populated(lam)
    telling = _telling(lam, pop)
    pop_x = pop if lam.ndim == 1 else pop.any(1)
    pop_y = None if ny is None else pop.any(0)
    whole = None
    if kind == "dead_channel":
        if lam.ndim == 1:
            ranked = np.argsort(np.where(telling, lam, -1.0))[::-1][
                : max(1, int(telling.sum() * (0.8 if subtle else 0.4)))
            ]
            x = int(rng.choice(ranked))
            lam[x] = 0.0
            return lam, ((x, x + 1), None)
        if rng.random() < 0.5:  # a dead cell block (subtle: a single cell) or a dead row
            xs, ys = np.nonzero(telling)
            i = int(rng.integers(len(xs)))
            size = 1 if subtle else 2
            x0, y0 = min(int(xs[i]), nx - size), min(int(ys[i]), ny - size)
            lam[x0 : x0 + size, y0 : y0 + size] = 0.0
            return lam, ((x0, x0 + size), (y0, y0 + size))
        y = int(rng.choice(np.flatnonzero(pop_y)))
        lam[:, y] = 0.0
        return lam, ((0, nx), (y, y + 1))
    if kind == "dead_region":
        frac = (0.05, 0.10) if subtle else (0.15, 0.30)
        x0, x1 = _span(rng, nx, frac, pop_x)
        if lam.ndim == 1:
            lam[x0:x1] = 0.0
            return lam, ((x0, x1), None)
        y0, y1 = _span(rng, ny, (frac[0] * 1.5, frac[1] * 1.2), pop_y)
        lam[x0:x1, y0:y1] = 0.0
        return lam, ((x0, x1), (y0, y1))
    if kind == "hot_channel":
        count = 1 if subtle else int(rng.integers(1, 4))
        factor = rng.uniform(2.5, 4.0) if subtle else rng.uniform(6.0, 15.0)
        peak = lam.max()
        if lam.ndim == 1:
            xs = rng.choice(np.flatnonzero(pop), size=min(count, int(pop.sum())), replace=False)
            for x in xs:
                lam[x] = max(lam[x] * factor, 0.3 * factor * peak / 4)
            return lam, ((int(xs.min()), int(xs.max()) + 1), None)
        xs, ys = np.nonzero(pop)
        i = rng.choice(len(xs), size=min(count, len(xs)), replace=False)
        for x, y in zip(xs[i], ys[i]):
            lam[x, y] = max(lam[x, y] * factor, 0.3 * factor * peak / 4)
        return lam, ((int(xs[i].min()), int(xs[i].max()) + 1), (int(ys[i].min()), int(ys[i].max()) + 1))
    if kind == "gain_shift":
        if subtle:
            factor = rng.uniform(0.62, 0.72) if rng.random() < 0.5 else rng.uniform(1.4, 1.55)
        else:
            factor = rng.uniform(0.3, 0.5) if rng.random() < 0.5 else rng.uniform(1.9, 2.6)
        x0, x1 = _gain_span(rng, lam, pop_x)
        lam[x0:x1] *= factor
        return lam, ((x0, x1), None if ny is None else (0, ny))
    if kind == "timing_shift":
        frac = rng.uniform(0.05, 0.08) if subtle else rng.uniform(0.12, 0.22)
        step = max(1, int(round(frac * nx))) * (1 if rng.random() < 0.5 else -1)
        shifted = np.roll(lam, step, axis=0)
        if step > 0:
            shifted[:step] = 0.0
        else:
            shifted[step:] = 0.0
        return shifted, whole
    if kind == "noise":
        level = lam[pop].mean() * (rng.uniform(0.10, 0.16) if subtle else rng.uniform(0.25, 0.5))
        sigma = 0.25 if subtle else 0.5
        lam = lam * rng.lognormal(0.0, sigma, lam.shape) + level
        return lam, whole
    if kind == "low_stats":
        return lam * (rng.uniform(0.03, 0.06) if subtle else rng.uniform(0.004, 0.012)), whole
    if kind == NODATA:
        return np.zeros_like(lam), whole
    raise ValueError(f"unknown fault {kind!r}; known: {', '.join((*FAULTS, NODATA))}")


# --------------------------------------------------------------- generation
def average_counts(shape: np.ndarray, mean_count: float) -> np.ndarray:
    """The shape scaled so a populated bin holds ~``mean_count``: an image of average luminosity."""
    return shape * (mean_count / max(shape[_populated(shape)].mean(), 1e-12))


def expected_counts(shape: np.ndarray, mean_count: float, rng: np.random.Generator) -> np.ndarray:
    """Expected counts of one image: :func:`average_counts` times the image's own luminosity
    (x0.6-1.6, as runs differ)."""
    return average_counts(shape, mean_count) * rng.uniform(0.6, 1.6)


Job = tuple[Source, Histogram, str, int, str | None, bool, int]


def _jobs(names: Sequence[str], images: int, seed: int, first_run: int, out: str) -> list[Job]:
    """Every image to make: (source, template, folder, run, fault kind, subtle, the image's seed)."""
    jobs = []
    for t, name in enumerate(names):
        source = SOURCE_BY_NAME[name]
        shape = template(source)
        rng = np.random.default_rng([seed, t])
        for i, (kind, subtle) in enumerate(plan(images, rng)):
            jobs.append((source, shape, out, first_run + i, kind, subtle, int(rng.integers(2**62))))
    return jobs


def _expected(job: Job) -> tuple[np.ndarray, np.ndarray, tuple | None, np.random.Generator]:
    """An image's expected counts before and after its fault, the fault's bins, and the generator
    that draws its entries next."""
    source, shape, _, _, kind, subtle, seed = job
    rng = np.random.default_rng(seed)
    good = expected_counts(shape.values, source.mean_count, rng)
    lam, where = (good, None) if kind is None else inject(good, kind, subtle, rng)
    return good, lam, where, rng


def _one(job: Job) -> Record:
    source, shape, out, run, kind, subtle, _ = job
    _, lam, where, rng = _expected(job)
    counts = rng.poisson(np.clip(lam, 0.0, None)).astype(np.float64)
    hist = replace(shape, values=counts)
    name = make_name(source.plot_type, run, None)
    render_histogram(hist, Path(out) / name, source.style)
    if kind is None:
        region = None
    elif where is None:
        region = source.style.axes_box(hist.ndim)
        left, bottom, width, height = region
        region = (left, 1.0 - bottom - height, left + width, 1.0 - bottom)
    else:
        region = source.style.bin_box(hist, where[0], where[1])
    label = "Good" if kind is None else ("NoData" if kind == NODATA else "Bad")
    box = None if region is None else tuple(round(float(v), 4) for v in region)
    return Record(name, source.plot_type, label, kind, bool(subtle), box, source.tuned)


def plan(images: int, rng: np.random.Generator, good_fraction: float = 0.5) -> list[tuple[str | None, bool]]:
    """(fault kind or None, subtle) for ``images`` images: half Good, faults in equal shares.

    Every eighth problem image is empty (NoData); the order is shuffled.
    """
    n_good = int(round(images * good_fraction))
    jobs: list[tuple[str | None, bool]] = [(None, False)] * n_good
    kinds = (*FAULTS, NODATA)
    for i in range(images - n_good):
        kind = kinds[i % len(kinds)]
        jobs.append((kind, kind != NODATA and rng.random() < SUBTLE_FRACTION))
    order = rng.permutation(len(jobs))
    return [jobs[i] for i in order]


def generate(
    out_dir: str | Path,
    *,
    plot_types: Sequence[str] | None = None,
    images: int = 240,
    seed: int = 0,
    first_run: int = 1000,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> list[Record]:
    """Render ``images`` labelled images per plot type into ``out_dir``.

    Writes the PNGs (named by the naming convention, one run number per
    image), ``labels.csv`` (``filename,label``, for ``hydra ingest``) and
    ``truth.json`` (every :class:`Record`) and, last, ``generator.json``
    (:data:`GENERATOR_VERSION`, the arguments: see
    :func:`is_current`). The same seed gives the same images.

    Raises:
        RootError: an unknown plot type, or the ROOT files are not installed.
    """
    names = list(plot_types or [s.plot_type for s in SOURCES])
    unknown = [n for n in names if n not in SOURCE_BY_NAME]
    if unknown:
        raise RootError(f"unknown benchmark plot type(s) {unknown}; known: {', '.join(SOURCE_BY_NAME)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # the folder is current again only once it is all written
    (out / "generator.json").unlink(missing_ok=True)
    jobs = _jobs(names, images, seed, first_run, str(out))
    records: list[Record] = []
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            for rec in pool.map(_one, jobs, chunksize=8):
                records.append(rec)
                if progress:
                    progress(len(records), len(jobs))
    else:
        for job in jobs:
            records.append(_one(job))
            if progress:
                progress(len(records), len(jobs))
    with (out / "labels.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["filename", "label"])
        writer.writerows((r.filename, r.label) for r in records)
    (out / "truth.json").write_text(json.dumps([asdict(r) for r in records], indent=1) + "\n")
    (out / "generator.json").write_text(json.dumps(_stamp(names, images, seed, first_run)) + "\n")
    return records


def _stamp(plot_types: Sequence[str], images: int, seed: int, first_run: int = 1000) -> dict:
    return {"version": GENERATOR_VERSION, "plot_types": list(plot_types), "images": images, "seed": seed,
            "first_run": first_run}  # fmt: skip


def is_current(
    directory: str | Path, *, plot_types: Sequence[str], images: int, seed: int, first_run: int = 1000
) -> bool:
    """Whether ``directory`` holds what :func:`generate` makes now for these arguments.

    False for a folder generated by an older generator (or none), with
    another seed, size or plot types, or whose generation did not finish
    (``generator.json`` is written last).
    """
    return read_stamp(directory) == _stamp(plot_types, images, seed, first_run)


def read_stamp(directory: str | Path) -> dict | None:
    """What :func:`generate` wrote to ``generator.json`` (None: no finished folder)."""
    try:
        stamp = json.loads((Path(directory) / "generator.json").read_text())
    except (OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) else None


def explain(directory: str | Path) -> dict[str, dict]:
    """What made each image of a generated folder, by file name: the replayed generator, not rendered.

    For every image: ``luminosity`` (its entries against the plot type's
    average, x0.6-1.6) and ``entries`` (expected); for a fault of some bins
    also ``fault_bins`` (half-open x and y ranges), ``fault_entries`` (what
    those bins hold in the Good plot it was made from) and ``fault_share``
    (their share of all entries). What a benchmark needs to tell a head's
    miss from a fault nobody could see.

    Raises:
        RootError: the folder was not made by this generator (:func:`read_stamp`).
    """
    stamp = read_stamp(directory)
    if stamp is None:
        raise RootError(f"{directory} holds no finished benchmark images (no generator.json)")
    if stamp.get("version") != GENERATOR_VERSION:
        raise RootError(
            f"{directory} was made by generator version {stamp.get('version')}, this is {GENERATOR_VERSION}"
        )
    facts = {}
    average: dict[str, float] = {}  # entries of an average image, per plot type
    first_run = stamp.get("first_run", 1000)
    for job in _jobs(stamp["plot_types"], stamp["images"], stamp["seed"], first_run, str(directory)):
        source, shape, _, run, _, _, _ = job
        good, _, where, _ = _expected(job)
        if source.plot_type not in average:
            average[source.plot_type] = float(average_counts(shape.values, source.mean_count).sum())
        fact: dict = {
            "luminosity": round(float(good.sum()) / average[source.plot_type], 3),
            "entries": round(float(good.sum()), 1),
        }
        if where is not None:
            (x0, x1), ys = where
            inside = good[x0:x1] if ys is None else good[x0:x1, ys[0] : ys[1]]
            fact |= {
                "fault_bins": [[x0, x1], None if ys is None else list(ys)],
                "fault_entries": round(float(inside.sum()), 1),
                "fault_share": round(float(inside.sum() / good.sum()), 4),
            }
        facts[make_name(source.plot_type, run, None)] = fact
    return facts


def read_truth(directory: str | Path) -> list[Record]:
    """The records :func:`generate` wrote to ``truth.json``."""
    rows = json.loads((Path(directory) / "truth.json").read_text())
    return [Record(**{**r, "region": tuple(r["region"]) if r["region"] else None}) for r in rows]
