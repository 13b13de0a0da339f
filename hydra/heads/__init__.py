"""Heads: the models that classify plot types, found through entry points.

Example:
    >>> from hydra.heads import list_heads, create_head, load_model
    >>> list_heads("c*")
    ['classifier']
"""

from hydra.heads.registry import (
    GROUP,
    HeadLoadError,
    UnknownHeadError,
    create_head,
    head_errors,
    list_heads,
    load_head,
    load_model,
)


def __getattr__(name: str):
    # Head pulls in Lightning; keep ``import hydra.heads`` light for listing.
    if name == "Head":
        from hydra.heads.base import Head

        return Head
    raise AttributeError(f"module 'hydra.heads' has no attribute {name!r}")


__all__ = [
    "GROUP",
    "Head",
    "HeadLoadError",
    "UnknownHeadError",
    "create_head",
    "head_errors",
    "list_heads",
    "load_head",
    "load_model",
]
