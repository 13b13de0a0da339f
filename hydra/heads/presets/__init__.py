"""Head presets: YAML files that hold a head's name and constructor arguments.

A preset is ``head: NAME`` plus the keyword arguments of that head's
constructor, nothing else (one config system: the signature), and optionally
``companion``: what a second model, trained beside each one ``hydra train``
fits, does differently (only how it trains: its starting weights, learning
rate, ...); the two are then served together as an ensemble. Hydra's own
presets are package data of this package (``hydra/heads/presets/*.yaml``), so
a checkout and an installed wheel find the same files through
:mod:`importlib.resources`; a site may add presets, or override one by its
name, in ``./configs/heads/`` of the working directory. A preset is named by
path or by its file stem (``hydra presets list`` shows them all).

Example:
    >>> from hydra.heads.presets import create_from_preset
    >>> head = create_from_preset("classifier-cpu", labels=["Good", "Bad"],
    ...                           problem_labels=["Bad"])  # doctest: +SKIP
"""

from __future__ import annotations

import inspect
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from hydra.heads.base import Head

SITE_DIR = Path("configs") / "heads"  # relative to the working directory
COMPANION = "companion"  # the preset key that is not a constructor argument (see above)


class PresetError(RuntimeError):
    """Hydra's own presets are not where the package says they are (a broken install).

    Deliberately not a :class:`FileNotFoundError`: that means "no preset of
    this name", which callers may handle; a package without its presets must
    stop with this message, never fall back to a head's built-in defaults.
    """


def packaged_dir() -> Path:
    """The folder of Hydra's own presets: this package's, wherever it is installed."""
    folder = Path(str(resources.files(__name__)))  # an installed wheel is unpacked: a real folder
    if not any(folder.glob("*.yaml")):
        raise PresetError(
            f"Hydra's own head presets are missing: no *.yaml in {folder}. This install of "
            "hydra-dqm is incomplete (its package data did not ship); reinstall it."
        )
    return folder


def preset_dirs() -> list[Path]:
    """Where preset names are looked up, first match wins: ./configs/heads, then Hydra's own."""
    dirs = [Path.cwd() / SITE_DIR, packaged_dir()]
    return list(dict.fromkeys(d.resolve() for d in dirs))


def preset_files() -> dict[str, Path]:
    """Each preset name (file stem) and the file :func:`find_preset` picks for it, by name."""
    found: dict[str, Path] = {}
    for d in preset_dirs():
        if d.is_dir():
            for p in sorted(d.glob("*.yaml")):
                found.setdefault(p.stem, p)
    return dict(sorted(found.items()))


def list_presets() -> list[str]:
    """Names (file stems) of the presets found in :func:`preset_dirs`."""
    return list(preset_files())


def find_preset(name_or_path: str | Path) -> Path:
    """The preset file for a path or a name like ``classifier-cpu``.

    Raises:
        FileNotFoundError: no such file, or no preset of that name (the message lists the known ones).
        PresetError: Hydra's own presets are missing from the install.
    """
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise FileNotFoundError(f"head preset {path} does not exist")
        return path
    for d in preset_dirs():
        candidate = d / f"{name_or_path}.yaml"
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"no head preset named {name_or_path!r}; known presets: {', '.join(list_presets())}"
    )


def read_preset(name_or_path: str | Path) -> tuple[str, dict[str, Any]]:
    """``(head name, constructor kwargs)`` of a preset, checked against the signature."""
    from hydra.heads.registry import load_head

    path = find_preset(name_or_path)
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict) or "head" not in data:
        raise ValueError(f"head preset {path} must be a mapping with a 'head' key")
    kwargs = dict(data)
    name = str(kwargs.pop("head"))
    cls = load_head(name)
    accepted = _init_params(cls) | {COMPANION}
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise ValueError(
            f"head preset {path}: {unknown} are not arguments of head {name!r}; expected some of {sorted(accepted)}"
        )
    _shipped_beside(kwargs, path)
    if COMPANION in kwargs:
        kwargs[COMPANION] = _companion(kwargs[COMPANION], path)
    return name, kwargs


def _shipped_beside(kwargs: dict[str, Any], path: Path) -> None:
    weights = kwargs.get("weights_file")
    if isinstance(weights, str) and weights and not Path(weights).is_absolute():
        kwargs["weights_file"] = str(path.parent / weights)  # shipped beside the preset, like its YAML


def _companion(value: Any, path: Path) -> dict[str, Any]:
    """A preset's ``companion``: checked, its ``weights_file`` found beside the preset."""
    from hydra.heads.ensemble import TRAINING_ONLY

    if not isinstance(value, dict) or not value:
        raise ValueError(f"head preset {path}: {COMPANION} must be a mapping of arguments, got {value!r}")
    other = sorted(set(value) - set(TRAINING_ONLY))
    if other:
        raise ValueError(
            f"head preset {path}: a {COMPANION} may change only how its member trains ({', '.join(TRAINING_ONLY)}); "
            f"not {other}"
        )
    out = dict(value)
    _shipped_beside(out, path)
    return out


def create_from_preset(name_or_path: str | Path, **overrides: Any) -> Head:
    """Instantiate a preset's head; ``overrides`` (labels, ...) win over the file."""
    from hydra.heads.registry import create_head

    name, kwargs = read_preset(name_or_path)
    kwargs.pop(COMPANION, None)  # a second model that training fits beside this one
    kwargs.update(overrides)
    return create_head(name, **kwargs)


def _init_params(cls: type) -> set[str]:
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        for p in inspect.signature(init).parameters.values():
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                names.add(p.name)
        if klass.__name__ == "Head":
            break
    return names
