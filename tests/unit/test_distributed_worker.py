"""The worker's return-value rule, and the package staying cheap to import."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import pytest

from sparktf.distributed.worker import pack_value
from sparktf.errors import LauncherError


def test_small_values_travel() -> None:
    value = {"auc": 0.91, "paths": ["/runs/r1/model"]}
    assert pickle.loads(pack_value(value, 1024)) == value


def test_a_large_value_is_refused_with_its_size_and_the_limit() -> None:
    with pytest.raises(LauncherError, match=r"a bytes of 2,000,0\d\d bytes pickled, over the limit of 1,024 bytes"):
        pack_value(b"x" * 2_000_000, 1024)


def test_an_unpicklable_value_is_refused_with_what_to_return_instead() -> None:
    import threading

    with pytest.raises(LauncherError, match="returned a lock that cannot be pickled") as err:
        pack_value(threading.Lock(), 1 << 20)
    assert "Return the Keras model" in str(err.value)


def test_importing_sparktf_distributed_loads_no_framework() -> None:
    heavy = ("pyspark", "tensorflow", "tf_keras", "mlflow", "pandas", "pyarrow", "numpy")
    code = (
        f"import sys, json; import sparktf.distributed; print(json.dumps([m for m in {heavy!r} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
