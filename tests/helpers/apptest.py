"""Opening one page of the web app in Streamlit's AppTest, as a given user."""

from __future__ import annotations

from pathlib import Path

APP = str(Path(__file__).resolve().parents[2] / "apps" / "streamlit" / "app.py")


def open_page(page: str, user_id: int | None = None, **state):
    """Run the app on ``page`` (e.g. ``views/labeler.py``) with a logged-in user and session state."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=60)
    if user_id is not None:
        at.session_state["hydra_user_id"] = user_id
    for key, value in state.items():
        at.session_state[key] = value
    at.switch_page(page)
    return at.run()


def assert_no_exception(at) -> None:
    assert not at.exception, [e.value for e in at.exception]
