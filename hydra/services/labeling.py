"""Human labels: the Labeler's and the Editor's service layer.

Every change of a label goes through :func:`apply_labels`, which checks the
user's ``label`` permission on the plot type first (a labeler or expert with
the ``label`` grant, or an admin; never a viewer), so a tampered page is
refused; it writes the new current label on ``Image`` and one ``ImageLabel``
history row per change, all in the caller's transaction. Pages never write
labels themselves.

Example:
    >>> with session_scope(engine) as s:  # doctest: +SKIP
    ...     page = next_page(pt.id, session=s, limit=48)
    ...     apply_labels(user, pt.id, {page[0].id: good.id}, session=s)
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

from sqlmodel import Session, col, func, select, update

from hydra.auth import require
from hydra.data.images import source_key
from hydra.db.models import LIVE, Image, ImageLabel, Inference, Label, User, utcnow
from hydra.db.queries import NotFoundError, labels_of

Order = Literal["oldest", "doubtful", "newest"]
ORDERS: tuple[str, ...] = ("oldest", "doubtful", "newest")
SOURCES = ("labeler", "editor", "report", "ingest")


class LabelingError(ValueError):
    """A label request names images or labels that do not fit; the message says which."""


@dataclass(frozen=True)
class GridImage:
    """What a grid cell needs to show one image (no ORM object leaves the session)."""

    id: int
    path: str
    filename: str
    run: int
    chunk: int | None
    created_at: datetime
    doubt: float
    kept_reason: str
    label_id: int | None
    content_hash: str = ""
    train_weight: float = 1.0
    suggested_label_id: int | None = None  # the model's verdict, as one of the plot type's labels
    suggested_label: str | None = None
    suggested_weight: float | None = None
    suggested_confirmed: bool = False


@dataclass(frozen=True)
class ApplyResult:
    """What :func:`apply_labels` did: ``stored`` changes, ``skipped`` images that
    someone else labeled meanwhile (Labeler mode) or that already had that label."""

    stored: int
    skipped: tuple[int, ...]


@dataclass(frozen=True)
class HistoryEntry:
    label: str
    user: str | None
    source: str
    created_at: datetime


_GRID_COLUMNS = (
    Image.id,
    Image.path,
    Image.filename,
    Image.run,
    Image.chunk,
    Image.created_at,
    Image.doubt,
    Image.kept_reason,
    Image.label_id,
    Image.content_hash,
    Image.train_weight,
)


def _grid(rows: Sequence) -> list[GridImage]:
    return [GridImage(*row) for row in rows]


def with_suggestions(page: Sequence[GridImage], plot_type_id: int, *, session: Session) -> list[GridImage]:
    """The page with each image's model verdict as a suggested label (the newest inference on it).

    The inference is found by its source key (file name and content), which
    the unique ``(source_key, model_id)`` index answers directly, so a page
    costs one indexed query whatever the size of the history. Images no
    model has seen (ingested) keep no suggestion.
    """
    if not page:
        return []
    keys = {source_key(g.filename, g.content_hash): g.id for g in page if g.content_hash}
    if not keys:
        return list(page)
    # only the source key in SQL, so the unique (source_key, model_id) index is the one used
    rows = session.exec(
        select(
            Inference.source_key,
            Inference.label,
            Inference.weight,
            Inference.confirmed,
            Inference.plot_type_id,
            Inference.origin,
        )
        .where(col(Inference.source_key).in_(list(keys)))
        .order_by(col(Inference.id))
    ).all()
    # the newest live verdict wins over a shadow model's or a reprocessing's (sorted after them; stable)
    rows = sorted(rows, key=lambda r: r[5] == LIVE)
    verdicts = {
        keys[key]: (label, weight, confirmed)
        for key, label, weight, confirmed, pt, _origin in rows
        if pt == plot_type_id
    }  # newest wins
    by_name = {lb.name: lb.id for lb in labels_of(plot_type_id, session=session)}
    out = []
    for g in page:
        label, weight, confirmed = verdicts.get(g.id, (None, None, False))
        if label in by_name:
            g = replace(g, suggested_label_id=by_name[label], suggested_label=label,
                        suggested_weight=float(weight), suggested_confirmed=bool(confirmed))  # fmt: skip
        out.append(g)
    return out


def next_page(
    plot_type_id: int,
    *,
    session: Session,
    order: Order = "oldest",
    limit: int = 48,
    exclude: Sequence[int] = (),
) -> list[GridImage]:
    """The next unlabeled images of a plot type for the Labeler grid.

    ``oldest`` and ``newest`` walk the index ``ix_image_plot_label_time``, so
    a page costs the same with 100,000 images as with 100; ``doubtful`` puts
    the images the model was least sure of first (ties: oldest first).
    ``exclude`` leaves out images still painted on screen.
    """
    if order not in ORDERS:
        raise LabelingError(f"unknown order {order!r}; expected one of {', '.join(ORDERS)}")
    if limit < 1 or limit > 1000:
        raise LabelingError(f"a page holds 1 to 1000 images, not {limit}")
    query = select(*_GRID_COLUMNS).where(Image.plot_type_id == plot_type_id, col(Image.label_id).is_(None))
    if exclude:
        query = query.where(col(Image.id).not_in(list(exclude)))
    if order == "doubtful":
        query = query.order_by(col(Image.doubt).desc(), col(Image.created_at), col(Image.id))
    elif order == "newest":
        query = query.order_by(col(Image.created_at).desc(), col(Image.id).desc())
    else:
        query = query.order_by(col(Image.created_at), col(Image.id))
    return _grid(session.exec(query.limit(limit)).all())


def count_unlabeled(plot_type_id: int, *, session: Session) -> int:
    """How many images of the plot type wait for a label (index-only count)."""
    return session.exec(
        select(func.count())
        .select_from(Image)
        .where(Image.plot_type_id == plot_type_id, col(Image.label_id).is_(None))
    ).one()


def editor_page(
    plot_type_id: int,
    *,
    session: Session,
    label_ids: Sequence[int] = (),
    start: datetime | None = None,
    end: datetime | None = None,
    run_min: int | None = None,
    run_max: int | None = None,
    limit: int = 48,
    offset: int = 0,
) -> list[GridImage]:
    """Labeled images for the Editor, newest first, filtered by label, time window and run range."""
    if start and end and start > end:
        raise LabelingError(f"the time window starts ({start}) after it ends ({end})")
    query = select(*_GRID_COLUMNS).where(Image.plot_type_id == plot_type_id)
    if label_ids:
        query = query.where(col(Image.label_id).in_(list(label_ids)))
    else:
        query = query.where(col(Image.label_id).is_not(None))
    if start is not None:
        query = query.where(Image.created_at >= start)
    if end is not None:
        query = query.where(Image.created_at < end)
    if run_min is not None:
        query = query.where(Image.run >= run_min)
    if run_max is not None:
        query = query.where(Image.run <= run_max)
    query = query.order_by(col(Image.created_at).desc(), col(Image.id).desc()).offset(offset).limit(limit)
    return _grid(session.exec(query).all())


def _check_labels(plot_type_id: int, wanted: set[int], *, session: Session) -> dict[int, Label]:
    labels = {lb.id: lb for lb in labels_of(plot_type_id, session=session)}
    unknown = wanted - set(labels)
    if unknown:
        names = ", ".join(f"{lb.name} ({i})" for i, lb in labels.items())
        raise LabelingError(f"label id(s) {sorted(unknown)} are not labels of this plot type; valid: {names}")
    return labels


def apply_labels(
    user: User | None,
    plot_type_id: int,
    assignments: Mapping[int, int],
    *,
    session: Session,
    source: str = "labeler",
    only_unlabeled: bool | None = None,
) -> ApplyResult:
    """Store many labels at once: ``{image_id: label_id}``, one transaction.

    Args:
        user: who labels; needs the ``label`` permission on the plot type.
        plot_type_id: every image must belong to it, every label must be one of its labels.
        assignments: image id to label id.
        session: the caller's session; nothing is committed here, so the
            whole page lands or nothing does.
        source: labeler, editor or report (kept in the history).
        only_unlabeled: skip images that got a label meanwhile (two people on
            one grid); defaults to True for the Labeler, False otherwise.

    Raises:
        PermissionDenied: the user may not label this plot type.
        LabelingError: an image or label does not belong to the plot type.
    """
    require(user, "label", plot_type_id, session=session)
    if source not in SOURCES:
        raise LabelingError(f"unknown source {source!r}; expected one of {', '.join(SOURCES)}")
    if not assignments:
        return ApplyResult(0, ())
    if only_unlabeled is None:
        only_unlabeled = source == "labeler"
    _check_labels(plot_type_id, set(assignments.values()), session=session)
    current = _current_labels(plot_type_id, list(assignments), session=session)
    by_label, skipped = _changes(assignments, current, only_unlabeled)
    now = utcnow()
    for label_id, image_ids in by_label.items():
        skipped.extend(_store_label(user, label_id, image_ids, now, source, only_unlabeled, session=session))
    session.flush()
    return ApplyResult(sum(len(v) for v in by_label.values()), tuple(sorted(skipped)))


def _current_labels(plot_type_id: int, ids: list[int], *, session: Session) -> dict[int, int | None]:
    """The current label id (or None) of each image; every image must exist and be of the plot type."""
    current: dict[int, tuple[int, int | None]] = {}
    for chunk in range(0, len(ids), 500):
        rows = session.exec(
            select(Image.id, Image.plot_type_id, Image.label_id).where(
                col(Image.id).in_(ids[chunk : chunk + 500])
            )
        ).all()
        current.update({r[0]: (r[1], r[2]) for r in rows})
    missing = sorted(set(ids) - set(current))
    if missing:
        raise LabelingError(f"unknown image id(s) {missing[:10]}")
    foreign = sorted(i for i, (pt, _) in current.items() if pt != plot_type_id)
    if foreign:
        raise LabelingError(f"image id(s) {foreign[:10]} belong to another plot type")
    return {i: label_id for i, (_, label_id) in current.items()}


def _changes(
    assignments: Mapping[int, int], current: Mapping[int, int | None], only_unlabeled: bool
) -> tuple[dict[int, list[int]], list[int]]:
    """The images to label, by label id, and those to skip (labeled already, or with that label)."""
    by_label: dict[int, list[int]] = defaultdict(list)
    skipped = []
    for image_id, label_id in assignments.items():
        old = current[image_id]
        if (only_unlabeled and old is not None) or old == label_id:
            skipped.append(image_id)
        else:
            by_label[label_id].append(image_id)
    return by_label, skipped


def _store_label(
    user: User,
    label_id: int,
    image_ids: list[int],
    now: datetime,
    source: str,
    only_unlabeled: bool,
    *,
    session: Session,
) -> set[int]:
    """Give ``image_ids`` the label, with a history row each; the images someone labeled meanwhile.

    Those are taken out of ``image_ids`` (in place) and returned.
    """
    stmt = update(Image).where(col(Image.id).in_(image_ids)).values(label_id=label_id, labeled_at=now)
    if only_unlabeled:
        stmt = stmt.where(col(Image.label_id).is_(None))
    taken: set[int] = set()
    if session.execute(stmt).rowcount != len(image_ids):  # someone labeled some meanwhile
        taken = set(
            session.exec(select(Image.id).where(col(Image.id).in_(image_ids), Image.labeled_at != now)).all()
        )
        image_ids[:] = [i for i in image_ids if i not in taken]
    session.add_all(
        ImageLabel(image_id=i, label_id=label_id, user_id=user.id, source=source, created_at=now)
        for i in image_ids
    )
    return taken


def set_train_weight(
    user: User | None, plot_type_id: int, image_ids: Sequence[int], weight: float, *, session: Session
) -> int:
    """Set the per-image training weight (0..10; 0 leaves an image out of training); how many changed.

    Needs the ``label`` permission on the plot type, like a label change.
    """
    require(user, "label", plot_type_id, session=session)
    if not 0.0 <= weight <= 10.0:
        raise LabelingError(f"a training weight is 0 to 10, not {weight}")
    ids = list(image_ids)
    if not ids:
        return 0
    foreign = session.exec(
        select(Image.id).where(col(Image.id).in_(ids), Image.plot_type_id != plot_type_id)
    ).all()
    if foreign:
        raise LabelingError(f"image id(s) {sorted(foreign)[:10]} belong to another plot type")
    result = session.execute(update(Image).where(col(Image.id).in_(ids)).values(train_weight=float(weight)))
    session.flush()
    return int(result.rowcount or 0)


def relabel(
    user: User | None, image_id: int, label_id: int, *, session: Session, source: str = "editor"
) -> bool:
    """Change one image's label (Editor, Training report); the old one stays in the history.

    Returns whether anything changed (False when it already had that label).
    """
    image = session.get(Image, image_id)
    if image is None:
        raise NotFoundError(f"unknown image id {image_id}")
    result = apply_labels(user, image.plot_type_id, {image_id: label_id}, session=session, source=source)
    return result.stored == 1


def history(image_id: int, *, session: Session) -> list[HistoryEntry]:
    """Every label the image was given, oldest first, with who gave it."""
    rows = session.exec(
        select(Label.name, User.name, ImageLabel.source, ImageLabel.created_at)
        .join(Label, Label.id == ImageLabel.label_id)
        .join(User, User.id == ImageLabel.user_id, isouter=True)
        .where(ImageLabel.image_id == image_id)
        .order_by(col(ImageLabel.created_at), col(ImageLabel.id))
    ).all()
    return [HistoryEntry(*row) for row in rows]


def leaderboard(
    plot_type_id: int, *, session: Session, since: datetime | None = None, limit: int = 10
) -> list[tuple[str, int]]:
    """Labellers of a plot type ranked by how many labels they gave (optionally since a time)."""
    query = (
        select(User.name, func.count(ImageLabel.id).label("n"))
        .join(ImageLabel, ImageLabel.user_id == User.id)
        .join(Image, Image.id == ImageLabel.image_id)
        .where(Image.plot_type_id == plot_type_id)
    )
    if since is not None:
        query = query.where(ImageLabel.created_at >= since)
    query = query.group_by(User.name).order_by(func.count(ImageLabel.id).desc(), User.name).limit(limit)
    return [(name, int(n)) for name, n in session.exec(query).all()]
