"""The web app's shell: configuration, database, login, sidebar and shared widgets.

``app.py`` sets the page up, checks the database, draws the sidebar and runs
the chosen script under ``views/`` through ``st.navigation``; a page always
runs behind ``app.py``. A page imports this module, calls ``shell.page()``
first, gets its data from ``hydra.services`` and uses:

``page(viewing=True)``
    The viewing gate: a viewing page (``viewing=True``) stops for an anonymous
    user when ``app.open_viewing`` is off. Expert pages call
    ``shell.page(viewing=False)`` and then ``require_login``/``require_permission``.
``config() -> HydraConfig``
    The deployment configuration (``$HYDRA_CONFIG`` / ``$HYDRA_HOME``, as
    ``hydra app`` passes them), cached per environment.
``engine()`` / ``session()``
    The cached engine, and a ``session_scope`` context manager on it (one
    transaction: commits on success) to pass to service functions.
``current_user() -> User | None``
    The logged-in user, re-read from the database on every run (so a deleted
    user or a changed role takes effect at once); None when logged out.
``require_login(reason) -> User``
    The logged-in user; otherwise shows a login form in the page and stops it.
``require_permission(action, plot_type_id) -> User``
    ``require_login`` plus ``hydra.auth.refusal`` (actions: ``label``,
    ``thresholds``, ``acknowledge``, ``admin``); otherwise explains what is missing and stops.
    This only hides what cannot be done: the service functions the page
    calls must still check with ``hydra.auth.require``.
``run_service(fn, *args, outcome=KEY, done=None, **kwargs)`` / ``show_outcome(KEY, where)``
    Calls a service function in one session (as a widget callback or inline)
    and leaves its outcome in ``st.session_state[KEY]``: a ``PermissionDenied``
    becomes "Refused: ...", a ``ValueError`` or ``LookupError`` (the services'
    own error types derive from these) its message, success the ``done``
    message (when given). ``show_outcome`` draws it once where the page calls
    it (after a callback: in the run that follows the click).
``utcnow()``
    The current time as the database stores it (aware UTC).
``empty_state(title, hint)``, ``age_text(delta)``, ``resolve_path(path)``,
``render_image(path, heatmap, opacity, max_px)``, ``label_legend(items)``
    Shared widgets and helpers.

Example (a page script):
    >>> import shell  # doctest: +SKIP
    >>> user = shell.require_permission("label", plot_type_id)  # doctest: +SKIP
    >>> st.button("Apply", on_click=shell.run_service, args=(labeling.apply_labels, user, plot_type_id, changes),
    ...           kwargs={"outcome": "note", "done": "Stored."})  # doctest: +SKIP
    >>> shell.show_outcome("note")  # doctest: +SKIP
"""

from __future__ import annotations

import html
import io
import ipaddress
import math
import os
import re
import struct
import wave
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import streamlit as st
from PIL import Image as PILImage
from sqlalchemy.engine import Engine
from sqlmodel import Session

from hydra.auth import LoginThrottled, PermissionDenied, authenticate, refusal
from hydra.config import ConfigError, HydraConfig, load_config
from hydra.db.engine import get_engine, session_scope
from hydra.db.migrate import schema_problem
from hydra.db.models import User, utcnow
from hydra.serve.conditions import CommandCondition, Condition
from hydra.services import status

T = TypeVar("T")
USER_KEY = "hydra_user_id"
HEARTBEAT_STALE_S = 60.0


@st.cache_resource(show_spinner=False)
def _config(env: tuple[tuple[str, str], ...]) -> HydraConfig:
    return load_config()


def config() -> HydraConfig:
    """The deployment configuration; a bad one stops the app with its message."""
    env = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("HYDRA_")))
    try:
        return _config(env)
    except ConfigError as exc:
        st.error(f"Configuration error: {exc}")
        st.stop()
        raise  # unreachable: st.stop raises


def engine() -> Engine:
    return get_engine(config().database_url)


