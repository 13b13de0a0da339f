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

_MODULES = (
    "admin", "ingest", "ml_train", "ml_predict", "ml_reprocess", "serve", "app", "root", "demo", "presets",
)  # fmt: skip

for _name in _MODULES:
    importlib.import_module(f"hydra.cli.{_name}").register(_root)

# importing hydra.cli.app binds the submodule's name on this package: rebind it
app = _root


def _database_hint(message: str) -> str:
    low = message.lower()
    if "no such table" in low or "doesn't exist" in low:
        return "; the database has no Hydra schema yet (or an old one): run 'hydra init'"
    if "can't connect" in low or "unable to open" in low or "connection refused" in low:
        return "; is the database server running, and HYDRA_DB_URL right?"
    return ""


def main() -> None:
    """Run the CLI; a database failure or an install without its presets ends in one line, not a traceback."""
    try:
        _root()
    except Exception as exc:
        from hydra.heads.presets import PresetError

        if isinstance(exc, PresetError):
            message = str(exc)
        elif type(exc).__module__.startswith("sqlalchemy."):
            orig = getattr(exc, "orig", None) or exc
            first = str(orig).splitlines()[0] if str(orig) else type(orig).__name__
            message = f"database error ({type(exc).__name__}: {first}){_database_hint(first)}"
        else:
            raise
        from hydra.cli.common import fail

        try:
            fail(message)
        except typer.Exit as done:
            raise SystemExit(done.exit_code) from None
