"""Head presets: YAML files that hold a head's name and constructor arguments.

A preset is ``head: NAME`` plus the keyword arguments of that head's
constructor, nothing else (one config system: the signature). Presets ship in
``configs/heads/``; a preset is named by path or by its stem there.

Example:
    >>> from hydra.heads.presets import create_from_preset
    >>> head = create_from_preset("classifier-cpu", labels=["Good", "Bad"],
    ...                           problem_labels=["Bad"])  # doctest: +SKIP
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from hydra.heads.base import Head


def preset_dirs() -> list[Path]:
    """Where preset names are looked up: ./configs/heads, then the source tree's."""
    here = Path(__file__).resolve().parents[2] / "configs" / "heads"
    dirs = [Path.cwd() / "configs" / "heads", here]
    return list(dict.fromkeys(d.resolve() for d in dirs))


def list_presets() -> list[str]:
    """Names (file stems) of the presets found in :func:`preset_dirs`."""
    return sorted({p.stem for d in preset_dirs() if d.is_dir() for p in d.glob("*.yaml")})


def find_preset(name_or_path: str | Path) -> Path:
    """The preset file for a path or a name like ``classifier-cpu``."""
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
    accepted = _init_params(cls)
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise ValueError(
            f"head preset {path}: {unknown} are not arguments of head {name!r}; expected some of {sorted(accepted)}"
        )
    return name, kwargs


def create_from_preset(name_or_path: str | Path, **overrides: Any) -> Head:
    """Instantiate a preset's head; ``overrides`` (labels, ...) win over the file."""
    from hydra.heads.registry import create_head

    name, kwargs = read_preset(name_or_path)
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
