"""Online serving: TensorFlow Serving's REST API plus real-time ``:recommend``.

Modules, one concept each (import them directly; this package imports nothing
heavy so that ``import sparktf.serving`` stays cheap):

* :mod:`~sparktf.serving.tfserving`: the REST wire format (pure: JSON <-> numpy).
* :mod:`~sparktf.serving.servable`: one loaded SavedModel version and its signatures.
* :mod:`~sparktf.serving.repository`: versions, labels, registry alias / base path, hot reload.
* :mod:`~sparktf.serving.batching`: the server-side micro-batcher.
* :mod:`~sparktf.serving.recommend`: ``:recommend`` over the ANN index, with the popular fallback.
* :mod:`~sparktf.serving.features`: users' recent and seen items, item attributes.
* :mod:`~sparktf.serving.metrics`: Prometheus metrics.
* :mod:`~sparktf.serving.app`: the FastAPI app (``create_app``); ``web/`` holds its page.
* :mod:`~sparktf.serving.server`: ``serve(...)``, what ``sparktf serve`` runs.
"""
