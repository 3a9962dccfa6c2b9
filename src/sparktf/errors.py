"""The one error tree of sparktf.

Every error the platform raises on purpose is a :class:`SparkTFError`. Each class
carries a short ``headline`` (what kind of problem) and each instance a message
that says what was seen and what to do next. The CLI prints headline and message
without a traceback for these, and a traceback only for anything else.

Errors cross from Spark executors and TensorFlow workers to the driver, so every
class pickles with all of its fields (``__reduce__``), including subclasses that
add keyword fields of their own.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AnnIndexError",
    "ConfigError",
    "CorruptRecordError",
    "DataError",
    "DataValidationError",
    "EnvironmentCheckError",
    "InferenceError",
    "LauncherError",
    "ModelError",
    "NotEnoughSlotsError",
    "PipelineError",
    "RegistryError",
    "SchemaError",
    "ServingError",
    "SparkTFError",
    "StreamError",
    "TFRecordError",
    "TrackingError",
    "TrainingFailedError",
    "ValidationGateError",
]


class SparkTFError(Exception):
    """Root of every error sparktf raises on purpose.

    Args:
        message: what was seen (the observed value) and what to do next.
        hint: an optional separate next step, printed on its own line.
        **context: structured details (file, byte offset, field, ...) kept for
            programs that want them; they survive pickling.
    """

    headline = "sparktf error"

    def __init__(self, message: str, *, hint: str | None = None, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.context = dict(context)

    def __reduce__(self) -> tuple[Any, ...]:
        # Exception's default reduce passes only args; keyword fields would be
        # lost (or the constructor would fail) on the driver side.
        return (_rebuild, (type(self), self.message, self.hint, self.context, self.__dict__))

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n{self.hint}"
        return self.message

    def render(self) -> str:
        """Headline plus message, as the CLI prints it."""
        return f"{self.headline}: {self}"


def _rebuild(
    cls: type[SparkTFError],
    message: str,
    hint: str | None,
    context: dict[str, Any],
    state: dict[str, Any],
) -> SparkTFError:
    err = cls.__new__(cls)
    SparkTFError.__init__(err, message, hint=hint, **context)
    err.__dict__.update(state)
    return err


class ConfigError(SparkTFError):
    """A configuration value is missing, has the wrong type, or is out of range."""

    headline = "Invalid configuration"


class EnvironmentCheckError(SparkTFError):
    """The machine lacks something a run needs (Java, a package, a GPU, a writable path)."""

    headline = "Environment not ready"


class DataError(SparkTFError):
    """Input data cannot be read or used."""

    headline = "Data problem"


class DataValidationError(DataError):
    """Too many input rows failed validation (they are kept in the quarantine)."""

    headline = "Data validation failed"


class SchemaError(DataError):
    """A column is missing or has a type the operation cannot handle."""

    headline = "Schema mismatch"


class TFRecordError(DataError):
    """A TFRecord file or option cannot be read or written."""

    headline = "TFRecord error"


class CorruptRecordError(TFRecordError):
    """A TFRecord record is truncated or fails its CRC check."""

    headline = "Corrupt TFRecord"


class LauncherError(SparkTFError):
    """Distributed training could not be launched on Spark."""

    headline = "Launcher error"


class NotEnoughSlotsError(LauncherError):
    """The cluster has fewer free task slots than training workers were asked for."""

    headline = "Not enough Spark task slots"


class TrainingFailedError(LauncherError):
    """A training worker failed; the message names the first one and shows its traceback."""

    headline = "Training failed"


class ModelError(SparkTFError):
    """A model cannot be built, saved, loaded or called."""

    headline = "Model error"


class TrackingError(SparkTFError):
    """MLflow tracking failed or is unreachable."""

    headline = "Tracking error"


class RegistryError(TrackingError):
    """A registered model, version or alias is missing or cannot be changed."""

    headline = "Model registry error"


class ValidationGateError(RegistryError):
    """A candidate model failed the validation gate and was not promoted."""

    headline = "Validation gate failed"


class AnnIndexError(SparkTFError):
    """An approximate-nearest-neighbour index cannot be built, saved, loaded or searched."""

    headline = "Index error"


class InferenceError(SparkTFError):
    """Batch inference failed."""

    headline = "Inference error"


class ServingError(SparkTFError):
    """The model server cannot start or answer."""

    headline = "Serving error"


class PipelineError(SparkTFError):
    """The end-to-end pipeline cannot run a stage."""

    headline = "Pipeline error"


class StreamError(SparkTFError):
    """The streaming job (``sparktf stream``) stopped on an error."""

    headline = "Streaming job failed"
