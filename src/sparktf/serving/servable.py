"""One loaded model version: a SavedModel's signatures, callable on numpy arrays.

TF Serving calls this a servable. Any SavedModel with signatures works: each
signature's structured input and output specs become :class:`SignatureInfo`
(what ``/metadata`` shows and what :mod:`sparktf.serving.tfserving` checks a
request against), and :meth:`SavedModelServable.run` feeds arrays of those dtypes
and returns numpy arrays.

Why not ``tf.keras.models.load_model`` or MLflow's pyfunc loader: the first needs
a Keras model (a plain ``tf.Module`` export has none), the second hides the
signatures behind a pandas interface; TF Serving's API is about signatures.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from sparktf.errors import ModelError, ServingError
from sparktf.serving.tfserving import SignatureInfo, TensorInfo

__all__ = ["SavedModelServable", "is_saved_model_dir"]

# TF errors that mean "the request's tensors do not fit", answered as 400 like TF Serving.
_CLIENT_ERRORS = ("InvalidArgumentError", "OutOfRangeError", "FailedPreconditionError")


def is_saved_model_dir(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "saved_model.pb")) or os.path.isfile(
        os.path.join(path, "saved_model.pbtxt")
    )


class SavedModelServable:
    """A SavedModel version directory, loaded once, with its signatures.

    Args:
        path: the numbered version directory (``<base>/<version>``).
        version: the version number it serves as.

    Raises:
        ModelError: there is no SavedModel at ``path``, it has no signatures, or it
            cannot be loaded.
    """

    def __init__(self, path: str, version: int) -> None:
        from sparktf.tfenv import import_tensorflow

        tf = import_tensorflow()
        if not is_saved_model_dir(path):
            raise ModelError(
                f"No SavedModel in {path} (no saved_model.pb).",
                hint="Point the server at a base path whose numbered folders each hold a SavedModel.",
            )
        try:
            self._loaded = tf.saved_model.load(path)
        except Exception as exc:
            raise ModelError(f"Cannot load the SavedModel at {path}: {exc}") from exc
        self.path = path
        self.version = version
        self._functions: dict[str, Any] = dict(self._loaded.signatures)
        if not self._functions:
            raise ModelError(
                f"The SavedModel at {path} has no serving signatures.",
                hint="Save it with tf.saved_model.save(module, path, signatures={'serving_default': fn}).",
            )
        self.signatures: Mapping[str, SignatureInfo] = {
            name: _signature_info(name, fn) for name, fn in sorted(self._functions.items())
        }
        self._tf = tf

    def run(self, signature: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Call one signature on numpy inputs and return numpy outputs.

        Raises:
            ServingError: 400 when TensorFlow rejects the inputs (bad shape or value),
                500 for any other failure inside the model.
        """
        tf = self._tf
        fn = self._functions[signature]
        info = self.signatures[signature]
        try:
            feed = {name: tf.constant(value, dtype=info.inputs[name].dtype) for name, value in inputs.items()}
            out = fn(**feed)
        except Exception as exc:
            kind = type(exc).__name__
            text = getattr(exc, "message", None) or str(exc)
            text = text.strip().splitlines()[0] if text.strip() else kind
            if kind in _CLIENT_ERRORS or isinstance(exc, TypeError | ValueError):
                raise ServingError(f"{kind}: {text}", status=400) from None
            raise ServingError(f"Model version {self.version} failed: {kind}: {text}", status=500) from exc
        return {name: value.numpy() for name, value in out.items()}


def _signature_info(name: str, fn: Any) -> SignatureInfo:
    _, kwargs = fn.structured_input_signature
    graph_names = {}
    for t in getattr(fn, "inputs", []) or []:
        graph_names[t.name.split(":")[0].removeprefix(f"{name}_")] = t.name
    inputs = {
        key: TensorInfo(_dtype_name(spec.dtype), _shape(spec.shape), graph_names.get(key, f"{name}_{key}:0"))
        for key, spec in sorted(kwargs.items())
    }
    outputs_spec = fn.structured_outputs
    if not isinstance(outputs_spec, Mapping):
        outputs_spec = {"output_0": outputs_spec}
    outputs = {
        key: TensorInfo(_dtype_name(spec.dtype), _shape(spec.shape), f"StatefulPartitionedCall:{i}")
        for i, (key, spec) in enumerate(sorted(outputs_spec.items()))
    }
    return SignatureInfo(name=name, inputs=inputs, outputs=outputs)


def _dtype_name(dtype: Any) -> str:
    return str(dtype.name)


def _shape(shape: Any) -> tuple[int | None, ...] | None:
    if shape.rank is None:
        return None
    return tuple(None if d is None else int(d) for d in shape.as_list())
