"""The registry finds heads through real package metadata: an installed plugin trained, a broken one named.

Both run in child processes, with the plugin installed into a private folder.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "hydra-example-head"


def _install(target: Path) -> None:
    """Install the example plugin (and a broken one) into ``target`` with real metadata."""
    src = target.parent / "src"
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(target), str(src)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    broken = target / "hydra_broken_head-0.1.dist-info"
    broken.mkdir()
    (broken / "METADATA").write_text("Metadata-Version: 2.1\nName: hydra-broken-head\nVersion: 0.1\n")
    (broken / "entry_points.txt").write_text("[hydra.heads]\nbroken = hydra_broken_head_missing:Head\n")


_CHILD = r"""
import json, torch
from torch.utils.data import DataLoader, TensorDataset
import pytorch_lightning as pl
from hydra.heads import HeadLoadError, create_head, head_errors, list_heads, load_head, load_model
out = {"heads": list_heads()}
try:
    load_head("broken")
except HeadLoadError as exc:
    out["broken_error"] = str(exc)
out["errors"] = sorted(head_errors())
out["classifier"] = load_head("classifier").__name__
head = create_head("tinycnn", labels=["Good", "Bad"], input_size=(32, 40))
x = torch.randint(0, 256, (16, 32, 40, 3), dtype=torch.uint8)
y = torch.arange(16) % 2
x[y == 1, 10:20, 15:25] = 0
loader = DataLoader(TensorDataset(x, y, torch.ones(16)), batch_size=8)
pl.Trainer(max_steps=4, logger=False, enable_checkpointing=False, enable_progress_bar=False,
           enable_model_summary=False, accelerator="cpu").fit(head, loader)
head.eval()
head.save(OUT)
again = load_model(OUT)
with torch.no_grad():
    out["max_diff"] = float((again.weights(again.preprocess(x)) - head.weights(head.preprocess(x))).abs().max())
out["loaded"] = type(again).__name__
out["config_head"] = json.load(open(OUT + "/config.json"))["head"]
print("RESULT " + json.dumps(out))
"""


@pytest.mark.slow
def test_plugin_from_installed_distribution_is_found_and_trained(tmp_path):
    target = tmp_path / "site"
    _install(target)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")])}
    code = f"OUT = {str(tmp_path / 'model')!r}\n" + _CHILD
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    out = json.loads(line[len("RESULT ") :])
    assert {"classifier", "siamese", "tinycnn", "broken"} <= set(out["heads"])
    assert "hydra_broken_head_missing" in out["broken_error"] and "failed to import" in out["broken_error"]
    assert out["errors"] == ["broken"]
    assert out["classifier"] == "ClassifierHead"
    assert out["loaded"] == "TinyCNNHead" and out["config_head"] == "tinycnn"
    assert out["max_diff"] < 1e-6


def test_broken_plugin_does_not_hide_the_others(tmp_path):
    """Without installing anything: a broken entry point in the same process."""
    site = tmp_path / "site"
    site.mkdir()
    dist = site / "hydra_broken_head-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: hydra-broken-head\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[hydra.heads]\nbroken = hydra_broken_head_missing:Head\n")
    code = (
        "from hydra.heads import HeadLoadError, list_heads, load_head\n"
        "assert 'broken' in list_heads(), list_heads()\n"
        "try:\n    load_head('broken')\nexcept HeadLoadError as exc:\n    print('ERR', exc)\n"
        "print('OK', load_head('siamese').__name__)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ERR head 'broken'" in proc.stdout and "OK SiameseHead" in proc.stdout
