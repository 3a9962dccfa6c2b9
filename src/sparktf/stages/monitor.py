"""``sparktf monitor report``: ``[monitoring]`` turned into the arguments of
:mod:`sparktf.monitoring.report`, and the outputs.

The report covers the last ``monitoring.report_hours`` of ``data/live/events``: online
quality per model version and hour, drift of each version's traffic against the reference
profile saved with its export (found in the registry, ``models:/<registered_model>/<N>``,
else among the workdir's exports ``models/<kind>/export/<N>``), and training/serving skew of
a ``monitoring.skew_sample`` of replies against ``data/events`` + ``data/live/events``. It
writes ``<workdir>/monitoring/report.html`` (one self-contained page) and ``report.json``,
logs both to MLflow in a ``monitor-report-<time>`` run of the tracking experiment, and adds
the server's own view (``GET /v1/monitoring``) when the server is up.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from sparktf.config import Config, FeatureConfig
from sparktf.errors import PipelineError
from sparktf.monitoring.profile import Thresholds
from sparktf.stages._common import download_root
from sparktf.stages._online import server_url

if TYPE_CHECKING:
    from rich.console import Console

    from sparktf.monitoring.report import VersionProfile

__all__ = ["MonitorArgs", "monitor_args", "run_monitor_report"]

#: The report's files under ``<workdir>/monitoring``.
HTML_FILE = "report.html"
JSON_FILE = "report.json"


@dataclass(frozen=True)
class MonitorArgs:
    """What ``sparktf monitor report`` reads and writes.

    Attributes:
        events_path: ``data/live/events`` (impressions and the actions on them).
        batch_events_path: ``data/events`` (with the live events, the skew's histories).
        out_dir: ``<workdir>/monitoring``.
        hours: ``monitoring.report_hours``: the window ends now.
        skew_sample: ``monitoring.skew_sample``.
        thresholds: ``monitoring.min_requests``, ``psi_alert``, ``js_alert``, ``max_*_rate``.
        features: ``[features]`` (the feature code's history: positive types, ``max_history``).
        event_types: ``data.event_types``.
        tracking_uri, mlflow_experiment, artifact_root: where the report is logged.
        registered_model: whose versions the impressions name (``tracking.registered_model``).
        download_root: where registry versions are downloaded.
        models_dir, kinds: the workdir's exports (``models/<kind>/export/<N>``), for versions
            served from a folder.
        monitoring_url: the server's ``GET /v1/monitoring``.
        token: ``serve.auth_token``.
    """

    events_path: str
    batch_events_path: str
    out_dir: str
    hours: float
    skew_sample: float
    thresholds: Thresholds
    features: FeatureConfig
    event_types: tuple[str, ...]
    tracking_uri: str
    mlflow_experiment: str
    artifact_root: str
    registered_model: str
    download_root: str
    models_dir: str
    kinds: tuple[str, ...]
    monitoring_url: str
    token: str


def monitor_args(cfg: Config) -> MonitorArgs:
    m = cfg.monitoring
    return MonitorArgs(
        events_path=cfg.paths.live_events,
        batch_events_path=cfg.paths.events,
        out_dir=cfg.paths.local("monitoring"),
        hours=m.report_hours,
        skew_sample=m.skew_sample,
        thresholds=Thresholds.from_config(m),
        features=cfg.features,
        event_types=tuple(cfg.data.event_types),
        tracking_uri=cfg.tracking_uri,
        mlflow_experiment=cfg.tracking.experiment,
        artifact_root=cfg.paths.mlflow_artifacts,
        registered_model=cfg.tracking.registered_model,
        download_root=download_root(cfg),
        models_dir=cfg.paths.local("models"),
        kinds=tuple(cfg.train.models),
        monitoring_url=f"{server_url(cfg)}/v1/monitoring",
        token=cfg.serve.auth_token,
    )


# --------------------------------------------------------------------------- the versions' profiles


def find_profiles(args: MonitorArgs, versions: Sequence[str]) -> tuple[dict[str, VersionProfile], dict[str, str]]:
    """Each version's reference profile: the registry's ``models:/<registered_model>/<N>``
    (the server's version when it serves the registry), else the workdir's export ``N`` of a
    model kind (its version when it serves a folder); for the others, why there is none."""
    from sparktf.inference.resolve import resolve_model
    from sparktf.monitoring.report import load_profile

    found: dict[str, VersionProfile] = {}
    missing: dict[str, str] = {}
    for v in versions:
        if not v.isdigit():
            missing[v] = "not a version number"
            continue
        tried = []
        uri = f"models:/{args.registered_model}/{v}"
        try:
            ref = resolve_model(uri, tracking_uri=args.tracking_uri, download_root=args.download_root)
            profile = load_profile(ref.path, f"{args.registered_model} v{v} (registry)")
            if profile is not None:
                found[v] = profile
                continue
            tried.append(f"{uri} has none (exported before profiles)")
        except Exception as exc:  # noqa: BLE001 - not in the registry: look among the exports
            tried.append(f"{uri}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
        for kind in args.kinds:
            for base in (os.path.join(args.models_dir, kind, "export"), os.path.join(args.models_dir, kind)):
                path = os.path.join(base, v)
                if v in found or not os.path.isdir(os.path.join(path, "assets.extra")):
                    continue
                profile = load_profile(path, path)
                if profile is not None:
                    found[v] = profile
                else:
                    tried.append(f"{path} has none")
        if v not in found:
            missing[v] = "; ".join(tried) or "not found"
    return found, missing


#: What the report keeps of each version in the server's ``GET /v1/monitoring``.
_SERVER_VERSION_KEYS = ("model_name", "version", "status", "requests", "alerts", "window_s")


def _server_view(url: str, token: str) -> dict[str, Any]:
    """The running server's own view (``GET /v1/monitoring``: its sliding windows' status and
    alerts per version), or why it could not be read. The server's copy of the last report
    is left out (each report would hold all the earlier ones), and so are its bins."""
    import httpx

    try:
        r = httpx.get(url, headers={"Authorization": f"Bearer {token}"} if token else {}, timeout=5.0)
        r.raise_for_status()
        body = r.json()
    except Exception as exc:  # noqa: BLE001 - no server: the report is from the events alone
        return {"url": url, "error": f"{type(exc).__name__}: {exc}"}
    if not isinstance(body, dict):
        return {"url": url, "error": f"not a JSON object: {str(body)[:80]!r}"}
    versions = [
        {k: v[k] for k in _SERVER_VERSION_KEYS if k in v} for v in body.get("versions") or [] if isinstance(v, dict)
    ]
    return {"url": url, "status": body.get("status"), "alerts": body.get("alerts") or [], "versions": versions}


# --------------------------------------------------------------------------- run


def build_monitor_report(cfg: Config, *, now: float | None = None) -> tuple[dict[str, Any], MonitorArgs]:
    """The report of the last ``monitoring.report_hours`` (Spark over the event table)."""
    from sparktf.data import storage
    from sparktf.data.features import read_events
    from sparktf.monitoring.report import monitor_report, read_live_events
    from sparktf.stages._common import spark_for

    args = monitor_args(cfg)
    spark = spark_for(cfg)
    if not storage.exists(spark, args.events_path):
        raise PipelineError(
            f"There is no event table at {args.events_path} yet, so there is nothing to monitor.",
            hint="Serve with an event landing (`sparktf live`), send traffic (`sparktf simulate`), then report.",
        )
    until = time.time() if now is None else now
    since = until - args.hours * 3600.0
    history = None
    note = None
    if storage.exists(spark, args.batch_events_path):
        history = read_events(spark, args.batch_events_path, args.events_path)
    else:
        note = f"no batch events at {args.batch_events_path} (run the validate stage) to compare histories with"
    report = monitor_report(
        read_live_events(spark, args.events_path),
        history,
        since=since,
        until=until,
        profiles=partial(find_profiles, args),
        thresholds=args.thresholds,
        features=args.features,
        event_types=args.event_types,
        skew_sample=args.skew_sample,
        skew_note=note,
    )
    report["events_path"] = args.events_path
    report["server"] = _server_view(args.monitoring_url, args.token)
    return report, args


def run_monitor_report(cfg: Config, console: Console, *, now: float | None = None) -> dict[str, Any]:
    """``sparktf monitor report``: build, save (HTML and JSON), log to MLflow and summarize."""
    from sparktf.experiments.report import to_json
    from sparktf.monitoring.html import render

    report, args = build_monitor_report(cfg, now=now)
    os.makedirs(args.out_dir, exist_ok=True)
    json_path = os.path.join(args.out_dir, JSON_FILE)
    html_path = os.path.join(args.out_dir, HTML_FILE)
    for path, text in ((json_path, to_json(report)), (html_path, render(report))):
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    report["mlflow_run_id"] = _log_to_mlflow(report, args, [json_path, html_path])
    _print_summary(report, console)
    console.print(
        f"report: {html_path} ({json_path}), MLflow run {report['mlflow_run_id']}", markup=False, soft_wrap=True
    )
    return report


def _metric_name(*parts: str) -> str:
    return "/".join(re.sub(r"[^A-Za-z0-9_.\- ]", "_", p) for p in parts)


def key_metrics(report: Mapping[str, Any]) -> dict[str, float]:
    """The numbers logged as MLflow metrics: per version its replies, rates, drift alerts and
    largest PSI, and the skew's exact-match share and mean Jaccard."""
    out: dict[str, float] = {}

    def put(name: str, value: Any) -> None:
        if isinstance(value, int | float) and math.isfinite(value):
            out[name] = float(value)

    for v, q in report.get("quality", {}).items():
        total = q["total"]
        put(_metric_name(v, "requests"), total["requests"])
        for metric, r in total["rates"].items():
            put(_metric_name(v, metric), r["value"])
    for v, d in report.get("drift", {}).items():
        total = d["total"]
        put(_metric_name(v, "drift_alerts"), len(total["alerts"]))
        psis = [f["psi"] for f in total["features"].values() if f["psi"] is not None]
        put(_metric_name(v, "max_psi"), max(psis, default=math.nan))
    overall = report.get("skew", {}).get("overall") or {}
    put("skew/exact_share", overall.get("exact_share"))
    put("skew/mean_jaccard", overall.get("mean_jaccard"))
    put("skew/mean_length_diff", overall.get("mean_length_diff"))
    return out


def _log_to_mlflow(report: Mapping[str, Any], args: MonitorArgs, paths: Sequence[str]) -> str:
    """A ``monitor-report-<time>`` run in the tracking experiment with the key numbers and both files."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    from sparktf.training.tracking import open_experiment

    client = MlflowClient(tracking_uri=args.tracking_uri)
    exp_id = open_experiment(client, args.mlflow_experiment, args.artifact_root, args.tracking_uri)
    alerting = [v for v, d in report.get("drift", {}).items() if d["total"]["status"] == "alert"]
    tags = {
        "sparktf.kind": "monitor_report",
        "sparktf.versions": ",".join(report.get("versions", [])),
        "sparktf.drift_alerts": ",".join(alerting) or "none",
        "mlflow.runName": "monitor-report-" + time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()),
    }
    run = client.create_run(exp_id, tags=tags)
    rid = run.info.run_id
    now = int(time.time() * 1000)
    metrics = [Metric(k, v, now, 0) for k, v in key_metrics(report).items()]
    if metrics:
        client.log_batch(rid, metrics=metrics)
    for path in paths:
        client.log_artifact(rid, path, "monitoring")
    client.set_terminated(rid)
    return str(rid)


def _print_summary(report: Mapping[str, Any], console: Console) -> None:
    say = partial(console.print, markup=False, soft_wrap=True)
    window = report["window"]
    quality = report.get("quality", {})
    replies = sum(q["total"]["requests"] for q in quality.values())
    say(
        f"monitor report: {window['since']} to {window['until']} ({window['hours']:g} h): {replies} replies "
        f"of {len(report.get('versions', []))} version(s)"
    )

    def rate(r: Mapping[str, Any]) -> str:
        if r["value"] is None or r["value"] != r["value"]:
            return "–"
        if r["ci_low"] is None or r["ci_low"] != r["ci_low"]:
            return f"{r['value']:.4f}"
        return f"{r['value']:.4f} [{r['ci_low']:.4f}, {r['ci_high']:.4f}]"

    for v in report.get("versions", []):
        q = quality.get(v, {}).get("total")
        line = f"  {v}:"
        if q:
            rates = q["rates"]
            line += (
                f" {q['requests']} replies to {q['users']} users; CTR {rate(rates['ctr'])}, add-to-cart "
                f"{rate(rates['add_to_cart_rate'])}, purchase {rate(rates['purchase_rate'])};"
            )
        d = report.get("drift", {}).get(v)
        if d:
            alerts = ", ".join(
                f"{a['feature']} {a['statistic']} {a['value']:.3g} > {a['threshold']:g}" for a in d["total"]["alerts"]
            )
            line += f" drift {d['total']['status']}" + (f" ({alerts})" if alerts else "")
        elif v in report.get("no_profile", {}):
            line += " no reference profile"
        say(line)
    s = report.get("skew", {})
    overall = s.get("overall")
    if s.get("note"):
        say(f"skew: not measured ({s['note']})")
    elif overall and overall.get("requests"):
        say(
            f"skew: {overall['requests']} sampled replies: histories equal in {overall['exact_share']:.1%}, "
            f"mean Jaccard {overall['mean_jaccard']:.3f}, mean length difference (served − batch) "
            f"{overall['mean_length_diff']:+.2f}"
        )
    else:
        say("skew: no sampled reply to a named user")
    server = report.get("server", {})
    if server and not server.get("error"):
        live_alerts = server.get("alerts") or []
        say(f"server now: {len(live_alerts)} alert(s) in its window ({server['url']})")
