"""TensorFlow import discipline: tf-keras (Keras 2) everywhere, set before TF loads.

Under Keras 3, ``model.fit`` fails with MultiWorkerMirroredStrategy
(keras-team/keras#20585) and TensorFlow Recommenders needs tf-keras, so every
process that imports TensorFlow through sparktf must have
``TF_USE_LEGACY_KERAS=1`` before TensorFlow's first import. Importing
:mod:`sparktf` sets it (Spark executors import the package fresh, so it holds
there too), the Spark session factory also passes it as an executor
environment variable, and :func:`import_tensorflow` checks that it took effect.
"""

from __future__ import annotations

import os
import sys
from types import ModuleType

LEGACY_KERAS_ENV = "TF_USE_LEGACY_KERAS"


def ensure_legacy_keras() -> None:
    """Set ``TF_USE_LEGACY_KERAS=1`` for this process and its children.

    Cheap and idempotent; it never imports TensorFlow.
    """
    os.environ[LEGACY_KERAS_ENV] = "1"
    # TF's C++ logging is noisy at INFO; users who want it can set the variable first.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def import_tensorflow() -> ModuleType:
    """Import TensorFlow with tf-keras active and return the module.

    Raises:
        EnvironmentCheckError: TensorFlow was imported before sparktf with Keras 3
            active, or tf-keras is not installed.
    """
    from sparktf.errors import EnvironmentCheckError

    already = "tensorflow" in sys.modules
    ensure_legacy_keras()
    import tensorflow as tf

    keras_version = _keras_version(tf)
    if not keras_version.startswith("2."):
        how = (
            "TensorFlow was imported before sparktf, so TF_USE_LEGACY_KERAS=1 came too late"
            if already
            else "tf-keras is missing or TF ignored TF_USE_LEGACY_KERAS"
        )
        raise EnvironmentCheckError(
            f"tf.keras is Keras {keras_version}, but sparktf needs tf-keras 2.20 ({how}).",
            hint="Import sparktf (or set TF_USE_LEGACY_KERAS=1) before importing tensorflow, "
            "and `pip install tf-keras==2.20.*`.",
        )
    module: ModuleType = tf
    return module


def _keras_version(tf: ModuleType) -> str:
    """The version of the Keras behind ``tf.keras``: tf-keras's module has no
    ``__version__`` of its own, so it is read from the ``tf_keras`` package."""
    try:
        keras = tf.keras
        if getattr(keras, "__name__", "").startswith("tf_keras"):
            import tf_keras

            return str(tf_keras.__version__)
        return str(keras.__version__)
    except Exception:  # noqa: BLE001 - any failure here means tf.keras is unusable
        return "unavailable"


def keras_version() -> str:
    """The Keras version ``tf.keras`` resolves to (imports TensorFlow)."""
    return _keras_version(import_tensorflow())
