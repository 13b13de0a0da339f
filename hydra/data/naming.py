"""The file-naming convention that carries plot type, run and chunk.

Plot-type names, label names and run numbers are checked here, once, for
everything that takes them: file names (ingest and the Feeder), the CLI and the admin
service. A plot-type name becomes part of file and folder names, so it is
letters, digits and ``_`` only; run and chunk numbers fit the database's
integer columns.

Example:
    >>> from hydra.data.naming import parse_name
    >>> parse_name("fcal_occupancy-041230_0003.png")
    ParsedName(plot_type='fcal_occupancy', run=41230, chunk=3)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePath

from hydra.config import DEFAULT_PATTERN

_DEFAULT = re.compile(DEFAULT_PATTERN)
PLOT_TYPE_RULE = re.compile(r"[A-Za-z0-9_]{1,128}")
LABEL_RULE = re.compile(r"[A-Za-z0-9_.+-][A-Za-z0-9_ .+-]{0,63}")
# The labels a plot type gets when it is created without any (ingest, the Keeper's onboarding).
DEFAULT_LABELS: tuple[str, ...] = ("Good", "Bad", "NoData")
MAX_RUN = 2**31 - 1  # the run and chunk columns are 32-bit integers on MariaDB
MAX_CHUNK = 2**31 - 1


class NamingError(ValueError):
    """A file name or plot-type name does not follow the deployment's rules."""


@dataclass(frozen=True)
class ParsedName:
    plot_type: str
    run: int
    chunk: int | None = None


def check_plot_type_name(name: object) -> str:
    """Return ``name`` if it is a valid plot-type name, else raise NamingError.

    Example:
        >>> check_plot_type_name("fcal_occupancy")
        'fcal_occupancy'
    """
    if not isinstance(name, str) or not PLOT_TYPE_RULE.fullmatch(name):
        shown = name if isinstance(name, str) and len(name) <= 80 else f"{str(name)[:80]}..."
        raise NamingError(
            f"plot type name {shown!r} is not valid: use 1 to 128 letters, digits and _ "
            "(it is part of file names, e.g. fcal_occupancy)"
        )
    return name


def check_label_name(name: object) -> str:
    """Return ``name`` if it is a valid label name (Good, Bad, NoData, Hot channel, ...), else raise NamingError."""
    if not isinstance(name, str) or not LABEL_RULE.fullmatch(name) or name != name.strip():
        shown = name if isinstance(name, str) and len(name) <= 80 else f"{str(name)[:80]}..."
        raise NamingError(
            f"label name {shown!r} is not valid: use 1 to 64 letters, digits, spaces and _ . + - "
            "(not at the start or end a space)"
        )
    return name


def _number(text: str | None, what: str, limit: int, base: str) -> int | None:
    if text in (None, ""):
        return None
    if not (text.isascii() and text.isdigit()):
        raise NamingError(f"file name {base!r}: {what} {text[:30]!r} is not a number from 0 to {limit}")
    digits = text.lstrip("0") or "0"
    if len(digits) > len(str(limit)) or int(digits) > limit:
        shown = digits if len(digits) <= 30 else f"{digits[:30]}... ({len(digits)} digits)"
        raise NamingError(f"file name {base[:120]!r}: {what} {shown} is out of range (0 to {limit})")
    return int(digits)


def parse_name(name: str | PurePath, pattern: re.Pattern[str] | str | None = None) -> ParsedName:
    """Parse a file name (a path's last part) into plot type, run and chunk.

    Raises:
        NamingError: the name does not match (the message shows the pattern),
            its plot type is not a valid name, or its run or chunk is out of range.
    """
    regex = _DEFAULT if pattern is None else re.compile(pattern) if isinstance(pattern, str) else pattern
    # a plain base name is its own last part (the common case, for every file served: no PurePath)
    plain = isinstance(name, str) and "/" not in name and name not in ("", ".")
    base = name if plain else PurePath(name).name
    match = regex.match(base)
    if match is None:
        raise NamingError(
            f"file name {base!r} does not follow the naming convention {regex.pattern!r} "
            "(expected e.g. 'fcal_occupancy-041230_0003.png': PLOTTYPE-RUN[_CHUNK].png)"
        )
    groups = match.groupdict()
    try:
        plot_type = check_plot_type_name(groups["plot_type"])
    except NamingError as exc:
        raise NamingError(f"file name {base!r}: {exc}") from None
    run = _number(groups["run"], "run number", MAX_RUN, base)
    if run is None:
        raise NamingError(f"file name {base!r}: no run number")
    return ParsedName(plot_type, run, _number(groups.get("chunk"), "chunk number", MAX_CHUNK, base))


def make_name(plot_type: str, run: int, chunk: int | None = None, ext: str = "png") -> str:
    """The file name the default convention gives to a plot."""
    tail = f"_{chunk:04d}" if chunk is not None else ""
    return f"{plot_type}-{run:06d}{tail}.{ext}"