@contextmanager
def session() -> Iterator[Session]:
    """A database session that commits on success (see ``hydra.db.session_scope``)."""
    with session_scope(engine()) as s:
        yield s


def check_database() -> None:
    """Stop with a clear message when the database is unreachable, not initialised or not migrated."""
    try:
        problem = schema_problem(engine())
    except Exception as exc:  # noqa: BLE001 - any driver error means no usable database
        st.error(f"Cannot reach the database {engine().url.render_as_string(hide_password=True)}: {exc}")
        st.stop()
    if problem:
        st.error(f"{problem}, then reload this page.")
        st.stop()


def current_user() -> User | None:
    user_id = st.session_state.get(USER_KEY)
    if user_id is None:
        return None
    with session() as s:
        user = s.get(User, user_id)
    if user is None:  # deleted meanwhile
        st.session_state.pop(USER_KEY, None)
    return user


def client_address() -> str | None:
    """The browser's IP address (None if unknown): the login rate limit's key.

    Streamlit reports None for a connection from this host itself; that is a
    reverse proxy on 127.0.0.1 (docs/deployment.md), so the address it saw,
    the last entry it appended to ``X-Forwarded-For``, is taken instead.
    """
    try:
        address = st.context.ip_address
        forwarded = st.context.headers.get("X-Forwarded-For") if address is None else None
    except Exception:  # noqa: BLE001 - no client context (a bare script run)
        return None
    if isinstance(address, str) and address:
        return address
    if isinstance(forwarded, str) and forwarded.strip():
        last = forwarded.split(",")[-1].strip()
        try:
            return str(ipaddress.ip_address(last))
        except ValueError:
            return None
    return None


def log_in(name: str, password: str) -> User | None:
    """Check the credentials against the database and remember the user in this browser session.

    Raises:
        LoginThrottled: too many recent failures for this name or address.
    """
    with session() as s:
        user = authenticate(name.strip(), password, session=s, address=client_address())
    if user is not None:
        st.session_state[USER_KEY] = user.id
    return user


def log_out() -> None:
    st.session_state.pop(USER_KEY, None)


def _submit_login(key: str) -> None:
    # a callback: runs before the script, so the whole run sees the new user
    name = st.session_state.get(f"login_name_{key}", "")
    password = st.session_state.get(f"login_password_{key}", "")
    try:
        user = log_in(name, password)
    except LoginThrottled as exc:
        st.session_state[f"login_error_{key}"] = f"Refused: {str(exc)[0].upper()}{str(exc)[1:]}."
        return
    if user is None:
        st.session_state[f"login_error_{key}"] = "Wrong user name or password."
    else:
        st.session_state.pop(f"login_error_{key}", None)


def login_form(where: Any, key: str) -> None:
    """A user name / password form; ``where`` is ``st`` or ``st.sidebar``."""
    with where.form(f"login_{key}", clear_on_submit=False):
        st.text_input("User name", key=f"login_name_{key}")
        st.text_input("Password", type="password", key=f"login_password_{key}")
        st.form_submit_button("Log in", key=f"login_submit_{key}", on_click=_submit_login, args=(key,))
        error = st.session_state.pop(f"login_error_{key}", None)
        if error:
            st.error(error)


def require_login(reason: str = "This page needs a logged-in user.") -> User:
    user = current_user()
    if user is None:
        st.info(reason)
        login_form(st, "page")
        st.stop()
    return user


def require_permission(action: str, plot_type_id: int | None = None) -> User:
    user = require_login(f"Log in to {action}.")
    with session() as s:
        reason = refusal(user, action, plot_type_id, session=s)
    if reason is not None:
        where = " on this plot type" if plot_type_id is not None else ""
        st.warning(
            f"{user.name} ({user.role}) may not {action}{where}: {reason}. Ask an admin for the permission."
        )
        st.stop()
    return user


def require_viewing() -> None:
    """Stop unless viewing is open (``app.open_viewing``) or someone is logged in."""
    if not config().app.open_viewing:
        require_login("Viewing this deployment needs a login.")


