"""The Spark <-> TFRecord bridge: a ``tfrecord`` data source, its codec and a tf.data reader.

Public API (everything heavy is imported on first use):

- :func:`register` -- add ``format("tfrecord")`` to a SparkSession explicitly.
  ``sparktf.get_spark`` does it, and Spark also finds the source by itself through
  the ``pyspark_sparktf_tfrecord`` module when its workers run sparktf's Python.
- :func:`write_tfrecord`, :func:`read_tfrecord` -- DataFrame helpers that also
  cover ``partitionBy`` and every save mode.
- :func:`tfrecord_dataset` -- a batched ``tf.data.Dataset`` over the files, its
  parse spec built from the Spark schema.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["read_tfrecord", "register", "tfrecord_dataset", "write_tfrecord"]


def register(spark: SparkSession) -> None:
    """Register ``format("tfrecord")`` on ``spark`` (idempotent)."""
    from sparktf.tfrecord.datasource import register as _register

    _register(spark)


def write_tfrecord(*args: Any, **kwargs: Any) -> None:
    """See :func:`sparktf.tfrecord.api.write_tfrecord`."""
    from sparktf.tfrecord.api import write_tfrecord as _write

    _write(*args, **kwargs)


def read_tfrecord(*args: Any, **kwargs: Any) -> Any:
    """See :func:`sparktf.tfrecord.api.read_tfrecord`."""
    from sparktf.tfrecord.api import read_tfrecord as _read

    return _read(*args, **kwargs)


def tfrecord_dataset(*args: Any, **kwargs: Any) -> Any:
    """See :func:`sparktf.tfrecord.dataset.tfrecord_dataset`."""
    from sparktf.tfrecord.dataset import tfrecord_dataset as _dataset

    return _dataset(*args, **kwargs)
