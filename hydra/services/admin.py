"""The Admin page's service layer: configuration without touching the database.

Every function that changes something takes the acting user first and calls
``require(user, "admin", ...)`` before anything else, so only admins can
change plot types, labels, users, permissions and active models, whatever
the page shows.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image as PILImage
from PIL import ImageDraw
from sqlmodel import Session, col, delete, func, or_, select, update

from hydra.auth import ROLES, PermissionDenied, create_user, get_user, grant, role_allows
from hydra.auth import set_password as _store_password
from hydra.data.naming import NamingError, check_label_name, check_plot_type_name
from hydra.db.models import (
    Alarm,
    Image,
    ImageLabel,
    Inference,
    Label,
    LoginFailure,
    Model,
    ModelClassification,
    Permission,
    PlotGroup,
    PlotType,
    RunTime,
    Threshold,
    ThresholdChange,
    TrainingSet,
    TrainingSetImage,
    User,
)
from hydra.db.queries import (
    NotFoundError,
    active_models,
    add_label,
    create_plot_type,
    get_or_create_group,
    labels_of,
)
from hydra.services.access import OPERATOR, require_admin

_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
MASK_COLUMNS = ("x0", "y0", "x1", "y1")

__all__ = [
    "PermissionDenied",
    "AdminError",
    "PermissionRow",
    "PlotTypeRow",
    "UserRights",
    "add_plot_type",
    "add_plot_type_label",
    "add_user",
    "OPERATOR",
    "delete_plot_type",
    "hide_plot_type",
    "merge_plot_types",
    "plot_type_usage",
    "plot_type_rows",
    "rename_plot_type",
    "mask_after_edits",
    "mask_preview",
    "permissions",
    "recent_image_path",
    "revoke",
    "set_label",
    "set_password",
    "set_permission",
    "set_role",
    "update_plot_type",
    "unusable_rights",
    "user_rights",
    "users",
    "validate_mask",
]


class AdminError(ValueError):
    """An admin request with a value that cannot be stored; the message says why."""


@dataclass(frozen=True)
class PermissionRow:
    user: str
    plot_type: str
    can_label: bool
    can_threshold: bool


def _admin(user: User | None, *, session: Session) -> None:
    require_admin(user, session=session)


def validate_mask(mask: Sequence[Sequence[float]]) -> list[list[float]]:
    """Check rectangles ``[x0, y0, x1, y1]`` in fractions of the image (0..1, x0 < x1, y0 < y1)."""
    out = []
    for i, rect in enumerate(mask):
        if len(rect) != 4:
            raise AdminError(f"mask rectangle {i + 1} needs 4 numbers [x0, y0, x1, y1], got {list(rect)}")
        x0, y0, x1, y1 = (float(v) for v in rect)
        if not all(0.0 <= v <= 1.0 for v in (x0, y0, x1, y1)):
            raise AdminError(
                f"mask rectangle {i + 1}: values are fractions of the image, 0 to 1; got {list(rect)}"
            )
        if x0 >= x1 or y0 >= y1:
            raise AdminError(f"mask rectangle {i + 1}: needs x0 < x1 and y0 < y1; got {list(rect)}")
        out.append([x0, y0, x1, y1])
    return out


def mask_after_edits(original: Sequence[Sequence[float]], edits: dict | None) -> list[list]:
    """A mask after a table editor's changes (``edited_rows``, ``deleted_rows``, ``added_rows``).

    The Admin page edits rectangles in a table whose state holds only the
    changes; incomplete new rows are dropped, :func:`validate_mask` judges the rest.
    """
    rows = [list(r) for r in original]
    edits = edits or {}
    for index, changes in edits.get("edited_rows", {}).items():
        for column, value in changes.items():
            rows[int(index)][MASK_COLUMNS.index(column)] = value
    gone = {int(i) for i in edits.get("deleted_rows", [])}
    rows = [r for i, r in enumerate(rows) if i not in gone]
    rows += [[added.get(c) for c in MASK_COLUMNS] for added in edits.get("added_rows", [])]
    return [r for r in rows if all(v is not None for v in r)]


def _plot_type(plot_type: int | str, *, session: Session) -> PlotType:
    """A plot type by id or by name; an unknown name lists the close ones."""
    if isinstance(plot_type, int):
        pt = session.get(PlotType, plot_type)
        if pt is None:
            raise NotFoundError(f"unknown plot type id {plot_type}")
        return pt
    pt = session.exec(select(PlotType).where(PlotType.name == plot_type)).first()
    if pt is None:
        same = session.exec(select(PlotType.name).where(func.lower(PlotType.name) == plot_type.lower())).all()
        hint = f" (did you mean {', '.join(repr(n) for n in same)}?)" if same else ""
        raise NotFoundError(f"unknown plot type {plot_type!r}{hint}")
    return pt


@dataclass(frozen=True)
class PlotTypeUsage:
    """What refers to a plot type (what a merge moves and a delete would lose)."""

    images: int
    labeled: int
    inferences: int
    models: int
    alarms: int

    @property
    def empty(self) -> bool:
        return not (self.images or self.inferences or self.models)

    def __str__(self) -> str:
        return (
            f"{self.images} images ({self.labeled} labeled), {self.inferences} inferences, "
            f"{self.models} models, {self.alarms} alarms"
        )


def _count(session: Session, table, *where) -> int:
    return int(session.exec(select(func.count()).select_from(table).where(*where)).one())


def plot_type_usage(plot_type: int | str, *, session: Session) -> PlotTypeUsage:
    pt = _plot_type(plot_type, session=session)
    return PlotTypeUsage(
        images=_count(session, Image, Image.plot_type_id == pt.id),
        labeled=_count(session, Image, Image.plot_type_id == pt.id, col(Image.label_id).is_not(None)),
        inferences=_count(session, Inference, Inference.plot_type_id == pt.id),
        models=_count(session, Model, Model.plot_type_id == pt.id),
        alarms=_count(session, Alarm, Alarm.plot_type_id == pt.id),
    )


@dataclass(frozen=True)
class PlotTypeRow:
    """A plot type as ``hydra plot-type list`` shows it."""

    name: str
    id: int
    group: str | None
    labels: list[str]
    problem_labels: list[str]
    colors: dict[str, str]
    collect_percent: float
    active_model: int | None


def plot_type_rows(*, session: Session) -> list[PlotTypeRow]:
    """Every plot type by name, with its group, labels (which are problems, their colours) and active model."""
    groups = {g.id: g.name for g in session.exec(select(PlotGroup))}
    active = active_models(session=session)
    rows = []
    for pt in session.exec(select(PlotType).order_by(PlotType.name)).all():
        labels = labels_of(pt.id, session=session)
        rows.append(
            PlotTypeRow(
                name=pt.name,
                id=pt.id,
                group=groups.get(pt.group_id),
                labels=[lb.name for lb in labels],
                problem_labels=[lb.name for lb in labels if lb.is_problem],
                colors={lb.name: lb.color for lb in labels},
                collect_percent=pt.collect_percent,
                active_model=active[pt.id].id if pt.id in active else None,
            )
        )
    return rows


def rename_plot_type(user: User | None, plot_type: int | str, new_name: str, *, session: Session) -> PlotType:
    """Give a plot type another name (admin only); its images, labels, inferences and models stay with it.

    New files must then use the new name; files already stored keep theirs.
    """
    _admin(user, session=session)
    pt = _plot_type(plot_type, session=session)
    new_name = (new_name or "").strip()
    try:
        check_plot_type_name(new_name)
    except NamingError as exc:
        raise AdminError(str(exc)) from None
    if new_name == pt.name:
        return pt
    clash = session.exec(
        select(PlotType.name).where(func.lower(PlotType.name) == new_name.lower(), PlotType.id != pt.id)
    ).first()
    if clash:
        raise AdminError(f"a plot type {clash!r} exists already; merge {pt.name!r} into it instead")
    pt.name = new_name
    session.add(pt)
    session.flush()
    return pt


def hide_plot_type(
    user: User | None, plot_type: int | str, hidden: bool = True, *, session: Session
) -> PlotType:
    """Hide a plot type from the Run page (or show it again); nothing else changes."""
    _admin(user, session=session)
    pt = _plot_type(plot_type, session=session)
    pt.hidden = hidden
    session.add(pt)
    session.flush()
    return pt


def merge_plot_types(
    user: User | None, source: int | str, target: int | str, *, session: Session
) -> PlotTypeUsage:
    """Move everything of ``source`` into ``target`` and delete ``source`` (admin only).

    Images (with their labels and label history), inferences, the recent
    window, alarms, training sets and models move; labels are matched by
    name, and a label the target lacks is added to it. The target's active
    model stays active; the source's models arrive inactive and none of them
    a shadow (unless the target had no active model: then they arrive as they
    were, less a shadow if the target has one). A plot type keeps at most one
    active and one shadow model.
    Permissions on the source carry over. Returns what moved.
    """
    _admin(user, session=session)
    src = _plot_type(source, session=session)
    dst = _plot_type(target, session=session)
    if src.id == dst.id:
        raise AdminError(f"cannot merge {src.name!r} into itself")
    moved = plot_type_usage(src.id, session=session)
    _move_labels(src, dst, session=session)
    target = session.exec(
        select(Model.active, Model.shadow).where(
            Model.plot_type_id == dst.id, or_(col(Model.active).is_(True), col(Model.shadow).is_(True))
        )
    ).all()
    stepping_down: dict[str, bool] = {}
    if any(active for active, _ in target):
        # the source's candidate was weighed against the source's active model, which steps down
        stepping_down = {"active": False, "shadow": False}
    elif any(shadow for _, shadow in target):
        stepping_down = {"shadow": False}
    if stepping_down:
        session.execute(update(Model).where(Model.plot_type_id == src.id).values(**stepping_down))
    for table in (Image, Inference, RunTime, Alarm, TrainingSet, Model):
        session.execute(update(table).where(table.plot_type_id == src.id).values(plot_type_id=dst.id))
    _move_permissions(src, dst, session=session)
    session.flush()
    session.execute(delete(Label).where(Label.plot_type_id == src.id))
    session.delete(src)
    session.flush()
    return moved


def _move_labels(src: PlotType, dst: PlotType, *, session: Session) -> None:
    """Point the labels given to ``src``'s images (now and in their history, and in training sets)
    at ``dst``'s label of the same name, adding to ``dst`` the labels it lacks."""
    dst_labels = {lb.name: lb for lb in labels_of(dst.id, session=session)}
    mapping: dict[int, int] = {}
    for lb in labels_of(src.id, session=session):
        if lb.name not in dst_labels:
            added = add_label(dst.id, lb.name, session=session, is_problem=lb.is_problem)
            added.color = lb.color
            dst_labels[lb.name] = added
        mapping[lb.id] = dst_labels[lb.name].id
    src_images = select(Image.id).where(Image.plot_type_id == src.id)
    for old, new in mapping.items():
        session.execute(
            update(Image).where(Image.plot_type_id == src.id, Image.label_id == old).values(label_id=new)
        )
        session.execute(
            update(ImageLabel).where(ImageLabel.label_id == old, col(ImageLabel.image_id).in_(src_images))
            .values(label_id=new)
        )  # fmt: skip
        session.execute(update(TrainingSetImage).where(TrainingSetImage.label_id == old).values(label_id=new))


