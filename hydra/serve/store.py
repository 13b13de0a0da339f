"""The Keeper's batch write: one transaction per batch, file moves after it.

:meth:`Store.write` turns a batch of reports, error notices, registrations
and heartbeats into rows (inferences, RunTime, kept images, errors, alarms,
heartbeats) in one transaction, and returns the file moves to make once it
has committed. Nothing here moves a file: if the commit fails, every file is
still in the input directory and the same batch can be written again.
A report whose heat map cannot be written (disk full, folder not writable) is
left out of the batch and handed back for a retry; a report whose plot type
or model does not match the database is dropped.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, NamedTuple

import numpy as np
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from hydra.config import HydraConfig
from hydra.data.naming import DEFAULT_LABELS
from hydra.db import results
from hydra.db.engine import session_scope
from hydra.db.models import SHADOW, Alarm, ErrorRecord, Model, PlotType, utcnow
from hydra.db.queries import active_model, create_plot_type
from hydra.serve.alarms import AlarmTracker, DueAlarm
from hydra.serve.conditions import CommandCondition
from hydra.serve.messages import ErrorNotice, Registration, Report, Stamp, stage_timings

log = logging.getLogger("hydra.serve.store")

KEEPER_BEAT_S = 1.0


class PlotTypeInfo(NamedTuple):
    """What a batch needs of a plot type."""

    id: int
    name: str
    collect_percent: float


@dataclass
class Batch:
    """What the Keeper collected since its last commit, deduplicated by key."""

    reports: dict[tuple[str, int], Report] = field(default_factory=dict)
    errors: dict[str, ErrorNotice] = field(default_factory=dict)
    registrations: dict[str, Registration] = field(default_factory=dict)
    beats: dict[str, dict[str, Any]] = field(default_factory=dict)
    since: float = field(default_factory=time.monotonic)
    heat_bytes: int = 0

    def __len__(self) -> int:
        return len(self.reports) + len(self.errors) + len(self.registrations)


@dataclass
class Outcome:
    """What a committed batch asks for afterwards."""

    moves: list[tuple[str, str]] = field(default_factory=list)
    stored: list[tuple[Report, dict[str, float]]] = field(default_factory=list)
    duplicates: int = 0
    errors: list[ErrorNotice] = field(default_factory=list)
    registered: int = 0
    alarms: list[tuple[DueAlarm, int | None, bool]] = field(default_factory=list)
    tracker: AlarmTracker | None = None
    retry: list[tuple[Report, str]] = field(default_factory=list)
    shadows: int = 0  # shadow models' results stored (they move, keep and alarm nothing)


def keep_reason(report: Report, collect_percent: float) -> str | None:
    """Why a verdict's image is kept for labeling, or None.

    Problems and unconfirmed verdicts are always kept; of the rest a stable
    pseudo-random ``collect_percent`` (chosen by the file's key, so a retried
    batch decides the same way).
    """
    if report.is_problem:
        return "problem"
    if not report.confirmed:
        return "unconfirmed"
    if collect_percent > 0 and int(report.source_key[:8], 16) % 10000 < collect_percent * 100:
        return "collect"
    return None


def _free_name(directory: str, filename: str, key: str, taken: set[str]) -> str:
    """``directory/filename``, or a name made unique with the file's key (plain strings: hot path)."""
    dest = os.path.join(directory, filename)
    if dest in taken or os.path.exists(dest):
        stem, dot, ext = filename.rpartition(".")
        dest = os.path.join(directory, f"{stem}-{key[:8]}.{ext}" if dot else f"{filename}-{key[:8]}")
    taken.add(dest)
    return dest


