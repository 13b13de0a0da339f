"""The head registry: heads are found through the ``hydra.heads`` entry points.

Installing a distribution that declares::

    [project.entry-points."hydra.heads"]
    tinycnn = "my_package:TinyCNNHead"

makes ``tinycnn`` available everywhere (``hydra train --head tinycnn``), with
no import needed first. Classes load lazily, on first use; a plugin that
fails to import is reported when asked for and never hides the others.

Example:
    >>> from hydra.heads import list_heads, load_head
    >>> list_heads()
    ['classifier', 'null', 'siamese']
    >>> load_head("classifier").__name__
    'ClassifierHead'
"""

from __future__ import annotations

import fnmatch
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hydra.heads.base import Head

GROUP = "hydra.heads"

_loaded: dict[tuple[str, str], type] = {}


class UnknownHeadError(KeyError):
    """No head is registered under the asked name; the message lists the known ones."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = known
        listing = ", ".join(known) if known else "none"
        super().__init__(
            f"unknown head {name!r}; known heads: {listing}. "
            f"A head is registered by an installed distribution under the entry-point group {GROUP!r}."
        )

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class HeadLoadError(ImportError):
    """A registered head could not be imported or is not a Head subclass."""


def _entry_points() -> dict[str, EntryPoint]:
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=GROUP):
        found.setdefault(ep.name, ep)  # the first distribution on the path wins
    return found


def list_heads(pattern: str = "*") -> list[str]:
    """Names of the registered heads matching a shell-style ``pattern``, sorted.

    Listing imports nothing: a broken plugin still appears here and fails
    only when loaded.
    """
    return sorted(n for n in _entry_points() if fnmatch.fnmatchcase(n, pattern))


def load_head(name: str) -> type[Head]:
    """The head class registered as ``name`` (imported on first use).

    Raises:
        UnknownHeadError: no such name; lists the known ones.
        HeadLoadError: the plugin failed to import, or is not a Head subclass.
    """
    from hydra.heads.base import Head

    eps = _entry_points()
    if name not in eps:
        raise UnknownHeadError(name, sorted(eps))
    ep = eps[name]
    key = (ep.name, ep.value)
    if key not in _loaded:
        try:
            cls = ep.load()
        except Exception as exc:
            raise HeadLoadError(
                f"head {name!r} ({ep.value}) failed to import: {exc.__class__.__name__}: {exc}"
            ) from exc
        if not (isinstance(cls, type) and issubclass(cls, Head)):
            raise HeadLoadError(f"head {name!r} ({ep.value}) is {cls!r}, not a subclass of hydra.heads.Head")
        _loaded[key] = cls
    return _loaded[key]


def head_errors() -> dict[str, str]:
    """Every registered head that fails to load, with its error (for diagnostics)."""
    errors: dict[str, str] = {}
    for name in list_heads():
        try:
            load_head(name)
        except HeadLoadError as exc:
            errors[name] = str(exc)
    return errors


def name_of(cls: type) -> str:
    """The registered name of a head class (found by loading the entry points)."""
    for name in list_heads():
        try:
            if load_head(name) is cls:
                return name
        except HeadLoadError:
            continue
    raise LookupError(
        f"{cls.__module__}.{cls.__qualname__} is not registered under the entry-point group {GROUP!r}; "
        "set its head_name or declare the entry point"
    )


def create_head(name: str, **kwargs: Any) -> Head:
    """Instantiate the head ``name`` with its constructor arguments (a preset's keys)."""
    return load_head(name)(**kwargs)


def load_model(directory: str | Path, map_location: Any = "cpu") -> Head:
    """Load a saved model (any head) from its directory: config.json + model.safetensors."""
    from hydra.heads.base import read_config

    config = read_config(directory)
    return load_head(config["head"]).load(directory, map_location)
