"""Users, logins, roles and permissions, enforced in the service layer.

Passwords are stored as ``scrypt$n$r$p$salt$hash`` (stdlib ``hashlib.scrypt``)
with the parameters OWASP recommends (N=2**17, r=8, p=1); a hash made with
weaker ones is replaced on the user's next successful login.

:func:`authenticate` takes as long for an unknown user as for a wrong
password (it verifies against a dummy hash), and refuses to check at all
after too many recent failures for the user name or the client address, so
names cannot be enumerated and passwords cannot be guessed at speed.

A role says what a user may ever do; a grant (``Permission``) says on which
plot types. Every service function that changes something calls
:func:`require` first, so a tampered page cannot do what its user may not:

========  =======================================================
viewer    reads (the shift-crew pages); never changes anything
labeler   labels images of the plot types granted ``label``
expert    as labeler, and changes thresholds where granted
          ``thresholds``, and acknowledges the alarms of the plot
          types they hold any grant on
admin     everything, everywhere (plot types, users, models)
========  =======================================================

Example:
    >>> with session_scope(engine) as s:  # doctest: +SKIP
    ...     user = authenticate("alice", password, session=s, address="10.0.0.7")
    ...     require(user, "thresholds", plot_type_id, session=s)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache

from sqlmodel import Session, col, delete, func, select

from hydra.db.models import LoginFailure, Permission, PlotType, User, utcnow
from hydra.db.queries import NotFoundError, get_plot_type

ROLES = ("admin", "expert", "labeler", "viewer")
ACTIONS = ("label", "thresholds", "acknowledge", "admin")
ROLE_ACTIONS: dict[str, frozenset[str]] = {
    "admin": frozenset(ACTIONS),
    "expert": frozenset({"label", "thresholds", "acknowledge"}),
    "labeler": frozenset({"label"}),
    "viewer": frozenset(),
}
_VERBS = {
    "label": "label",
    "thresholds": "change thresholds",
    "acknowledge": "acknowledge alarms",
    "admin": "administer",
}


@dataclass(frozen=True)
class ScryptParams:
    n: int
    r: int
    p: int

    @property
    def maxmem(self) -> int:
        return 128 * self.n * self.r * self.p + (1 << 20)


RECOMMENDED = ScryptParams(n=2**17, r=8, p=1)  # OWASP password storage cheat sheet, 128 MiB
SCRYPT = RECOMMENDED  # what new hashes use (tests lower it to keep user creation fast)
_LIMITS = ScryptParams(n=2**20, r=32, p=16)  # a stored hash asking for more is refused, not computed
_MAX_MEMORY = 2**30  # nor one that needs more than 1 GiB

LOGIN_WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_USER = 5  # per user name in LOGIN_WINDOW, from any address
MAX_FAILURES_PER_ADDRESS = 20  # per client address in LOGIN_WINDOW, over all names
KEEP_FAILURES = timedelta(days=1)


class PermissionDenied(PermissionError):
    """The user may not do this; the message says what is missing."""


class LoginThrottled(PermissionDenied):
    """Too many failed logins for this user name or address; ``retry_after`` says for how long."""

    def __init__(self, message: str, retry_after: timedelta) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def hash_password(password: str, params: ScryptParams | None = None) -> str:
    """A salted scrypt hash of ``password`` (today's parameters unless given)."""
    if not password:
        raise ValueError("the password must not be empty")
    params = params or SCRYPT
    salt = os.urandom(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=params.n, r=params.r, p=params.p, maxmem=params.maxmem, dklen=32
    )
    b64 = base64.b64encode
    return f"scrypt${params.n}${params.r}${params.p}${b64(salt).decode()}${b64(digest).decode()}"


def _parse(stored: str) -> tuple[ScryptParams, bytes, bytes] | None:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        params = ScryptParams(int(n), int(r), int(p))
        raw_salt, expected = base64.b64decode(salt, validate=True), base64.b64decode(digest, validate=True)
    except ValueError:
        return None
    within = 2 <= params.n <= _LIMITS.n and 1 <= params.r <= _LIMITS.r and 1 <= params.p <= _LIMITS.p
    too_big = 128 * params.n * params.r * params.p > _MAX_MEMORY
    if scheme != "scrypt" or not within or too_big or params.n & (params.n - 1) or not expected:
        return None
    return params, raw_salt, expected


def verify_password(password: str, stored: str) -> bool:
    parsed = _parse(stored)
    if parsed is None:
        return False
    params, salt, expected = parsed
    got = hashlib.scrypt(
        password.encode(),
        salt=salt,
        n=params.n,
        r=params.r,
        p=params.p,
        maxmem=params.maxmem,
        dklen=len(expected),
    )
    return hmac.compare_digest(got, expected)


def needs_rehash(stored: str) -> bool:
    """Whether a stored hash was made with other parameters than today's."""
    parsed = _parse(stored)
    return parsed is None or parsed[0] != SCRYPT


@lru_cache(maxsize=4)
def _dummy_hash(params: ScryptParams) -> str:
    return hash_password(base64.b64encode(os.urandom(12)).decode(), params)


def get_user(name: str, *, session: Session) -> User:
    user = session.exec(select(User).where(User.name == name)).first()
    if user is None:
        raise NotFoundError(f"unknown user {name!r}")
    return user


def check_role(role: str) -> str:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
    return role


def create_user(name: str, password: str, *, session: Session, role: str = "labeler") -> User:
    check_role(role)
    if not name or len(name) > 64 or name != name.strip() or not name.isprintable():
        raise ValueError(
            "a user name must have 1 to 64 printable characters, without leading or trailing spaces"
        )
    if session.exec(select(User.id).where(User.name == name)).first() is not None:
        raise ValueError(f"user {name!r} already exists")
    user = User(name=name, password_hash=hash_password(password), role=role)
    session.add(user)
    session.flush()
    return user


def set_password(name: str, password: str, *, session: Session) -> User:
    """Replace a user's password (hashed with today's parameters)."""
    user = get_user(name, session=session)
    user.password_hash = hash_password(password)
    session.add(user)
    session.flush()
    return user


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def _check_throttle(name: str, address: str, now: datetime, *, session: Session) -> None:
    since = now - LOGIN_WINDOW
    checks = [(LoginFailure.user_name, name, MAX_FAILURES_PER_USER, f"user {name!r}")]
    if address:
        checks.append((LoginFailure.address, address, MAX_FAILURES_PER_ADDRESS, f"address {address}"))
    for column, value, limit, who in checks:
        count, oldest = session.exec(
            select(func.count(), func.min(LoginFailure.created_at)).where(
                column == value, col(LoginFailure.created_at) >= since
            )
        ).one()
        if count >= limit:
            # the window slides: one more try is allowed when the oldest counted failure leaves it
            wait = max(timedelta(seconds=1), _aware(oldest) + LOGIN_WINDOW - now)
            minutes = max(1, round(wait.total_seconds() / 60))
            raise LoginThrottled(
                f"too many failed logins for {who}: try again in {minutes} minute{'s' if minutes > 1 else ''}",
                wait,
            )


def authenticate(name: str, password: str, *, session: Session, address: str | None = None) -> User | None:
    """The user if the name and password match, else None.

    Unknown names cost as much time as wrong passwords. Each refusal is
    recorded; after :data:`MAX_FAILURES_PER_USER` failures for a name, or
    :data:`MAX_FAILURES_PER_ADDRESS` from an address, within
    :data:`LOGIN_WINDOW`, the password is not even checked. A success clears
    the name's failures and upgrades an old hash.

    Raises:
        LoginThrottled: too many recent failures; the message says when to retry.
    """
    key, address = name[:64], (address or "")[:64]  # as the failure table stores them
    now = utcnow()
    _check_throttle(key, address, now, session=session)
    user = session.exec(select(User).where(User.name == name)).first() if len(name) <= 64 else None
    if user is None:
        verify_password(password, _dummy_hash(SCRYPT))  # the same work as for a real user
        ok = False
    else:
        ok = verify_password(password, user.password_hash)
    if not ok:
        session.execute(delete(LoginFailure).where(col(LoginFailure.created_at) < now - KEEP_FAILURES))
        session.add(LoginFailure(user_name=key, address=address, created_at=now))
        session.flush()
        return None
    session.execute(delete(LoginFailure).where(LoginFailure.user_name == key))
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
        session.add(user)
    session.flush()
    return user


def grant(
    user_name: str,
    plot_type: str,
    *,
    session: Session,
    label: bool = True,
    thresholds: bool = False,
) -> Permission:
    """Give (or change) a user's rights on one plot type; the role still caps what they allow."""
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


def role_allows(role: str, action: str) -> bool:
    """Whether a role may ever do ``action`` (on some plot type, given a grant)."""
    return action in ROLE_ACTIONS.get(role, frozenset())


def refusal(user: User | None, action: str, plot_type_id: int | None, *, session: Session) -> str | None:
    """None if ``user`` may do ``action`` on the plot type, else the reason why not (for messages)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; expected one of {', '.join(ACTIONS)}")
    if user is None:
        return "log in first"
    if user.role == "admin":
        return None
    if not role_allows(user.role, action):
        able = [r for r in ROLES if role_allows(r, action)]
        return f"the {user.role} role cannot {_VERBS[action]} (roles that can: {', '.join(able)})"
    if plot_type_id is None:
        return f"{_VERBS[action]} needs a plot type"
    perm = session.exec(
        select(Permission).where(Permission.user_id == user.id, Permission.plot_type_id == plot_type_id)
    ).first()
    allowed = (
        perm is not None
        and {
            "label": perm.can_label,
            "thresholds": perm.can_threshold,
            "acknowledge": perm.can_label or perm.can_threshold,
        }[action]
    )
    if allowed:
        return None
    kind = "" if action == "acknowledge" else f"{action} "
    return f"no {kind}grant on this plot type; ask an admin"


def can(user: User | None, action: str, plot_type_id: int | None, *, session: Session) -> bool:
    """Whether ``user`` may do ``action`` (label, thresholds, acknowledge, admin) on a plot type."""
    return refusal(user, action, plot_type_id, session=session) is None


def require(user: User | None, action: str, plot_type_id: int | None, *, session: Session) -> None:
    """Raise PermissionDenied unless ``user`` may do ``action``; the message says what is missing."""
    reason = refusal(user, action, plot_type_id, session=session)
    if reason is None:
        return
    who = user.name if user else "an anonymous user"
    where = ""
    if plot_type_id is not None:
        pt = session.get(PlotType, plot_type_id)
        where = f" on plot type {pt.name if pt else plot_type_id}"
    raise PermissionDenied(f"{who} may not {action}{where}: {reason}")
