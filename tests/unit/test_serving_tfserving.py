"""TF Serving's REST wire format (pure: no TensorFlow), from the examples of its REST docs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sparktf.errors import ServingError
from sparktf.serving.tfserving import (
    SignatureInfo,
    TensorInfo,
    decode_examples_request,
    decode_predict_request,
    encode_examples_response,
    encode_predict_response,
    metadata_document,
    parse_json_body,
    parse_version,
    status_document,
)

HALF = SignatureInfo("serving_default", {"x": TensorInfo("float32", (None,))}, {"y": TensorInfo("float32", (None,))})
MULTI = SignatureInfo(
    "multi",
    {
        "tag": TensorInfo("string", (None,)),
        "signal": TensorInfo("float32", (None, 5)),
        "sensor": TensorInfo("int64", (None, 2, 2)),
    },
    {"a": TensorInfo("float32", (None,)), "b_bytes": TensorInfo("string", (None,))},
)
SIGS = {"serving_default": HALF, "multi": MULTI}


def status_of(exc: pytest.ExceptionInfo[ServingError]) -> int:
    return int(exc.value.context["status"])


def test_row_format_single_input_from_the_docs() -> None:
    req = decode_predict_request(parse_json_body(b'{"instances": [1.0,2.0,5.0]}'), SIGS)
    assert req.row_format and req.rows == 3 and req.signature.name == "serving_default"
    np.testing.assert_array_equal(req.inputs["x"], np.array([1.0, 2.0, 5.0], dtype=np.float32))
    assert req.inputs["x"].dtype == np.float32


def test_row_and_columnar_formats_of_the_docs_multi_input_example_agree() -> None:
    rows = {
        "signature_name": "multi",
        "instances": [
            {"tag": "foo", "signal": [1, 2, 3, 4, 5], "sensor": [[1, 2], [3, 4]]},
            {"tag": "bar", "signal": [3, 4, 1, 2, 5], "sensor": [[4, 5], [6, 8]]},
        ],
    }
    columns = {
        "signature_name": "multi",
        "inputs": {
            "tag": ["foo", "bar"],
            "signal": [[1, 2, 3, 4, 5], [3, 4, 1, 2, 5]],
            "sensor": [[[1, 2], [3, 4]], [[4, 5], [6, 8]]],
        },
    }
    a, b = decode_predict_request(rows, SIGS), decode_predict_request(columns, SIGS)
    assert a.row_format and not b.row_format
    for name in ("tag", "signal", "sensor"):
        np.testing.assert_array_equal(a.inputs[name], b.inputs[name])
    assert a.inputs["sensor"].shape == (2, 2, 2) and a.inputs["sensor"].dtype == np.int64
    assert a.inputs["tag"].tolist() == [b"foo", b"bar"]


def test_b64_values_decode_to_bytes() -> None:
    body = {
        "signature_name": "multi",
        "inputs": {"tag": [{"b64": "aW1hZ2UgYnl0ZXM="}], "signal": [[0] * 5], "sensor": [[[0, 0], [0, 0]]]},
    }
    assert decode_predict_request(body, SIGS).inputs["tag"].tolist() == [b"image bytes"]
    single = SignatureInfo("s", {"img": TensorInfo("string", (None,))}, {})
    req = decode_predict_request(
        {"signature_name": "s", "instances": [{"b64": "YQ=="}, {"b64": "Yg=="}]}, {"s": single}
    )
    assert req.inputs["img"].tolist() == [b"a", b"b"]


def test_nan_and_infinity_are_accepted_and_written() -> None:
    req = decode_predict_request(parse_json_body(b'{"instances": [1.0, NaN, Infinity, -Infinity]}'), SIGS)
    assert math.isnan(req.inputs["x"][1]) and req.inputs["x"][2] == np.inf
    text = encode_predict_response({"y": req.inputs["x"]}, HALF, row_format=True)
    assert text == b'{"predictions":[1.0,NaN,Infinity,-Infinity]}'


def test_single_output_name_is_dropped_and_several_are_kept() -> None:
    y = np.array([3.5, 4.0, 5.5], dtype=np.float32)
    assert json.loads(encode_predict_response({"y": y}, HALF, True)) == {"predictions": [3.5, 4.0, 5.5]}
    assert json.loads(encode_predict_response({"y": y}, HALF, False)) == {"outputs": [3.5, 4.0, 5.5]}
    outs = {"a": np.array([0.1, 2.0], dtype=np.float32), "b_bytes": np.array([b"\x00\xff", b"ok"], dtype=object)}
    rows = json.loads(encode_predict_response(outs, MULTI, True))
    assert rows == {"predictions": [{"a": 0.1, "b_bytes": {"b64": "AP8="}}, {"a": 2.0, "b_bytes": {"b64": "b2s="}}]}
    cols = json.loads(encode_predict_response(outs, MULTI, False))
    assert cols == {"outputs": {"a": [0.1, 2.0], "b_bytes": [{"b64": "AP8="}, {"b64": "b2s="}]}}


def test_float32_is_written_with_its_shortest_text() -> None:
    out = encode_predict_response({"y": np.array([[0.1, 1e-10], [3.0, 123456789.0]], dtype=np.float32)}, HALF, False)
    assert out == b'{"outputs":[[0.1,1e-10],[3.0,123456790.0]]}'


def test_non_utf8_strings_fall_back_to_b64() -> None:
    sig = SignatureInfo("s", {}, {"text": TensorInfo("string", (None,))})
    out = json.loads(encode_predict_response({"text": np.array([b"caf\xc3\xa9", b"\xff"], dtype=object)}, sig, True))
    assert out == {"predictions": ["café", {"b64": "/w=="}]}


def test_row_format_reply_needs_a_shared_batch_dimension() -> None:
    outs = {"a": np.zeros(2, np.float32), "b_bytes": np.array([b"x"], dtype=object)}
    with pytest.raises(ServingError) as exc:
        encode_predict_response(outs, MULTI, True)
    assert status_of(exc) == 400 and "columnar" in str(exc.value)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"instances": [1.0], "inputs": [1.0]}, "may not have both"),
        ({}, "Missing 'inputs' or 'instances'"),
        ({"instances": []}, "empty list"),
        ({"instances": 1.0}, "must be a list"),
        ({"instances": [[1.0, 2.0], [3.0]]}, "ragged"),
        ({"instances": [[1.0], [2.0]]}, "shape [2, 1]"),
        ({"instances": ["a"]}, "expects numbers"),
        ({"instances": [True]}, "expects numbers"),
        ({"instances": [None]}, "expects numbers"),
        ({"signature_name": "nope", "instances": [1.0]}, 'Serving signature name: "nope" not found'),
        ({"signature_name": 3, "instances": [1.0]}, "'signature_name' must be a string"),
        ({"instances": [1.0], "extra": 1}, "Unknown key 'extra'"),
        ({"signature_name": "multi", "instances": [{"tag": "a"}]}, "lacks input"),
        ({"signature_name": "multi", "instances": [1, 2]}, "must be an object keyed by input name"),
        ({"signature_name": "multi", "inputs": [1, 2]}, "must be an object keyed by input name"),
        (
            {"signature_name": "multi", "inputs": {"tag": ["a"], "signal": [[1] * 5], "sensor": [[[1, 2], [3]]]}},
            "ragged",
        ),
        (
            {"signature_name": "multi", "inputs": {"tag": [1], "signal": [[1] * 5], "sensor": [[[1, 2], [3, 4]]]}},
            "DT_STRING",
        ),
        (
            {
                "signature_name": "multi",
                "inputs": {"tag": [{"b64": "!!"}], "signal": [[1] * 5], "sensor": [[[1, 2], [3, 4]]]},
            },
            "not valid base64",
        ),
        (
            {"signature_name": "multi", "inputs": {"tag": ["a"], "signal": [[1] * 5], "sensor": [[[1, 2.5], [3, 4]]]}},
            "expects integers",
        ),
        (
            {
                "signature_name": "multi",
                "inputs": {"tag": ["a"], "signal": [[1] * 5], "sensor": [[[2**70, 2], [3, 4]]]},
            },
            "out of range",
        ),
        (
            {"signature_name": "multi", "inputs": {"tag": ["a"], "signal": [[1] * 4], "sensor": [[[1, 2], [3, 4]]]}},
            "[-1, 5]",
        ),
        (
            {
                "signature_name": "multi",
                "inputs": {"tag": ["a"], "signal": [[1] * 5], "sensor": [[[1, 2], [3, 4]]], "x": 1},
            },
            "does not take",
        ),
    ],
)
def test_malformed_requests_are_400_with_a_message(body: dict, fragment: str) -> None:
    with pytest.raises(ServingError) as exc:
        decode_predict_request(body, SIGS)
    assert status_of(exc) == 400
    assert fragment in exc.value.message


@pytest.mark.parametrize("raw", [b"{", b"[1, 2]", b"\xff\xfe", b"", b'"x"', b"[" * 100_000])
def test_unparseable_bodies_are_400(raw: bytes) -> None:
    with pytest.raises(ServingError) as exc:
        parse_json_body(raw)
    assert status_of(exc) == 400


def test_an_integer_over_pythons_digit_limit_is_a_400_that_says_so() -> None:
    """json.loads raises a plain ValueError (not JSONDecodeError) for an integer of more
    than sys.get_int_max_str_digits() digits; it was a 500."""
    import sys

    limit = sys.get_int_max_str_digits()
    with pytest.raises(ServingError) as exc:
        parse_json_body(b'{"k": ' + b"7" * (limit + 1) + b"}")
    assert status_of(exc) == 400 and f"more than {limit} digits" in exc.value.message
    assert parse_json_body(b'{"k": ' + b"7" * limit + b"}")["k"] > 0  # at the limit: a number


def test_an_error_quoting_a_lone_surrogate_is_still_json() -> None:
    from sparktf.serving.tfserving import encode_error

    body = encode_error("bad id 'u\ud800'")  # was a UnicodeEncodeError, so a 500
    body.decode("utf-8")  # valid UTF-8 on the wire
    assert json.loads(body) == {"error": "bad id 'u\ud800'"}  # the JSON escape of the same text


def test_versions_in_paths() -> None:
    assert parse_version("123") == 123
    for bad in ("abc", "-1", "1.5", "١٢", "9" * 30):
        with pytest.raises(ServingError) as exc:
            parse_version(bad)
        assert status_of(exc) == 400


def test_regress_and_classify_over_named_inputs() -> None:
    reg = SignatureInfo(
        "tensorflow/serving/regress", {"x": TensorInfo("float32", (None,))}, {"outputs": TensorInfo("float32", (None,))}
    )
    body = {"signature_name": "tensorflow/serving/regress", "examples": [{"x": 1.0}, {"x": [2.0]}]}
    req = decode_examples_request(body, {reg.name: reg})
    np.testing.assert_array_equal(req.inputs["x"], [1.0, 2.0])
    assert (
        encode_examples_response({"outputs": np.array([3.5, 4.0], np.float32)}, reg, "regress")
        == b'{"results":[3.5,4.0]}'
    )
    with pytest.raises(ServingError, match="may appear in one only"):
        decode_examples_request({**body, "context": {"x": 1.0}}, {reg.name: reg})
    cls = {"classes": np.array([[b"cat", b"dog"]], dtype=object), "scores": np.array([[0.75, 0.25]], np.float32)}
    assert json.loads(encode_examples_response(cls, reg, "classify")) == {"results": [[["cat", 0.75], ["dog", 0.25]]]}


def test_status_and_metadata_documents_have_tf_servings_shape() -> None:
    doc = status_document([(1, "AVAILABLE", "OK", ""), (123, "AVAILABLE", "OK", "")])
    assert doc["model_version_status"][0] == {
        "version": "123",
        "state": "AVAILABLE",
        "status": {"error_code": "OK", "error_message": ""},
    }
    meta = metadata_document("half_plus_three", 123, {"serving_default": HALF})
    assert meta["model_spec"] == {"name": "half_plus_three", "signature_name": "", "version": "123"}
    sig = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert sig["inputs"]["x"]["dtype"] == "DT_FLOAT"
    assert sig["inputs"]["x"]["tensor_shape"]["dim"] == [{"size": "-1", "name": ""}]
    assert sig["method_name"] == "tensorflow/serving/predict"


nested = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(["instances", "inputs", "signature_name", "other"]), nested, max_size=3))
def test_any_json_body_decodes_or_is_a_400(body: dict) -> None:
    try:
        req = decode_predict_request(body, SIGS)
    except ServingError as exc:
        assert exc.context["status"] == 400 and exc.message
        return
    for name, info in req.signature.inputs.items():
        assert req.inputs[name].ndim == len(info.shape or ())
