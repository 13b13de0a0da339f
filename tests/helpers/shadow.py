"""Models that always say one label, and stored images to reprocess, for the shadow and reprocess tests."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path

from hydra.data.images import source_key
from hydra.data.synthetic import write_plot
from hydra.db import session_scope
from hydra.db.models import Alarm, Image, Inference, Model, RunTime, Threshold, utcnow
from hydra.db.queries import activate_model, create_plot_type, get_plot_type, labels_of

LABELS = ("Good", "Bad", "NoData")


def add_constant_model(
    engine,
    models_dir: Path,
    plot_type: str,
    label: str,
    *,
    size: tuple[int, int] = (48, 64),
    activate: bool = False,
    shadow: bool = False,
) -> int:
    """A small classifier whose logit bias makes it say ``label`` (weight ~1) for any image; its id.

    The plot type is created when it does not exist yet.
    """
    from hydra.heads import create_head

    head = create_head(
        "classifier", labels=list(LABELS), problem_labels=["Bad"], input_size=size,
        backbone="mobilenetv3_small_050",
    )  # fmt: skip
    head.set_logit_bias([60.0 if lb == label else 0.0 for lb in LABELS])
    with session_scope(engine) as s:
        try:
            pt = get_plot_type(plot_type, session=s)
        except LookupError:
            pt = create_plot_type(plot_type, LABELS, session=s, collect_percent=0.0)
        row = Model(
            plot_type_id=pt.id, head="classifier", path="", config=head.config(), input_height=size[0],
            input_width=size[1], channels=3, labels=list(LABELS), shadow=shadow,
        )  # fmt: skip
        s.add(row)
        s.flush()
        row.path = str(head.save(models_dir / str(row.id)))
        for lab in LABELS:
            s.add(Threshold(model_id=row.id, label=lab, value=0.5))
        if activate:
            activate_model(row.id, session=s)
        return row.id


def store_images(
    engine, home: Path, plot_type: str, model_id: int, n: int, *, kept_only: int = 0
) -> list[str]:
    """``n`` plots stored as ``hydra-serve`` leaves them, plus ``kept_only`` ingested ones; their source keys.

    The first ``n`` have a live inference of ``model_id`` (in short-term storage,
    every third also kept for labeling, labelled Bad), a RunTime row each and one
    alarm; the ``kept_only`` ones are only ``Image`` rows in ``kept/`` (labelled Good).
    """
    short, kept = home / "short_term" / plot_type, home / "kept" / plot_type
    keys = []
    now = utcnow()
    with session_scope(engine) as s:
        pt = get_plot_type(plot_type, session=s)
        labels = {lb.name: lb.id for lb in labels_of(pt.id, session=s)}
        for i in range(n + kept_only):
            live = i < n
            path = write_plot(short if live else kept, plot_type, 9000 + i // 10, i % 10, seed=i)
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            key = source_key(path.name, digest)
            keys.append(key)
            image_id = None
            if not live or i % 3 == 0:
                dest = kept / path.name
                if live:
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    path = path.replace(dest)
                img = Image(
                    path=str(dest), filename=dest.name, plot_type_id=pt.id, run=9000 + i // 10, chunk=i % 10,
                    content_hash=digest, kept_reason="problem" if live else "ingest",
                    label_id=labels["Bad" if live else "Good"], created_at=now - timedelta(minutes=n - i),
                )  # fmt: skip
                s.add(img)
                s.flush()
                image_id = img.id
            if live:
                inf = Inference(
                    source_key=key, path=str(path), filename=path.name, plot_type_id=pt.id, run=9000 + i // 10,
                    chunk=i % 10, model_id=model_id, label="Good", weight=0.9,
                    weights={"Good": 0.9, "Bad": 0.05, "NoData": 0.05}, confirmed=True, kept_image_id=image_id,
                    created_at=now - timedelta(minutes=n - i),
                )  # fmt: skip
                s.add(inf)
                s.flush()
                s.add(RunTime(inference_id=inf.id, plot_type_id=pt.id, run=inf.run, chunk=inf.chunk, label="Good",
                              weight=0.9, confirmed=True, image_path=inf.path))  # fmt: skip
        s.add(Alarm(plot_type_id=pt.id, run=9000, label="Bad", message="an old alarm"))
    return keys


def snapshot(engine, model_id: int) -> dict:
    """What must not change: the model's rows, the RunTime window and the alarms."""
    from sqlmodel import select

    with session_scope(engine) as s:
        rows = s.exec(select(Inference).where(Inference.model_id == model_id).order_by(Inference.id)).all()
        return {
            "rows": [(r.id, r.source_key, r.label, r.weight, r.path, r.origin) for r in rows],
            "runtime": sorted((r.id, r.inference_id, r.label) for r in s.exec(select(RunTime)).all()),
            "alarms": sorted((a.id, a.message) for a in s.exec(select(Alarm)).all()),
        }
