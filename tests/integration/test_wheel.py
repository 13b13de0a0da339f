"""The wheel works installed anywhere: presets, migrations, deployment files, the web app, the CLI.

The wheel is built from a copy of what it is made of (so a stale ``build/`` of
the checkout cannot leak into it), installed with ``--no-deps`` into a fresh
virtual environment in ``tmp_path`` that sees this suite's dependencies
through a ``.pth`` file, and used from another folder with a HYDRA_HOME of its
own: the checkout is nowhere on ``sys.path`` there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
# what setuptools reads to build the wheel (pyproject.toml names the readme)
SOURCES = ("pyproject.toml", "README.md", "hydra", "apps/streamlit")
SHIPPED = {".py", ".yaml", ".json", ".service", ".mako", ".html", ".css", ".js", ".safetensors"}


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)
    assert result.returncode == 0, f"{cmd}\n{result.stdout}\n{result.stderr}"
    return result


def _build_wheel(tmp: Path) -> Path:
    src = tmp / "src"
    src.mkdir()
    junk = shutil.ignore_patterns("__pycache__", "*.pyc", "build", "dist", "*.egg-info")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=junk)
        else:
            shutil.copy2(ROOT / name, src / name)
    dist = tmp / "dist"
    _run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
         "-w", str(dist), str(src)]
    )  # fmt: skip
    (wheel,) = dist.glob("hydra_dqm-*.whl")
    return wheel


def _expected_files() -> set[str]:
    """Every file the package reads, as the wheel must name it (apps/streamlit ships as hydra/webapp)."""
    expected = set()
    for folder, prefix in ((ROOT / "hydra", "hydra"), (ROOT / "apps" / "streamlit", "hydra/webapp")):
        for path in folder.rglob("*"):
            if path.is_file() and path.suffix in SHIPPED and "__pycache__" not in path.parts:
                expected.add(f"{prefix}/{path.relative_to(folder).as_posix()}")
    return expected


def _make_venv(tmp: Path, wheel: Path) -> Path:
    """A fresh venv with the wheel, then (only then, or pip would see the suite's editable
    install there and replace it) a .pth that adds this suite's site-packages for the dependencies."""
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            str(wheel),
        ]
    )
    purelib = Path(
        _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    )
    suite = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    (purelib / "zz_hydra_suite_dependencies.pth").write_text("".join(f"{p}\n" for p in suite))
    return venv


def _env(tmp: Path, venv: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HYDRA_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(HYDRA_HOME=str(tmp / "home"), PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}")
    return env


CHECK = """
import json, sys
from pathlib import Path
import hydra
from hydra.cli.app import app_script
from hydra.db.migrate import MIGRATIONS, head_revision
from hydra.deploy import dashboard, systemd_units
from hydra.heads.presets import find_preset, read_preset
root, home = Path(sys.argv[1]), Path(hydra.__file__).resolve().parent
assert not any(p and Path(p).resolve() == root for p in sys.path), sys.path
assert root not in home.parents, home
name, kwargs = read_preset("classifier-cpu")
weights = Path(read_preset("classifier-cpu-pretrained")[1]["weights_file"])
assert weights.is_file() and weights.parent == home / "heads" / "presets", weights
assert Path(kwargs["companion"]["weights_file"]) == weights, kwargs  # the default's companion starts there
print(json.dumps({
    "package": str(home), "preset": str(find_preset("classifier-cpu")), "head": name,
    "backbone": kwargs["backbone"], "app": str(app_script()), "migrations": str(MIGRATIONS),
    "revision": head_revision(), "dashboard": str(dashboard()), "units": [u.name for u in systemd_units()],
}))
"""


def test_wheel_installed_outside_the_checkout(tmp_path: Path) -> None:
    wheel = _build_wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = sorted(_expected_files() - names)
    assert not missing, f"not in the wheel (add the folder to [tool.setuptools] packages): {missing}"

    venv = _make_venv(tmp_path, wheel)
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(_run([str(venv / "bin" / "python"), "-c", purelib]).stdout.strip()).resolve()
    env = _env(tmp_path, venv)
    work = tmp_path / "work"
    work.mkdir()
    hydra = str(venv / "bin" / "hydra")

    _run([hydra, "init"], cwd=work, env=env)
    assert (tmp_path / "home" / "hydra.db").is_file()
    assert "PLOT_TYPE" in _run([hydra, "train", "--help"], cwd=work, env=env).stdout

    rows = [json.loads(line) for line in _run([hydra, "presets", "list", "--json"], cwd=work, env=env).stdout.splitlines()]  # fmt: skip
    assert {"classifier-cpu", "classifier-inception", "siamese-cpu"} <= {r["name"] for r in rows}
    for r in rows:
        assert r["source"] == "hydra (packaged)" and Path(r["path"]).is_relative_to(site), r
    assert "head: classifier" in _run([hydra, "presets", "show", "classifier-cpu"], cwd=work, env=env).stdout

    got = json.loads(_run([str(venv / "bin" / "python"), "-c", CHECK, str(ROOT)], cwd=work, env=env).stdout)
    assert Path(got["package"]) == site / "hydra"
    assert Path(got["preset"]) == site / "hydra" / "heads" / "presets" / "classifier-cpu.yaml"
    assert (got["head"], got["backbone"]) == ("classifier", "plotnet")
    assert Path(got["app"]) == site / "hydra" / "webapp" / "app.py"
    assert Path(got["migrations"]) == site / "hydra" / "db" / "migrations" and got["revision"]
    assert Path(got["dashboard"]).is_relative_to(site) and "hydra-serve.service" in got["units"]

    # without its presets the install says so, instead of training some other backbone
    for preset in (site / "hydra" / "heads" / "presets").glob("*.yaml"):
        preset.unlink()
    broken = subprocess.run(
        [hydra, "presets", "list"], cwd=work, env=env, capture_output=True, text=True, timeout=120
    )
    assert broken.returncode == 1 and "presets are missing" in broken.stderr, broken.stderr
    assert "Traceback" not in broken.stderr
