"""Prometheus metrics of the server, on a registry of its own.

Request counts by endpoint and status, latency histograms by endpoint, batch
sizes by kind (``predict``/``recommend``), batches rerun one request at a time,
the loaded model versions, versions whose saved index could not be used, and
reload outcomes. TF Serving exports ``:tensorflow:serving:request_count`` and
``request_latency`` with the same labels in spirit; ours use Prometheus' naming
rules (``_total``, ``_seconds``).

Why a registry per server: several apps in one process (tests, benchmarks) must
not share counters, which the global default registry would make them do.
"""

from __future__ import annotations

from typing import Any

from sparktf.online.events import LIVE_REASONS

__all__ = ["EVENT_OUTCOMES", "ServerMetrics"]

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
#: The outcomes of ``sparktf_events_total``.
EVENT_OUTCOMES: tuple[str, ...] = ("accepted", *LIVE_REASONS, "landing_error")


class ServerMetrics:
    """The server's metrics; :meth:`render` gives the text for ``/metrics``."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "sparktf_serving_requests_total",
            "HTTP requests by endpoint and status code.",
            ["endpoint", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "sparktf_serving_request_latency_seconds",
            "Request latency from the first byte read to the last byte written, by endpoint.",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "sparktf_serving_batch_size",
            "Rows per model call made by the micro-batcher, by kind.",
            ["kind"],
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.model_version = Gauge(
            "sparktf_serving_model_version",
            "1 for each loaded model version; label 'default' is 'true' for the one served without a selector.",
            ["model", "version", "default"],
            registry=self.registry,
        )
        self.reloads = Counter(
            "sparktf_serving_model_reloads_total",
            "Model repository events: swapped, load_failed, resolve_failed.",
            ["model", "event"],
            registry=self.registry,
        )
        self.index_fallback = Gauge(
            "sparktf_serving_index_fallback",
            "1 for a loaded version whose saved ANN index is damaged or belongs to other embeddings, so "
            ":recommend searches an exact index in memory (rebuild the index with `sparktf index`).",
            ["model", "version"],
            registry=self.registry,
        )
        self.isolated_batches = Counter(
            "sparktf_serving_isolated_batches_total",
            "Batches that failed as a whole and were rerun one request at a time, by kind.",
            ["kind"],
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "sparktf_serving_requests_in_flight", "Requests being handled now.", registry=self.registry
        )
        # POST /v1/events (issue 16): every event's outcome, and how long acknowledging took.
        self.events = Counter(
            "sparktf_events",
            "Events posted to POST /v1/events, by outcome: accepted (durable), the reason a rejected one "
            "was refused, or landing_error (accepted by the rules but the landing write failed).",
            ["outcome"],
            registry=self.registry,
        )
        for outcome in EVENT_OUTCOMES:
            self.events.labels(outcome)
        self.event_ack = Histogram(
            "sparktf_event_ack_seconds",
            "POST /v1/events with accepted events: from the request's handler starting to its events being "
            "durable (fsynced and renamed into the landing directory).",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )

        # Experiments (issue 17): the guardrails of `sparktf experiment report` read these per arm.
        self.arm_requests = Counter(
            "sparktf_experiment_requests",
            ":recommend requests assigned to an experiment arm, by outcome: ok, or error (any failure "
            "after the arm was chosen, e.g. its model version not loaded).",
            ["experiment", "arm", "outcome"],
            registry=self.registry,
        )
        self.arm_latency = Histogram(
            "sparktf_experiment_request_latency_seconds",
            ":recommend latency of an experiment arm's requests, from the arm's choice to the reply "
            "(impressions logged).",
            ["experiment", "arm"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.impressions = Counter(
            "sparktf_experiment_impressions",
            "Items shown by an experiment arm (experiment and arm empty: a reply outside an experiment, "
            "monitoring.impressions), by outcome: logged (durable in the landing directory) or "
            "lost (the landing write failed; the reply said impressions_logged = false).",
            ["experiment", "arm", "outcome"],
            registry=self.registry,
        )

        # Watching production (issue 19): set from the monitoring's windows when scraped.
        self.monitoring = {
            "requests": Gauge(
                "sparktf_monitoring_window_requests",
                "Replies of a model version counted in the monitoring window.",
                ["model", "version"],
                registry=self.registry,
            ),
            "alert": Gauge(
                "sparktf_monitoring_alert",
                "1 when a model version's traffic breaches a [monitoring] threshold (see GET /v1/monitoring).",
                ["model", "version"],
                registry=self.registry,
            ),
            "drift": Gauge(
                "sparktf_monitoring_drift",
                "Drift of a profiled feature of a version's traffic against its reference profile: psi "
                "(population stability index) or js (Jensen-Shannon distance).",
                ["model", "version", "feature", "statistic"],
                registry=self.registry,
            ),
            "rate": Gauge(
                "sparktf_monitoring_rate",
                "Fallback, unknown-user and unknown-item rates of a version's traffic in the window.",
                ["model", "version", "rate"],
                registry=self.registry,
            ),
        }

    def observe_request(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, method, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def observe_batch(self, kind: str, rows: int) -> None:
        self.batch_size.labels(kind).observe(rows)

    def set_versions(self, model: str, versions: list[int], default: int | None) -> None:
        self.model_version.clear()
        for v in versions:
            self.model_version.labels(model, str(v), "true" if v == default else "false").set(1)

    def set_index_fallbacks(self, model: str, fallbacks: dict[int, bool]) -> None:
        """``fallbacks``: version -> whether its saved index could not be used."""
        self.index_fallback.clear()
        for v, fell_back in fallbacks.items():
            self.index_fallback.labels(model, str(v)).set(1 if fell_back else 0)

    def model_event(self, model: str, event: str) -> None:
        self.reloads.labels(model, event).inc()

    def set_monitoring(self, values: list[tuple[str, dict[str, str], float]]) -> None:
        """Replace the ``sparktf_monitoring_*`` gauges with ``(metric, labels, value)`` rows."""
        for gauge in self.monitoring.values():
            gauge.clear()
        for metric, labels, value in values:
            self.monitoring[metric].labels(**labels).set(value)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        body: Any = generate_latest(self.registry)
        return bytes(body), str(CONTENT_TYPE_LATEST)


# --------------------------------------------------------------------------- live histories (issue 16, item 4)

import threading  # noqa: E402 - this block is appended apart from the class above

#: How a ``:recommend`` query that could use a live history fared: ``live`` (the store had
#: the user with items), ``missing`` (it had not: features or none instead), ``error`` (the
#: store could not be read: features or none instead, said in the reply's ``live_error``).
LIVE_LOOKUP_OUTCOMES = ("live", "missing", "error")
_LIVE_LOOKUPS_LOCK = threading.Lock()


def count_live_lookups(metrics: ServerMetrics, outcome: str, queries: int = 1) -> None:
    """Add ``queries`` to ``sparktf_serving_live_lookups_total{outcome}`` of ``metrics``'
    registry (the counter is made on first use, with every outcome at 0)."""
    counter = metrics.__dict__.get("live_lookups")
    if counter is None:
        from prometheus_client import Counter

        with _LIVE_LOOKUPS_LOCK:
            counter = metrics.__dict__.get("live_lookups")
            if counter is None:
                counter = Counter(
                    "sparktf_serving_live_lookups",
                    ":recommend queries with a user and no history, by how the online store's live "
                    "history lookup went: live, missing, error.",
                    ["outcome"],
                    registry=metrics.registry,
                )
                for name in LIVE_LOOKUP_OUTCOMES:
                    counter.labels(name)
                metrics.__dict__["live_lookups"] = counter
    counter.labels(outcome).inc(queries)
