"""The deployment config: defaults, file, environment overrides, bad values."""

from __future__ import annotations

import pytest

from hydra.config import ConfigError, load_config


def test_defaults_put_everything_under_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HYDRA_HOME", str(tmp_path / "h"))
    monkeypatch.delenv("HYDRA_DB_URL", raising=False)
    cfg = load_config(_write(tmp_path, "{}"))
    assert cfg.input_dir == (tmp_path / "h" / "input").resolve()
    assert cfg.path("quarantine") == (tmp_path / "h" / "quarantine").resolve()
    assert cfg.database_url == f"sqlite:///{(tmp_path / 'h' / 'hydra.db').resolve()}"
    cfg.ensure_dirs()
    for which in ("input", "short_term", "kept", "quarantine", "heatmaps", "models"):
        assert cfg.path(which).is_dir()


def _write(tmp_path, text: str):
    p = tmp_path / "hydra.yaml"
    p.write_text(text)
    return p


def test_environment_overrides_file(tmp_path, monkeypatch):
    path = _write(tmp_path, "serve:\n  workers: 3\ndb_url: sqlite:///x.db\n")
    monkeypatch.setenv("HYDRA_SERVE__WORKERS", "5")
    monkeypatch.setenv("HYDRA_DB_URL", "mysql+pymysql://root@127.0.0.1:3306/test")
    cfg = load_config(path)
    assert cfg.serve.workers == 5
    assert cfg.database_url.startswith("mysql+pymysql://")


def test_storage_folder_can_be_absolute(tmp_path, monkeypatch):
    monkeypatch.delenv("HYDRA_HOME", raising=False)
    cfg = load_config(_write(tmp_path, f"storage:\n  input: {tmp_path / 'in'}\n"))
    assert cfg.input_dir == tmp_path / "in"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("serve:\n  workers: zero\n", "serve.workers"),
        ("serve:\n  policy: random\n", "serve.policy"),
        ("serve:\n  wrokers: 2\n", "serve.wrokers"),
        ("naming:\n  pattern: '(unclosed'\n", "naming.pattern"),
        ("naming:\n  pattern: '^(?P<run>\\d+).png$'\n", "naming.pattern"),
        ("db_url: oracle://x\n", "db_url"),
        ("alarms:\n  consecutive: 0\n", "alarms.consecutive"),
    ],
)
def test_bad_value_names_the_key(tmp_path, monkeypatch, text, key):
    monkeypatch.delenv("HYDRA_DB_URL", raising=False)
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, text))
    assert key in str(err.value)


def test_bad_environment_value_names_the_key(tmp_path, monkeypatch):
    monkeypatch.setenv("HYDRA_SERVE__MAX_BATCH", "-1")
    with pytest.raises(ConfigError, match="serve.max_batch"):
        load_config(_write(tmp_path, "{}"))


def test_not_yaml_and_not_a_mapping(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(_write(tmp_path, "serve: [unclosed"))
    with pytest.raises(ConfigError, match="mapping"):
        load_config(_write(tmp_path, "- a\n- b\n"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
