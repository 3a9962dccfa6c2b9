"""What the route handlers and the middleware of one app share.

One object per app (never module globals), so that several apps in one process
(tests, benchmarks) keep their own repository, batcher, metrics and in-flight count.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sparktf.config import ServeConfig
from sparktf.serving.batching import MicroBatcher
from sparktf.serving.features import FeatureLookup
from sparktf.serving.metrics import ServerMetrics
from sparktf.serving.repository import LoadedVersion, ModelRepository

if TYPE_CHECKING:
    from sparktf.online.events import EventRules
    from sparktf.online.landing import LandingWriter
    from sparktf.online.store import OnlineStore
    from sparktf.serving.experiment import ServedExperiment
    from sparktf.serving.monitor import ServedMonitoring

__all__ = ["BODY_TIMEOUT_S", "ServerState", "VersionInUse"]

#: How long a client may take to send a request's body once its headers arrived
#: (a slow-send client must not hold a connection and a request slot forever).
BODY_TIMEOUT_S = 30.0


class ServerState:
    """The app's repository, settings, features, metrics, batcher and in-flight count.

    Args:
        repository: the versions being served.
        cfg: the ``[serve]`` settings.
        features: users' recent and seen items, item attributes.
        metrics: the app's Prometheus metrics.
        body_timeout_s: the longest a request's body may take to arrive.
    """

    def __init__(
        self,
        repository: ModelRepository,
        cfg: ServeConfig,
        features: FeatureLookup,
        metrics: ServerMetrics,
        body_timeout_s: float = BODY_TIMEOUT_S,
    ) -> None:
        self.repository = repository
        self.cfg = cfg
        self.features = features
        self.metrics = metrics
        self.body_timeout_s = body_timeout_s
        self.batcher: MicroBatcher[Any, Any] | None = None
        # The online side (issue 16), set by create_app: the rules POST /v1/events checks,
        # where it makes accepted events durable, and the store of live histories.
        self.events: EventRules | None = None
        self.landing: LandingWriter | None = None
        self.online: OnlineStore | None = None
        # The online experiment (issue 17), when one runs: arms, baselines, impressions.
        self.experiment: ServedExperiment | None = None
        self.experiment_dir = ""
        # Watching production (issue 19): each version's traffic against its reference.
        self.monitoring: ServedMonitoring | None = None
        self.in_flight = 0

    def require_batcher(self) -> MicroBatcher[Any, Any]:
        """The batcher, which exists while the app runs (between lifespan start and end)."""
        if self.batcher is None:
            raise RuntimeError("the app's lifespan has not started: run it under uvicorn or a TestClient context")
        return self.batcher


class VersionInUse:
    """Marks a version busy for the length of a request (it is not dropped meanwhile)."""

    def __init__(self, lv: LoadedVersion) -> None:
        self.lv = lv

    def __enter__(self) -> LoadedVersion:
        self.lv.acquire()
        return self.lv

    def __exit__(self, *exc: object) -> None:
        self.lv.release()
