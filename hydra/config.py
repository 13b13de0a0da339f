"""Deployment configuration: one YAML file plus environment overrides.

The file is found, in order, at ``--config`` / ``$HYDRA_CONFIG``, at
``$HYDRA_HOME/hydra.yaml``, at ``./configs/hydra.yaml``; without one the
built-in defaults apply. Every key may be overridden from the environment:
``HYDRA_HOME``, ``HYDRA_DB_URL`` and, for nested keys,
``HYDRA_SERVE__WORKERS=4`` (two underscores between levels).

Example:
    >>> from hydra.config import load_config
    >>> cfg = load_config()
    >>> cfg.paths.input_dir  # doctest: +SKIP
    PosixPath('var/input')
"""

from __future__ import annotations

import os
import re
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

DEFAULT_PATTERN = r"^(?P<plot_type>[A-Za-z0-9_]+)-(?P<run>\d+)(?:_(?P<chunk>\d+))?\.(?:png|jpe?g)$"


class ConfigError(ValueError):
    """A configuration value is missing or wrong; the message names the key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StorageConfig(_Section):
    """Storage folders; relative paths are taken under ``home``."""

    input: Path = Path("input")
    short_term: Path = Path("short_term")
    kept: Path = Path("kept")
    quarantine: Path = Path("quarantine")
    heatmaps: Path = Path("heatmaps")
    models: Path = Path("models")


class NamingConfig(_Section):
    pattern: str = DEFAULT_PATTERN

    @field_validator("pattern")
    @classmethod
    def _valid_regex(cls, value: str) -> str:
        try:
            compiled = re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from exc
        missing = {"plot_type", "run"} - set(compiled.groupindex)
        if missing:
            raise ValueError(f"the pattern needs the named groups {sorted(missing)}")
        return value


class ServeConfig(_Section):
    """The ZeroMQ pipeline: addresses, workers, batching and limits."""

    # "" = a socket private to HYDRA_HOME (ipc:// under its run/ folder)
    balancer_frontend: str = ""
    balancer_backend: str = ""
    keeper_address: str = ""
    control_address: str = ""
    # CPU workers; 0: none here (a hub whose workers all run on other hosts)
    workers: int = Field(2, ge=0, le=256)
    policy: Literal["least_loaded", "round_robin"] = "least_loaded"
    # auto: one worker per visible GPU (cuda:0, cuda:1, ...), else `workers` on the CPU
    device: str = "cpu"
    # torch.compile the networks (cache under HYDRA_HOME/cache/torch-compile)
    compile: bool = False
    max_batch: int = Field(32, ge=1, le=4096)
    max_wait_ms: float = Field(10.0, ge=0)
    torch_threads: int = Field(0, ge=0)
    order_deadline_s: float = Field(30.0, gt=0)
    polling: bool = False
    # Feeder decode processes; 0: one per usable core, at most 16
    decoders: int = Field(0, ge=0, le=64)
    rescan_interval_s: float = Field(5.0, gt=0)
    settle_ms: float = Field(200.0, ge=0)
    model_refresh_s: float = Field(5.0, gt=0)
    max_file_bytes: int = Field(50_000_000, gt=0)
    max_image_pixels: int = Field(40_000_000, gt=0)
    # a cap: only fast input fills it (see the Keeper); fewer commits and round trips per result
    keeper_batch: int = Field(2000, ge=1)
    keeper_flush_ms: float = Field(50.0, ge=0)
    runtime_window_min: float = Field(60.0, gt=0)
    metrics_port: int = Field(9464, ge=0, le=65535)
    metrics_bind: str = "127.0.0.1"
    keeper_max_pending: int = Field(5000, ge=1)
    keeper_max_heatmap_mb: int = Field(256, ge=1)
    max_in_flight: int = Field(2000, ge=1)
    heatmaps_for: Literal["problem", "all", "none"] = "problem"
    onboard_new_plot_types: bool = False

    @field_validator("device")
    @classmethod
    def _valid_device(cls, value: str) -> str:
        value = value.strip().lower()
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", value):
            raise ValueError("expected auto, cpu, cuda or cuda:N")
        return value

    @field_validator("balancer_frontend", "balancer_backend", "keeper_address", "control_address")
    @classmethod
    def _valid_address(cls, value: str) -> str:
        if value and not re.match(r"^(tcp|ipc)://\S+$", value):
            raise ValueError("expected empty (a socket private to HYDRA_HOME), ipc://PATH or tcp://HOST:PORT")
        return value


class AlarmConfig(_Section):
    consecutive: int = Field(3, ge=1)
    hook: str | None = None
    condition_command: str | None = None
    condition_min: float = 0.0
    condition_name: str = "beam current"


class PlotTypeDefaults(_Section):
    """What a new plot type gets unless its creator says otherwise."""

    collect_percent: float = Field(2.0, ge=0, le=100)


class AppConfig(_Section):
    port: int = Field(8501, ge=1, le=65535)
    open_viewing: bool = True
    refresh_s: float = Field(5.0, gt=0)
    stale_after_min: float = Field(15.0, gt=0)


class HydraConfig(BaseSettings):
    """The whole deployment configuration (see ``configs/hydra.yaml``)."""

    model_config = SettingsConfigDict(env_prefix="HYDRA_", env_nested_delimiter="__", extra="forbid")

    name: str = "Hydra"
    home: Path = Path("var")
    db_url: str | None = None
    storage: StorageConfig = StorageConfig()
    naming: NamingConfig = NamingConfig()
    serve: ServeConfig = ServeConfig()
    alarms: AlarmConfig = AlarmConfig()
    plot_types: PlotTypeDefaults = PlotTypeDefaults()
    app: AppConfig = AppConfig()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # the environment wins over the file, which arrives as init kwargs
        return env_settings, init_settings

    @field_validator("db_url")
    @classmethod
    def _valid_url(cls, value: str | None) -> str | None:
        if value and not re.match(r"^(sqlite|mysql\+pymysql|mariadb\+pymysql|postgresql[+\w]*)://", value):
            raise ValueError("expected sqlite:///PATH or mysql+pymysql://USER:PASS@HOST:PORT/DB")
        return value

    def path(self, which: str) -> Path:
        """The absolute storage folder ``which`` (input, kept, models, ...)."""
        p = Path(getattr(self.storage, which))
        return p if p.is_absolute() else (self.home / p).resolve()

    @property
    def input_dir(self) -> Path:
        return self.path("input")

    @property
    def database_url(self) -> str:
        if self.db_url:
            return self.db_url
        return f"sqlite:///{(self.home / 'hydra.db').resolve()}"

    @cached_property
    def naming_regex(self) -> re.Pattern[str]:
        return re.compile(self.naming.pattern)

    def ensure_dirs(self) -> None:
        """Create HYDRA_HOME and every storage folder."""
        self.home.mkdir(parents=True, exist_ok=True)
        for which in StorageConfig.model_fields:
            self.path(which).mkdir(parents=True, exist_ok=True)


def find_config_file(explicit: str | Path | None = None) -> Path | None:
    """The deployment file to read, or None for the built-in defaults."""
    if explicit:
        return Path(explicit)
    if os.environ.get("HYDRA_CONFIG"):
        return Path(os.environ["HYDRA_CONFIG"])
    home = Path(os.environ.get("HYDRA_HOME", "var"))
    for candidate in (home / "hydra.yaml", Path("configs/hydra.yaml")):
        if candidate.is_file():
            return candidate
    return None


def _format_errors(exc: ValidationError, source: str) -> str:
    lines = [f"bad configuration in {source}:"]
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        lines.append(f"  {key}: {err['msg']} (got {err.get('input')!r})")
    return "\n".join(lines)


def load_config(path: str | Path | None = None, **overrides: Any) -> HydraConfig:
    """Read the deployment config; raise ConfigError naming the bad key."""
    file = find_config_file(path)
    data: dict[str, Any] = {}
    source = "defaults and environment"
    if file is not None:
        source = str(file)
        if not file.is_file():
            raise ConfigError(f"config file {file} does not exist")
        try:
            data = yaml.safe_load(file.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {file} is not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"config file {file} must hold a mapping of keys, not {type(data).__name__}")
    data.update(overrides)
    try:
        return HydraConfig(**data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, source)) from None
