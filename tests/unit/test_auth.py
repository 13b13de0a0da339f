"""Password hashing: parameters, hostile hashes, unknown users costing the same work (SQLite).

Permissions and rate limits on both database backends: tests/integration/db/test_auth.py.
"""

import time

import pytest

from hydra import auth
from hydra.auth import (
    authenticate,
    create_user,
    hash_password,
    verify_password,
)
from hydra.db import session_scope


def test_password_hashing():
    stored = hash_password("s3cret")
    assert "s3cret" not in stored
    assert verify_password("s3cret", stored)
    assert not verify_password("wrong", stored)
    assert hash_password("s3cret") != stored  # salted


def test_recommended_scrypt_parameters():
    assert auth.ScryptParams(n=2**17, r=8, p=1) == auth.RECOMMENDED  # OWASP: N=2^17, r=8, p=1
    stored = hash_password("s3cret", auth.RECOMMENDED)
    assert stored.startswith("scrypt$131072$8$1$")
    assert verify_password("s3cret", stored) and not verify_password("s3creT", stored)
    assert not auth.needs_rehash(stored) or auth.SCRYPT != auth.RECOMMENDED


@pytest.mark.parametrize(
    "stored",
    [
        "scrypt$1073741824$8$1$c2FsdA==$ZGlnZXN0",  # would need 1 TiB: refused, not computed
        "scrypt$1048576$32$16$c2FsdA==$ZGlnZXN0",  # 64 GiB
        "scrypt$1000$8$1$c2FsdA==$ZGlnZXN0",  # n not a power of two
        "scrypt$16384$8$1$not base64!$ZGlnZXN0",
        "bcrypt$16384$8$1$c2FsdA==$ZGlnZXN0",
        "",
    ],
)
def test_malformed_or_hostile_hashes_never_verify(stored):
    assert verify_password("pw", stored) is False


def test_unknown_users_cost_the_same_work_as_wrong_passwords(sqlite_engine, monkeypatch):
    calls = []
    real = auth.hashlib.scrypt

    def spy(password, **kw):
        calls.append((kw["n"], kw["r"], kw["p"], len(kw["salt"])))
        return real(password, **kw)

    with session_scope(sqlite_engine) as s:
        create_user("alice", "pw", session=s)
    auth._dummy_hash(auth.SCRYPT)  # made once per process, not per request
    monkeypatch.setattr(auth.hashlib, "scrypt", spy)
    with session_scope(sqlite_engine) as s:
        assert authenticate("alice", "wrong", session=s) is None
        wrong = list(calls)
        calls.clear()
        assert authenticate("mallory", "wrong", session=s) is None
        unknown = list(calls)
    assert wrong == unknown == [(auth.SCRYPT.n, auth.SCRYPT.r, auth.SCRYPT.p, 16)]


def test_unknown_user_is_not_refused_faster(sqlite_engine, monkeypatch):
    """The symptom as seen: 0.4 ms for an unknown name, 129 ms for a wrong password."""
    monkeypatch.setattr(auth, "SCRYPT", auth.ScryptParams(n=2**14, r=8, p=1))
    monkeypatch.setattr(auth, "MAX_FAILURES_PER_USER", 100)
    with session_scope(sqlite_engine) as s:
        create_user("alice", "pw", session=s)
    auth._dummy_hash(auth.SCRYPT)

    def median(name: str) -> float:
        times = []
        for _ in range(5):
            with session_scope(sqlite_engine) as s:
                t0 = time.perf_counter()
                authenticate(name, "wrong", session=s)
                times.append(time.perf_counter() - t0)
        return sorted(times)[2]

    wrong, unknown = median("alice"), median("nobody")
    assert 1 / 3 < unknown / wrong < 3, (unknown, wrong)  # it was 1/300 before
