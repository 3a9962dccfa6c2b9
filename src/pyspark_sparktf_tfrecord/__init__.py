"""Static registration of sparktf's ``tfrecord`` data source.

Spark (4.0+) imports every top-level module whose name starts with ``pyspark_``
the first time a session touches a Python data source, and registers its
``DefaultSource``. Installing sparktf therefore makes ``format("tfrecord")`` work
on any SparkSession, including ones built without ``sparktf.get_spark`` -- as
long as the Python that Spark starts for its workers is the one sparktf is
installed in. Otherwise call ``sparktf.tfrecord.register(spark)``.
"""

from __future__ import annotations

from sparktf.tfrecord.datasource import TFRecordDataSource as DefaultSource

__all__ = ["DefaultSource"]
