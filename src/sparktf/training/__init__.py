"""Training on the Spark launcher and MLflow tracking (chief-only)."""

from __future__ import annotations