def run_service(
    fn: Callable[..., T],
    *args: Any,
    outcome: str,
    done: str | Callable[[T], str] | None = None,
    **kwargs: Any,
) -> T | None:
    """Call ``fn(*args, session=..., **kwargs)`` in one transaction; its outcome waits in ``st.session_state[outcome]``.

    A refusal (``PermissionDenied``) or an error (``ValueError``,
    ``LookupError``) is stored as ``("error", message)`` instead of raising;
    success as ``("success", done)`` when ``done`` is given (a callable gets
    the result). Works as a widget callback; :func:`show_outcome` draws it.
    Returns the result, or None when refused or failed.
    """
    try:
        with session() as s:
            result = fn(*args, session=s, **kwargs)
    except PermissionDenied as exc:
        st.session_state[outcome] = ("error", f"Refused: {exc}")
        return None
    except (ValueError, LookupError) as exc:
        st.session_state[outcome] = ("error", str(exc))
        return None
    if done is not None:
        st.session_state[outcome] = ("success", done(result) if callable(done) else done)
    return result


def show_outcome(key: str, where: Any = st) -> None:
    """Draw (once) the outcome :func:`run_service` left under ``key``, in ``where`` (``st`` or a container)."""
    kind, message = st.session_state.pop(key, (None, None))
    if kind:
        getattr(where, kind)(message)


def page(*, viewing: bool = True) -> None:
    """Call first in every page script: the viewing gate.

    ``viewing=True`` marks a page that ``app.open_viewing: false`` closes to
    anonymous users. ``app.py`` has drawn the sidebar already.
    """
    if viewing:
        require_viewing()


def sidebar() -> None:
    """Deployment name, login state, serve health and links (``app.py`` draws it once per run)."""
    cfg = config()
    bar = st.sidebar
    bar.markdown(f"### {cfg.name}")
    user = current_user()
    if user is None:
        login_form(bar, "sidebar")
    else:
        bar.markdown(f"Logged in as **{user.name}** ({user.role})")
        bar.button("Log out", key="logout", on_click=log_out)
    bar.markdown("**Serve processes**")
    with session() as s:
        beats = status.heartbeats(session=s)
    if not beats:
        bar.caption(
            "No heartbeat from the serve processes yet: they report within a few seconds of starting "
            "(`hydra serve`, or `make demo`, starts them)."
        )
    now = utcnow()
    for hb in beats:
        age = (now - hb.last_seen).total_seconds()
        dot = ":green[●]" if age <= HEARTBEAT_STALE_S else ":red[● stale]"
        bar.markdown(
            f"{dot} `{hb.process}` {age_text(timedelta(seconds=age))} ago", help=f"pid {hb.pid} on {hb.host}"
        )
    bar.caption(f"Database: {engine().url.render_as_string(hide_password=True)}")


