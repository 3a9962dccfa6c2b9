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


def test_a_restore_failure_says_which_backup_and_what_to_do_before_the_cause() -> None:
    from sparktf.distributed.checkpoints import BackupRestoreError, describe_cause, restore_error, restore_failure

    traced = ValueError(
        'in user code:\n\n    File "training.py", line 1398, in train_function  *\n'
        "        return step_function(self, iterator)\n\n"
        "    ValueError: Dimension 1 in both shapes must be equal, but are 8 and 4."
    )
    assert describe_cause(traced) == "ValueError: Dimension 1 in both shapes must be equal, but are 8 and 4."
    assert describe_cause(KeyError("x")) == "KeyError: 'x'"

    err = restore_error("/runs/r1/backup", describe_cause(traced), built=False)
    first = str(err).splitlines()[0]
    assert first.startswith("Could not restore the backup in /runs/r1/backup (the model was not built before fit()")
    advice = first.index("or delete /runs/r1/backup to start the run over.")
    assert advice < first.index("The error: ValueError: Dimension 1")  # a cut-short headline keeps the advice
    assert pickle.loads(pickle.dumps(err)).context["backup_dir"] == "/runs/r1/backup"  # crosses to the driver

    # No backup being restored in this process (TensorFlow not even loaded): errors stay what they are.
    assert restore_failure(RuntimeError("boom")) is None
    assert restore_failure(err) is None and isinstance(err, BackupRestoreError)
