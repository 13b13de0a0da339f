"""Register a folder of plot images (and their human labels) in the database.

Ingest is validate-then-write: the labels CSV and every file are checked
first, and only a clean run writes, in one transaction. Running it twice adds
nothing.

Example:
    >>> from hydra.services.ingest import ingest
    >>> report = ingest("plots/", engine=engine, labels_csv="plots/labels.csv")  # doctest: +SKIP
    >>> report.added, report.labeled                                             # doctest: +SKIP
    (160, 160)
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from pathlib import Path, PurePosixPath, PureWindowsPath

from sqlalchemy import insert
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from hydra.config import PlotTypeDefaults
from hydra.data.images import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_PIXELS,
    ImageError,
    content_hash,
    decode_image,
    open_image,
    read_bytes,
)
from hydra.data.naming import (
    DEFAULT_LABELS,
    LABEL_RULE,
    NamingError,
    ParsedName,
    check_plot_type_name,
    parse_name,
)
from hydra.db.engine import session_scope
from hydra.db.models import Image, ImageLabel, Label, PlotType, utcnow
from hydra.db.queries import add_label, create_plot_type, get_plot_type, labels_of, plot_types_by_name

DEFAULT_COLLECT_PERCENT = PlotTypeDefaults().collect_percent

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
MAX_PATH = 512  # Image.path's column width
MAX_FILENAME = 255


class IngestError(ValueError):
    """The folder or the labels CSV cannot be ingested; nothing was written."""


@dataclass
class IngestReport:
    scanned: int = 0
    added: int = 0
    labeled: int = 0
    relabeled: int = 0
    already_known: int = 0
    skipped: list[str] = field(default_factory=list)  # files not following the convention
    skip_reasons: list[str] = field(default_factory=list)  # why, one per skipped file
    created_plot_types: list[str] = field(default_factory=list)


@dataclass
class _Candidate:
    path: Path
    parsed: ParsedName
    label: str | None = None


def _relative_name(name: str, where: str) -> str:
    """A CSV filename as a normalised path under the folder; absolute or escaping paths are refused."""
    if "\0" in name:
        raise IngestError(f"{where}: the filename contains a NUL character")
    if (
        PurePosixPath(name).is_absolute()
        or PureWindowsPath(name).is_absolute()
        or PureWindowsPath(name).drive
    ):
        raise IngestError(f"{where}: filename {name!r} is an absolute path; give it relative to the folder")
    rel = os.path.normpath(name)
    if rel == ".." or rel.startswith(".." + os.sep) or rel == ".":
        raise IngestError(f"{where}: filename {name!r} points outside the folder being ingested")
    return rel


def read_labels_csv(
    csv_path: Path, root: Path, pattern: re.Pattern[str] | None, known: set[str] | None = None
) -> dict[str, str]:
    """Read ``filename,label`` rows; the error names the line and the problem.

    Args:
        csv_path: the CSV file.
        root: the folder its file names are relative to.
        pattern: the naming convention every listed file must follow.
        known: the relative paths the folder scan found; a row naming any
            other file is refused (None: only check that the file exists).

    Returns:
        The label of every listed file, keyed by its path relative to ``root``.
    """
    if not csv_path.is_file():
        raise IngestError(f"labels CSV {csv_path} does not exist")
    try:
        with csv_path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            _check_header(csv_path, reader.fieldnames)
            labels: dict[str, str] = {}
            first_line: dict[str, int] = {}
            for row in reader:
                line = reader.line_num
                where = f"{csv_path} line {line}"
                name, label, rel = _row_fields(row, where)
                if rel in labels:
                    raise IngestError(
                        f"{where}: duplicate filename {name!r} (first on line {first_line[rel]})"
                    )
                _check_listed_file(rel, name, where, root, pattern, known)
                labels[rel] = label
                first_line[rel] = line
    except UnicodeDecodeError as exc:
        raise IngestError(f"{csv_path}: not a UTF-8 text file ({exc.reason})") from None
    except csv.Error as exc:
        raise IngestError(f"{csv_path}: not a valid CSV file ({exc})") from None
    except OSError as exc:
        raise IngestError(f"{csv_path}: cannot be read ({exc.strerror or exc})") from None
    return labels


def _check_header(csv_path: Path, fieldnames: Sequence[str] | None) -> None:
    """Refuse a CSV without the columns filename and label."""
    columns = [c.strip() for c in fieldnames or []]
    missing = [c for c in ("filename", "label") if c not in columns]
    if missing:
        raise IngestError(
            f"{csv_path}: missing column(s) {', '.join(missing)}; "
            f"the header has {columns or 'nothing'} (need at least filename,label)"
        )


def _row_fields(row: dict, where: str) -> tuple[str, str, str]:
    """A CSV row's filename, label and normalised relative path; an empty or odd field is refused."""
    row = {(k or "").strip(): (v or "").strip() for k, v in row.items() if isinstance(k, str)}
    name, label = row.get("filename", ""), row.get("label", "")
    if not name:
        raise IngestError(f"{where}: empty filename")
    if not label:
        raise IngestError(f"{where}: empty label for {name!r}")
    if not LABEL_RULE.fullmatch(label):
        raise IngestError(f"{where}: label {label[:80]!r} has characters a label cannot have")
    return name, label, _relative_name(name, where)


