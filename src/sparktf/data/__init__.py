"""The clickstream data layer: event schema, validation with quarantine, the synthetic
flash-sale generator, the MovieLens-100K loader, the feature pipeline and the SQL
functions analysts call from Spark SQL.

Kept free of imports on purpose: ``import sparktf.data`` must not load Spark, pandas
or Arrow. Import the module you need (``sparktf.data.generator``, ...); each loads
its frameworks inside its functions.
"""

from __future__ import annotations

__all__: list[str] = []
