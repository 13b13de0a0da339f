"""Helpers shared by the read services of the shift-crew pages (run, log, status, trends)."""

from __future__ import annotations

from datetime import datetime, timezone


def aware(dt: datetime | None) -> datetime | None:
    """The same instant as an aware UTC datetime (SQLite hands back naive ones)."""
    if dt is None or dt.tzinfo is not None:
        return dt
    return dt.replace(tzinfo=timezone.utc)
