"""The file-naming convention that carries plot type, run and chunk.

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


class NamingError(ValueError):
    """A file name does not follow the deployment's naming convention."""


@dataclass(frozen=True)
class ParsedName:
    plot_type: str
    run: int
    chunk: int | None = None


def parse_name(name: str | PurePath, pattern: re.Pattern[str] | str | None = None) -> ParsedName:
    """Parse a file name (a path's last part) into plot type, run and chunk.

    Raises:
        NamingError: the name does not match; the message shows the pattern.
    """
    regex = _DEFAULT if pattern is None else re.compile(pattern) if isinstance(pattern, str) else pattern
    base = PurePath(name).name
    match = regex.match(base)
    if match is None:
        raise NamingError(
            f"file name {base!r} does not follow the naming convention {regex.pattern!r} "
            "(expected e.g. 'fcal_occupancy-041230_0003.png': PLOTTYPE-RUN[_CHUNK].png)"
        )
    groups = match.groupdict()
    chunk = groups.get("chunk")
    return ParsedName(
        groups["plot_type"], int(groups["run"]), int(chunk) if chunk not in (None, "") else None
    )


def make_name(plot_type: str, run: int, chunk: int | None = None, ext: str = "png") -> str:
    """The file name the default convention gives to a plot."""
    tail = f"_{chunk:04d}" if chunk is not None else ""
    return f"{plot_type}-{run:06d}{tail}.{ext}"
