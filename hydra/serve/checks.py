"""What the Keeper checks before it trusts a message with its files and database.

The codec (:func:`hydra.serve.messages.decode_message`) already guarantees each
field's type. Here the values are checked against the deployment: a path
must be a file directly in the input folder with the message's base name,
the plot type must be a valid name and the one the file name says, and a
heat map must be a small RGB image. A message that fails is dropped (and
counted), so a forged or garbled one can never move a file from elsewhere,
create a plot type like ``../../x`` or write outside ``HYDRA_HOME``. A Predict
worker checks an order's path the same way (:func:`check_order_path`: its
folder may be another host's input folder) and opens a file only when it is
in its own input folder (:func:`is_input_path`).

Example:
    >>> from hydra.config import load_config
    >>> cfg = load_config(None, home="/srv/hydra")
    >>> check_input_path(cfg, "/srv/hydra/input/../x/fcal-1.png", "fcal-1.png")
    Traceback (most recent call last):
    ...
    hydra.serve.checks.Invalid: path '/srv/hydra/input/../x/fcal-1.png' is not a file of the input folder
"""

from __future__ import annotations

import os

from hydra.config import HydraConfig
from hydra.data.naming import NamingError, check_plot_type_name, parse_name
from hydra.serve.messages import ErrorNotice, Pulse, Registration, Report, Retry

MAX_HEATMAP_PIXELS = 4096 * 4096


class Invalid(ValueError):
    """A message whose values this deployment must not act on."""


def check_input_path(cfg: HydraConfig, path: str, filename: str, input_dir: str | None = None) -> None:
    """``path`` is ``input_dir/filename`` exactly, and ``filename`` a plain base name.

    ``input_dir``: ``str(cfg.input_dir)`` if the caller has it already (resolving it is a
    system call per component, which the Keeper cannot afford per message).
    """
    _check_in(path, filename, str(cfg.input_dir) if input_dir is None else input_dir)


def _check_in(path: str, filename: str, folder: str) -> None:
    if (
        not filename
        or filename in (".", "..")
        or "/" in filename  # os.path.basename(filename) != filename, at a fifth of its cost
        or "\0" in filename
        or len(filename) > 255
    ):
        raise Invalid(f"file name {filename[:80]!r} is not a base name")
    if "\0" in path or os.path.normpath(path) != path or path != os.path.join(folder, filename):
        raise Invalid(f"path {path[:200]!r} is not a file of the input folder")


def check_order_path(path: str, filename: str) -> None:
    """``path`` is an absolute, normalised ``<folder>/filename``, ``filename`` a plain base name.

    What a Predict worker can check of an order: the folder is the hub's input
    folder, which on another host is not this one's (:func:`is_input_path` says
    whether it is).
    """
    if not path.startswith("/"):
        raise Invalid(f"path {path[:200]!r} is not absolute")
    _check_in(path, filename, os.path.dirname(path))


def is_input_path(cfg: HydraConfig, path: str, filename: str, input_dir: str | None = None) -> bool:
    """Whether ``path`` is ``filename`` in this host's input folder (:func:`check_input_path`)."""
    try:
        check_input_path(cfg, path, filename, input_dir)
    except Invalid:
        return False
    return True


def check_names(cfg: HydraConfig, filename: str, plot_type: str, run: int, chunk: int | None) -> None:
    """The plot type is a valid name and, with run and chunk, what the file name says."""
    try:
        check_plot_type_name(plot_type)
        parsed = parse_name(filename, cfg.naming_regex)
    except NamingError as exc:
        raise Invalid(str(exc)) from None
    if (parsed.plot_type, parsed.run, parsed.chunk) != (plot_type, run, chunk):
        raise Invalid(f"{filename[:80]!r} is not plot type {plot_type[:40]!r}, run {run}, chunk {chunk}")


def check_message(cfg: HydraConfig, msg: object, input_dir: str | None = None) -> None:
    """Raise :class:`Invalid` if the Keeper must not act on ``msg`` (``input_dir``: as for
    :func:`check_input_path`)."""
    if isinstance(msg, (Report, ErrorNotice, Registration, Retry)):
        check_input_path(cfg, msg.path, msg.filename, input_dir)
    if isinstance(msg, (Report, Registration)):
        check_names(cfg, msg.filename, msg.plot_type, msg.run, msg.chunk)
    if isinstance(msg, Report):
        _check_report(msg)
    if isinstance(msg, Pulse) and not (0 < len(msg.process) <= 64):
        raise Invalid("heartbeat without a process name")


def _check_report(msg: Report) -> None:
    if msg.model_id <= 0 or msg.plot_type_id <= 0 or not msg.label or len(msg.label) > 64:
        raise Invalid(f"report of {msg.filename[:80]!r}: bad model, plot type or label")
    if msg.weights and msg.label not in msg.weights:
        raise Invalid(f"report of {msg.filename[:80]!r}: label {msg.label[:40]!r} has no weight")
    if msg.heatmap is not None:
        h = msg.heatmap
        if h.dtype.name != "uint8" or h.ndim != 3 or h.shape[2] not in (1, 3, 4):
            raise Invalid(f"report of {msg.filename[:80]!r}: heat map {h.dtype} {h.shape}")
        if h.shape[0] * h.shape[1] > MAX_HEATMAP_PIXELS:
            raise Invalid(f"report of {msg.filename[:80]!r}: heat map of {h.shape[0]}x{h.shape[1]}")
