import pytest

from hydra.auth import (
    PermissionDenied,
    authenticate,
    can,
    create_user,
    grant,
    hash_password,
    require,
    verify_password,
)
from hydra.db import session_scope
from hydra.db.queries import create_plot_type


def test_password_hashing():
    stored = hash_password("s3cret")
    assert "s3cret" not in stored
    assert verify_password("s3cret", stored)
    assert not verify_password("wrong", stored)
    assert hash_password("s3cret") != stored  # salted


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
