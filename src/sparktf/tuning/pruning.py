"""The Optuna pieces the driver and every trial process must build the same way.

The study lives in an RDB storage (SQLite in the workdir, ``<workdir>/tune/optuna.db``):
the driver asks and tells trials there, and each trial's training process reports its
per-epoch validation NDCG@10 there and asks the pruner whether to stop. A pruner is not
stored with the study, so both sides build it from the same :class:`PrunerArgs`.

SQLite takes one writer at a time; with a few trials each writing one value per epoch
the waits are milliseconds, and the 60 s busy timeout only matters on a stalled disk.

Optuna is imported inside the functions: importing :mod:`sparktf` stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["PrunerArgs", "make_pruner", "make_storage", "quiet_optuna"]

#: How long a SQLite connection waits for another process's write before failing.
SQLITE_BUSY_TIMEOUT_S = 60


@dataclass(frozen=True)
class PrunerArgs:
    """The median pruner's settings.

    Attributes:
        warmup_epochs: epochs every trial runs before it may be pruned (``tune.pruner_warmup_epochs``).
        startup_trials: finished trials needed before any trial is pruned: the median of
            fewer is too noisy to stop anything on.
    """

    warmup_epochs: int
    startup_trials: int


def make_pruner(args: PrunerArgs) -> Any:
    """Optuna's median pruner: stop a trial whose validation NDCG@10 at an epoch is below
    the median of the earlier trials' at the same epoch."""
    import optuna

    return optuna.pruners.MedianPruner(n_startup_trials=args.startup_trials, n_warmup_steps=args.warmup_epochs)


def make_storage(url: str) -> Any:
    """The study's RDB storage at ``url`` (``sqlite:///<path>`` or any SQLAlchemy URL)."""
    import optuna

    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:"):
        engine_kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S}
    return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)


def quiet_optuna() -> None:
    """Optuna's messages go through :mod:`logging` (the run's log file), not to the terminal."""
    import optuna

    optuna.logging.disable_default_handler()
    optuna.logging.enable_propagation()
