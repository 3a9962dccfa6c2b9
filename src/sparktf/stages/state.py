"""What each stage hands the stages after it: typed records, written and read here only.

Every stage returns one frozen record. The runner writes it to
``state/<stage>.json`` (:func:`write_result`), and a later stage, the CLI summary or a
rerun that starts at ``--from`` reads it back with :func:`read_result` as the same
type, so ``trained.models[0].export_path`` is checked by mypy instead of being a
string key into untyped JSON.

Why our own code: a few dataclasses and one JSON round trip; pydantic would be a
dependency for 60 lines.
"""

from __future__ import annotations

import dataclasses
import json
import os
import types
import typing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from sparktf.errors import PipelineError

if TYPE_CHECKING:
    from sparktf.workdir import Workdir

__all__ = [
    "EvaluateResult",
    "FeaturesResult",
    "GenerateResult",
    "IndexResult",
    "RecommendResult",
    "RegisterResult",
    "RegisteredVersion",
    "StageResult",
    "TFRecordsResult",
    "TrainResult",
    "TrainedModel",
    "ValidateResult",
    "read_result",
    "result_path",
    "to_dict",
    "write_result",
]


@dataclass(frozen=True)
class StageResult:
    """Base of the stage records; ``STAGE`` names the stage (and its state file)."""

    STAGE: ClassVar[str] = ""


@dataclass(frozen=True)
class GenerateResult(StageResult):
    STAGE: ClassVar[str] = "generate"
    source: str
    rows: int
    path: str


@dataclass(frozen=True)
class ValidateResult(StageResult):
    STAGE: ClassVar[str] = "validate"
    input_rows: int
    good_rows: int
    quarantined_rows: int
    quarantined: dict[str, int]
    events_path: str
    quarantine_path: str
    report_path: str


@dataclass(frozen=True)
class FeaturesResult(StageResult):
    STAGE: ClassVar[str] = "features"
    path: str
    stats: str
    examples: dict[str, int]
    vocab: dict[str, int]
    users: dict[str, int]


@dataclass(frozen=True)
class TFRecordsResult(StageResult):
    STAGE: ClassVar[str] = "tfrecords"
    path: str
    schema: str
    codec: str
    rows: dict[str, int]
    files: dict[str, int]


@dataclass(frozen=True)
class TrainedModel:
    """One trained model: its MLflow run, its export and how training went."""

    kind: str
    run_id: str
    export_path: str
    model_uri: str
    version: int
    epochs_run: int
    final_metrics: dict[str, float]
    examples_per_second: float
    workers: int
    restarts: int
    history: dict[str, list[float]] = field(default_factory=dict)
    #: Wall time of the launch (every worker, restarts included), seconds.
    train_seconds: float = 0.0


@dataclass(frozen=True)
class TrainResult(StageResult):
    STAGE: ClassVar[str] = "train"
    models: tuple[TrainedModel, ...]

    def model(self, kind: str) -> TrainedModel:
        for m in self.models:
            if m.kind == kind:
                return m
        raise PipelineError(
            f"The train stage trained no {kind!r} model (it trained {', '.join(m.kind for m in self.models)}).",
            hint=f"Add {kind!r} to train.models and run `sparktf run --from train`.",
        )


@dataclass(frozen=True)
class EvaluateResult(StageResult):
    STAGE: ClassVar[str] = "evaluate"
    split: str
    #: ``{model or baseline: EvaluationResult.to_dict()}``, models first: the product protocol.
    results: dict[str, dict[str, Any]]
    table: str
    #: The same under the literature protocol (evaluation/protocols.py).
    literature: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class RegisteredVersion:
    model: str
    version: int
    run_id: str | None
    outcome: str
    report: str | None
    failed_checks: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class RegisterResult(StageResult):
    STAGE: ClassVar[str] = "register"
    registered_model: str
    tracking_uri: str
    champion_alias: str
    versions: tuple[RegisteredVersion, ...]
    champion: int | None
    previous: int | None


@dataclass(frozen=True)
class IndexResult(StageResult):
    STAGE: ClassVar[str] = "index"
    index_dir: str
    kind: str
    num_items: int
    model_version: str
    mlflow_run_id: str | None
    registry_artifact: str | None
    seconds: float
    recall: float | None = None
    k: int | None = None
    qps: float | None = None
    brute_force_qps: float | None = None


@dataclass(frozen=True)
class RecommendResult(StageResult):
    STAGE: ClassVar[str] = "recommend"
    recommendations: str
    table: str | None
    model_version: str
    cold_start_users: int
    users_per_second: float
    seconds: float
    counters: dict[str, int]


R = TypeVar("R", bound=StageResult)


def result_path(paths: Workdir, stage: str) -> str:
    """``state/<stage>.json`` of the workdir (see :meth:`Workdir.state_file`)."""
    return paths.state_file(f"{stage}.json")


def to_dict(record: StageResult) -> dict[str, Any]:
    """The record as plain JSON-ready data (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(record), default=str))  # type: ignore[no-any-return]


def write_result(paths: Workdir, record: StageResult) -> str:
    """Write ``record`` to ``state/<its stage>.json`` atomically; returns the path."""
    path = result_path(paths, record.STAGE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(to_dict(record), fh, indent=2)
    os.replace(tmp, path)
    return path


def read_result(paths: Workdir, cls: type[R]) -> R:
    """Read the record of stage ``cls.STAGE`` back as ``cls``.

    Raises:
        PipelineError: the stage has not run in this workdir, or its state file is from
            another version of sparktf (fields missing or unknown).
    """
    path = result_path(paths, cls.STAGE)
    if not os.path.exists(path):
        raise PipelineError(
            f"{path} does not exist: stage {cls.STAGE!r} has not run in this workdir.",
            hint=f"Run `sparktf run --from {cls.STAGE}`.",
        )
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    try:
        return typing.cast(R, _build(cls, data))
    except (TypeError, KeyError, ValueError) as exc:
        raise PipelineError(
            f"{path} does not hold a {cls.__name__} ({exc}); it was written by another version of sparktf.",
            hint=f"Run the stage again: `sparktf run --from {cls.STAGE}`.",
        ) from None


def _build(tp: Any, value: Any) -> Any:
    origin = typing.get_origin(tp)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        names = {f.name for f in dataclasses.fields(tp) if f.init}
        unknown = set(value) - names
        if unknown:
            raise KeyError(f"unknown field(s) {sorted(unknown)}")
        return tp(**{k: _build(hints[k], v) for k, v in value.items()})
    if origin is tuple:
        (item,) = typing.get_args(tp)[:1]
        return tuple(_build(item, v) for v in value)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        for arg in typing.get_args(tp):
            if arg is not type(None):
                return _build(arg, value)
    if tp is float and isinstance(value, int):
        return float(value)
    return value
