"""Users, password hashing and permissions, enforced in the service layer.

Passwords are stored as ``scrypt$n$r$p$salt$hash`` (stdlib ``hashlib.scrypt``).
Every action that changes labels or thresholds calls :func:`require` first,
so a tampered page cannot do what its user may not.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from sqlmodel import Session, select

from hydra.db.models import Permission, User
from hydra.db.queries import NotFoundError, get_plot_type

ROLES = ("admin", "expert", "labeler", "viewer")
_N, _R, _P = 2**14, 8, 1


class PermissionDenied(PermissionError):
    """The user may not do this; the message says what is missing."""


def hash_password(password: str) -> str:
    if not password:
        raise ValueError("the password must not be empty")
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${_N}${_R}${_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    expected = base64.b64decode(digest)
    got = hashlib.scrypt(
        password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=len(expected)
    )
    return hmac.compare_digest(got, expected)


def get_user(name: str, *, session: Session) -> User:
    user = session.exec(select(User).where(User.name == name)).first()
    if user is None:
        raise NotFoundError(f"unknown user {name!r}")
    return user


def create_user(name: str, password: str, *, session: Session, role: str = "labeler") -> User:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
    if not name or len(name) > 64:
        raise ValueError("a user name must have 1 to 64 characters")
    if session.exec(select(User.id).where(User.name == name)).first() is not None:
        raise ValueError(f"user {name!r} already exists")
    user = User(name=name, password_hash=hash_password(password), role=role)
    session.add(user)
    session.flush()
    return user


def authenticate(name: str, password: str, *, session: Session) -> User | None:
    """The user if the name and password match, else None."""
    user = session.exec(select(User).where(User.name == name)).first()
    if user is None or not verify_password(password, user.password_hash):
        return None
    return user


def grant(
    user_name: str,
    plot_type: str,
    *,
    session: Session,
    label: bool = True,
    thresholds: bool = False,
) -> Permission:
    """Give (or change) a user's rights on one plot type."""
    user = get_user(user_name, session=session)
    pt = get_plot_type(plot_type, session=session)
    perm = session.exec(
        select(Permission).where(Permission.user_id == user.id, Permission.plot_type_id == pt.id)
    ).first() or Permission(user_id=user.id, plot_type_id=pt.id)
    perm.can_label = label
    perm.can_threshold = thresholds
    session.add(perm)
    session.flush()
    return perm


def can(user: User | None, action: str, plot_type_id: int | None, *, session: Session) -> bool:
    """Whether ``user`` may do ``action`` (label, thresholds, admin) on a plot type."""
    if user is None:
        return False
    if user.role == "admin":
        return True
    if action == "admin" or plot_type_id is None:
        return False
    perm = session.exec(
        select(Permission).where(Permission.user_id == user.id, Permission.plot_type_id == plot_type_id)
    ).first()
    if perm is None:
        return False
    return {"label": perm.can_label, "thresholds": perm.can_threshold}.get(action, False)


def require(user: User | None, action: str, plot_type_id: int | None, *, session: Session) -> None:
    """Raise PermissionDenied unless ``user`` may do ``action``."""
    if not can(user, action, plot_type_id, session=session):
        who = user.name if user else "an anonymous user"
        where = f" on plot type id {plot_type_id}" if plot_type_id is not None else ""
        raise PermissionDenied(f"{who} may not {action}{where}")
