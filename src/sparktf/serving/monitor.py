"""The server's monitoring: each loaded version's traffic against its reference profile.

Every ``:recommend`` reply a model version ranked (directly, or as an experiment arm) is
counted into that version's sliding window (:class:`~sparktf.monitoring.window.OnlineWindow`)
with the features of :mod:`sparktf.monitoring.profile`; ``GET /v1/monitoring`` answers the
drift of each window against the reference saved with the version (PSI, Jensen-Shannon
distance, the rates) and the alerts that ``[monitoring]``'s thresholds turn them into, plus
the latest ``sparktf monitor report`` when there is one; ``/metrics`` exports the same
numbers as ``sparktf_monitoring_*`` gauges.

A version exported without a reference profile is served as before and listed with
``"reference": null`` (nothing to compare with); a profile that cannot be read is named in
``reference_error``, never a reason to refuse the version.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sparktf.monitoring.profile import FEATURES, RATES, Thresholds
from sparktf.monitoring.window import OnlineWindow

if TYPE_CHECKING:
    from sparktf.config import MonitoringConfig
    from sparktf.serving.recommend import RecommendQuery
    from sparktf.serving.repository import LoadedVersion, Snapshot

__all__ = ["REPORT_FILE", "ServedMonitoring", "reply_observation"]

log = logging.getLogger(__name__)

#: The monitor report's JSON in ``report_dir`` (written by ``sparktf monitor report``).
REPORT_FILE = "report.json"


def reply_observation(query: RecommendQuery, reply: Mapping[str, Any]) -> dict[str, Any]:
    """What a reply tells the profile (pure): the history it was ranked from, its top-1 score
    (None when the fallback answered), whether the fallback answered, and whether it named
    a user nobody knows (no history anywhere, and the model answered with the fallback;
    None when it named no user)."""
    fallback = reply.get("fallback") is not None
    items = reply.get("items") or ()
    top1 = items[0].get("score") if items and not fallback else None
    unknown_user = None
    if query.user_id is not None:
        unknown_user = fallback and reply.get("history_source") == "none"
    return {
        "history": reply.get("history") or (),
        "top1": float(top1) if top1 is not None else None,
        "fallback": fallback,
        "unknown_user": unknown_user,
    }


@dataclass
class ServedMonitoring:
    """``[monitoring]`` as the server applies it.

    Attributes:
        window_s, slots: the sliding window and its sub-windows.
        thresholds: when a window alerts.
        impressions: log the shown items of replies outside an experiment as impressions.
        report_dir: where ``sparktf monitor report`` writes ``report.json`` ("" for none).
    """

    window_s: float
    slots: int
    thresholds: Thresholds
    impressions: bool = False
    report_dir: str = ""

    def __post_init__(self) -> None:
        self._windows: dict[tuple[str, int], OnlineWindow | None] = {}
        self._problems: dict[tuple[str, int], str] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, cfg: MonitoringConfig, *, report_dir: str = "") -> ServedMonitoring:
        """The server's monitoring from ``[monitoring]`` (every field the server reads)."""
        return cls(
            window_s=cfg.window_s,
            slots=cfg.window_slots,
            thresholds=Thresholds.from_config(cfg),
            impressions=cfg.impressions,
            report_dir=report_dir,
        )

    # ------------------------------------------------------------------ versions

    def sync(self, snap: Snapshot) -> None:
        """Open a window for each newly loaded version (on the repository's thread, so that
        no request pays for it); versions no longer loaded keep theirs until replaced."""
        for version, lv in snap.versions.items():
            key = (snap.name, version)
            with self._lock:
                if key in self._windows:
                    continue
            self._open(key, lv)

    def _open(self, key: tuple[str, int], lv: LoadedVersion) -> OnlineWindow | None:
        rec = lv.recommender
        window: OnlineWindow | None = None
        problem = getattr(rec, "reference_problem", None) if rec is not None else None
        reference = getattr(rec, "reference", None) if rec is not None else None
        if reference is not None:
            try:
                window = OnlineWindow(reference, rec.item_ids, window_s=self.window_s, slots=self.slots)
            except ValueError as exc:
                problem = f"{rec.servable.path}: {exc}"
        if problem:
            log.warning("model %s version %s: monitoring without a reference profile: %s", key[0], key[1], problem)
        with self._lock:
            self._windows.setdefault(key, window)
            if problem:
                self._problems[key] = problem
            return self._windows[key]

    def observe(self, model_name: str, lv: LoadedVersion, query: RecommendQuery, reply: Mapping[str, Any]) -> None:
        """Count a reply that version ``lv`` ranked (a few microseconds)."""
        key = (model_name, lv.version)
        window = self._windows.get(key)
        if window is None:
            if key in self._windows:
                return  # no reference to compare with
            window = self._open(key, lv)
            if window is None:
                return
        window.observe(**reply_observation(query, reply))

    # ------------------------------------------------------------------ reading

    def status(self, snap: Snapshot | None) -> dict[str, Any]:
        """The ``GET /v1/monitoring`` document."""
        loaded = set(snap.versions) if snap is not None else set()
        versions = []
        alerts = []
        with self._lock:
            keys = sorted(self._windows, key=lambda k: (k[0], k[1]))
        for name, version in keys:
            window = self._windows[(name, version)]
            doc: dict[str, Any] = {"model_name": name, "version": str(version), "loaded": version in loaded}
            if window is None:
                doc.update(reference=None, status="no_reference", requests=0, alerts=[], features={}, rates={})
                if (name, version) in self._problems:
                    doc["reference_error"] = self._problems[(name, version)]
            else:
                ref = window.reference
                doc["reference"] = {"model_kind": ref.model_kind, "split": ref.split, "queries": ref.queries}
                doc.update(window.status(self.thresholds))
                for alert in doc["alerts"]:
                    alerts.append({"model_name": name, "version": str(version), **alert})
            versions.append(doc)
        statuses = {v["status"] for v in versions if v["loaded"]}
        overall = next(
            (s for s in ("alert", "insufficient_data", "ok", "no_reference") if s in statuses), "no_reference"
        )
        return {
            "enabled": True,
            "window_s": self.window_s,
            "thresholds": self.thresholds.to_dict(),
            "status": overall,
            "alerts": alerts,
            "versions": versions,
            "report": self._report(),
        }

    def _report(self) -> Any:
        if not self.report_dir:
            return None
        path = os.path.join(self.report_dir, REPORT_FILE)
        try:
            with open(path, encoding="utf-8") as fh:
                return json.load(fh)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            return {"error": f"{path} cannot be read: {exc}"}

    def gauges(self, snap: Snapshot | None) -> list[tuple[str, dict[str, str], float]]:
        """``(metric, labels, value)`` of the ``sparktf_monitoring_*`` gauges."""
        out: list[tuple[str, dict[str, str], float]] = []
        for v in self.status(snap)["versions"]:
            base = {"model": v["model_name"], "version": v["version"]}
            out.append(("requests", base, float(v["requests"])))
            out.append(("alert", base, 1.0 if v["status"] == "alert" else 0.0))
            for feature in FEATURES:
                f = v["features"].get(feature)
                if f is None:
                    continue
                for stat in ("psi", "js"):
                    if f[stat] is not None:
                        out.append(("drift", {**base, "feature": feature, "statistic": stat}, float(f[stat])))
            for rate in RATES:
                r = v["rates"].get(rate)
                if r is not None and r["value"] is not None:
                    out.append(("rate", {**base, "rate": rate}, float(r["value"])))
        return out