def _move_permissions(src: PlotType, dst: PlotType, *, session: Session) -> None:
    """Carry the grants on ``src`` over to ``dst`` (a user with grants on both keeps the union)."""
    for perm in session.exec(select(Permission).where(Permission.plot_type_id == src.id)).all():
        have = session.exec(
            select(Permission).where(Permission.user_id == perm.user_id, Permission.plot_type_id == dst.id)
        ).first()
        if have is None:
            perm.plot_type_id = dst.id
            session.add(perm)
        else:
            have.can_label = have.can_label or perm.can_label
            have.can_threshold = have.can_threshold or perm.can_threshold
            session.add(have)
            session.delete(perm)


def delete_plot_type(
    user: User | None, plot_type: int | str, *, session: Session, purge: bool = False
) -> PlotTypeUsage:
    """Delete a plot type (admin only).

    One with images, inferences or models is refused unless ``purge``, which
    deletes those rows too (the image files stay on disk); merging or hiding
    keeps them instead. Returns what was deleted.
    """
    _admin(user, session=session)
    pt = _plot_type(plot_type, session=session)
    usage = plot_type_usage(pt.id, session=session)
    if not usage.empty and not purge:
        raise AdminError(
            f"{pt.name} has {usage}; merge it into another plot type or hide it, "
            "or delete it with everything it holds (purge)"
        )
    models = select(Model.id).where(Model.plot_type_id == pt.id)
    images = select(Image.id).where(Image.plot_type_id == pt.id)
    sets = select(TrainingSet.id).where(TrainingSet.plot_type_id == pt.id)
    session.execute(delete(RunTime).where(RunTime.plot_type_id == pt.id))
    session.execute(delete(Alarm).where(Alarm.plot_type_id == pt.id))
    session.execute(delete(Inference).where(Inference.plot_type_id == pt.id))
    for table in (ModelClassification, Threshold, ThresholdChange):
        session.execute(delete(table).where(col(table.model_id).in_(models)))
    session.execute(delete(ModelClassification).where(col(ModelClassification.image_id).in_(images)))
    session.execute(update(Model).where(col(Model.parent_id).in_(models)).values(parent_id=None))
    session.execute(delete(Model).where(Model.plot_type_id == pt.id))
    session.execute(delete(TrainingSetImage).where(col(TrainingSetImage.training_set_id).in_(sets)))
    session.execute(delete(TrainingSetImage).where(col(TrainingSetImage.image_id).in_(images)))
    session.execute(delete(TrainingSet).where(TrainingSet.plot_type_id == pt.id))
    session.execute(delete(ImageLabel).where(col(ImageLabel.image_id).in_(images)))
    session.execute(delete(Image).where(Image.plot_type_id == pt.id))
    session.execute(delete(Permission).where(Permission.plot_type_id == pt.id))
    session.execute(delete(Label).where(Label.plot_type_id == pt.id))
    session.delete(pt)
    session.flush()
    return usage


