"""Users and logins on SQLite and MariaDB: permissions, hashes upgraded on login, rate limits.

Password hashing and timing on SQLite alone: tests/unit/test_auth.py.
"""

from datetime import timedelta

import pytest
from sqlmodel import select

from hydra import auth
from hydra.auth import (
    LoginThrottled,
    PermissionDenied,
    authenticate,
    can,
    create_user,
    get_user,
    grant,
    hash_password,
    require,
)
from hydra.db import session_scope
from hydra.db.models import LoginFailure, utcnow
from hydra.db.queries import create_plot_type


def test_permissions(engine):
    with session_scope(engine) as s:
        pt = create_plot_type("bcal_timing", ["Good", "Bad"], session=s)
        other = create_plot_type("tof_energy", ["Good", "Bad"], session=s)
        alice = create_user("alice", "pw", session=s)
        boss = create_user("boss", "pw", session=s, role="admin")
        grant("alice", "bcal_timing", session=s, label=True, thresholds=False)
        assert authenticate("alice", "pw", session=s).id == alice.id
        assert authenticate("alice", "nope", session=s) is None
        assert can(alice, "label", pt.id, session=s)
        assert not can(alice, "thresholds", pt.id, session=s)
        assert not can(alice, "label", other.id, session=s)
        assert can(boss, "thresholds", other.id, session=s)
        with pytest.raises(PermissionDenied, match="alice may not thresholds"):
            require(alice, "thresholds", pt.id, session=s)
        with pytest.raises(PermissionDenied, match="anonymous"):
            require(None, "label", pt.id, session=s)
        with pytest.raises(ValueError, match="already exists"):
            create_user("alice", "x", session=s)
        with pytest.raises(ValueError, match="unknown role"):
            create_user("carol", "x", session=s, role="god")


def test_old_hashes_upgrade_on_the_next_successful_login(engine):
    old = auth.ScryptParams(n=2**12, r=8, p=1)
    with session_scope(engine) as s:
        user = create_user("alice", "pw", session=s)
        user.password_hash = hash_password("pw", old)
    with session_scope(engine) as s:
        assert authenticate("alice", "wrong", session=s) is None
        assert get_user("alice", session=s).password_hash.startswith("scrypt$4096$")  # not on a failure
        assert authenticate("alice", "pw", session=s) is not None
    with session_scope(engine) as s:
        stored = get_user("alice", session=s).password_hash
        p = auth.SCRYPT
        assert stored.startswith(f"scrypt${p.n}${p.r}${p.p}$") and not auth.needs_rehash(stored)
        assert authenticate("alice", "pw", session=s) is not None


def _fail(engine, name: str, address: str | None = None, times: int = 1) -> None:
    for _ in range(times):
        with session_scope(engine) as s:
            assert authenticate(name, "wrong", session=s, address=address) is None


def test_rate_limit_per_user_name(engine):
    with session_scope(engine) as s:
        create_user("alice", "pw", session=s)
    _fail(engine, "alice", "10.0.0.1", times=auth.MAX_FAILURES_PER_USER - 1)
    with session_scope(engine) as s:  # one try left, and a success clears the count
        assert authenticate("alice", "pw", session=s, address="10.0.0.1") is not None
    _fail(engine, "alice", "10.0.0.1", times=3)
    _fail(engine, "alice", "10.0.0.2", times=2)  # from anywhere: the name is what is counted
    with (
        pytest.raises(
            LoginThrottled, match="too many failed logins for user 'alice': try again in 15 minutes"
        ),
        session_scope(engine) as s,
    ):
        authenticate("alice", "pw", session=s, address="10.0.0.3")  # even the right password
    # unknown names are throttled the same way, so a lockout does not reveal who exists
    _fail(engine, "nobody", times=auth.MAX_FAILURES_PER_USER)
    with pytest.raises(LoginThrottled, match="user 'nobody'"), session_scope(engine) as s:
        authenticate("nobody", "pw", session=s)
    with session_scope(engine) as s:  # other users are not affected
        create_user("bob", "pw", session=s)
        assert authenticate("bob", "pw", session=s, address="10.0.0.3") is not None


def test_rate_limit_per_address_and_window(engine):
    with session_scope(engine) as s:
        create_user("alice", "pw", session=s)
    for i in range(auth.MAX_FAILURES_PER_ADDRESS):
        _fail(engine, f"guess{i}", "192.0.2.7")
    with pytest.raises(LoginThrottled, match="address 192.0.2.7"), session_scope(engine) as s:
        authenticate("alice", "pw", session=s, address="192.0.2.7")
    with session_scope(engine) as s:
        assert authenticate("alice", "pw", session=s, address="192.0.2.8") is not None
    # the window slides: failures older than LOGIN_WINDOW no longer count
    with session_scope(engine) as s:
        old = utcnow() - auth.LOGIN_WINDOW - timedelta(seconds=5)
        for row in s.exec(select(LoginFailure)).all():
            row.created_at = old
            s.add(row)
    with session_scope(engine) as s:
        assert authenticate("alice", "pw", session=s, address="192.0.2.7") is not None
    # and rows older than a day are pruned by the next failure
    with session_scope(engine) as s:
        for row in s.exec(select(LoginFailure)).all():
            row.created_at = utcnow() - timedelta(days=2)
            s.add(row)
    _fail(engine, "alice", "192.0.2.9")
    with session_scope(engine) as s:
        assert [(r.user_name, r.address) for r in s.exec(select(LoginFailure)).all()] == [
            ("alice", "192.0.2.9")
        ]
