"""SQLModel tables: the whole state of a Hydra deployment.

Times are timezone-aware UTC datetimes (``utcnow()``). JSON columns hold small dicts
(weights per label, per-stage timings, configs). Every table's indexes serve
a query of the serve layer or of a page; see ``hydra/db/queries.py``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, Column, Index, String, UniqueConstraint, false
from sqlmodel import Field, SQLModel

# Inference.origin: who made an inference
LIVE = "live"  # the active model in hydra-serve
SHADOW = "shadow"  # the plot type's shadow (candidate) model in hydra-serve
REPROCESS = "reprocess"  # hydra reprocess, on stored images
ORIGINS = (LIVE, SHADOW, REPROCESS)


def utcnow() -> datetime:
    """Aware UTC now, the form every timestamp column stores."""
    return datetime.now(timezone.utc)


def _json(**kw: Any) -> Any:
    return Field(default_factory=dict, sa_column=Column(JSON, nullable=False), **kw)


class PlotGroup(SQLModel, table=True):
    """A group of plot types, usually a detector system (FCAL, BCAL, ...)."""

    __tablename__ = "plot_group"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64, unique=True)


class PlotType(SQLModel, table=True):
    """One kind of monitoring plot; each has its own labels and models."""

    __tablename__ = "plot_type"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=128, unique=True)
    group_id: int | None = Field(default=None, foreign_key="plot_group.id", index=True)
    description: str = Field(default="", max_length=512)
    collect_percent: float = 0.0
    # rectangles to ignore, in fractions of the image: [[x0, y0, x1, y1], ...]
    mask: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    hidden: bool = False
    created_at: datetime = Field(default_factory=utcnow)


class Label(SQLModel, table=True):
    """A valid label of a plot type (Good, Bad, NoData, ...)."""

    __tablename__ = "label"
    __table_args__ = (UniqueConstraint("plot_type_id", "name", name="uq_label_plot_type_name"),)
    id: int | None = Field(default=None, primary_key=True)
    plot_type_id: int = Field(foreign_key="plot_type.id", index=True)
    name: str = Field(max_length=64)
    color: str = Field(default="#888888", max_length=16)
    is_problem: bool = False
    ordinal: int = 0


class User(SQLModel, table=True):
    __tablename__ = "user"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64, unique=True)
    password_hash: str = Field(max_length=256)
    role: str = Field(default="labeler", max_length=16)  # admin, expert, labeler, viewer
    created_at: datetime = Field(default_factory=utcnow)
    # what the pages remember for this user across sessions and restarts ({"run_opacity": 0.6});
    # NULL until the first one is stored (a JSON column cannot have a default on every backend)
    preferences: dict | None = Field(default=None, sa_column=Column(JSON, nullable=True))


class LoginFailure(SQLModel, table=True):
    """A refused login, kept for a day: the rate limit counts them per user name and per address."""

    __tablename__ = "login_failure"
    __table_args__ = (
        Index("ix_login_failure_name_time", "user_name", "created_at"),
        Index("ix_login_failure_address_time", "address", "created_at"),
        Index("ix_login_failure_time", "created_at"),
    )
    id: int | None = Field(default=None, primary_key=True)
    user_name: str = Field(max_length=64)  # as typed, whether or not such a user exists
    address: str = Field(default="", max_length=64)  # the client's IP address, "" when unknown
    created_at: datetime = Field(default_factory=utcnow)


class Permission(SQLModel, table=True):
    """What a user may do on one plot type."""

    __tablename__ = "permission"
    __table_args__ = (UniqueConstraint("user_id", "plot_type_id", name="uq_permission_user_plot"),)
    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", index=True)
    plot_type_id: int = Field(foreign_key="plot_type.id", index=True)
    can_label: bool = True
    can_threshold: bool = False


class Image(SQLModel, table=True):
    """An image Hydra keeps: ingested, or kept by the Keeper for labeling.

    ``label_id`` is the current human label (None: unlabeled); its history is
    in ``image_label``.
    """

    __tablename__ = "image"
    __table_args__ = (
        Index("ix_image_plot_label_time", "plot_type_id", "label_id", "created_at"),
        Index("ix_image_plot_time", "plot_type_id", "created_at"),
        Index("ix_image_plot_label_doubt", "plot_type_id", "label_id", "doubt"),
        Index("ix_image_run", "run"),
    )
    id: int | None = Field(default=None, primary_key=True)
    path: str = Field(sa_column=Column(String(512), nullable=False, unique=True))
    filename: str = Field(max_length=255)
    plot_type_id: int = Field(foreign_key="plot_type.id")
    run: int = 0
    chunk: int | None = None
    created_at: datetime = Field(default_factory=utcnow)
    content_hash: str = Field(max_length=64, index=True)
    kept_reason: str = Field(default="ingest", max_length=32)
    label_id: int | None = Field(default=None, foreign_key="label.id")
    labeled_at: datetime | None = None
    train_weight: float = 1.0
    doubt: float = 0.0  # 1 - confidence of the model that kept it; for "most doubtful first"


class ImageLabel(SQLModel, table=True):
    """Every human label ever given (the history behind Image.label_id)."""

    __tablename__ = "image_label"
    id: int | None = Field(default=None, primary_key=True)
    image_id: int = Field(foreign_key="image.id", index=True)
    label_id: int = Field(foreign_key="label.id")
    user_id: int | None = Field(default=None, foreign_key="user.id", index=True)
    source: str = Field(default="labeler", max_length=32)  # labeler, editor, ingest, report
    created_at: datetime = Field(default_factory=utcnow, index=True)


class TrainingSet(SQLModel, table=True):
    __tablename__ = "training_set"
    id: int | None = Field(default=None, primary_key=True)
    plot_type_id: int = Field(foreign_key="plot_type.id", index=True)
    sampling: str = Field(default="all", max_length=16)
    params: dict = _json()
    label_counts: dict = _json()
    created_at: datetime = Field(default_factory=utcnow)


class TrainingSetImage(SQLModel, table=True):
    __tablename__ = "training_set_image"
    training_set_id: int = Field(foreign_key="training_set.id", primary_key=True)
    image_id: int = Field(foreign_key="image.id", primary_key=True, index=True)
    split: str = Field(max_length=8)  # train, val, test
    label_id: int = Field(foreign_key="label.id")
    weight: float = 1.0
    copies: int = 1  # >1 when oversampled


class Model(SQLModel, table=True):
    """A trained head for one plot type; at most one active and at most one shadow per plot type."""

    __tablename__ = "model"
    __table_args__ = (Index("ix_model_plot_active", "plot_type_id", "active"),)
    id: int | None = Field(default=None, primary_key=True)
    plot_type_id: int = Field(foreign_key="plot_type.id")
    head: str = Field(max_length=64)
    path: str = Field(max_length=512)
    config: dict = _json()
    input_height: int
    input_width: int
    channels: int = 3
    labels: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    training_set_id: int | None = Field(default=None, foreign_key="training_set.id")
    parent_id: int | None = Field(default=None, foreign_key="model.id")
    metrics: dict = _json()
    active: bool = False
    # the plot type's candidate: served beside the active model, its results stored but never acted on
    shadow: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    created_at: datetime = Field(default_factory=utcnow)
    activated_at: datetime | None = None


class Threshold(SQLModel, table=True):
    """The current confirmation threshold of one label of one model."""

    __tablename__ = "threshold"
    __table_args__ = (UniqueConstraint("model_id", "label", name="uq_threshold_model_label"),)
    id: int | None = Field(default=None, primary_key=True)
    model_id: int = Field(foreign_key="model.id", index=True)
    label: str = Field(max_length=64)
    value: float
    method: str = Field(default="max_f1", max_length=32)
    set_by: int | None = Field(default=None, foreign_key="user.id")
    set_at: datetime = Field(default_factory=utcnow)


class ThresholdChange(SQLModel, table=True):
    """History of threshold edits: who changed what, when."""

    __tablename__ = "threshold_change"
    id: int | None = Field(default=None, primary_key=True)
    model_id: int = Field(foreign_key="model.id", index=True)
    label: str = Field(max_length=64)
    old_value: float | None = None
    new_value: float
    method: str = Field(default="manual", max_length=32)
    set_by: int | None = Field(default=None, foreign_key="user.id")
    set_at: datetime = Field(default_factory=utcnow)


class ModelClassification(SQLModel, table=True):
    """A model's verdict on one held-out image: the enhanced confusion matrix's data."""

    __tablename__ = "model_classification"
    __table_args__ = (UniqueConstraint("model_id", "image_id", name="uq_mc_model_image"),)
    id: int | None = Field(default=None, primary_key=True)
    model_id: int = Field(foreign_key="model.id", index=True)
    image_id: int = Field(foreign_key="image.id", index=True)
    split: str = Field(default="test", max_length=8)
    human_label: str = Field(max_length=64)
    predicted_label: str = Field(max_length=64)
    weights: dict = _json()


class Inference(SQLModel, table=True):
    """RunHistory: every inference the serve layer made, with its timings.

    ``source_key`` identifies the image file (name and content); with the
    model id it makes the Keeper's writes idempotent (and ``hydra reprocess``
    resumable). ``origin`` says who made it: ``live`` (the active model in
    ``hydra-serve``: the only rows the Run, Log, Trends and Status pages show),
    ``shadow`` (the plot type's candidate model, beside the active one) or
    ``reprocess`` (``hydra reprocess`` on stored images).
    """

    __tablename__ = "inference"
    __table_args__ = (
        UniqueConstraint("source_key", "model_id", name="uq_inference_source_model"),
        Index("ix_inference_plot_time", "plot_type_id", "created_at"),
        Index("ix_inference_run", "run"),
        Index("ix_inference_time", "created_at"),
        Index("ix_inference_model_time", "model_id", "created_at"),
    )
    id: int | None = Field(default=None, primary_key=True)
    source_key: str = Field(max_length=64)
    path: str = Field(max_length=512)
    filename: str = Field(max_length=255)
    plot_type_id: int = Field(foreign_key="plot_type.id")
    run: int = 0
    chunk: int | None = None
    model_id: int = Field(foreign_key="model.id")
    label: str = Field(max_length=64)
    weight: float = 0.0
    weights: dict = _json()
    confirmed: bool = False
    is_problem: bool = False
    heatmap_path: str | None = Field(default=None, max_length=512)
    kept_image_id: int | None = None
    timings: dict = _json()
    file_time: datetime | None = None
    origin: str = Field(default=LIVE, max_length=16, sa_column_kwargs={"server_default": LIVE})
    created_at: datetime = Field(default_factory=utcnow)


class RunTime(SQLModel, table=True):
    """The recent window of inferences the Run page shows (pruned by the Keeper)."""

    __tablename__ = "run_time"
    __table_args__ = (
        Index("ix_run_time_plot_time", "plot_type_id", "created_at"),
        Index("ix_run_time_created", "created_at"),  # the Keeper prunes the window by age
    )
    id: int | None = Field(default=None, primary_key=True)
    inference_id: int = Field(foreign_key="inference.id", unique=True)
    plot_type_id: int = Field(foreign_key="plot_type.id")
    run: int = 0
    chunk: int | None = None
    label: str = Field(max_length=64)
    weight: float = 0.0
    confirmed: bool = False
    is_problem: bool = False
    image_path: str = Field(max_length=512)
    heatmap_path: str | None = Field(default=None, max_length=512)
    created_at: datetime = Field(default_factory=utcnow)


class ErrorRecord(SQLModel, table=True):
    """A bad input or a failed stage; the file went to quarantine."""

    __tablename__ = "error_record"
    __table_args__ = (Index("ix_error_time", "created_at"),)
    id: int | None = Field(default=None, primary_key=True)
    source_key: str | None = Field(default=None, max_length=64, index=True)
    path: str = Field(max_length=512)
    filename: str = Field(max_length=255)
    stage: str = Field(max_length=16)
    kind: str = Field(max_length=32)
    message: str = Field(max_length=1024)
    quarantine_path: str | None = Field(default=None, max_length=512)
    created_at: datetime = Field(default_factory=utcnow)


class Alarm(SQLModel, table=True):
    __tablename__ = "alarm"
    __table_args__ = (Index("ix_alarm_time", "created_at"),)
    id: int | None = Field(default=None, primary_key=True)
    plot_type_id: int = Field(foreign_key="plot_type.id", index=True)
    run: int = 0
    inference_id: int | None = None
    label: str = Field(max_length=64)
    message: str = Field(max_length=1024)
    raised: bool = True  # False: logged only (run conditions said no)
    condition: str | None = Field(default=None, max_length=255)
    acknowledged_by: int | None = Field(default=None, foreign_key="user.id")
    acknowledged_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)


class Heartbeat(SQLModel, table=True):
    """The last sign of life of each serve process (for the app's sidebar)."""

    __tablename__ = "heartbeat"
    id: int | None = Field(default=None, primary_key=True)
    process: str = Field(max_length=64, unique=True)
    pid: int = 0
    host: str = Field(default="", max_length=128)
    info: dict = _json()
    last_seen: datetime = Field(default_factory=utcnow)