def _check_listed_file(
    rel: str, name: str, where: str, root: Path, pattern: re.Pattern[str] | None, known: set[str] | None
) -> None:
    """Refuse a listed file off the naming convention, not an image, missing, or outside ``root``."""
    try:
        parse_name(rel, pattern)
    except NamingError as exc:
        raise IngestError(f"{where}: {exc}") from None
    if Path(rel).suffix.lower() not in IMAGE_SUFFIXES:
        raise IngestError(f"{where}: {name!r} is not a {'/'.join(sorted(IMAGE_SUFFIXES))} image file")
    if not os.path.isfile(os.path.join(root, rel)):
        raise IngestError(f"{where}: file {name!r} does not exist under {root}")
    if known is not None and rel not in known:
        raise IngestError(
            f"{where}: file {name!r} is not inside {root} itself (a linked folder?); "
            "ingest the folder it lives in"
        )


def _scan(root: Path, pattern: re.Pattern[str] | None, report: IngestReport) -> list[_Candidate]:
    found = []
    for dirpath, _dirs, files in os.walk(root):
        for fname in sorted(files):
            if Path(fname).suffix.lower() not in IMAGE_SUFFIXES:
                continue
            report.scanned += 1
            path = Path(dirpath) / fname
            try:
                parsed = parse_name(fname, pattern)
            except NamingError as exc:
                report.skipped.append(str(path.relative_to(root)))
                report.skip_reasons.append(str(exc))
                continue
            if len(str(path)) > MAX_PATH or len(fname) > MAX_FILENAME:
                raise IngestError(
                    f"{path}: the path is longer than {MAX_PATH} characters (or the name than "
                    f"{MAX_FILENAME}), more than the database stores; move the folder to a shorter path"
                )
            found.append(_Candidate(path, parsed))
    return found


def _check_image(path: Path, max_bytes: int, max_pixels: int) -> tuple[str, datetime]:
    """Hash a file and check it as the Feeder does; returns (hash, mtime).

    The same gate as the Feeder's (:func:`~hydra.data.images.open_image`:
    size, header, declared pixels). A PNG is then verified from the bytes
    already read (chunk checksums, truncation) rather than decoded, which
    keeps ingest several times faster than a full decode; any other format
    is decoded as the Feeder decodes it (a JPEG has nothing to verify).
    """
    try:
        data = read_bytes(path, max_bytes)
    except ImageError as exc:
        raise IngestError(f"{path}: {str(exc).removeprefix(f'{path.name}: ')}") from None
    except OSError as exc:
        raise IngestError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        with open_image(data, path.name, max_pixels) as img:
            if img.format == "PNG":
                img.verify()
            else:
                decode_image(data, path.name, max_pixels)
    except ImageError as exc:
        raise IngestError(f"{path}: {str(exc).removeprefix(f'{path.name}: ')}") from None
    except Exception as exc:  # noqa: BLE001 - PIL's verify raises many kinds
        raise IngestError(f"{path}: not a readable image ({exc.__class__.__name__}: {exc})") from None
    mtime = datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc)
    return content_hash(data), mtime


def _ordered_labels(used: Iterable[str]) -> list[str]:
    used = set(used)
    first = [x for x in DEFAULT_LABELS if x in used]
    return first + sorted(used - set(first))