def age_text(delta: timedelta | None) -> str:
    """A short human age: 12 s, 5 min, 3 h, 2 d."""
    if delta is None:
        return "never"
    s = max(0.0, delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= size:
            return f"{s / size:.0f} {unit}"
    return f"{s:.0f} s"


def empty_state(title: str, hint: str) -> None:
    st.info(f"**{title}**\n\n{hint}")


NO_PLOT_TYPES_HINT = "Create one on the Admin page or with `hydra plot-type add`."


def plot_types_or_stop(hint: str = NO_PLOT_TYPES_HINT) -> list[Any]:
    """Every plot type (hidden ones too); without any, the page says how to make one and stops."""
    from hydra.services import run

    with session() as s:
        types = run.plot_types(session=s)
    if not types:
        empty_state("No plot types yet.", hint)
        st.stop()
    return types


def resolve_path(path: str | None) -> Path | None:
    """An image path from the database as a file path (relative ones are under HYDRA_HOME)."""
    if not path:
        return None
    p = Path(path)
    return p if p.is_absolute() else config().home / p


def _jet(gray: np.ndarray) -> np.ndarray:
    v = gray.astype(np.float32)[..., None] / 255.0
    centers = np.array([3.0, 2.0, 1.0], dtype=np.float32)
    return (np.clip(1.5 - np.abs(4.0 * v - centers), 0.0, 1.0) * 255).astype(np.uint8)


@st.cache_data(max_entries=4000, show_spinner=False)
def _render(
    path: str, mtime: float, heatmap: str | None, hm_mtime: float, opacity: float, max_px: int
) -> bytes:
    with PILImage.open(path) as src:
        img = src.convert("RGB")
    if heatmap and opacity > 0:
        with PILImage.open(heatmap) as hm_src:
            hm = hm_src.convert("RGB") if hm_src.mode in ("RGB", "RGBA", "P") else hm_src.convert("L")
        if hm.mode == "L":
            hm = PILImage.fromarray(_jet(np.asarray(hm)))
        img = PILImage.blend(img, hm.resize(img.size, PILImage.Resampling.BILINEAR), opacity)
    if max_px:  # fit the tile: shrink a large plot, enlarge a small one (tiles are bigger than most plots)
        scale = max_px / max(img.size)
        if scale < 1:
            img.thumbnail((max_px, max_px))
        elif scale > 1.05:
            img = img.resize(
                (round(img.width * scale), round(img.height * scale)), PILImage.Resampling.BICUBIC
            )
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def render_image(
    path: str | None, heatmap: str | None = None, opacity: float = 0.0, max_px: int = 0
) -> bytes | None:
    """PNG bytes of an image with its Grad-CAM map blended in, or None if the file is gone.

    Cached by file, modification time, opacity and size, so a refresh of the
    Run page re-reads only images that changed.
    """
    img, hm = resolve_path(path), resolve_path(heatmap)
    try:
        mtime = img.stat().st_mtime if img else None
    except OSError:
        mtime = None
    if img is None or mtime is None:
        return None
    try:
        hm_mtime = hm.stat().st_mtime if hm else 0.0
    except OSError:
        hm, hm_mtime = None, 0.0
    try:
        return _render(str(img), mtime, str(hm) if hm else None, hm_mtime, round(opacity, 2), max_px)
    except OSError:
        return None


@st.cache_data(show_spinner=False)
def beep_wav(freq: float = 880.0, seconds: float = 0.4, rate: int = 8000) -> bytes:
    """A short sine beep as WAV bytes, for the alarm sound."""
    n = int(rate * seconds)
    frames = b"".join(
        struct.pack("<h", int(12000 * math.sin(2 * math.pi * freq * i / rate) * min(1.0, (n - i) / 400)))
        for i in range(n)
    )
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)
    return out.getvalue()


@st.cache_resource(show_spinner=False)
def _condition_source(command: str, minimum: float, name: str, cache_s: float) -> CommandCondition:
    return CommandCondition(command, minimum, name, cache_s=cache_s)


def run_condition() -> Condition | None:
    """The run conditions (e.g. beam current) as the Keeper sees them; None when not configured."""
    cfg = config()
    if not cfg.alarms.condition_command:
        return None
    a = cfg.alarms
    return _condition_source(
        a.condition_command, a.condition_min, a.condition_name, cfg.app.refresh_s
    ).check()


def safe_color(color: str, default: str = "#888888") -> str:
    """A colour from the database made safe for CSS (``#rgb``/``#rrggbb`` or a plain name)."""
    return color if re.fullmatch(r"#[0-9a-fA-F]{3,8}|[a-zA-Z]{1,20}", color or "") else default


def label_legend(items: list[tuple[str, str]], *, extra: list[tuple[str, str]] | None = None) -> None:
    """A one-line colour legend from (name, colour) pairs."""
    chips = [
        f"<span style='border:3px solid {safe_color(color)};padding:0 6px;margin-right:6px;"
        f"border-radius:4px'>{html.escape(name)}</span>"
        for name, color in [*items, *(extra or [])]
    ]
    st.markdown(" ".join(chips), unsafe_allow_html=True)