def add_plot_type(
    user: User | None,
    name: str,
    labels: Sequence[str],
    *,
    session: Session,
    problem: Sequence[str] | None = None,
    colors: Sequence[str] | None = None,
    group: str | None = None,
    collect_percent: float = 0.0,
) -> PlotType:
    """Create a plot type with its labels (admin only); ``colors``, if given, one ``#rrggbb`` per label."""
    _admin(user, session=session)
    try:
        check_plot_type_name(name)
    except NamingError as exc:
        raise AdminError(str(exc)) from None
    if not 0 <= collect_percent <= 100:
        raise AdminError(f"collect percent is 0 to 100, not {collect_percent}")
    try:
        return create_plot_type(
            name,
            labels,
            session=session,
            problem=problem,
            colors=colors,
            group=group,
            collect_percent=collect_percent,
        )
    except ValueError as exc:
        raise AdminError(str(exc)) from exc


def update_plot_type(
    user: User | None,
    plot_type_id: int,
    *,
    session: Session,
    collect_percent: float | None = None,
    mask: Sequence[Sequence[float]] | None = None,
    hidden: bool | None = None,
    description: str | None = None,
    group: str | None = None,
) -> PlotType:
    """Change a plot type's settings; arguments left None stay as they are."""
    _admin(user, session=session)
    pt = _plot_type(plot_type_id, session=session)
    if collect_percent is not None:
        if not 0 <= collect_percent <= 100:
            raise AdminError(f"collect percent is 0 to 100, not {collect_percent}")
        pt.collect_percent = float(collect_percent)
    if mask is not None:
        pt.mask = validate_mask(mask)
    if hidden is not None:
        pt.hidden = hidden
    if description is not None:
        pt.description = description[:512]
    if group is not None:
        pt.group_id = get_or_create_group(group, session=session).id if group else None
    session.add(pt)
    session.flush()
    return pt


