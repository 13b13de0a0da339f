"""Deployment files that ship inside the package, for checkouts and wheels alike.

- ``grafana/hydra-dashboard.json``: the Grafana dashboard (docs/deployment.md, "Prometheus and Grafana");
- ``systemd/*.service``: the systemd units (docs/deployment.md, "Running under systemd").

They are package data, found through :mod:`importlib.resources`; print the
folder with ``python -m hydra.deploy``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def deploy_dir() -> Path:
    """This package's folder (an installed wheel is unpacked, so a real folder)."""
    return Path(str(resources.files(__name__)))


def dashboard() -> Path:
    """The Grafana dashboard JSON."""
    return deploy_dir() / "grafana" / "hydra-dashboard.json"


def systemd_units() -> list[Path]:
    """The systemd unit files, sorted by name."""
    return sorted((deploy_dir() / "systemd").glob("*.service"))