def _resolve_labels(
    candidates: list[_Candidate], session: Session, report: IngestReport, collect_percent: float
) -> dict[tuple[str, str], int]:
    """Create missing plot types (keeping ``collect_percent`` of fine images); map (plot type, label name) to label id."""
    by_type: dict[str, set[str]] = {}
    for c in candidates:
        by_type.setdefault(c.parsed.plot_type, set())
        if c.label:
            by_type[c.parsed.plot_type].add(c.label)
    existing = plot_types_by_name(session=session)
    label_ids: dict[tuple[str, str], int] = {}
    for name, used in sorted(by_type.items()):
        pt = existing.get(name)
        if pt is None:
            labels = _ordered_labels(used) or list(DEFAULT_LABELS)
            pt = create_plot_type(name, labels, session=session, collect_percent=collect_percent)
            report.created_plot_types.append(name)
        known = {lb.name: lb for lb in labels_of(pt.id, session=session)}
        for label in sorted(used - set(known)):
            known[label] = add_label(pt.id, label, session=session)
        label_ids.update({(name, lb.name): lb.id for lb in known.values()})
        label_ids[(name, "")] = pt.id  # plot type id, under an impossible label name
    return label_ids


def ingest(
    directory: str | Path,
    *,
    engine: Engine,
    labels_csv: str | Path | None = None,
    plot_type: str | None = None,
    pattern: re.Pattern[str] | str | None = None,
    progress: Callable[[int, int], None] | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    collect_percent: float = DEFAULT_COLLECT_PERCENT,
) -> IngestReport:
    """Register every image under ``directory`` that follows the naming convention.

    Args:
        directory: the folder, searched recursively.
        engine: the database.
        labels_csv: optional CSV with at least ``filename,label`` (filename
            relative to ``directory``).
        plot_type: only register images of this plot type.
        pattern: the deployment's naming regex (default convention otherwise).
        progress: called with (done, total) while files are checked.
        max_bytes: the largest file accepted (``serve.max_file_bytes``).
        max_pixels: the most pixels an image may declare (``serve.max_image_pixels``);
            with the same limits as ``hydra-serve``, ingest refuses what serve would.
        collect_percent: for a plot type ingest creates, the percent of fine
            images ``hydra-serve`` keeps at random (``plot_types.collect_percent``).

    Raises:
        IngestError: anything wrong; the message names the file or CSV line,
            and nothing has been written.
    """
    root = Path(directory).resolve()
    regex = _check_arguments(directory, root, plot_type, pattern)
    report = IngestReport()
    candidates = _candidates(root, regex, report, labels_csv, plot_type)
    check = partial(_check_image, max_bytes=max_bytes, max_pixels=max_pixels)
    with session_scope(engine) as session:
        known = _known_images([str(c.path) for c in candidates], session)
        label_ids = _resolve_labels(candidates, session, report, collect_percent)
        now = utcnow()
        fresh, history = _relabel_known(candidates, known, label_ids, now, session, report)
        rows = _new_image_rows(fresh, label_ids, now, check, progress)
        if rows:
            history.extend(_insert_images(rows, session, report))
        if history:
            session.execute(
                insert(ImageLabel),
                [{"image_id": i, "label_id": lb, "source": "ingest", "created_at": now} for i, lb in history],
            )
    return report


def _check_arguments(
    directory: str | Path, root: Path, plot_type: str | None, pattern: re.Pattern[str] | str | None
) -> re.Pattern[str] | None:
    """Refuse a missing folder or a bad plot type name; the naming pattern, compiled."""
    if not root.is_dir():
        raise IngestError(f"{directory} is not a directory")
    if plot_type is not None:
        try:
            check_plot_type_name(plot_type)
        except NamingError as exc:
            raise IngestError(str(exc)) from None
    try:
        return re.compile(pattern) if isinstance(pattern, str) else pattern
    except re.error as exc:
        raise IngestError(
            f"the naming pattern {pattern!r} is not a valid regular expression: {exc}"
        ) from None


def _candidates(
    root: Path,
    regex: re.Pattern[str] | None,
    report: IngestReport,
    labels_csv: str | Path | None,
    plot_type: str | None,
) -> list[_Candidate]:
    """The files to register, each with its CSV label (if any), of ``plot_type`` only if given."""
    candidates = _scan(root, regex, report)
    if labels_csv is not None:
        by_rel = {os.path.normpath(c.path.relative_to(root)): c for c in candidates}
        labels = read_labels_csv(Path(labels_csv), root, regex, known=set(by_rel))
        for rel, label in labels.items():
            by_rel[rel].label = label
    if plot_type is not None:
        candidates = [c for c in candidates if c.parsed.plot_type == plot_type]
        if not candidates:
            raise IngestError(f"no image of plot type {plot_type!r} under {root}")
    return candidates


def _known_images(paths: list[str], session: Session) -> dict[str, Image]:
    """The images already registered under any of ``paths``, by path."""
    known: dict[str, Image] = {}
    for i in range(0, len(paths), 500):
        chunk = paths[i : i + 500]
        known.update({im.path: im for im in session.exec(select(Image).where(col(Image.path).in_(chunk)))})
    return known


