"""sparktf: from a raw clickstream on Spark to TensorFlow recommenders, trained,
tracked in MLflow, validated and served.

``import sparktf`` is cheap: pyspark, tensorflow, mlflow and scann are imported
only inside the functions that need them. Importing the package sets
``TF_USE_LEGACY_KERAS=1`` so that TensorFlow, whenever it loads in this process
(a Spark executor included), uses tf-keras.
"""

from __future__ import annotations

from sparktf.tfenv import ensure_legacy_keras as _ensure_legacy_keras

_ensure_legacy_keras()

from sparktf.config import Config, load_config  # noqa: E402
from sparktf.errors import SparkTFError  # noqa: E402
from sparktf.version import __version__  # noqa: E402

__all__ = [
    "Config",
    "SparkTFError",
    "__version__",
    "get_spark",
    "load_config",
    "load_model",
]


def __getattr__(name: str) -> object:
    # Heavy entry points resolve on first use so the package import stays cheap.
    if name == "get_spark":
        from sparktf.spark import get_spark

        return get_spark
    if name == "load_model":
        # models:/name@champion -> the pyfunc model plus its version, export and index.
        from sparktf.registry.load import load_model

        return load_model
    raise AttributeError(f"module 'sparktf' has no attribute {name!r}")
