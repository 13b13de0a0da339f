"""The Keeper's batch write on both backends: idempotent, transactional, files after commit."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import zmq
from sqlmodel import select

from hydra.db import session_scope
from hydra.db.models import Alarm, ErrorRecord, Heartbeat, Image, Inference, Model, PlotType, RunTime
from hydra.db.results import recent_results
from hydra.serve.keeper import Keeper
from hydra.serve.messages import ErrorNotice, Registration, encode_message
from hydra.serve.stage import StopFlag
from hydra.serve.store import Store, move_files
from hydra.services.status import recent_errors
from tests.helpers.store import batch_of, make_report, make_store


def _keeper_holding(cfg, engine, store, *reports):
    """A Keeper on ``engine`` writing through ``store``, with ``reports`` in its batch (not flushed yet)."""
    keeper = Keeper(
        cfg.model_copy(update={"db_url": engine.url.render_as_string(hide_password=False)}), StopFlag()
    )
    keeper.store = store
    for r in reports:
        keeper.add(r)
    return keeper


def test_reports_are_stored_once_and_files_move_only_when_asked(engine, tmp_path):
    cfg, store, (pt_id, model_id) = make_store(engine, tmp_path)
    good = make_report(cfg, "fcal-000007_0001.png", pt_id, model_id)
    doubt = make_report(cfg, "fcal-000007_0002.png", pt_id, model_id, confirmed=False, heat=True)
    out = store.write(batch_of(good, doubt))
    assert Path(good.path).exists(), "the store must not move files itself"
    assert move_files(out.moves) == ([good.path, doubt.path], [])
    with session_scope(engine) as s:
        rows = {i.filename: i for i in s.exec(select(Inference)).all()}
        images = s.exec(select(Image)).all()
        assert len(s.exec(select(RunTime)).all()) == 2
        beats = [h.process for h in s.exec(select(Heartbeat)).all()]
    assert set(rows) == {good.filename, doubt.filename}
    assert rows[good.filename].kept_image_id is None and "short_term" in rows[good.filename].path
    assert [i.kept_reason for i in images] == ["unconfirmed"]
    assert rows[doubt.filename].kept_image_id == images[0].id and Path(images[0].path).is_file()
    assert Path(rows[doubt.filename].heatmap_path).is_file()
    assert rows[good.filename].timings["total"] >= 100.0
    assert beats == ["keeper"]
    # the same report again (a re-sent order): nothing new, its file goes where the row says
    again = make_report(cfg, "fcal-000007_0001.png", pt_id, model_id)
    out = store.write(batch_of(again))
    assert out.duplicates == 1 and not out.stored
    move_files(out.moves)
    assert not Path(again.path).exists()
    with session_scope(engine) as s:
        assert len(s.exec(select(Inference)).all()) == 2
        assert len(s.exec(select(RunTime)).all()) == 2
        listed = recent_results(session=s, plot_type="fcal")
    assert {r["label"] for r in listed} == {"Good"} and len(listed) == 2


def test_alarm_after_n_confirmed_problems_and_gated_by_conditions(engine, tmp_path):
    beam = tmp_path / "beam"
    beam.write_text("0")
    cfg, store, (pt_id, model_id) = make_store(engine, tmp_path, consecutive=2, condition=f"cat {beam}")
    bads = [make_report(cfg, f"fcal-000007_{i:04d}.png", pt_id, model_id, label="Bad") for i in range(3)]
    out = store.write(batch_of(*bads[:2]))
    store.tracker = out.tracker
    beam.write_text("50")
    out2 = store.write(batch_of(bads[2], make_report(cfg, "fcal-000008_0001.png", pt_id, model_id)))
    store.tracker = out2.tracker
    out3 = store.write(
        batch_of(
            *[make_report(cfg, f"fcal-000009_{i:04d}.png", pt_id, model_id, label="Bad") for i in range(2)]
        )
    )
    with session_scope(engine) as s:
        alarms = s.exec(select(Alarm).order_by(Alarm.id)).all()
        ids = {i.filename: i.id for i in s.exec(select(Inference)).all()}
    assert [a.inference_id for a in alarms] == [ids[bads[1].filename], ids["fcal-000009_0001.png"]]
    assert [(a.raised, a.condition) for a in alarms] == [
        (False, "beam current=0 < 1"),
        (True, "beam current=50 >= 1"),
    ]
    assert len(out.alarms) == 1 and not out2.alarms and len(out3.alarms) == 1


def test_errors_are_recorded_once_and_registrations_create_plot_types(engine, tmp_path):
    cfg, store, _ = make_store(engine, tmp_path)
    bad = cfg.input_dir / "fcal-000001_0001.png"
    bad.write_bytes(b"")
    note = ErrorNotice(str(bad), bad.name, "feeder", "empty", f"{bad.name}: the file is empty (0 bytes)")
    new = cfg.input_dir / "cdc-000001_0001.png"
    new.write_bytes(b"png")
    reg = Registration(str(new), new.name, "cdc", 1, 1, "c" * 64, "d" * 64)
    out = store.write(batch_of(note, reg))
    move_files(out.moves)
    assert not bad.exists() and not new.exists()
    assert store.write(batch_of(note)).moves == []  # a re-sent notice for a file already quarantined
    with session_scope(engine) as s:
        errors = s.exec(select(ErrorRecord)).all()
        cdc = s.exec(select(PlotType).where(PlotType.name == "cdc")).one()
        image = s.exec(select(Image).where(Image.plot_type_id == cdc.id)).one()
        listed = recent_errors(session=s)
    assert len(errors) == 1 and Path(errors[0].quarantine_path).is_file()
    assert image.kept_reason == "no_model" and Path(image.path).is_file()
    assert listed[0].kind == "empty"


def test_a_failed_batch_writes_nothing_and_the_keeper_isolates_the_bad_report(engine, tmp_path, monkeypatch):
    cfg, store, (pt_id, model_id) = make_store(engine, tmp_path)
    ok = make_report(cfg, "fcal-000007_0001.png", pt_id, model_id)
    broken = make_report(cfg, "fcal-000007_0002.png", pt_id, model_id, heat=True)
    real = Store._heatmap

    def heatmap(self, r):  # a report the store cannot handle (not a fault of its disk)
        if r is broken:
            raise ValueError("cannot draw this one")
        return real(self, r)

    monkeypatch.setattr(Store, "_heatmap", heatmap)
    with pytest.raises(ValueError):
        store.write(batch_of(ok, broken))
    with session_scope(engine) as s:
        assert s.exec(select(Inference)).all() == []
    assert Path(ok.path).exists()
    keeper = _keeper_holding(cfg, engine, store, ok, broken)
    with zmq.Context() as ctx, ctx.socket(zmq.PUB) as pub:
        assert keeper._flush(pub)
        assert len(keeper.batch.errors) == 1
        assert keeper._flush(pub)
    with session_scope(engine) as s:
        assert [i.filename for i in s.exec(select(Inference)).all()] == [ok.filename]
        assert [(e.filename, e.kind) for e in s.exec(select(ErrorRecord)).all()] == [
            (broken.filename, "store_error")
        ]
    assert not Path(ok.path).exists() and not Path(broken.path).exists()


def test_a_full_or_unwritable_disk_hands_the_report_back_and_quarantines_nothing(engine, tmp_path):
    cfg, store, (pt_id, model_id) = make_store(engine, tmp_path)
    ok = make_report(cfg, "fcal-000007_0001.png", pt_id, model_id)
    heat = make_report(cfg, "fcal-000007_0002.png", pt_id, model_id, heat=True)
    store.heat.rmdir()
    store.heat.write_bytes(b"")  # a heat-map folder that cannot be made: like a disk that refuses
    out = store.write(batch_of(ok, heat))
    assert [r.filename for r, _ in out.retry] == [heat.filename] and "heat map not written" in out.retry[0][1]
    assert [r.filename for r, _ in out.stored] == [ok.filename]
    kept = Path(cfg.path("short_term")) / "fcal"
    kept.parent.mkdir(parents=True, exist_ok=True)
    kept.write_bytes(b"")  # the destination folder cannot be made either
    moved, failed = move_files(out.moves)
    assert moved == [] and failed == [ok.path] and Path(ok.path).exists()
    with session_scope(engine) as s:
        assert [i.filename for i in s.exec(select(Inference)).all()] == [ok.filename]
        assert s.exec(select(ErrorRecord)).all() == []
    kept.unlink()  # fixed: the file comes again, the stored result is found and only the move is made
    again = store.write(batch_of(make_report(cfg, "fcal-000007_0001.png", pt_id, model_id)))
    assert again.duplicates == 1
    assert move_files(again.moves) == ([ok.path], []) and not Path(ok.path).exists()


def test_the_keeper_drops_other_instances_and_bounds_its_backlog(engine, tmp_path):
    cfg, store, (pt_id, model_id) = make_store(engine, tmp_path)
    cfg = cfg.model_copy(
        update={
            "db_url": engine.url.render_as_string(hide_password=False),
            "serve": cfg.serve.model_copy(update={"keeper_max_pending": 2}),
        }
    )
    keeper = Keeper(cfg, StopFlag(), instance="me")
    with zmq.Context() as ctx, ctx.socket(zmq.PUSH) as push, ctx.socket(zmq.PULL) as pull:
        port = pull.bind_to_random_port("tcp://127.0.0.1")
        push.connect(f"tcp://127.0.0.1:{port}")
        reports = [make_report(cfg, f"fcal-000007_000{i}.png", pt_id, model_id) for i in range(1, 5)]
        reports[0].instance = "another"
        for i, r in enumerate(reports, 1):
            r.chunk = i  # as the file name says
            r.instance = r.instance or "me"
        forged = make_report(cfg, "fcal-000007_0009.png", pt_id, model_id)
        forged.instance, forged.chunk, forged.path = "me", 9, str(tmp_path / "fcal-000007_0009.png")
        for msg in (*reports, forged):
            push.send_multipart(encode_message(msg))
        push.send_multipart([b"report", b"[1, 2]"])
        time.sleep(0.3)
        keeper._receive(pull, 1000)
    assert [r.filename for r in keeper.batch.reports.values()] == [r.filename for r in reports[1:3]]
    assert keeper.dropped.counts == {"malformed": 2, "foreign": 1}
    assert keeper.metrics.backlog_dropped._value.get() == 1


def test_an_error_whose_quarantine_move_failed_is_recorded_once_and_moved_later(engine, tmp_path):
    cfg, store, _ = make_store(engine, tmp_path)
    bad = cfg.input_dir / "fcal-000007_0001.png"
    bad.write_bytes(b"")
    notice = ErrorNotice(str(bad), bad.name, "feeder", "empty", "empty file", "e" * 64)
    quarantine = Path(cfg.path("quarantine"))
    quarantine.rmdir()
    quarantine.write_bytes(b"")  # the quarantine folder cannot be used
    out = store.write(batch_of(notice))
    assert move_files(out.moves) == ([], [str(bad)]) and bad.exists()
    again = store.write(batch_of(notice))  # the file comes again: no second record
    quarantine.unlink()
    assert move_files(again.moves) == ([str(bad)], [])
    with session_scope(engine) as s:
        rows = s.exec(select(ErrorRecord)).all()
    assert len(rows) == 1 and Path(rows[0].quarantine_path).is_file()


def test_the_fast_inserts_store_what_sqlalchemy_would(engine, tmp_path):
    from datetime import datetime, timedelta, timezone

    from sqlalchemy import insert

    from hydra.db import results

    _, _, (pt_id, model_id) = make_store(engine, tmp_path)
    made = datetime(2026, 11, 27, 23, 30, 1, tzinfo=timezone(timedelta(hours=2)))  # not UTC

    def row(key: str) -> dict:
        return {
            "source_key": key * 64, "path": "/srv/in/it's \"odd\" 100%.png", "filename": "fcal-000007_0001.png",
            "plot_type_id": pt_id, "run": 7, "chunk": None, "model_id": model_id, "label": "Good",
            "weight": 0.1 + 0.2, "weights": {"Good": 0.3, "Bad": 1e-9}, "confirmed": True, "is_problem": False,
            "heatmap_path": None, "kept_image_id": None, "timings": {"total": 12.5}, "created_at": made,
            "file_time": datetime.fromtimestamp(1.7e9 + 0.5, timezone.utc),
        }  # fmt: skip

    with session_scope(engine) as s:
        other = Model(
            plot_type_id=pt_id, head="classifier", path="x", input_height=8, input_width=8, labels=[]
        )
        s.add(other)
        s.flush()
        # stored before: another file, and this file's result of another model (neither is copied)
        s.execute(insert(Inference.__table__), [row("a"), dict(row("b"), model_id=other.id)])
        results.insert_new_results([row("b"), row("c"), dict(row("c"), model_id=other.id)], session=s)
    with session_scope(engine) as s:
        stored = s.exec(select(Inference)).all()
        rows = {
            i.source_key[0]: i.model_dump(exclude={"id", "source_key"})
            for i in stored
            if i.model_id == model_id
        }
        ids = {(i.source_key[0], i.model_id): i.id for i in stored}
        runtimes = {r.inference_id: r for r in s.exec(select(RunTime))}
    assert rows["a"] == rows["b"] == rows["c"] and rows["b"]["origin"] == "live"
    assert rows["b"]["created_at"] == made and rows["b"]["weights"] == {"Good": 0.3, "Bad": 1e-9}
    # the window has the new rows, and only those (not the other model's result of "b")
    assert set(runtimes) == {ids[("b", model_id)], ids[("c", model_id)], ids[("c", other.id)]}
    for rt in runtimes.values():
        assert rt.model_dump(exclude={"id", "inference_id"}) == {
            "plot_type_id": pt_id, "run": 7, "chunk": None, "label": "Good", "weight": rows["b"]["weight"],
            "confirmed": True, "is_problem": False, "image_path": row("b")["path"], "heatmap_path": None,
            "created_at": made,
        }  # fmt: skip
    assert set(results.RUNTIME_FROM_INFERENCE) == {c.name for c in RunTime.__table__.columns} - {"id"}


def test_a_result_stored_meanwhile_fails_the_batch_and_is_found_item_by_item(engine, tmp_path, monkeypatch):
    from hydra.db import results

    cfg, store, (pt_id, model_id) = make_store(engine, tmp_path)
    first = make_report(cfg, "fcal-000007_0001.png", pt_id, model_id)
    move_files(store.write(batch_of(first)).moves)
    again = make_report(cfg, "fcal-000007_0001.png", pt_id, model_id)  # its file came again
    new = make_report(cfg, "fcal-000007_0002.png", pt_id, model_id)
    real = results.existing_inferences
    calls = []

    def missed_once(keys, *, session):  # the check misses the stored row once, as in a race
        calls.append(keys)
        return {} if len(calls) == 1 else real(keys, session=session)

    monkeypatch.setattr(results, "existing_inferences", missed_once)
    keeper = _keeper_holding(cfg, engine, store, again, new)
    with zmq.Context() as ctx, ctx.socket(zmq.PUB) as pub:
        assert keeper._flush(pub)  # the batch fails on the unique key; item by item it goes through
    assert len(calls) == 3 and not keeper.batch.reports and not keeper.batch.errors
    with session_scope(engine) as s:
        names = sorted(i.filename for i in s.exec(select(Inference)).all())
        assert s.exec(select(ErrorRecord)).all() == []
    assert names == [first.filename, new.filename]
    assert not Path(again.path).exists() and not Path(new.path).exists()
