"""Hyper-parameter search (``sparktf tune``): an Optuna study whose trials are Spark tasks.

* :mod:`~sparktf.tuning.space`: the searched ``[train]`` settings per model kind, and why.
* :mod:`~sparktf.tuning.study`: the driver: asks the study for trials, runs ``parallelism``
  of them at once as one-task Spark jobs, records each in the study and as a nested
  MLflow run, within the time budget.
* :mod:`~sparktf.tuning.trial`: one trial: the Spark task that trains it in a fresh
  process, and the Keras callback that reports validation NDCG@10 to the study and
  stops a trial the median pruner gives up on.
* :mod:`~sparktf.tuning.pruning`: the storage and the pruner, built alike on both sides.

Like the other library packages it takes explicit arguments; ``stages/tune.py`` turns the
``[tune]`` section into them and writes the best settings as a config file.
"""

from __future__ import annotations

__all__: list[str] = []