def set_label(
    user: User | None,
    label_id: int,
    *,
    session: Session,
    color: str | None = None,
    is_problem: bool | None = None,
    ordinal: int | None = None,
) -> Label:
    """Change a label's colour (``#rrggbb``), whether it counts as a problem, or its place in the palette."""
    _admin(user, session=session)
    label = session.get(Label, label_id)
    if label is None:
        raise NotFoundError(f"unknown label id {label_id}")
    if color is not None:
        if not _COLOR.match(color):
            raise AdminError(f"colour {color!r} is not of the form #rrggbb")
        label.color = color.lower()
    if is_problem is not None:
        label.is_problem = is_problem
    if ordinal is not None:
        label.ordinal = ordinal
    session.add(label)
    session.flush()
    return label


def add_plot_type_label(user: User | None, plot_type_id: int, name: str, *, session: Session) -> Label:
    """Add a label to a plot type's palette (admin only)."""
    _admin(user, session=session)
    _plot_type(plot_type_id, session=session)
    try:
        check_label_name(name)
    except NamingError as exc:
        raise AdminError(str(exc)) from None
    if any(lb.name == name for lb in labels_of(plot_type_id, session=session)):
        raise AdminError(f"the plot type already has a label {name!r}")
    return add_label(plot_type_id, name, session=session)


def users(*, session: Session) -> list[tuple[str, str]]:
    """Every user with their role, by name."""
    return [(u.name, u.role) for u in session.exec(select(User).order_by(User.name)).all()]


