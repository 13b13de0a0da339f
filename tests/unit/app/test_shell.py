"""The app shell: login and logout, open or closed viewing, serve health, images."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image as PILImage
from streamlit.testing.v1 import AppTest

from tests.helpers.seed import USERS, prepare_home, write_heatmap_png, write_plot_png

APP = str(Path(__file__).resolve().parents[3] / "apps" / "streamlit" / "app.py")


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    home = tmp_path_factory.mktemp("shell") / "home"
    return prepare_home(home)


@pytest.fixture
def app(seeded, monkeypatch):
    monkeypatch.setenv("HYDRA_HOME", str(seeded.home))
    monkeypatch.delenv("HYDRA_DB_URL", raising=False)
    monkeypatch.delenv("HYDRA_CONFIG", raising=False)
    return AppTest.from_file(APP, default_timeout=30)


def log_in(at: AppTest, name: str, password: str) -> AppTest:
    at.sidebar.text_input(key="login_name_sidebar").input(name)
    at.sidebar.text_input(key="login_password_sidebar").input(password)
    return at.sidebar.button(key="login_submit_sidebar").click().run()


def sidebar_text(at: AppTest) -> str:
    return " ".join(str(m.value) for m in at.sidebar.markdown)


def test_login_and_logout(app):
    at = app.run()
    assert not at.exception
    assert "Logged in as" not in sidebar_text(at)
    at = log_in(at, "expert", USERS["expert"].password)
    assert not at.exception
    assert "Logged in as **expert** (expert)" in sidebar_text(at)
    at = at.sidebar.button(key="logout").click().run()
    assert "Logged in as" not in sidebar_text(at)
    assert at.sidebar.text_input(key="login_name_sidebar") is not None


def test_wrong_password_is_refused(app):
    at = log_in(app.run(), "expert", "not-the-password")
    assert not at.exception
    assert "Logged in as" not in sidebar_text(at)
    assert any("Wrong user name or password" in e.value for e in at.sidebar.error)


def test_repeated_failures_lock_the_name_for_a_while(cloned):
    from hydra.auth import MAX_FAILURES_PER_USER

    at = AppTest.from_file(APP, default_timeout=30).run()
    for _ in range(MAX_FAILURES_PER_USER):
        at = log_in(at, "labeler", "guess")
    at = log_in(at, "labeler", USERS["labeler"].password)
    assert not at.exception
    assert "Logged in as" not in sidebar_text(at)
    assert any("Too many failed logins for user 'labeler'" in e.value for e in at.sidebar.error)
    at = log_in(at, "expert", USERS["expert"].password)  # other names are not locked
    assert "Logged in as **expert**" in sidebar_text(at)


def test_sidebar_shows_name_and_serve_health(app):
    at = app.run()
    text = sidebar_text(at)
    assert "### Hydra" in text
    assert ":green[●] `feeder`" in text
    assert ":red[● stale] `predict-1`" in text  # its heartbeat is 10 minutes old


@pytest.mark.parametrize(
    "page", ["run", "log", "status", "trends", "labeler", "training_report", "library", "admin"]
)
def test_every_page_draws_the_sidebar_and_itself_once(app, seeded, page):
    app.session_state["hydra_user_id"] = seeded.users["admin"]
    at = app.switch_page(f"views/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    sidebar = [str(m.value) for m in at.sidebar.markdown]
    assert sidebar.count("### Hydra") == 1
    assert sidebar.count("Logged in as **admin** (admin)") == 1
    assert len(at.main.title) == 1


def test_closed_viewing_needs_login(app, monkeypatch):
    monkeypatch.setenv("HYDRA_APP__OPEN_VIEWING", "false")
    at = app.run()
    assert not at.exception
    assert any("needs a login" in i.value for i in at.info)
    assert not at.metric, "the Run page must not render for an anonymous user"
    at = log_in(at, "viewer", USERS["viewer"].password)
    assert [m.value for m in at.metric][0] == "71003"


def test_uninitialised_database_says_run_hydra_init(tmp_path, monkeypatch):
    monkeypatch.setenv("HYDRA_HOME", str(tmp_path / "fresh"))
    monkeypatch.delenv("HYDRA_DB_URL", raising=False)
    monkeypatch.delenv("HYDRA_CONFIG", raising=False)
    at = AppTest.from_file(APP, default_timeout=30).run()
    assert not at.exception
    assert any("hydra init" in e.value for e in at.error)


def test_render_image_blends_the_heatmap(tmp_path, monkeypatch):
    monkeypatch.setenv("HYDRA_HOME", str(tmp_path))
    monkeypatch.syspath_prepend(str(Path(APP).parent))
    import shell

    img = write_plot_png(tmp_path / "a.png", seed=1)
    heat = write_heatmap_png(tmp_path / "h.png", seed=1)
    plain = PILImage.open(io.BytesIO(shell.render_image(str(img), str(heat), 0.0)))
    blended = PILImage.open(io.BytesIO(shell.render_image(str(img), str(heat), 0.6)))
    assert plain.size == blended.size == (160, 120)
    assert list(plain.getdata()) != list(blended.getdata())
    thumb = PILImage.open(io.BytesIO(shell.render_image(str(img), None, 0.0, max_px=80)))
    assert max(thumb.size) == 80
    assert shell.render_image(str(tmp_path / "gone.png")) is None


@pytest.mark.parametrize(
    ("ip", "forwarded", "expected"),
    [
        ("198.51.100.4", "203.0.113.9", "198.51.100.4"),  # a direct client: its own address
        (None, "203.0.113.9, 192.0.2.1", "192.0.2.1"),  # via the local proxy: what the proxy saw
        (None, "not-an-address", None),
        (None, None, None),
    ],
)
def test_client_address_for_the_rate_limit(monkeypatch, ip, forwarded, expected):
    from types import SimpleNamespace

    monkeypatch.syspath_prepend(str(Path(APP).parent))
    import shell

    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    monkeypatch.setattr(shell.st, "context", SimpleNamespace(ip_address=ip, headers=headers))
    assert shell.client_address() == expected
