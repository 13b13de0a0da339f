"""Labeler speed in a real browser with 100,000 images in the database, as JSON.

Starts ``hydra app`` on a fresh SQLite home holding one plot type with
``--images`` unlabeled images, each with the model's verdict stored as the
Keeper stores it (PNG files only for the pages the run visits), logs in
through the sidebar with Debian's Chromium and labels ``--pages`` pages of 48
images in which 45 share one label and 3 are Bad, the way an expert would.
The Labeler pre-paints the model's verdicts as suggestions, so:

- on even pages the model is right on all 48: S (accept the suggestions) ·
  Enter (Apply) -- 2 actions;
- on odd pages the model missed the 3 Bad ones: 2 (choose Bad) · click the 3
  · S · Enter -- 6 actions (without suggestions the same page took 7:
  2 · 3 clicks · 1 · A · Enter).

It reports the clicks and keys per page, and the time from Apply to the next
page being ready (its images decoded in the grid), measured inside the page
(``Date.now()`` at Apply and when the new page is drawn), split into the
server round trip (Apply to new page received) and drawing, and the images
per hour those allow at ``--action-s`` seconds per key or click (the time a
person's hand needs, not the time to look at the page). Every page's labels
are checked in the database afterwards.

Usage:
    python benchmarks/bench_labeler.py [--images 100000] [--pages 6] [--action-s 1.0] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

from PIL import Image as PILImage
from PIL import ImageDraw
from sqlalchemy import insert
from sqlmodel import col, func, select

from hydra.auth import create_user, grant
from hydra.data.images import source_key
from hydra.db import make_engine, session_scope, upgrade_to_head
from hydra.db.models import Image, ImageLabel, Inference, Model, utcnow
from hydra.db.queries import create_plot_type, labels_of
from hydra.services.labeling import count_unlabeled, next_page, with_suggestions

PLOT = "CDC_occupancy"
PER_PAGE = 48
ODD = (5, 17, 40)  # positions of the 3 images that are not Good


def plot_png(path: Path, seed: int) -> None:
    rng = random.Random(seed)
    img = PILImage.new("RGB", (200, 150), "white")
    draw = ImageDraw.Draw(img)
    for i in range(40):
        h = int(120 * (0.3 + 0.7 * rng.random()))
        draw.rectangle([i * 5, 149 - h, i * 5 + 4, 149], fill=(31, 119, 180))
    img.save(path)


def build_home(home: Path, n_images: int, n_files: int) -> dict:
    """The database with ``n_images`` unlabeled images; files for the oldest ``n_files``."""
    home.mkdir(parents=True)
    kept = home / "kept"
    kept.mkdir()
    eng = make_engine(f"sqlite:///{home / 'hydra.db'}")
    upgrade_to_head(eng)
    t0 = time.perf_counter()
    with session_scope(eng) as s:
        pt = create_plot_type(PLOT, ["Good", "Bad", "NoData"], session=s)
        create_user("expert", "expert-pw", session=s, role="expert")
        grant("expert", PLOT, session=s, label=True)
        pt_id = pt.id
        labels = {lb.name: lb.id for lb in labels_of(pt.id, session=s)}
        model = Model(plot_type_id=pt.id, head="classifier", path=str(home / "models" / "1"), input_height=120,
                      input_width=160, labels=["Good", "Bad", "NoData"], active=True)  # fmt: skip
        s.add(model)
        s.flush()
        model_id = model.id
    start = utcnow() - timedelta(days=365)
    rows = [
        dict(
            path=str(kept / f"{PLOT}-{100000 + i}.png"),
            filename=f"{PLOT}-{100000 + i}.png",
            plot_type_id=pt_id,
            run=100000 + i,
            created_at=start + timedelta(seconds=30 * i),
            content_hash=f"{i:064x}",
            kept_reason="ingest",
            train_weight=1.0,
            doubt=0.0,
        )  # fmt: skip
        for i in range(n_images)
    ]
    # the model's verdicts: right on even pages, blind to the 3 Bad ones on odd pages
    verdicts = [
        dict(
            source_key=source_key(r["filename"], r["content_hash"]),
            path=r["path"],
            filename=r["filename"],
            plot_type_id=pt_id,
            run=r["run"],
            model_id=model_id,
            label="Bad" if (i % PER_PAGE in ODD and (i // PER_PAGE) % 2 == 0) else "Good",
            weight=0.9,
            weights={},
            timings={},
            confirmed=False,
            created_at=r["created_at"],
            kept_image_id=i + 1,
        )  # fmt: skip
        for i, r in enumerate(rows)
    ]
    with eng.begin() as conn:
        for k in range(0, len(rows), 20000):
            conn.execute(insert(Image), rows[k : k + 20000])
        for k in range(0, len(verdicts), 20000):
            conn.execute(insert(Inference), verdicts[k : k + 20000])
    for i in range(n_files):
        plot_png(kept / f"{PLOT}-{100000 + i}.png", i)
    return {"engine": eng, "pt_id": pt_id, "labels": labels, "fill_s": round(time.perf_counter() - t0, 2)}


def query_times(eng, pt_id: int, reps: int = 20) -> dict:
    """Server-side cost of what a Labeler run asks the database (ms, median)."""
    out = {}
    for name, fn in (
        ("next_page_ms", lambda s: next_page(pt_id, session=s, limit=PER_PAGE)),
        (
            "next_page_with_suggestions_ms",
            lambda s: with_suggestions(next_page(pt_id, session=s, limit=PER_PAGE), pt_id, session=s),
        ),
        ("next_page_doubtful_ms", lambda s: next_page(pt_id, session=s, order="doubtful", limit=PER_PAGE)),
        ("count_unlabeled_ms", lambda s: count_unlabeled(pt_id, session=s)),
    ):
        samples = []
        for _ in range(reps):
            with session_scope(eng) as s:
                t = time.perf_counter()
                fn(s)
                samples.append((time.perf_counter() - t) * 1000)
        out[name] = round(statistics.median(samples), 2)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(home: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYDRA_")} | {"HYDRA_HOME": str(home)}
    hydra = str(Path(sys.executable).with_name("hydra"))
    log = (home / "app.log").open("w")
    proc = subprocess.Popen(
        [hydra, "app", "--port", str(port), "--address", "127.0.0.1"],
        env=env,
        stdout=log,
        stderr=log,
        cwd=home,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.3)
    proc.terminate()
    raise SystemExit(f"hydra app did not start: {(home / 'app.log').read_text()[-2000:]}")


def label_pages(url: str, pages: int) -> list[dict]:
    from playwright.sync_api import sync_playwright

    results = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page(viewport={"width": 1600, "height": 1100})
        page.set_default_timeout(60_000)
        page.goto(f"{url}/labeler")
        bar = page.locator('[data-testid="stSidebar"]')
        bar.get_by_role("textbox", name="User name").fill("expert")
        bar.get_by_role("textbox", name="Password").fill("expert-pw")
        bar.get_by_role("button", name="Log in").click()
        bar.get_by_text("Logged in as expert").wait_for()
        grid = page.frame_locator("iframe[title*='labeler_grid']")
        grid.locator(".cell").first.wait_for()
        frame = next(f for f in page.frames if "hydra_labeler_grid" in f.url)
        frame.wait_for_function("() => !!document.body.dataset.readyToken")
        for number in range(pages):
            token = frame.evaluate("() => document.body.dataset.readyToken")
            frame.wait_for_function("() => document.body.dataset.suggested === '48'")
            ids = [
                int(x)
                for x in frame.evaluate(
                    "() => [...document.querySelectorAll('.cell')].map(c => c.dataset.imageId)"
                )
            ]
            clicks = keys = 0
            model_right = number % 2 == 0
            if not model_right:  # paint the 3 the model missed; painting overrides a suggestion
                page.keyboard.press("2")  # Bad
                keys += 1
                for i in ODD:
                    grid.locator(".cell").nth(i).click()
                    clicks += 1
            page.keyboard.press("s")  # accept the suggestions on every image not painted by hand
            keys += 1
            painted = int(frame.evaluate("() => document.body.dataset.painted"))
            page.keyboard.press("Enter")  # Apply
            keys += 1
            frame.wait_for_function("(t) => document.body.dataset.readyToken !== t", arg=token)
            applied, drawn, ready = (
                int(v) for v in frame.evaluate(
                    "() => [document.body.dataset.appliedAt, document.body.dataset.renderedAt, document.body.dataset.readyAt]"
                )
            )  # fmt: skip
            results.append(
                dict(
                    ids=ids, painted=painted, clicks=clicks, keys=keys, apply_to_ready_ms=ready - applied,
                    server_round_trip_ms=drawn - applied, draw_ms=ready - drawn, model_right=model_right,
                )
            )  # fmt: skip
        browser.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--pages", type=int, default=6)
    parser.add_argument(
        "--action-s", type=float, default=1.0, help="Seconds a person needs per key or click."
    )
    parser.add_argument("--keep", type=Path, help="Build the home here and keep it (default: a temp dir).")
    args = parser.parse_args()
    if not Path("/usr/bin/chromium").exists():
        raise SystemExit("Debian's Chromium (/usr/bin/chromium) is needed for this benchmark")
    base = args.keep or Path(tempfile.mkdtemp(prefix="hydra-bench-labeler-"))
    home = base / "home"
    if home.exists():
        shutil.rmtree(home)
    built = build_home(home, args.images, PER_PAGE * (args.pages + 1))
    eng = built["engine"]
    queries = query_times(eng, built["pt_id"])
    proc, url = start_app(home)
    try:
        pages = label_pages(url, args.pages)
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    bad = built["labels"]["Bad"]
    with session_scope(eng) as s:
        for p in pages:
            rows = dict(
                s.exec(
                    select(ImageLabel.image_id, ImageLabel.label_id).where(
                        col(ImageLabel.image_id).in_(p["ids"])
                    )
                ).all()
            )
            p["stored"] = len(rows)
            p["stored_ok"] = len(rows) == PER_PAGE and [i for i in p["ids"] if rows[i] == bad] == [
                p["ids"][i] for i in ODD
            ]
        left = s.exec(select(func.count()).select_from(Image).where(col(Image.label_id).is_(None))).one()
    eng.dispose()
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)
    # the first Apply also warms caches (thumbnails, the leaderboard); report it apart
    steady = [p["apply_to_ready_ms"] for p in pages[1:]] or [pages[0]["apply_to_ready_ms"]]
    wait_s = statistics.median(steady) / 1000

    def per_hour(actions: int) -> int:
        return int(3600 / (actions * args.action_s + wait_s) * PER_PAGE)

    right = next(p for p in pages if p["model_right"])
    missed = next((p for p in pages if not p["model_right"]), right)
    print(
        json.dumps(
            {
                "benchmark": "labeler",
                "images_in_db": args.images,
                "pages": len(pages),
                "images_per_page": PER_PAGE,
                "odd_images_per_page": len(ODD),
                "actions_per_page_model_right": right["clicks"] + right["keys"],
                "actions_per_page_model_missed_3": missed["clicks"] + missed["keys"],
                "actions_per_page_without_suggestions": 7,
                "action_s": args.action_s,
                "images_per_hour_model_right": per_hour(right["clicks"] + right["keys"]),
                "images_per_hour_model_missed_3": per_hour(missed["clicks"] + missed["keys"]),
                "images_per_hour_without_suggestions": per_hour(7),
                "apply_to_ready_ms": [p["apply_to_ready_ms"] for p in pages],
                "server_round_trip_ms": [p["server_round_trip_ms"] for p in pages],
                "draw_ms": [p["draw_ms"] for p in pages],
                "apply_to_ready_ms_median_after_first": statistics.median(steady),
                "apply_to_ready_ms_max_after_first": max(steady),
                "all_pages_stored_correctly": all(p["stored_ok"] for p in pages),
                "unlabeled_left": left,
                "db_fill_s": built["fill_s"],
                "db_queries": queries,
                "host": {
                    "cpus": os.cpu_count(),
                    "load_avg_1m": round(os.getloadavg()[0], 2),
                    "python": platform.python_version(),
                },
            }
        )
    )


if __name__ == "__main__":
    main()