@dataclass(frozen=True)
class UserRights:
    """A user, their role and the plot types they hold each grant on (``hydra user list``)."""

    name: str
    role: str
    label: list[str]
    thresholds: list[str]


def user_rights(*, session: Session) -> list[UserRights]:
    """Every user by name, with their role and the plot types they may label or set thresholds on."""
    names = {pt.id: pt.name for pt in session.exec(select(PlotType))}
    rows = []
    for user in session.exec(select(User).order_by(User.name)).all():
        perms = session.exec(select(Permission).where(Permission.user_id == user.id)).all()
        rows.append(
            UserRights(
                name=user.name,
                role=user.role,
                label=sorted(names[p.plot_type_id] for p in perms if p.can_label),
                thresholds=sorted(names[p.plot_type_id] for p in perms if p.can_threshold),
            )
        )
    return rows


def add_user(user: User | None, name: str, password: str, role: str, *, session: Session) -> User:
    _admin(user, session=session)
    try:
        return create_user(name, password, session=session, role=role)
    except ValueError as exc:
        raise AdminError(str(exc)) from exc


def set_role(user: User | None, name: str, role: str, *, session: Session) -> User:
    """Change a user's role; the last admin cannot stop being one."""
    _admin(user, session=session)
    if role not in ROLES:
        raise AdminError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
    target = get_user(name, session=session)
    if target.role == "admin" and role != "admin":
        admins = session.exec(select(User.id).where(User.role == "admin")).all()
        if len(admins) <= 1:
            raise AdminError(f"{name} is the last admin; make someone else admin first")
    target.role = role
    session.add(target)
    session.flush()
    return target


def set_password(user: User | None, name: str, password: str, *, session: Session) -> User:
    """Set a user's password (admin only); it also lifts a login lockout of that name."""
    _admin(user, session=session)
    target = _store_password(name, password, session=session)
    session.execute(delete(LoginFailure).where(LoginFailure.user_name == name))
    return target


def permissions(*, session: Session) -> list[PermissionRow]:
    rows = session.exec(
        select(User.name, PlotType.name, Permission.can_label, Permission.can_threshold)
        .join(User, User.id == Permission.user_id)
        .join(PlotType, PlotType.id == Permission.plot_type_id)
        .order_by(User.name, PlotType.name)
    ).all()
    return [PermissionRow(*r) for r in rows]


def set_permission(
    user: User | None, name: str, plot_type: str, *, session: Session, label: bool, thresholds: bool
) -> Permission:
    _admin(user, session=session)
    return grant(name, plot_type, session=session, label=label, thresholds=thresholds)


def unusable_rights(name: str, *, session: Session, label: bool, thresholds: bool) -> tuple[str, list[str]]:
    """The user's role, and which of the wanted rights (``label``, ``thresholds``) that role cannot use."""
    role = get_user(name, session=session).role
    wanted = [what for what, on in (("label", label), ("thresholds", thresholds)) if on]
    return role, [what for what in wanted if not role_allows(role, what)]


def revoke(user: User | None, name: str, plot_type: str, *, session: Session) -> bool:
    """Remove a user's rights on a plot type; False if there were none."""
    _admin(user, session=session)
    target = get_user(name, session=session)
    perm = session.exec(
        select(Permission)
        .join(PlotType, PlotType.id == Permission.plot_type_id)
        .where(Permission.user_id == target.id, PlotType.name == plot_type)
    ).first()
    if perm is None:
        return False
    session.delete(perm)
    session.flush()
    return True


def recent_image_path(plot_type_id: int, *, session: Session) -> str | None:
    """The newest kept image of a plot type whose file still exists (for the mask preview)."""
    rows = session.exec(
        select(Image.path)
        .where(Image.plot_type_id == plot_type_id)
        .order_by(col(Image.created_at).desc())
        .limit(20)
    ).all()
    return next((p for p in rows if Path(p).is_file()), None)


def mask_preview(image: PILImage.Image, mask: Sequence[Sequence[float]]) -> PILImage.Image:
    """The image with the mask's rectangles drawn on it (hatched red outlines)."""
    rects = validate_mask(mask)
    out = image.convert("RGB")
    overlay = PILImage.new("RGBA", out.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    w, h = out.size
    for x0, y0, x1, y1 in rects:
        box = (x0 * w, y0 * h, x1 * w - 1, y1 * h - 1)
        draw.rectangle(box, fill=(214, 39, 40, 90), outline=(214, 39, 40, 255), width=2)
    return PILImage.alpha_composite(out.convert("RGBA"), overlay).convert("RGB")
