"""Fill a database with a small, realistic deployment for app and browser tests.

One call builds everything the pages read: plot groups and plot types with
labels, users with roles and per-plot-type permissions, trained models with
thresholds and evaluation verdicts, a history of inferences with per-stage
timings and weights, RunTime rows, kept images (some labeled) with real PNG
files and Grad-CAM heat maps, alarms, error records and serve heartbeats.

Example:
    >>> from tests.helpers.seed import seed_database, USERS
    >>> seeded = seed_database(engine, home)  # doctest: +SKIP
    >>> seeded.plot_types["FCAL_occupancy"]  # doctest: +SKIP
    1
    >>> USERS["expert"].password
    'expert-pw'

The scenario (see :data:`PLOTS`): ``FCAL_occupancy`` ends in a confirmed Bad
verdict with an open alarm and a drifting Bad weight; ``FCAL_timing`` is Good;
``BCAL_energy`` ends unconfirmed; ``CDC_hits`` has no RunTime rows left and
its newest inference is two hours old (stale); ``CDC_pedestal`` has no model
but kept images; ``TOF_rates`` has nothing at all.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from PIL import Image as PILImage
from PIL import ImageDraw
from sqlalchemy.engine import Engine

from hydra.auth import create_user, grant
from hydra.data.images import source_key
from hydra.db.engine import session_scope
from hydra.db.models import (
    Alarm,
    ErrorRecord,
    Heartbeat,
    Image,
    ImageLabel,
    Inference,
    Model,
    ModelClassification,
    RunTime,
    Threshold,
    ThresholdChange,
    TrainingSet,
    utcnow,
)
from hydra.db.queries import activate_model, create_plot_type, labels_of

LABELS = ("Good", "Bad", "NoData")
THRESHOLDS = {"Good": 0.7, "Bad": 0.6, "NoData": 0.8}
FIRST_RUN = 71000
# per-stage durations stored in Inference.timings, keys as hydra.serve.messages.TIMING_KEYS
STAGE_MS = {
    "wait": 150.0,
    "feeder": 22.0,
    "balancer": 0.01,
    "queue": 3.0,
    "predict": 600.0,
    "cam": 120.0,
    "keeper": 40.0,
    "total": 900.0,
}


@dataclass(frozen=True)
class SeedUser:
    password: str
    role: str


USERS: dict[str, SeedUser] = {
    "admin": SeedUser("admin-pw", "admin"),
    "expert": SeedUser("expert-pw", "expert"),  # label + thresholds on FCAL_*
    "labeler": SeedUser("labeler-pw", "labeler"),  # label on BCAL_energy only
    "viewer": SeedUser("viewer-pw", "viewer"),  # no rights at all
}


@dataclass(frozen=True)
class PlotSpec:
    """One seeded plot type: what its newest verdict is and where it comes from."""

    name: str
    group: str | None
    model: bool = True
    last_label: str = "Good"
    last_confirmed: bool = True
    runtime: bool = True  # False: RunTime rows pruned, the Run page falls back to history
    last_age: timedelta = timedelta(minutes=1)


PLOTS: tuple[PlotSpec, ...] = (
    PlotSpec("FCAL_occupancy", "FCAL", last_label="Bad"),
    PlotSpec("FCAL_timing", "FCAL"),
    PlotSpec("BCAL_energy", "BCAL", last_label="Bad", last_confirmed=False),
    PlotSpec("CDC_hits", "CDC", runtime=False, last_age=timedelta(hours=2)),
    PlotSpec("CDC_pedestal", "CDC", model=False),
    PlotSpec("TOF_rates", None, model=False),
)


@dataclass
class Seeded:
    """What :func:`seed_database` created, by name, for assertions."""

    home: Path
    now: datetime
    plot_types: dict[str, int] = field(default_factory=dict)
    models: dict[str, int] = field(default_factory=dict)  # plot type name -> active model id
    users: dict[str, int] = field(default_factory=dict)
    images: dict[str, list[int]] = field(default_factory=dict)  # plot type name -> kept image ids
    open_alarm_ids: list[int] = field(default_factory=list)
    inferences: int = 0
    current_run: int = FIRST_RUN


def write_plot_png(
    path: Path, *, seed: int, problem: bool = False, size: tuple[int, int] = (160, 120)
) -> Path:
    """A small histogram-like PNG; a problem image has a dead region."""
    rng = random.Random(seed)
    w, h = size
    img = PILImage.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    bars = 32
    for i in range(bars):
        height = int((0.3 + 0.6 * math.exp(-(((i - bars / 2) / 8) ** 2))) * (h - 10) * rng.uniform(0.85, 1.0))
        if problem and 10 <= i < 16:
            height = 2
        x0 = int(i * w / bars)
        draw.rectangle([x0, h - height, x0 + int(w / bars) - 1, h - 1], fill=(31, 119, 180))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def write_heatmap_png(path: Path, *, seed: int, size: tuple[int, int] = (40, 30)) -> Path:
    """A grayscale Grad-CAM-like map: one bright blob on a dark field."""
    rng = random.Random(seed)
    w, h = size
    cx, cy = rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h
    img = PILImage.new("L", size)
    img.putdata(
        [
            int(255 * math.exp(-(((x - cx) / 6) ** 2 + ((y - cy) / 5) ** 2)))
            for y in range(h)
            for x in range(w)
        ]
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def _weights(label: str, confident: bool, rng: random.Random, drift: float = 0.0) -> dict[str, float]:
    top = rng.uniform(0.85, 0.97) if confident else rng.uniform(0.45, 0.58)
    rest = [x for x in LABELS if x != label]
    bad = min(0.3, drift) if label == "Good" else 0.0
    share = 1.0 - top - bad
    out = {label: top, rest[0]: share * 0.7, rest[1]: share * 0.3}
    if bad:
        out["Bad"] = out.get("Bad", 0.0) + bad
    return {k: round(v, 4) for k, v in out.items()}


def seed_database(engine: Engine, home: Path, *, now: datetime | None = None, history: int = 24) -> Seeded:
    """Fill a migrated, empty database and write the image files under ``home``.

    Args:
        engine: an engine on a database at the head revision.
        home: HYDRA_HOME; PNGs go to ``home/short_term``, ``home/kept`` and
            ``home/heatmaps`` (the default storage layout).
        now: the "current" time the scenario ends at (default: now).
        history: inferences per plot type with a model, 10 minutes apart.
    """
    now = now or utcnow()
    seeded = Seeded(home=Path(home), now=now)
    rng = random.Random(7)
    with session_scope(engine) as session:
        for spec in PLOTS:
            pt = create_plot_type(spec.name, LABELS, session=session, group=spec.group, collect_percent=5.0)
            seeded.plot_types[spec.name] = pt.id
        for name, user in USERS.items():
            seeded.users[name] = create_user(name, user.password, session=session, role=user.role).id
        for pt_name in ("FCAL_occupancy", "FCAL_timing"):
            grant("expert", pt_name, session=session, label=True, thresholds=True)
        grant("labeler", "BCAL_energy", session=session, label=True)
        for spec in PLOTS:
            seeded.images[spec.name] = []
            if spec.model:
                _seed_model_history(session, seeded, spec, rng, history)
            elif spec.name == "CDC_pedestal":
                _seed_unmodelled_images(session, seeded, spec, rng)
        _seed_operations(session, seeded)
    return seeded


def _seed_model_history(session, seeded: Seeded, spec: PlotSpec, rng: random.Random, history: int) -> None:
    pt_id = seeded.plot_types[spec.name]
    labels = {lb.name: lb for lb in labels_of(pt_id, session=session)}
    tset = TrainingSet(plot_type_id=pt_id, sampling="undersample", label_counts={"Good": 400, "Bad": 60})
    session.add(tset)
    session.flush()
    model = Model(
        plot_type_id=pt_id,
        head="classifier",
        path=str(seeded.home / "models" / spec.name / "1"),
        config={"backbone": "mobilenetv3_small_050"},
        input_height=128,
        input_width=128,
        labels=list(LABELS),
        training_set_id=tset.id,
        metrics={"accuracy": 0.96, "f1_Bad": 0.9},
        created_at=seeded.now - timedelta(days=3),
    )
    session.add(model)
    session.flush()
    activate_model(model.id, session=session)
    seeded.models[spec.name] = model.id
    for label, value in THRESHOLDS.items():
        session.add(Threshold(model_id=model.id, label=label, value=value))
    session.add(ThresholdChange(model_id=model.id, label="Bad", old_value=0.5, new_value=0.6))
    newest = seeded.now - spec.last_age
    for i in range(history):
        last = i == history - 1
        label = spec.last_label if last else ("Bad" if i % 9 == 4 else "Good")
        confirmed = spec.last_confirmed if last else i % 7 != 3
        drift = 0.012 * i if spec.name == "FCAL_occupancy" else 0.0
        weights = _weights(label, confirmed, rng, drift)
        when = newest - timedelta(minutes=10 * (history - 1 - i))
        run = FIRST_RUN + i // 6
        seeded.current_run = max(seeded.current_run, run)
        problem = labels[label].is_problem
        stem = f"{spec.name}-{run:06d}_{i:04d}"
        png = write_plot_png(
            seeded.home / "short_term" / f"{stem}.png", seed=pt_id * 1000 + i, problem=problem
        )
        heat = None
        if problem or not confirmed:
            heat = str(write_heatmap_png(seeded.home / "heatmaps" / f"{stem}.png", seed=i))
        timings = {k: round(v * rng.uniform(0.7, 1.3), 3) for k, v in STAGE_MS.items()}
        if heat is None:
            del timings["cam"]  # no Grad-CAM for a confident Good
        inf = Inference(
            source_key=source_key(
                png.name, hashlib.sha256(png.read_bytes()).hexdigest()
            ),  # as the Keeper does
            path=str(png),
            filename=png.name,
            plot_type_id=pt_id,
            run=run,
            chunk=i,
            model_id=model.id,
            label=label,
            weight=weights[label],
            weights=weights,
            confirmed=confirmed,
            is_problem=problem,
            heatmap_path=heat,
            timings=timings,
            file_time=when,
            created_at=when,
        )
        session.add(inf)
        session.flush()
        seeded.inferences += 1
        if problem or not confirmed:
            img = _keep_image(
                session, seeded, spec.name, png, run, i, when, reason="problem" if confirmed else "doubt"
            )
            img.doubt = round(1 - weights[label], 4)
            inf.kept_image_id = img.id
            if i % 2 == 0:  # half of the kept images already labeled by the expert
                _label_image(session, img, labels[label].id, seeded.users["expert"], when)
            session.add(ModelClassification(
                model_id=model.id, image_id=img.id, human_label=label, predicted_label=label, weights=weights
            ))  # fmt: skip
        if spec.runtime and i >= history - 6:
            session.add(RunTime(
                inference_id=inf.id, plot_type_id=pt_id, run=run, chunk=i, label=label, weight=weights[label],
                confirmed=confirmed, is_problem=problem, image_path=str(png), heatmap_path=heat, created_at=when,
            ))  # fmt: skip
        if last and problem and confirmed:
            alarm = Alarm(plot_type_id=pt_id, run=run, inference_id=inf.id, label=label,
                          message=f"{spec.name}: {label} confirmed in run {run}", condition="beam current 120.0", created_at=when)  # fmt: skip
            session.add(alarm)
            session.flush()
            seeded.open_alarm_ids.append(alarm.id)
    session.flush()


def _keep_image(session, seeded: Seeded, pt_name: str, src: Path, run: int, chunk: int, when: datetime,
                reason: str) -> Image:  # fmt: skip
    dest = seeded.home / "kept" / pt_name / src.name
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(src.read_bytes())
    img = Image(
        path=str(dest), filename=dest.name, plot_type_id=seeded.plot_types[pt_name], run=run, chunk=chunk,
        created_at=when, content_hash=hashlib.sha256(dest.read_bytes()).hexdigest(), kept_reason=reason,
    )  # fmt: skip
    session.add(img)
    session.flush()
    seeded.images[pt_name].append(img.id)
    return img


def _label_image(session, img: Image, label_id: int, user_id: int, when: datetime) -> None:
    img.label_id, img.labeled_at = label_id, when
    session.add(img)
    session.add(
        ImageLabel(image_id=img.id, label_id=label_id, user_id=user_id, source="labeler", created_at=when)
    )


def _seed_unmodelled_images(session, seeded: Seeded, spec: PlotSpec, rng: random.Random) -> None:
    labels = {lb.name: lb for lb in labels_of(seeded.plot_types[spec.name], session=session)}
    for i in range(8):
        when = seeded.now - timedelta(minutes=3 + 20 * (7 - i))
        png = write_plot_png(
            seeded.home / "short_term" / f"{spec.name}-{FIRST_RUN:06d}_{i:04d}.png", seed=900 + i
        )
        img = _keep_image(session, seeded, spec.name, png, FIRST_RUN, i, when, reason="ingest")
        if i < 4:
            _label_image(session, img, labels["Good" if i % 3 else "NoData"].id, seeded.users["admin"], when)
    session.flush()


def _seed_operations(session, seeded: Seeded) -> None:
    now = seeded.now
    fcal = seeded.plot_types["FCAL_occupancy"]
    session.add(Alarm(plot_type_id=fcal, run=FIRST_RUN, label="Bad", message="FCAL_occupancy: Bad (earlier)",
                      acknowledged_by=seeded.users["admin"], acknowledged_at=now - timedelta(hours=2),
                      created_at=now - timedelta(hours=3)))  # fmt: skip
    session.add(Alarm(plot_type_id=fcal, run=FIRST_RUN, label="Bad", message="FCAL_occupancy: Bad without beam",
                      raised=False, condition="beam current 0.0 < 5.0", created_at=now - timedelta(hours=1)))  # fmt: skip
    for i, (stage, kind, msg) in enumerate([
        ("feeder", "decode", "cannot identify image file"),
        ("feeder", "naming", "name does not match the naming pattern"),
        ("feeder", "unknown_plot_type", "unknown plot type 'XYZ'"),
    ]):  # fmt: skip
        session.add(ErrorRecord(path=f"/in/bad{i}.png", filename=f"bad{i}.png", stage=stage, kind=kind, message=msg,
                                quarantine_path=str(seeded.home / "quarantine" / f"bad{i}.png"),
                                created_at=now - timedelta(minutes=30 * (i + 1))))  # fmt: skip
    for name, age_s in (("feeder", 2), ("balancer", 2), ("predict-0", 3), ("predict-1", 600), ("keeper", 1)):
        session.add(Heartbeat(process=name, pid=1000 + len(name), host="counting-house",
                              info={"queue": 0}, last_seen=now - timedelta(seconds=age_s)))  # fmt: skip
    session.flush()


def prepare_home(home: Path, *, seed: bool = True, **kwargs) -> Seeded | None:
    """Create ``home`` as a HYDRA_HOME with its SQLite database migrated (and seeded).

    The database is at ``home/hydra.db``, where the default configuration looks
    for it, so setting ``HYDRA_HOME=home`` points the app and the CLI at it.
    ``kwargs`` go to :func:`seed_database`.
    """
    from hydra.db import make_engine, upgrade_to_head

    home.mkdir(parents=True, exist_ok=True)
    eng = make_engine(f"sqlite:///{home / 'hydra.db'}")
    try:
        upgrade_to_head(eng)
        return seed_database(eng, home, **kwargs) if seed else None
    finally:
        eng.dispose()


def clone_home(seeded: Seeded, dest: Path) -> Seeded:
    """A private copy of a seeded home's database at ``dest/hydra.db`` (image files shared).

    Seeding once per module and cloning per test keeps tests that change the
    database (acknowledging an alarm, labeling) independent and fast; the
    cloned rows still point at the template's image files, which no test changes.
    """
    import dataclasses
    import shutil

    dest.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        src = seeded.home / f"hydra.db{suffix}"
        if src.exists():
            shutil.copy2(src, dest / src.name)
    return dataclasses.replace(seeded, home=dest)
