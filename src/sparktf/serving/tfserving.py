"""TensorFlow Serving's REST wire format: JSON in, numpy tensors, JSON out (pure).

This module is the contract a client of TF Serving relies on, copied from
``tensorflow_serving/g3doc/api_rest.md`` and the server's ``util/json_tensor.cc``:

* ``:predict`` takes ``{"signature_name"?, "instances": ...}`` (row format) or
  ``{"signature_name"?, "inputs": ...}`` (columnar), never both. A single named input
  may be given bare; several are objects keyed by input name.
* Row requests are answered with ``{"predictions": ...}``, columnar ones with
  ``{"outputs": ...}``; a single output's name is dropped.
* Binary strings travel as ``{"b64": "..."}``, and outputs whose name ends in
  ``_bytes`` are always written that way. ``NaN`` and ``Infinity`` are accepted
  and written (non-strict JSON, as TF Serving does).
* Errors are ``{"error": "..."}`` with the HTTP status of the gRPC code.

Why our own code: no Python package implements the server side of this format
(``tensorflow-serving-api`` has only the client protos, and MLflow's scoring
server accepts the same request keys but always answers ``predictions``), and the
dtype/shape checks must come from each signature so that a bad request is a 400
that names the input, never a TensorFlow stack trace. Floats are written with the
shortest text that reads back to the same float32 (``0.1``, not
``0.10000000149011612``), which json.dumps cannot do for float32.

Nothing here imports TensorFlow: signatures arrive as :class:`SignatureInfo`.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sparktf.errors import ServingError
from sparktf.online.events import json_type

__all__ = [
    "DEFAULT_SIGNATURE",
    "PredictRequest",
    "SignatureInfo",
    "TensorInfo",
    "bad_request",
    "decode_examples_request",
    "decode_predict_request",
    "encode_error",
    "encode_examples_response",
    "encode_json",
    "encode_predict_response",
    "metadata_document",
    "not_found",
    "parse_json_body",
    "parse_version",
    "status_document",
]

DEFAULT_SIGNATURE = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"

# TF dtype name -> (DataType enum name in metadata, numpy dtype used on the wire side).
_DTYPES: dict[str, tuple[str, Any]] = {
    "float16": ("DT_HALF", np.float16),
    "bfloat16": ("DT_BFLOAT16", np.float32),  # numpy has no bfloat16; TF casts on the way in
    "float32": ("DT_FLOAT", np.float32),
    "float64": ("DT_DOUBLE", np.float64),
    "int8": ("DT_INT8", np.int8),
    "int16": ("DT_INT16", np.int16),
    "int32": ("DT_INT32", np.int32),
    "int64": ("DT_INT64", np.int64),
    "uint8": ("DT_UINT8", np.uint8),
    "uint16": ("DT_UINT16", np.uint16),
    "uint32": ("DT_UINT32", np.uint32),
    "uint64": ("DT_UINT64", np.uint64),
    "bool": ("DT_BOOL", np.bool_),
    "string": ("DT_STRING", object),
}


def bad_request(message: str) -> ServingError:
    """A 400 (gRPC INVALID_ARGUMENT), as TF Serving answers a malformed request."""
    return ServingError(message, status=400)


def not_found(message: str) -> ServingError:
    """A 404 (gRPC NOT_FOUND): no such model, version, label or signature."""
    return ServingError(message, status=404)


# --------------------------------------------------------------------------- signatures


@dataclass(frozen=True)
class TensorInfo:
    """One named input or output of a signature.

    Attributes:
        dtype: TensorFlow's dtype name (``float32``, ``string``, ...).
        shape: the static shape, ``None`` for an unknown dimension; ``None`` as a whole
            for an unknown rank.
        tensor_name: the graph tensor's name, shown in ``/metadata``.
    """

    dtype: str
    shape: tuple[int | None, ...] | None
    tensor_name: str = ""

    def describe_shape(self) -> str:
        if self.shape is None:
            return "any shape"
        return "[" + ", ".join("-1" if d is None else str(d) for d in self.shape) + "]"


@dataclass(frozen=True)
class SignatureInfo:
    """A serving signature: named inputs and outputs (ordered by name, as TF Serving lists them)."""

    name: str
    inputs: Mapping[str, TensorInfo] = field(default_factory=dict)
    outputs: Mapping[str, TensorInfo] = field(default_factory=dict)
    method_name: str = PREDICT_METHOD

    @property
    def batchable(self) -> bool:
        """True when every input and output has a free leading (batch) dimension, so that
        several requests can be stacked along it and the outputs split back."""
        tensors = list(self.inputs.values()) + list(self.outputs.values())
        return bool(tensors) and all(t.shape is not None and len(t.shape) >= 1 and t.shape[0] is None for t in tensors)


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True, eq=False)
class PredictRequest:
    """A decoded ``:predict`` body.

    Attributes:
        signature: the signature it runs.
        inputs: input name -> array of the signature's dtype (strings as bytes objects).
        row_format: ``instances`` (True) or ``inputs`` (False); decides the reply's key.
        rows: the shared leading dimension of the inputs, or -1 when they differ
            (columnar requests only; such requests are never batched with others).
    """

    signature: SignatureInfo
    inputs: dict[str, np.ndarray]
    row_format: bool
    rows: int


def parse_json_body(raw: bytes) -> dict[str, Any]:
    """Parse a request body as a JSON object (``NaN``/``Infinity`` allowed).

    Raises:
        ServingError: 400 when the body is not UTF-8 JSON or not an object.
    """
    try:
        body = json.loads(raw)
    except UnicodeDecodeError as exc:
        raise bad_request(f"JSON Parse error: the body is not UTF-8 text (byte offset {exc.start}).") from None
    except json.JSONDecodeError as exc:
        raise bad_request(f"JSON Parse error: {exc.msg} at byte offset {exc.pos}.") from None
    except RecursionError:
        raise bad_request("JSON Parse error: the body is nested too deeply.") from None
    except ValueError:
        # Python refuses to convert integers of more than sys.get_int_max_str_digits()
        # digits (a guard against quadratic-time parsing); that is the client's number.
        limit = sys.get_int_max_str_digits()
        raise bad_request(
            f"JSON Parse error: a number in the body has more than {limit} digits; send it as a string."
        ) from None
    if not isinstance(body, dict):
        raise bad_request(f"The request body must be a JSON object; got a JSON {json_type(body)}.")
    return body


def parse_version(text: str) -> int:
    """A version path segment as an int (``/versions/123``).

    Raises:
        ServingError: 400 for anything but decimal digits, as TF Serving's URL parser.
    """
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise bad_request(f"Malformed request: version {text!r} is not a non-negative integer.")
    return int(text)


def decode_predict_request(
    body: Mapping[str, Any], signatures: Mapping[str, SignatureInfo], model: str = "model"
) -> PredictRequest:
    """Turn a ``:predict`` JSON body into named arrays for one signature.

    Args:
        body: the parsed JSON object.
        signatures: the servable's signatures by name.
        model: the model's name, for messages.

    Raises:
        ServingError: 400 for a malformed body, an unknown signature, a missing or
            extra input, a ragged list, or a value of the wrong type or shape.
    """
    allowed = {"signature_name", "instances", "inputs"}
    extra = sorted(set(body) - allowed)
    if extra:
        raise bad_request(
            f"Unknown key {extra[0]!r} in the :predict request; allowed keys: 'signature_name', and one of "
            "'instances' (row format) or 'inputs' (columnar format)."
        )
    sig = _signature(body, signatures, model)
    if "instances" in body and "inputs" in body:
        raise bad_request("A request may not have both 'instances' (row format) and 'inputs' (columnar format).")
    if "instances" in body:
        inputs = _decode_rows(body["instances"], sig)
        rows = len(body["instances"])
        return PredictRequest(sig, inputs, True, rows)
    if "inputs" in body:
        inputs = _decode_columns(body["inputs"], sig)
        leading = {a.shape[0] if a.ndim else -1 for a in inputs.values()}
        return PredictRequest(sig, inputs, False, leading.pop() if len(leading) == 1 else -1)
    raise bad_request("Missing 'inputs' or 'instances' key in the :predict request.")


def _signature(body: Mapping[str, Any], signatures: Mapping[str, SignatureInfo], model: str) -> SignatureInfo:
    name = body.get("signature_name", DEFAULT_SIGNATURE)
    if not isinstance(name, str):
        raise bad_request(f"'signature_name' must be a string; got a JSON {json_type(name)}.")
    sig = signatures.get(name or DEFAULT_SIGNATURE)
    if sig is None:
        raise bad_request(
            f'Serving signature name: "{name}" not found in signature def of model {model!r}; '
            f"it has: {', '.join(sorted(signatures)) or 'none'}."
        )
    return sig


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and "b64" in value


def _decode_rows(instances: Any, sig: SignatureInfo) -> dict[str, np.ndarray]:
    if not isinstance(instances, list):
        raise bad_request(f"'instances' must be a list (one entry per row); got a JSON {json_type(instances)}.")
    if not instances:
        raise bad_request("'instances' is an empty list; send at least one row.")
    names = list(sig.inputs)
    named = all(isinstance(x, dict) and not _is_b64(x) for x in instances)
    if not named:
        if any(isinstance(x, dict) and not _is_b64(x) for x in instances):
            raise bad_request("'instances' mixes objects and bare values; use one form for every row.")
        if len(names) != 1:
            raise bad_request(
                f"Signature {sig.name!r} has {len(names)} inputs ({', '.join(names)}), so each entry of 'instances' "
                "must be an object keyed by input name."
            )
        return {names[0]: _to_array(instances, sig.inputs[names[0]], f"input {names[0]!r}", row_format=True)}
    out: dict[str, np.ndarray] = {}
    for i, row in enumerate(instances):
        _check_keys(row, sig, f"instances[{i}]")
    for input_name in names:
        column = [row[input_name] for row in instances]
        out[input_name] = _to_array(column, sig.inputs[input_name], f"input {input_name!r}", row_format=True)
    return out


def _decode_columns(inputs: Any, sig: SignatureInfo) -> dict[str, np.ndarray]:
    names = list(sig.inputs)
    if isinstance(inputs, dict) and not _is_b64(inputs):
        _check_keys(inputs, sig, "'inputs'")
        return {n: _to_array(inputs[n], sig.inputs[n], f"input {n!r}", row_format=False) for n in names}
    if len(names) != 1:
        raise bad_request(
            f"Signature {sig.name!r} has {len(names)} inputs ({', '.join(names)}), so 'inputs' must be an object "
            "keyed by input name."
        )
    return {names[0]: _to_array(inputs, sig.inputs[names[0]], f"input {names[0]!r}", row_format=False)}


def _check_keys(obj: Mapping[str, Any], sig: SignatureInfo, where: str) -> None:
    missing = [n for n in sig.inputs if n not in obj]
    unknown = sorted(k for k in obj if k not in sig.inputs)
    if unknown:
        raise bad_request(
            f"{where} has input {unknown[0]!r}, which signature {sig.name!r} does not take; "
            f"its inputs are: {', '.join(sig.inputs)}."
        )
    if missing:
        raise bad_request(f"{where} lacks input {missing[0]!r} of signature {sig.name!r}.")


def _shape_and_leaves(value: Any, where: str) -> tuple[tuple[int, ...], list[Any]]:
    """The rectangular shape of a nested JSON list and its leaves in row-major order."""
    if not isinstance(value, list):
        return (), [value]
    shape: list[int] = []
    level: list[Any] = [value]
    depth = 0
    while True:
        lists = [isinstance(x, list) for x in level]
        if not any(lists):
            return tuple(shape), level
        if not all(lists):
            raise bad_request(
                f"{where} mixes lists and scalars at nesting depth {depth}; tensors must be rectangular lists."
            )
        widths = {len(x) for x in level}
        if len(widths) != 1:
            raise bad_request(
                f"{where} is a ragged list: at nesting depth {depth} the lists have lengths "
                f"{sorted(widths)[:5]}; every row must have the same length."
            )
        width = widths.pop()
        shape.append(width)
        if width == 0:
            return tuple(shape), []
        level = [y for x in level for y in x]
        depth += 1
        if depth > 32:
            raise bad_request(f"{where} is nested more than 32 levels deep.")


def _to_array(value: Any, info: TensorInfo, where: str, *, row_format: bool) -> np.ndarray:
    shape, leaves = _shape_and_leaves(value, where)
    if row_format and not shape:
        raise bad_request(f"{where}: 'instances' must be a list of rows.")
    _check_shape(shape, info, where)
    wire, np_dtype = _DTYPES.get(info.dtype, (None, None))
    if wire is None:
        raise bad_request(f"{where} has dtype {info.dtype}, which the JSON API cannot carry.")
    try:
        if np_dtype is object:
            flat = np.empty(len(leaves), dtype=object)
            flat[:] = [_string_leaf(x, where) for x in leaves]
            return flat.reshape(shape)
        if np_dtype is np.bool_:
            if not all(isinstance(x, bool) for x in leaves):
                bad = next(x for x in leaves if not isinstance(x, bool))
                raise bad_request(f"{where} expects true/false (DT_BOOL); got {_short(bad)}.")
            return np.array(leaves, dtype=np.bool_).reshape(shape)
        if np.issubdtype(np_dtype, np.integer):
            ints = [_int_leaf(x, where, info.dtype) for x in leaves]
            limits = np.iinfo(np_dtype)
            for x in ints:
                if x < limits.min or x > limits.max:
                    raise bad_request(f"{where}: {x} is out of range for {info.dtype} [{limits.min}, {limits.max}].")
            return np.array(ints, dtype=np_dtype).reshape(shape)
        for x in leaves:
            if isinstance(x, bool) or not isinstance(x, int | float):
                raise bad_request(f"{where} expects numbers ({wire}); got {_short(x)}.")
        with np.errstate(over="ignore"):
            return np.array(leaves, dtype=np_dtype).reshape(shape)
    except OverflowError:
        raise bad_request(f"{where}: a number is too large for {info.dtype}.") from None


def _string_leaf(x: Any, where: str) -> bytes:
    if isinstance(x, str):
        return x.encode("utf-8", "surrogatepass")
    if _is_b64(x):
        if not isinstance(x["b64"], str):
            raise bad_request(f"{where}: the value of 'b64' must be a base64 string; got {_short(x['b64'])}.")
        try:
            return base64.b64decode(x["b64"], validate=True)
        except (binascii.Error, ValueError):
            raise bad_request(f"{where}: {_short(x['b64'])} is not valid base64.") from None
    raise bad_request(f'{where} expects strings (DT_STRING) or {{"b64": ...}} objects; got {_short(x)}.')


def _int_leaf(x: Any, where: str, dtype: str) -> int:
    if isinstance(x, bool):
        raise bad_request(f"{where} expects integers ({dtype}); got {_short(x)}.")
    if isinstance(x, int):
        return x
    if isinstance(x, float) and math.isfinite(x) and x.is_integer():
        return int(x)
    raise bad_request(f"{where} expects integers ({dtype}); got {_short(x)}.")


def _check_shape(shape: tuple[int, ...], info: TensorInfo, where: str) -> None:
    if info.shape is None:
        return
    want = info.shape
    if len(shape) != len(want) or any(w is not None and w != s for w, s in zip(want, shape, strict=False)):
        got = "[" + ", ".join(str(s) for s in shape) + "]"
        raise bad_request(f"{where} has shape {got}, but the signature expects {info.describe_shape()}.")


def decode_examples_request(
    body: Mapping[str, Any], signatures: Mapping[str, SignatureInfo], model: str = "model"
) -> PredictRequest:
    """Decode a ``:regress``/``:classify`` body onto a signature's named inputs.

    TF Serving feeds serialized ``tf.Example`` protos to a classify/regress
    signature; a SavedModel written with ``tf.saved_model.save`` has predict
    signatures only, so each example's features (plus ``context``) become one row
    of the inputs of the same names. A one-element feature list is taken as its
    value when the input holds one value per row.

    Raises:
        ServingError: 400 for a malformed body, a context feature repeated in an
            example, or a feature that is not an input of the signature.
    """
    allowed = {"signature_name", "context", "examples"}
    extra = sorted(set(body) - allowed)
    if extra:
        raise bad_request(f"Unknown key {extra[0]!r}; allowed keys: 'signature_name', 'context', 'examples'.")
    examples = body.get("examples")
    if not isinstance(examples, list) or not examples or not all(isinstance(e, dict) for e in examples):
        raise bad_request("'examples' must be a non-empty list of objects (feature name -> value or list).")
    context = body.get("context", {})
    if not isinstance(context, dict):
        raise bad_request(f"'context' must be an object; got a JSON {json_type(context)}.")
    rows = []
    for i, example in enumerate(examples):
        clash = sorted(set(context) & set(example))
        if clash:
            raise bad_request(f"Feature {clash[0]!r} is in 'context' and in examples[{i}]; it may appear in one only.")
        rows.append({**context, **example})
    sig = _signature(body, signatures, model)
    for name, info in sig.inputs.items():
        if info.shape is not None and len(info.shape) == 1:
            for row in rows:
                if isinstance(row.get(name), list) and len(row[name]) == 1:
                    row[name] = row[name][0]
    return decode_predict_request({"signature_name": sig.name, "instances": rows}, {sig.name: sig}, model)


def encode_examples_response(outputs: Mapping[str, np.ndarray], signature: SignatureInfo, method: str) -> bytes:
    """``{"results": ...}`` of ``:regress`` (one number per example) or ``:classify``
    (``[[label, score], ...]`` per example, from outputs ``classes`` and ``scores``).

    Raises:
        ServingError: 400 when the signature's outputs do not fit the method.
    """
    if method == "regress":
        name = "outputs" if "outputs" in outputs else (next(iter(outputs)) if len(outputs) == 1 else None)
        if name is None:
            raise bad_request(
                f"Signature {signature.name!r} has outputs {', '.join(sorted(outputs))}; :regress needs one output "
                "(or one named 'outputs')."
            )
        values = np.asarray(outputs[name])
        if values.ndim == 2 and values.shape[1] == 1:
            values = values[:, 0]
        if values.ndim != 1 or values.dtype.kind != "f":
            raise bad_request(f"Output {name!r} is not one number per example (shape {list(values.shape)}).")
        return b'{"results":' + _tensor_text(values, name).encode() + b"}"
    scores = outputs.get("scores")
    if scores is None or np.asarray(scores).ndim != 2:
        raise bad_request(
            f"Signature {signature.name!r} has no 2-D 'scores' output, which :classify needs "
            f"(it has {', '.join(sorted(outputs))})."
        )
    scores = np.asarray(scores)
    classes = outputs.get("classes")
    labels = np.full(scores.shape, "", dtype=object) if classes is None else np.asarray(classes)
    if labels.shape != scores.shape:
        raise bad_request(f"Outputs 'classes' {list(labels.shape)} and 'scores' {list(scores.shape)} differ in shape.")
    label_text = _leaf_texts(labels, "classes") if labels.dtype.kind in "OSU" else labels.astype(str)
    score_text = _leaf_texts(scores, "scores")
    rows = [
        "[" + ",".join(f"[{lab},{sc}]" for lab, sc in zip(lrow, srow, strict=True)) + "]"
        for lrow, srow in zip(label_text.tolist(), score_text.tolist(), strict=True)
    ]
    return ('{"results":[' + ",".join(rows) + "]}").encode()


# --------------------------------------------------------------------------- replies


def encode_predict_response(outputs: Mapping[str, np.ndarray], signature: SignatureInfo, row_format: bool) -> bytes:
    """The ``:predict`` reply as JSON bytes.

    Raises:
        ServingError: 400 when a row-format reply is asked of outputs whose leading
            dimensions differ (TF Serving's rule; use the columnar format then).
    """
    names = [n for n in signature.outputs if n in outputs] or sorted(outputs)
    if not row_format:
        if len(names) == 1:
            return b'{"outputs":' + _tensor_text(outputs[names[0]], names[0]).encode() + b"}"
        parts = [f"{json.dumps(n)}:{_tensor_text(outputs[n], n)}" for n in names]
        return ('{"outputs":{' + ",".join(parts) + "}}").encode()
    sizes = {n: (outputs[n].shape[0] if outputs[n].ndim else None) for n in names}
    if len(set(sizes.values())) != 1 or None in sizes.values():
        raise bad_request(
            "The outputs of signature "
            f"{signature.name!r} do not share a batch dimension ({', '.join(f'{n}: {s}' for n, s in sizes.items())}), "
            "so they cannot be returned in row format; send the request with 'inputs' (columnar format)."
        )
    if len(names) == 1:
        return b'{"predictions":' + _tensor_text(outputs[names[0]], names[0]).encode() + b"}"
    columns = [_rows_text(outputs[n], n) for n in names]
    keys = [json.dumps(n) for n in names]
    rows = [
        "{" + ",".join(f"{k}:{col[i]}" for k, col in zip(keys, columns, strict=True)) + "}"
        for i in range(len(columns[0]))
    ]
    return ('{"predictions":[' + ",".join(rows) + "]}").encode()


def _leaf_texts(a: np.ndarray, name: str) -> np.ndarray:
    """Each element of ``a`` as JSON text, same shape."""
    kind = a.dtype.kind
    if kind == "f":
        text = np.asarray(a, dtype=np.float32 if a.dtype.itemsize <= 4 else np.float64).astype(str)
        text = np.where(text == "nan", "NaN", text)
        text = np.where(text == "inf", "Infinity", text)
        return np.where(text == "-inf", "-Infinity", text)
    if kind in "iu":
        return a.astype(str)
    if kind == "b":
        return np.where(a, "true", "false")
    binary = name.endswith("_bytes")
    flat = [_string_text(x, binary) for x in a.reshape(-1).tolist()]
    return np.array(flat, dtype=object).reshape(a.shape)


def _string_text(x: Any, binary: bool) -> str:
    if isinstance(x, str):
        x = x.encode("utf-8", "surrogatepass")
    if not isinstance(x, bytes):
        return json.dumps(str(x))
    if not binary:
        try:
            return json.dumps(x.decode("utf-8"), ensure_ascii=False)
        except UnicodeDecodeError:
            pass  # not text: the only lossless JSON form is base64
    return '{"b64":' + json.dumps(base64.b64encode(x).decode("ascii")) + "}"


def _rows_text(a: np.ndarray, name: str) -> list[str]:
    """The JSON text of each ``a[i]`` along the leading dimension."""
    if a.ndim == 0:
        return [str(_leaf_texts(a.reshape(1), name)[0])]
    if a.size == 0:
        return [json.dumps(x) for x in a.tolist()]
    text = _leaf_texts(a, name)
    while text.ndim > 1:
        flat = text.reshape(-1, text.shape[-1])
        text = np.array(["[" + ",".join(r) + "]" for r in flat.tolist()], dtype=object).reshape(text.shape[:-1])
    return [str(x) for x in text.tolist()]


def _tensor_text(a: np.ndarray, name: str) -> str:
    if a.ndim == 0:
        return _rows_text(a, name)[0]
    return "[" + ",".join(_rows_text(a, name)) + "]"


def encode_json(obj: Any) -> bytes:
    """JSON bytes of plain data that may hold numpy arrays and scalars (NaN allowed)."""
    return json.dumps(obj, default=_json_default, separators=(",", ":"), allow_nan=True).encode("utf-8")


def _json_default(x: Any) -> Any:
    if isinstance(x, np.ndarray):
        return json.loads(_tensor_text(x, ""))
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, bytes):
        return x.decode("utf-8", "replace")
    raise TypeError(f"{type(x).__name__} is not JSON serializable")


def encode_error(message: str) -> bytes:
    """TF Serving's error body: ``{"error": "..."}``."""
    # backslashreplace: a message may quote a client's string holding a lone surrogate.
    return json.dumps({"error": message}, ensure_ascii=False).encode("utf-8", "backslashreplace")


def status_document(versions: Sequence[tuple[int, str, str, str]]) -> dict[str, Any]:
    """``GetModelStatusResponse`` as TF Serving writes it.

    Args:
        versions: ``(version, state, error_code, error_message)`` per version; states are
            TF Serving's ``START``, ``LOADING``, ``AVAILABLE``, ``UNLOADING``, ``END``.
    """
    return {
        "model_version_status": [
            {"version": str(v), "state": state, "status": {"error_code": code, "error_message": msg}}
            for v, state, code, msg in sorted(versions, key=lambda t: -t[0])
        ]
    }


def metadata_document(model: str, version: int, signatures: Mapping[str, SignatureInfo]) -> dict[str, Any]:
    """``GetModelMetadataResponse`` as JSON: the model spec and its ``signature_def`` map."""

    def tensor(info: TensorInfo) -> dict[str, Any]:
        shape: dict[str, Any]
        if info.shape is None:
            shape = {"dim": [], "unknown_rank": True}
        else:
            shape = {
                "dim": [{"size": str(-1 if d is None else d), "name": ""} for d in info.shape],
                "unknown_rank": False,
            }
        return {
            "dtype": _DTYPES.get(info.dtype, (f"DT_{info.dtype.upper()}", None))[0],
            "tensor_shape": shape,
            "name": info.tensor_name,
        }

    defs = {
        name: {
            "inputs": {k: tensor(v) for k, v in sig.inputs.items()},
            "outputs": {k: tensor(v) for k, v in sig.outputs.items()},
            "method_name": sig.method_name,
            "defaults": {},
        }
        for name, sig in sorted(signatures.items())
    }
    return {
        "model_spec": {"name": model, "signature_name": "", "version": str(version)},
        "metadata": {
            "signature_def": {
                "signature_def": defs,
                "@type": "type.googleapis.com/tensorflow.serving.SignatureDefMap",
            }
        },
    }


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."
