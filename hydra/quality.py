"""Score a trained model on labelled images whose faults are known.

Used by ``benchmarks/bench_quality.py`` and the tests: every image goes
through the serving code path (:mod:`hydra.inference`: load, prepare,
predict, decide), and faulty images that the model flags also get a Grad-CAM
map, whose peak is checked against where the fault was injected.

Example:
    >>> outcomes = score(loaded, records, "bench-plots", mask=[])   # doctest: +SKIP
    >>> summarize(outcomes)["problem_recall"]                        # doctest: +SKIP
    0.97
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hydra.data.realbench import Record

# faults that sit in one place: the heat map's peak should be there
LOCALISED = ("dead_channel", "dead_region", "hot_channel", "gain_shift")
POINTING_MARGIN = 0.03  # fraction of the image around the fault's box that still counts as inside


@dataclass(frozen=True)
class Outcome:
    """What the model said about one image, next to the truth."""

    filename: str
    plot_type: str
    truth: str
    fault: str | None
    subtle: bool
    tuned: bool
    label: str
    problem_weight: float
    confirmed: bool
    flagged: bool  # classified as a problem label
    pointed: bool | None  # heat-map peak inside the fault (localised faults the model flagged)


def _peak_inside(cam: np.ndarray, region: Sequence[float], margin: float = POINTING_MARGIN) -> bool:
    h, w = cam.shape
    r, c = np.unravel_index(int(np.argmax(cam)), cam.shape)
    y, x = (r + 0.5) / h, (c + 0.5) / w
    x0, y0, x1, y1 = region
    return bool((x0 - margin) <= x <= (x1 + margin) and (y0 - margin) <= y <= (y1 + margin))


def score(
    loaded: Any,
    records: Sequence[Record],
    data_dir: str | Path,
    *,
    mask: Sequence[Sequence[float]] | None = None,
    cam: bool = True,
    batch_size: int = 64,
) -> list[Outcome]:
    """Classify ``records``' images with ``loaded`` (a :class:`hydra.inference.ServingModel`)."""
    from hydra.data.images import load_image, prepare
    from hydra.inference import cam_batch, decide, predict_batch

    problem_idx = [i for i, lab in enumerate(loaded.labels) if lab in loaded.problem_labels]
    out: list[Outcome] = []
    for start in range(0, len(records), batch_size):
        chunk = list(records[start : start + batch_size])
        pixels = np.stack(
            [
                prepare(load_image(Path(data_dir) / r.filename), loaded.input_size, loaded.channels, mask)
                for r in chunk
            ]
        )
        weights = predict_batch(loaded, pixels)
        verdicts = [decide(w, loaded.labels, loaded.thresholds, loaded.problem_labels) for w in weights]
        point_rows = [
            i
            for i, (r, v) in enumerate(zip(chunk, verdicts))
            if cam and v.is_problem and r.fault in LOCALISED and r.region is not None
        ]
        pointed: dict[int, bool] = {}
        if point_rows:
            classes = [loaded.labels.index(verdicts[i].label) for i in point_rows]
            maps = cam_batch(loaded, pixels[point_rows], classes)
            pointed = {i: _peak_inside(m, chunk[i].region) for i, m in zip(point_rows, maps)}
        for i, (r, w, v) in enumerate(zip(chunk, weights, verdicts)):
            out.append(
                Outcome(
                    filename=r.filename,
                    plot_type=r.plot_type,
                    truth=r.label,
                    fault=r.fault,
                    subtle=r.subtle,
                    tuned=r.tuned,
                    label=v.label,
                    problem_weight=float(w[problem_idx].sum()) if problem_idx else 0.0,
                    confirmed=bool(v.confirmed),
                    flagged=bool(v.is_problem),
                    pointed=pointed.get(i),
                )
            )
    return out


def _rate(hits: int, total: int) -> float | None:
    return round(hits / total, 4) if total else None


def summarize(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """Accuracy, problem recall, false alarms, recall per fault kind, ROC AUC, pointing."""
    from hydra.thresholds import roc_auc

    good = [o for o in outcomes if o.truth == "Good"]
    bad = [o for o in outcomes if o.truth != "Good"]
    per_kind: dict[str, Any] = {}
    for kind in sorted({o.fault for o in bad if o.fault}):
        mine = [o for o in bad if o.fault == kind]
        subtle = [o for o in mine if o.subtle]
        per_kind[kind] = {
            "n": len(mine),
            "recall": _rate(sum(o.flagged for o in mine), len(mine)),
            "subtle_n": len(subtle),
            "subtle_recall": _rate(sum(o.flagged for o in subtle), len(subtle)),
        }
    pointed = [o.pointed for o in outcomes if o.pointed is not None]
    scores = np.array([o.problem_weight for o in outcomes])
    truth = np.array([o.truth != "Good" for o in outcomes])
    auc = roc_auc(scores, truth) if len(outcomes) else float("nan")
    return {
        "n": len(outcomes),
        "accuracy": _rate(sum(o.label == o.truth for o in outcomes), len(outcomes)),
        "problem_recall": _rate(sum(o.flagged for o in bad), len(bad)),
        "good_false_alarm": _rate(sum(o.flagged for o in good), len(good)),
        "good_false_alarm_confirmed": _rate(sum(o.flagged and o.confirmed for o in good), len(good)),
        "roc_auc": None if np.isnan(auc) else round(float(auc), 4),
        "recall_by_fault": per_kind,
        "cam_pointing": _rate(sum(pointed), len(pointed)),
        "cam_pointed_n": len(pointed),
    }


def ensure_problem_labels(engine: Any, plot_type: str, names: Sequence[str] = ("Bad", "NoData")) -> None:
    """Give the plot type the problem labels ``names`` (added if missing, marked as problems).

    The benchmark's plot types have Good, Bad and NoData as a hall's would,
    also when only Good images are labelled; an empty plot is a problem too.
    """
    from hydra.db.engine import session_scope
    from hydra.db.queries import add_label, get_plot_type, labels_of

    with session_scope(engine) as session:
        pt = get_plot_type(plot_type, session=session)
        have = {lab.name: lab for lab in labels_of(pt.id, session=session)}
        for name in names:
            if name in have:
                have[name].is_problem = True
                session.add(have[name])
            else:
                add_label(pt.id, name, session=session, is_problem=True)


def as_rows(outcomes: Sequence[Outcome]) -> list[dict[str, Any]]:
    return [asdict(o) for o in outcomes]