def _relabel_known(
    candidates: list[_Candidate],
    known: dict[str, Image],
    label_ids: dict[tuple[str, str], int],
    now: datetime,
    session: Session,
    report: IngestReport,
) -> tuple[list[tuple[_Candidate, tuple[str, str] | None]], list[tuple[int, int]]]:
    """Give known images the CSV's label where it differs; the new candidates and the label history.

    Returns the candidates not registered yet (each with its label key, or
    None) and ``(image id, label id)`` for every known image relabeled.
    """
    fresh, history = [], []
    for c in candidates:
        key = (c.parsed.plot_type, c.label) if c.label else None
        existing = known.get(str(c.path))
        if existing is None:
            fresh.append((c, key))
            continue
        report.already_known += 1
        if key and existing.label_id != label_ids[key]:
            existing.label_id, existing.labeled_at = label_ids[key], now
            session.add(existing)
            history.append((existing.id, label_ids[key]))
            report.relabeled += 1
    return fresh, history


def _new_image_rows(
    fresh: list[tuple[_Candidate, tuple[str, str] | None]],
    label_ids: dict[tuple[str, str], int],
    now: datetime,
    check: Callable[[Path], tuple[str, datetime]],
    progress: Callable[[int, int], None] | None,
) -> list[dict]:
    """Check every new file (as the Feeder would) and make its ``Image`` row."""
    rows = []
    # hashing and header checks read every file: overlap them (hashlib and zlib release the GIL)
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 2) * 2)) as pool:
        checked = pool.map(check, [c.path for c, _ in fresh])
        for done, ((c, key), (digest, mtime)) in enumerate(zip(fresh, checked), 1):
            if progress:
                progress(done, len(fresh))
            rows.append(
                {
                    "path": str(c.path),
                    "filename": c.path.name,
                    "plot_type_id": label_ids[(c.parsed.plot_type, "")],
                    "run": c.parsed.run,
                    "chunk": c.parsed.chunk,
                    "created_at": mtime,
                    "content_hash": digest,
                    "kept_reason": "ingest",
                    "label_id": label_ids[key] if key else None,
                    "labeled_at": now if key else None,
                    "train_weight": 1.0,
                    "doubt": 0.0,
                }
            )
    return rows


def _insert_images(rows: list[dict], session: Session, report: IngestReport) -> list[tuple[int, int]]:
    """Insert the new images; ``(image id, label id)`` of those that came with a label."""
    session.execute(insert(Image), rows)
    report.added = len(rows)
    labeled_paths = [r["path"] for r in rows if r["label_id"] is not None]
    report.labeled = len(labeled_paths)
    history = []
    for i in range(0, len(labeled_paths), 500):
        chunk = labeled_paths[i : i + 500]
        history.extend(session.exec(select(Image.id, Image.label_id).where(col(Image.path).in_(chunk))).all())
    return history


@dataclass(frozen=True)
class RegisteredImage:
    """A registered image as ``hydra images list`` shows it."""

    id: int
    path: str
    plot_type: str
    run: int
    chunk: int | None
    label: str | None
    kept_reason: str
    created_at: datetime


def registered_images(
    *, session: Session, plot_type: str | None = None, labeled: bool | None = None, limit: int = 0
) -> list[RegisteredImage]:
    """Registered images in the order they came, with their plot type and label.

    Args:
        session: the caller's session.
        plot_type: only images of this plot type.
        labeled: only labeled (True) or only unlabeled (False) images; None: both.
        limit: at most this many (0: all).

    Raises:
        hydra.db.queries.NotFoundError: unknown plot type (the message lists the known ones).
    """
    query = (
        select(Image, PlotType.name, Label.name)
        .join(PlotType, PlotType.id == Image.plot_type_id)
        .join(Label, Label.id == Image.label_id, isouter=True)
        .order_by(Image.id)
    )
    if plot_type:
        query = query.where(Image.plot_type_id == get_plot_type(plot_type, session=session).id)
    if labeled is True:
        query = query.where(col(Image.label_id).is_not(None))
    elif labeled is False:
        query = query.where(col(Image.label_id).is_(None))
    if limit:
        query = query.limit(limit)
    return [
        RegisteredImage(
            id=im.id,
            path=im.path,
            plot_type=pt,
            run=im.run,
            chunk=im.chunk,
            label=label,
            kept_reason=im.kept_reason,
            created_at=im.created_at,
        )
        for im, pt, label in session.exec(query)
    ]
