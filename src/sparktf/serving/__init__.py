"""Online serving: TensorFlow Serving's REST API plus real-time ``:recommend``.

Modules, one concept each (import them directly; this package imports nothing
heavy so that ``import sparktf.serving`` stays cheap):

* :mod:`~sparktf.serving.tfserving`: the REST wire format (pure: JSON <-> numpy).
* :mod:`~sparktf.serving.servable`: one loaded SavedModel version and its signatures.
* :mod:`~sparktf.serving.repository`: versions, labels, registry alias / base path, hot reload.
* :mod:`~sparktf.serving.batching`: the server-side micro-batcher (generic).
* :mod:`~sparktf.serving.batch_calls`: the model calls it runs (``:predict`` rows, ``:recommend`` queries).
* :mod:`~sparktf.serving.recommend`: ``:recommend`` over the ANN index, with the popular fallback.
* :mod:`~sparktf.serving.features`: users' recent and seen items, item attributes.
* :mod:`~sparktf.serving.metrics`: Prometheus metrics.
* :mod:`~sparktf.serving.app`: the FastAPI app's assembly (``create_app``), from
  :mod:`~sparktf.serving.routes` (the endpoints; ``web/`` holds the page),
  :mod:`~sparktf.serving.middleware` (auth, body limits, access log),
  :mod:`~sparktf.serving.error_handlers`, :mod:`~sparktf.serving.openapi` and
  :mod:`~sparktf.serving.state` (what they share).
* :mod:`~sparktf.serving.connection`: the HTTP protocol with a deadline for request headers.
* :mod:`~sparktf.serving.server`: ``serve(...)`` from explicit arguments
  (:mod:`sparktf.stages.serve` turns the config into them).
"""
