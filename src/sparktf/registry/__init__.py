"""Model registry, validation gate and promotion (issue #7).

* :mod:`~sparktf.registry.gate`: the pure gate, metrics + thresholds -> :class:`GateReport`.
* :mod:`~sparktf.registry.registry`: versions, tags, aliases and artifacts in MLflow.
* :mod:`~sparktf.registry.lock`: the promotion lock (MLflow has no compare-and-set).
* :mod:`~sparktf.registry.promote`: promotion with its safety checks, and rollback.
* :mod:`~sparktf.registry.load`: :func:`sparktf.load_model`.
* :mod:`~sparktf.registry.tables`: gate reports and versions as rich tables.

Names are resolved on first use, so importing this package loads no MLflow.
"""

from __future__ import annotations

from sparktf._lazy import lazy_exports

_EXPORTS = {
    "Check": "gate",
    "GateReport": "gate",
    "ModelMetrics": "gate",
    "as_model_metrics": "gate",
    "evaluate_gate": "gate",
    "ModelRegistry": "registry",
    "VersionInfo": "registry",
    "PromotionLock": "lock",
    "PromotionResult": "promote",
    "RollbackResult": "promote",
    "promote_version": "promote",
    "rollback": "promote",
    "verify_champion": "promote",
    "LoadedModel": "load",
    "load_model": "load",
}

__all__, __getattr__ = lazy_exports(__name__, _EXPORTS)