class Store:
    """Writes batches for one Keeper (the only writer of results)."""

    def __init__(
        self, cfg: HydraConfig, engine: Engine, tracker: AlarmTracker, conditions: CommandCondition
    ) -> None:
        self.cfg = cfg
        self.engine = engine
        self.tracker = tracker
        self.conditions = conditions
        self.kept = str(cfg.path("kept"))
        self.short = str(cfg.path("short_term"))
        self.heat = cfg.path("heatmaps")
        self.quarantine = str(cfg.path("quarantine"))
        self.next_prune = 0.0
        self.next_beat = 0.0  # the Keeper's own heartbeat: at most every KEEPER_BEAT_S
        # plot types and models as the database had them, re-read every model_refresh_s (every
        # batch needs them, and they change seldom): id -> (name, collect %), model id -> plot type id
        self._catalog_until = 0.0
        self._types: dict[int, PlotTypeInfo] = {}
        self._models: dict[int, int] = {}

    def write(self, batch: Batch) -> Outcome:
        """Write ``batch`` in one transaction; raises (and writes nothing) on any failure.

        After a failure the plot types and models are read afresh (one deleted
        meanwhile is then seen to be gone, as without the cache).
        """
        try:
            return self._write(batch)
        except BaseException:
            self._catalog_until = 0.0
            raise

    def _write(self, batch: Batch) -> Outcome:
        out = Outcome(tracker=self.tracker.snapshot())
        wall = time.time()
        with session_scope(self.engine) as s:
            if batch.reports:
                live = [r for r in batch.reports.values() if not r.shadow]
                if live:
                    self._reports(s, live, out, wall)
                shadows = [r for r in batch.reports.values() if r.shadow]
                if shadows:  # after the live ones: a shadow result goes where its image's live result went
                    self._shadows(s, shadows, out, wall)
            if batch.errors:
                self._errors(s, list(batch.errors.values()), out)
            if batch.registrations:
                self._registrations(s, list(batch.registrations.values()), out)
            beats = list(batch.beats.values())
            if time.monotonic() >= self.next_beat:
                self.next_beat = time.monotonic() + KEEPER_BEAT_S
                beats.append(
                    {"process": "keeper", "pid": os.getpid(), "host": os.uname().nodename, "info": {}}
                )
            now = utcnow()
            if beats:
                results.upsert_heartbeats([dict(b, last_seen=now) for b in beats], session=s)
            if time.monotonic() >= self.next_prune:
                self.next_prune = time.monotonic() + 30.0
                window = timedelta(minutes=self.cfg.serve.runtime_window_min)
                results.prune_runtime(now - window, session=s)
        return out

    def _fresh_catalog(self) -> None:
        if time.monotonic() >= self._catalog_until:
            self._catalog_until = time.monotonic() + self.cfg.serve.model_refresh_s
            self._types.clear()
            self._models.clear()

    def _plot_types(self, s: Session, ids: set[int]) -> dict[int, PlotTypeInfo]:
        """The plot types of ``ids`` the database has (read once per model_refresh_s)."""
        self._fresh_catalog()
        missing = [i for i in ids if i not in self._types]
        if missing:
            rows = s.exec(
                select(PlotType.id, PlotType.name, PlotType.collect_percent).where(
                    col(PlotType.id).in_(missing)
                )
            ).all()
            self._types.update({i: PlotTypeInfo(i, name, pct) for i, name, pct in rows})
        return {i: self._types[i] for i in ids if i in self._types}

    def _model_types(self, s: Session, ids: set[int]) -> dict[int, int]:
        """Model id -> its plot type id, of the models of ``ids`` the database has."""
        self._fresh_catalog()
        missing = [i for i in ids if i not in self._models]
        if missing:
            rows = s.exec(select(Model.id, Model.plot_type_id).where(col(Model.id).in_(missing))).all()
            self._models.update(dict(rows))
        return self._models

    def _reports(self, s: Session, reports: list[Report], out: Outcome, wall: float) -> None:
        new = self._not_stored(s, reports, out)
        if not new:
            return
        pts = self._plot_types(s, {r.plot_type_id for r in new})
        new, heatmaps = self._matching(s, new, pts, out)
        if not new:
            return
        now = utcnow()
        dests, image_ids = self._destinations(s, new, pts, now)
        rows = self._inference_rows(new, dests, image_ids, heatmaps, now, wall, out)
        results.insert_new_results(rows, session=s)  # checked above, in this transaction
        self._alarms(s, new, out)

    def _not_stored(self, s: Session, reports: list[Report], out: Outcome) -> list[Report]:
        """The reports not stored yet; a duplicate's file is to move to where its stored result says."""
        keys = [(r.source_key, r.model_id) for r in reports]
        existing = results.existing_inferences(keys, session=s)
        new: list[Report] = []
        for r in reports:
            stored_at = existing.get((r.source_key, r.model_id))
            if stored_at is None:
                new.append(r)
            else:
                out.duplicates += 1
                if os.path.exists(r.path) and stored_at != r.path:
                    out.moves.append((r.path, stored_at))
        return new

    def _matching(
        self, s: Session, new: list[Report], pts: dict[int, PlotTypeInfo], out: Outcome
    ) -> tuple[list[Report], dict[str, str]]:
        """The reports whose plot type and model the database has, with their heat maps written.

        A mismatch is dropped (and logged); a report whose heat map cannot be
        written goes to ``out.retry``. Returns the rest and the heat map paths by source key.
        """
        models = self._model_types(s, {r.model_id for r in new})
        heatmaps: dict[str, str] = {}
        kept_new = []
        for r in new:
            pt = pts.get(r.plot_type_id)
            if pt is None or pt.name != r.plot_type or models.get(r.model_id) != r.plot_type_id:
                log.error("%s: dropped a report for plot type %r, model %d that the database does not have",
                          r.filename, r.plot_type, r.model_id)  # fmt: skip
                continue
            if r.heatmap is not None:
                try:
                    heatmaps[r.source_key] = self._heatmap(r)
                except OSError as exc:  # the server's disk: try again later, never quarantine
                    out.retry.append((r, f"heat map not written: {exc}"[:500]))
                    continue
            kept_new.append(r)
        return kept_new, heatmaps

    def _destinations(
        self, s: Session, new: list[Report], pts: dict[int, PlotTypeInfo], now: datetime
    ) -> tuple[dict[str, str], dict[str, int]]:
        """Where each report's file goes: kept for labeling (registered as an ``Image``) or short-term.

        Returns the destination by source key, and the new image ids by destination.
        """
        reasons = {
            r.source_key: keep_reason(
                r, pts[r.plot_type_id].collect_percent if r.plot_type_id in pts else 0.0
            )
            for r in new
        }
        wanted = [os.path.join(self.kept, r.plot_type, r.filename) for r in new if reasons[r.source_key]]
        registered = results.image_hashes(wanted, session=s)
        taken = set(registered)
        images, dests = [], {}
        for r in new:
            reason = reasons[r.source_key]
            if reason:
                dest = _free_name(os.path.join(self.kept, r.plot_type), r.filename, r.source_key, taken)
                images.append(
                    {
                        "path": dest, "filename": r.filename[:255], "plot_type_id": r.plot_type_id,
                        "run": r.run, "chunk": r.chunk, "created_at": now, "content_hash": r.content_hash,
                        "kept_reason": reason, "doubt": round(1.0 - float(r.weight), 6),
                        "train_weight": 1.0, "label_id": None,
                    }
                )  # fmt: skip
            else:
                dest = _free_name(os.path.join(self.short, r.plot_type), r.filename, r.source_key, taken)
            dests[r.source_key] = dest
        return dests, results.insert_images(images, session=s)

    @staticmethod
    def _inference_rows(
        new: list[Report],
        dests: dict[str, str],
        image_ids: dict[str, int],
        heatmaps: dict[str, str],
        now: datetime,
        wall: float,
        out: Outcome,
    ) -> list[dict[str, Any]]:
        """The ``Inference`` rows of the reports; each report's file is to move to its destination."""
        rows = []
        for r in new:
            timings = stage_timings(r.times, wall)
            file_time = r.times.get(Stamp.FILE)
            dest = dests[r.source_key]
            rows.append(
                {
                    "source_key": r.source_key, "path": dest[:512], "filename": r.filename[:255],
                    "plot_type_id": r.plot_type_id, "run": r.run, "chunk": r.chunk, "model_id": r.model_id,
                    "label": r.label[:64], "weight": float(r.weight), "weights": r.weights,
                    "confirmed": bool(r.confirmed), "is_problem": bool(r.is_problem),
                    "heatmap_path": heatmaps.get(r.source_key), "kept_image_id": image_ids.get(dest),
                    "timings": timings, "created_at": now,
                    "file_time": datetime.fromtimestamp(file_time, timezone.utc) if file_time else None,
                }
            )  # fmt: skip
            out.stored.append((r, timings))
            out.moves.append((r.path, dest))
        return rows

    def _shadows(self, s: Session, reports: list[Report], out: Outcome, wall: float) -> None:
        """Store shadow models' results (``origin`` shadow), and nothing else on their account.

        No RunTime row, no alarm, no kept image, no file moved, no retry: the
        file follows its live result. A shadow result is stored only once its
        image's live result is (in this batch or before), with that result's
        path; one that comes first is dropped (its file comes again, and so
        does the shadow verdict), so no shadow row ever names the input folder.
        A heat map that cannot be written is left out, never retried.
        """
        done = results.existing_inferences([(r.source_key, r.model_id) for r in reports], session=s)
        fresh = [r for r in reports if (r.source_key, r.model_id) not in done]
        out.duplicates += len(reports) - len(fresh)
        live = results.live_results([r.source_key for r in fresh], session=s)
        models = dict(
            s.exec(
                select(Model.id, Model.plot_type_id).where(col(Model.id).in_({r.model_id for r in fresh}))
            ).all()
        )
        now = utcnow()
        rows = []
        for r in fresh:
            if r.source_key not in live or models.get(r.model_id) != r.plot_type_id:
                log.debug("%s: shadow result of model %d dropped (no live result yet, or not that plot type's)",
                          r.filename, r.model_id)  # fmt: skip
                continue
            path, kept_image_id = live[r.source_key]
            heatmap = None
            if r.heatmap is not None:
                try:
                    heatmap = self._heatmap(r)
                except (OSError, ValueError) as exc:
                    log.warning("%s: shadow heat map not written (%s)", r.filename, exc)
            file_time = r.times.get(Stamp.FILE)
            rows.append(
                {
                    "source_key": r.source_key, "path": path[:512], "filename": r.filename[:255],
                    "plot_type_id": r.plot_type_id, "run": r.run, "chunk": r.chunk, "model_id": r.model_id,
                    "label": r.label[:64], "weight": float(r.weight), "weights": r.weights,
                    "confirmed": bool(r.confirmed), "is_problem": bool(r.is_problem), "heatmap_path": heatmap,
                    "kept_image_id": kept_image_id, "timings": stage_timings(dict(r.times), wall),
                    "created_at": now, "origin": SHADOW,
                    "file_time": datetime.fromtimestamp(file_time, timezone.utc) if file_time else None,
                }
            )  # fmt: skip
        if rows:
            results.insert_inferences(rows, session=s)
        out.shadows += len(rows)

    def _heatmap(self, r: Report) -> str:
        """Write the Grad-CAM map as a single-channel PNG at the original image's size; its path.

        The worker's map is at the model's input size (e.g. 120x160, or a
        squashed 299x299); it is stretched back to the file's own size (which
        the Feeder read when it decoded the file and the report carries), so
        the pages blend it once, pixel for pixel.
        """
        from PIL import Image

        stem = r.filename.rsplit(".", 1)[0]
        path = self.heat / r.plot_type / f"{stem}-{r.source_key[:8]}-m{r.model_id}.png"
        if (
            path.parent.parent != self.heat or "/" in path.name
        ):  # names are checked on receipt; belt and braces
            raise ValueError(f"heat map path {path} is outside {self.heat}")
        path.parent.mkdir(parents=True, exist_ok=True)
        heat = np.ascontiguousarray(r.heatmap)
        if heat.ndim == 3 and heat.shape[2] == 1:
            heat = heat[:, :, 0]
        size = (r.image_width, r.image_height)
        out = Image.fromarray(heat)
        if heat.ndim == 2 and min(size) > 0 and size != out.size and size[0] * size[1] <= 64_000_000:
            out = out.resize(size, Image.Resampling.BILINEAR)
        out.save(path, compress_level=1)
        return str(path)

    def _alarms(self, s: Session, new: list[Report], out: Outcome) -> None:
        tracker = out.tracker
        assert tracker is not None
        for r in new:
            if not tracker.observe(r.plot_type_id, confirmed_problem=r.is_problem and r.confirmed):
                continue
            cond = self.conditions.check()
            message = f"{r.plot_type}: {tracker.consecutive} confirmed {r.label} in a row (run {r.run})"
            key = (r.source_key, r.model_id)  # its id is read only here: alarms are rare
            alarm = Alarm(
                plot_type_id=r.plot_type_id, run=r.run, inference_id=results.inference_ids([key], session=s).get(key),
                label=r.label[:64], message=message[:1024], raised=cond.ok, condition=cond.text,
            )  # fmt: skip
            s.add(alarm)
            s.flush()
            due = DueAlarm(r.plot_type_id, r.plot_type, r.run, r.label, r.source_key, r.model_id, message)
            out.alarms.append((due, alarm.id, cond.ok))

    def _errors(self, s: Session, notices: list[ErrorNotice], out: Outcome) -> None:
        rows, taken = [], set()
        now = utcnow()
        pending = self._unmoved_errors(s, [e.path for e in notices], now)
        for e in notices:
            if not os.path.exists(e.path):
                continue  # already handled (a re-sent notice)
            earlier = pending.get(e.path)
            if earlier is not None:  # recorded before, but its move failed (quarantine not writable)
                out.moves.append((e.path, earlier))
                continue
            dest = _free_name(self.quarantine, e.filename, e.source_key or f"{time.time_ns():x}"[-8:], taken)
            rows.append(
                {
                    "source_key": e.source_key, "path": e.path[:512], "filename": e.filename[:255],
                    "stage": e.stage[:16], "kind": e.kind[:32], "message": e.message[:1024],
                    "quarantine_path": dest[:512], "created_at": now,
                }
            )  # fmt: skip
            out.moves.append((e.path, dest))
            out.errors.append(e)
        results.insert_errors(rows, session=s)

    def _unmoved_errors(self, s: Session, paths: list[str], now: datetime) -> dict[str, str]:
        """Input path -> quarantine path of the last day's error records whose file never got there."""
        since = now - timedelta(days=1)
        rows = s.exec(
            select(ErrorRecord.path, ErrorRecord.quarantine_path).where(
                col(ErrorRecord.created_at) >= since, col(ErrorRecord.path).in_(paths)
            )
        ).all()
        return {p: q for p, q in rows if q and not os.path.exists(q)}

    def _registrations(self, s: Session, regs: list[Registration], out: Outcome) -> None:
        types = {pt.name: pt for pt in s.exec(select(PlotType)).all()}
        images, taken = [], set()
        existing = results.image_hashes(
            [os.path.join(self.kept, g.plot_type, g.filename) for g in regs], session=s
        )
        now = utcnow()
        for g in regs:
            if not os.path.exists(g.path):
                continue
            pt = types.get(g.plot_type)
            if pt is None:
                pt = create_plot_type(
                    g.plot_type, DEFAULT_LABELS, session=s,
                    collect_percent=self.cfg.plot_types.collect_percent,
                )  # fmt: skip
                types[pt.name] = pt
                log.info("new plot type %r registered with labels %s", pt.name, ", ".join(DEFAULT_LABELS))
            elif active_model(pt.id, session=s) is not None:
                continue  # a model was activated meanwhile: the Feeder will send it for inference
            plain = os.path.join(self.kept, g.plot_type, g.filename)
            if plain in existing and existing[plain][1] == g.content_hash:
                out.moves.append((g.path, plain))  # registered before; the file came again
                continue
            dest = _free_name(
                os.path.join(self.kept, g.plot_type), g.filename, g.source_key, taken | set(existing)
            )
            taken.add(dest)
            images.append(
                {
                    "path": dest, "filename": g.filename[:255], "plot_type_id": pt.id, "run": g.run,
                    "chunk": g.chunk, "created_at": now, "content_hash": g.content_hash,
                    "kept_reason": "no_model", "doubt": 1.0, "train_weight": 1.0, "label_id": None,
                }
            )  # fmt: skip
            out.moves.append((g.path, dest))
        results.insert_images(images, session=s)
        out.registered += len(images)


def move_files(moves: list[tuple[str, str]]) -> tuple[list[str], list[str]]:
    """Make the moves of a committed batch: the source paths moved (or already gone), and those not.

    A file that cannot be moved (its folder not writable, its disk full) stays
    in the input directory; its row is committed, so when it comes again the
    Keeper sees the stored result and only tries the move again.
    """
    done, failed = [], []
    made: set[str] = set()
    for src, dst in moves:
        parent = os.path.dirname(dst)
        try:
            if parent not in made:
                os.makedirs(parent, exist_ok=True)
                made.add(parent)
            try:
                os.replace(src, dst)
            except FileNotFoundError:
                pass
            except OSError:  # another file system: copy, then remove
                import shutil

                shutil.move(src, dst)
        except OSError as exc:
            log.error("cannot move %s to %s (%s); it stays in the input directory for now", src, dst, exc)
            failed.append(src)
            continue
        done.append(src)
    return done, failed
