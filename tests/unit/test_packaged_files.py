"""Files read at run time are found through the package: presets, migrations, deployment files, the app.

(``tests/integration/test_wheel.py`` checks the same from an installed wheel.)
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hydra.cli import app
from hydra.heads import presets

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory that is not the checkout."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_packaged_presets_are_found_from_any_directory(elsewhere: Path) -> None:
    packaged = presets.packaged_dir()
    assert packaged == ROOT / "hydra" / "heads" / "presets"
    files = presets.preset_files()
    assert {"classifier-cpu", "classifier-inception", "siamese-cpu"} <= set(files)
    assert presets.find_preset("classifier-cpu") == packaged / "classifier-cpu.yaml"
    assert presets.list_presets() == sorted(files)


def test_a_site_preset_in_configs_heads_wins_by_name(elsewhere: Path) -> None:
    site = elsewhere / "configs" / "heads"
    site.mkdir(parents=True)
    (site / "classifier-cpu.yaml").write_text("head: classifier\nbackbone: plotnet\ninput_size: [60, 80]\n")
    (site / "mine.yaml").write_text("head: siamese\n")
    assert presets.find_preset("classifier-cpu") == site.resolve() / "classifier-cpu.yaml"
    assert presets.read_preset("classifier-cpu") == (
        "classifier",
        {"backbone": "plotnet", "input_size": [60, 80]},
    )
    assert presets.find_preset("mine") == site.resolve() / "mine.yaml"
    assert presets.find_preset("siamese-cpu") == presets.packaged_dir() / "siamese-cpu.yaml"


def test_an_unknown_preset_names_the_known_ones(elsewhere: Path) -> None:
    with pytest.raises(FileNotFoundError, match="known presets: .*classifier-cpu"):
        presets.find_preset("nope")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        presets.find_preset("nope.yaml")


def test_an_install_without_its_presets_is_an_error_not_a_fallback(
    elsewhere: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = elsewhere / "site-packages" / "hydra" / "heads" / "presets"
    empty.mkdir(parents=True)
    monkeypatch.setattr(presets.resources, "files", lambda _name: empty)
    with pytest.raises(presets.PresetError, match="presets are missing"):
        presets.find_preset("classifier-cpu")
    assert not issubclass(presets.PresetError, FileNotFoundError)  # callers that skip absent presets
    result = runner.invoke(app, ["presets", "list"])
    assert result.exit_code == 1 and "presets are missing" in result.stderr


def test_presets_list_and_show(elsewhere: Path) -> None:
    site = elsewhere / "configs" / "heads"
    site.mkdir(parents=True)
    (site / "mine.yaml").write_text("head: siamese\nwidth: 8\n")
    result = runner.invoke(app, ["presets", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in map(json.loads, result.stdout.splitlines())}
    assert rows["classifier-inception"]["head"] == "classifier"
    assert rows["classifier-inception"]["source"] == "hydra (packaged)"
    assert rows["mine"]["head"] == "siamese" and rows["mine"]["source"].startswith("site")
    assert rows["mine"]["path"] == str(site.resolve() / "mine.yaml")

    table = runner.invoke(app, ["presets", "list"])
    assert table.exit_code == 0 and "siamese-cpu" in table.stdout and "mine" in table.stdout

    shown = runner.invoke(app, ["presets", "show", "siamese-cpu"])
    assert shown.exit_code == 0
    assert shown.stdout == (presets.packaged_dir() / "siamese-cpu.yaml").read_text()
    unknown = runner.invoke(app, ["presets", "show", "nope"])
    assert unknown.exit_code == 1 and "no head preset named 'nope'" in unknown.stderr


def test_migrations_and_deployment_files_come_from_the_package() -> None:
    from hydra.db.migrate import MIGRATIONS, head_revision
    from hydra.deploy import dashboard, deploy_dir, systemd_units

    assert MIGRATIONS == ROOT / "hydra" / "db" / "migrations" and head_revision()
    assert deploy_dir() == ROOT / "hydra" / "deploy"
    assert dashboard().is_file()
    assert {u.name for u in systemd_units()} >= {"hydra-serve.service", "hydra-app.service"}


def test_the_web_app_is_found_in_the_checkout_or_the_override(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hydra.cli.app import APP_ENV, app_dirs, app_script

    monkeypatch.delenv(APP_ENV, raising=False)
    # a checkout (pip install -e): no hydra/webapp/ there, so apps/streamlit/ next to the package
    assert app_dirs() == [ROOT / "hydra" / "webapp", ROOT / "apps" / "streamlit"]
    assert app_script() == ROOT / "apps" / "streamlit" / "app.py"
    monkeypatch.setenv(APP_ENV, str(tmp_path))
    assert app_script() == tmp_path / "app.py"
    result = runner.invoke(app, ["app"])
    assert result.exit_code == 1 and "the web app's files are missing" in result.stderr
    assert str(tmp_path / "app.py") in result.stderr.replace("\n", "")
