"""A logged impression's context becomes the replayed request's history, or a clear error."""

from __future__ import annotations

import pytest

from sparktf.errors import DataError
from sparktf.serving.replay import _history


def test_a_json_array_is_the_history_and_none_is_empty() -> None:
    assert _history("r1", '["i1","i2"]') == ("i1", "i2")
    assert _history("r2", None) == ()


@pytest.mark.parametrize("bad", ["{bad", '{"a": 1}', '"i1"'])
def test_anything_else_names_the_request(bad: str) -> None:
    with pytest.raises(DataError, match="request r3 have a context that is not a JSON array"):
        _history("r3", bad)
