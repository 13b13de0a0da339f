"""The ``hydra`` command line: one verb for everything a person does.

Each module of this package adds its verbs with ``register(app)``; heavy
imports (torch, streamlit) happen inside the commands so ``hydra --help``
stays fast.
"""

from __future__ import annotations

import importlib

import typer

_root = typer.Typer(
    name="hydra",
    help="Hydra: computer vision for data quality monitoring. Run 'hydra COMMAND --help' for examples.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)

_MODULES = ("admin", "ingest", "ml_train", "ml_predict", "serve", "app", "root", "demo")

for _name in _MODULES:
    try:
        _mod = importlib.import_module(f"hydra.cli.{_name}")
    except ModuleNotFoundError as exc:  # a module not written yet
        if exc.name != f"hydra.cli.{_name}":
            raise
        continue
    _mod.register(_root)

# importing hydra.cli.app binds the submodule's name on this package: rebind it
app = _root


def main() -> None:
    _root()
