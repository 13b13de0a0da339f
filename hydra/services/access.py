"""Who may administer: the admin role, or the operator who runs the ``hydra`` CLI on the host.

The services' admin-only functions call :func:`require_admin` before they
change anything. The CLI passes :data:`OPERATOR` as the acting user: whoever
runs it holds the database itself, so no role is asked of them; every other
user goes through :func:`hydra.auth.require`.
"""

from __future__ import annotations

from sqlmodel import Session

from hydra.auth import require
from hydra.db.models import User

__all__ = ["OPERATOR", "require_admin"]


class _Operator:
    """Whoever runs the ``hydra`` CLI on the deployment's host (they hold the database itself)."""

    name = "the operator"

    def __repr__(self) -> str:
        return "OPERATOR"


OPERATOR = _Operator()


def require_admin(user: User | None, plot_type_id: int | None = None, *, session: Session) -> None:
    """Raise PermissionDenied unless ``user`` is the operator or may ``admin`` (on the plot type)."""
    if user is OPERATOR:
        return
    require(user, "admin", plot_type_id, session=session)
