"""``sparktf simulate`` and ``sparktf experiment report|conclude``: ``[experiment]`` and
``[simulate]`` turned into the arguments of :mod:`sparktf.experiments`, and the outputs.

* ``simulate`` drives the server at ``serve.host:serve.port`` with the generator's shoppers
  and saves what it sent (with each arm's true CTR) under
  ``<workdir>/experiments/<name>/simulate-<time>.json``.
* ``experiment report`` reads ``data/live/events`` with Spark and the server's
  ``/metrics``, writes ``report.json`` and ``ctr.png`` under ``<workdir>/experiments/<name>/``
  (the server's page shows them), logs both to MLflow in a run tagged with the model
  version of each arm, and prints the table and the decision.
* ``experiment estimate --policy URI`` replays the logged impressions through a candidate
  model and estimates its CTR off-policy (IPS, SNIPS, DR with intervals: :mod:`sparktf.experiments.offpolicy`),
  saved as ``offpolicy.json`` beside the report, which then shows it next to the online results.
* ``experiment conclude`` applies the decision: ``promote`` moves the promote alias to the
  winning arm's version through :func:`sparktf.registry.promote.promote_version` (the
  validation gate's lock, tags and audit trail; the offline gate still has to pass), and
  every outcome is recorded on the arms' versions as tags.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from sparktf.config import Config, GateConfig, GeneratorConfig, SimulateConfig
from sparktf.errors import ConfigError, PipelineError
from sparktf.experiments.assignment import Assignment
from sparktf.experiments.offpolicy import OFFPOLICY_FILE
from sparktf.experiments.report import DecisionRule
from sparktf.stages._online import assignment, server_url

if TYPE_CHECKING:
    from rich.console import Console

    from sparktf.experiments.simulator import SimulationResult

__all__ = [
    "EstimateArgs",
    "ReportArgs",
    "SimulateArgs",
    "estimate_args",
    "report_args",
    "run_conclude",
    "run_estimate",
    "run_report",
    "run_simulate",
    "simulate_args",
]


def _require_experiment(cfg: Config) -> Assignment:
    found = assignment(cfg.experiment)
    if found is None:
        raise ConfigError(
            "No experiment is configured (experiment.name is empty).",
            hint="Name one and its arms in [experiment] (see README, 'Online experiments'), e.g. "
            "--set experiment.name=seq-vs-popular.",
        )
    return found


# --------------------------------------------------------------------------- simulate


@dataclass(frozen=True)
class SimulateArgs:
    """What ``sparktf simulate`` runs.

    Attributes:
        generator: the world the shoppers come from (``[generator]``).
        settings: ``[simulate]``.
        base_url: the server (``serve.host``/``serve.port``).
        model_name: the served model's name.
        token: ``serve.auth_token``.
        out_dir: where the run's summary is saved ("" for a remote workdir: not saved).
    """

    generator: GeneratorConfig
    settings: SimulateConfig
    base_url: str
    model_name: str
    token: str
    out_dir: str


def simulate_args(cfg: Config) -> SimulateArgs:
    if cfg.data.source != "synthetic":
        raise ConfigError(
            f"sparktf simulate needs the synthetic generator's world (data.source = 'synthetic'), not "
            f"{cfg.data.source!r}: only there are the shoppers' true preferences known.",
            hint="Run with the default data source.",
        )
    name = cfg.experiment.name or "no-experiment"
    return SimulateArgs(
        generator=cfg.generator,
        settings=cfg.simulate,
        base_url=server_url(cfg),
        model_name=cfg.serve.model_name or cfg.tracking.registered_model,
        token=cfg.serve.auth_token,
        out_dir=os.path.join(cfg.paths.experiments, name) if cfg.paths.is_local else "",
    )


def fresh_seed() -> int:
    """A seed for ``simulate.seed = 0``: from the clock, so that runs differ."""
    return int(time.time_ns() // 1000) % (2**31 - 1) + 1


def run_simulate(cfg: Config, console: Console) -> SimulationResult:
    """Run the simulator against the server; print and save what it sent."""
    from sparktf.experiments.simulator import HttpShop, ShopperSimulator

    args = simulate_args(cfg)
    s = args.settings
    seed = s.seed or fresh_seed()
    sim = ShopperSimulator(
        args.generator,
        seed=seed,
        k=s.k,
        position_bias=s.position_bias,
        steps_per_session=s.steps_per_session,
        dwell_s=s.dwell_s,
        users=s.users,
    )
    console.print(
        f"sparktf simulate: {s.duration_s:g} s at up to {s.rate:g} requests/s, {s.concurrency} shoppers at once "
        f"(about {s.dwell_s:g} s on each page) "
        f"against {args.base_url}/v1/models/{args.model_name} (seed {seed}{'' if s.seed else ', fresh'})",
        markup=False,
        soft_wrap=True,
    )
    last = [0.0]

    def progress(r: SimulationResult) -> None:
        if r.duration_s - last[0] >= 10:
            last[0] = r.duration_s
            console.print(
                f"  {r.duration_s:5.0f} s  {r.requests} requests ({r.failed_requests} failed), {r.events_sent} events",
                markup=False,
                soft_wrap=True,
            )

    result = sim.run(
        lambda: HttpShop(args.base_url, args.model_name, args.token),
        duration_s=s.duration_s,
        rate=s.rate,
        concurrency=s.concurrency,
        progress=progress,
    )
    doc = result.to_dict()
    console.print(
        f"sent {result.requests} requests ({result.requests_per_s:.1f}/s, {result.failed_requests} failed) and "
        f"{result.events_sent} events ({result.events_per_s:.1f}/s; {result.events_accepted} accepted, "
        f"{result.events_rejected} rejected) in {result.sessions} sessions",
        markup=False,
        soft_wrap=True,
    )
    for arm, t in sorted(result.arms.items()):
        console.print(
            f"  arm {arm}: {t.requests} replies to {len(t.users)} users, {t.impressions} impressions, "
            f"{t.clicks} clicks; true CTR {t.true_ctr:.4f}",
            markup=False,
            soft_wrap=True,
        )
    if result.errors:
        console.print(f"  first error: {result.errors[0]}", markup=False, soft_wrap=True)
    if args.out_dir:
        os.makedirs(args.out_dir, exist_ok=True)
        path = os.path.join(args.out_dir, f"simulate-{time.strftime('%Y%m%dT%H%M%S')}.json")
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=2, default=float)
        console.print(f"saved to {path}", markup=False, soft_wrap=True)
    return result


# --------------------------------------------------------------------------- report


@dataclass(frozen=True)
class ReportArgs:
    """What ``sparktf experiment report`` reads and writes.

    Attributes:
        assignment: the experiment (``[experiment]``).
        rule: the decision rule (``[experiment]``).
        events_path: ``data/live/events``.
        out_dir: ``<workdir>/experiments/<name>``.
        metrics_url: the server's ``/metrics`` (guardrails).
        token: ``serve.auth_token``.
        tracking_uri, mlflow_experiment, registered_model: where the report is logged and the arms' models live.
        gate: the promotion path's settings (``[gate]``).
        promote_alias: the alias ``conclude`` moves.
    """

    assignment: Assignment
    rule: DecisionRule
    events_path: str
    out_dir: str
    metrics_url: str
    token: str
    tracking_uri: str
    mlflow_experiment: str
    artifact_root: str
    registered_model: str
    gate: GateConfig
    promote_alias: str


def report_args(cfg: Config) -> ReportArgs:
    exp = _require_experiment(cfg)
    e = cfg.experiment
    return ReportArgs(
        assignment=exp,
        rule=DecisionRule(
            control=exp.control,
            alpha=e.alpha,
            srm_alpha=e.srm_alpha,
            min_users_per_arm=e.min_users_per_arm,
            min_lift=e.min_lift,
            max_error_rate=e.max_error_rate,
            max_p99_latency_ms=e.max_p99_latency_ms,
        ),
        events_path=cfg.paths.live_events,
        out_dir=os.path.join(cfg.paths.local("experiments"), exp.experiment),
        metrics_url=server_url(cfg) + "/metrics",
        token=cfg.serve.auth_token,
        tracking_uri=cfg.tracking_uri,
        mlflow_experiment=cfg.tracking.experiment,
        artifact_root=cfg.paths.mlflow_artifacts,
        registered_model=cfg.tracking.registered_model,
        gate=cfg.gate,
        promote_alias=e.promote_alias or cfg.gate.champion_alias,
    )


def _scrape(url: str, token: str) -> tuple[str, str | None]:
    import httpx

    try:
        r = httpx.get(url, headers={"Authorization": f"Bearer {token}"} if token else {}, timeout=5.0)
        r.raise_for_status()
        return r.text, None
    except Exception as exc:  # noqa: BLE001 - no server means no guardrails, said in the report
        return "", f"{type(exc).__name__}: {exc}"


def arm_versions(args: ReportArgs) -> dict[str, int | None]:
    """The registry version each model arm serves now (None for baselines or an unknown alias)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=args.tracking_uri)
    out: dict[str, int | None] = {}
    for arm in args.assignment.arms:
        if arm.model.kind == "version":
            out[arm.name] = int(arm.model.value)
        elif arm.model.kind == "alias":
            try:
                out[arm.name] = int(client.get_model_version_by_alias(args.registered_model, arm.model.value).version)
            except Exception:  # noqa: BLE001 - reported as unknown
                out[arm.name] = None
        else:
            out[arm.name] = None
    return out


#: The offline metric the report sets beside online CTR (the gate's first metric by default).
OFFLINE_METRIC = "ndcg@10"
#: The evaluate stage's names of the baselines an arm can serve.
_OFFLINE_BASELINE = {"popular": "most_popular", "cooccurrence": "item_cooccurrence"}


def offline_ndcg(cfg: Config, args: ReportArgs, versions: dict[str, int | None]) -> dict[str, float | None]:
    """Each arm's offline NDCG@10 on the test split, from the workdir's evaluate stage (the
    model kind of a registry version from its register stage); None where unknown."""
    from sparktf.stages.state import EvaluateResult, RegisterResult, read_result

    out: dict[str, float | None] = {a.name: None for a in args.assignment.arms}
    if not cfg.paths.is_local:
        return out
    try:
        evaluated = read_result(cfg.paths, EvaluateResult).results
        registered = read_result(cfg.paths, RegisterResult).versions
    except Exception:  # noqa: BLE001 - no pipeline run here: the report goes without
        return out
    kind_of = {v.version: v.model for v in registered}
    for arm in args.assignment.arms:
        if arm.model.kind == "baseline":
            name: str | None = _OFFLINE_BASELINE[arm.model.value]
        else:
            version = versions.get(arm.name)
            name = kind_of.get(version) if version is not None else None
        if name is not None and name in evaluated:
            value = evaluated[name].get("overall", {}).get(OFFLINE_METRIC)
            out[arm.name] = float(value) if value is not None else None
    return out


def _incumbent(args: ReportArgs, versions: dict[str, int | None]) -> str | None:
    """The arm that serves the version the promote alias points at now, if any."""
    from mlflow.tracking import MlflowClient

    try:
        current = int(
            MlflowClient(tracking_uri=args.tracking_uri)
            .get_model_version_by_alias(args.registered_model, args.promote_alias)
            .version
        )
    except Exception:  # noqa: BLE001 - no such alias (yet): no incumbent
        return None
    return next((a for a, v in versions.items() if v == current), None)


def build_report(cfg: Config) -> tuple[dict[str, Any], ReportArgs]:
    """The report of ``[experiment]``: the event table (Spark), the server's guardrails, the decision."""
    from sparktf.data import storage
    from sparktf.experiments.report import (
        arm_moments,
        arm_results,
        decide,
        guardrails_from_metrics,
        order_agreement,
        read_events,
    )
    from sparktf.stages._common import spark_for

    args = report_args(cfg)
    spark = spark_for(cfg)
    if not storage.exists(spark, args.events_path):
        raise PipelineError(
            f"There is no event table at {args.events_path} yet, so experiment {args.assignment.experiment!r} "
            "has nothing to report.",
            hint="Run `sparktf live` (server and stream), send traffic (`sparktf simulate`), then report.",
        )
    moments = arm_moments(read_events(spark, args.events_path), args.assignment.experiment)
    text, scrape_error = _scrape(args.metrics_url, args.token)
    guardrails = guardrails_from_metrics(text, args.assignment.experiment) if text else {}
    report = arm_results(moments, args.assignment, args.rule.alpha, guardrails)
    report["guardrails_source"] = args.metrics_url if text else f"unavailable ({scrape_error})"
    versions = arm_versions(args)
    report["arm_models"] = {
        a.name: {"model": a.model.value, "kind": a.model.kind, "version": versions.get(a.name)}
        for a in args.assignment.arms
    }
    report["weights"] = args.assignment.shares
    offline = offline_ndcg(cfg, args, versions)
    online = {a: report["arms"][a]["rates"]["ctr"]["value"] for a in report["arms"]}
    report["offline"] = {
        "metric": OFFLINE_METRIC,
        "values": offline,
        **order_agreement(online, offline, report["pairwise_ctr"]),
    }
    incumbent = _incumbent(args, versions)
    report["incumbent"] = incumbent
    report["decision"] = decide(report, args.rule, {a.name: a.model.value for a in args.assignment.arms}, incumbent)
    report["off_policy"] = off_policy_beside(report, args.out_dir)
    report["generated_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return report, args


def off_policy_beside(report: dict[str, Any], out_dir: str) -> dict[str, Any] | None:
    """The latest ``experiment estimate`` of this experiment (None without one), with the online
    CTR of any arm that serves the estimated version: the estimate next to its online result."""
    path = os.path.join(out_dir, OFFPOLICY_FILE)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as fh:
        est: dict[str, Any] = json.load(fh)
    version = str(est.get("model_version", "")).rsplit("/", 1)[-1]
    est["online"] = {
        arm: report["arms"][arm]["rates"]["ctr"]
        for arm, info in report.get("arm_models", {}).items()
        if info.get("version") is not None and str(info["version"]) == version and arm in report["arms"]
    }
    return est


@dataclass(frozen=True)
class EstimateArgs:
    """What ``sparktf experiment estimate`` reads from the config."""

    experiment: str
    events_path: str
    out_dir: str
    clip: float
    alpha: float
    seen_path: str | None
    tracking_uri: str
    download_root: str


def estimate_args(cfg: Config) -> EstimateArgs:
    from sparktf.data.schema import FeaturePaths
    from sparktf.stages._common import download_root

    exp = _require_experiment(cfg)
    e = cfg.experiment
    return EstimateArgs(
        experiment=exp.experiment,
        events_path=cfg.paths.live_events,
        out_dir=os.path.join(cfg.paths.local("experiments"), exp.experiment),
        clip=e.ope_clip if e.ope_clip > 0 else float("inf"),
        alpha=e.alpha,
        # The candidate is replayed as the server ranks: with the user's seen items excluded when it does.
        seen_path=FeaturePaths(cfg.paths.features).seen if cfg.serve.exclude_seen else None,
        tracking_uri=cfg.tracking_uri,
        download_root=download_root(cfg),
    )


def run_estimate(cfg: Config, policy: str, console: Console, logged_by: Sequence[str] = ()) -> dict[str, Any]:
    """``sparktf experiment estimate --policy URI [--logged-by ARM ...]``: the candidate's CTR
    off-policy from the impressions the experiment logged (those of the ``logged_by`` arms only, when given)."""
    from sparktf.data import storage
    from sparktf.experiments.offpolicy import estimate_on_spark, logged_slots, reward_model
    from sparktf.experiments.ope import estimates_from_totals
    from sparktf.experiments.report import read_events, to_json
    from sparktf.inference.resolve import resolve_model
    from sparktf.serving.replay import candidate_slates
    from sparktf.stages._common import spark_for

    args = estimate_args(cfg)
    spark = spark_for(cfg)
    events_path = args.events_path
    if not storage.exists(spark, events_path):
        raise PipelineError(
            f"There is no event table at {events_path} yet, so there are no logged impressions to estimate from.",
            hint="Run `sparktf live` (server and stream), send traffic (`sparktf simulate`), then estimate.",
        )
    ref = resolve_model(policy, tracking_uri=args.tracking_uri, download_root=args.download_root)
    seen_path = args.seen_path
    seen = spark.read.parquet(seen_path) if seen_path and storage.exists(spark, seen_path) else None
    names = [a.name for a in _require_experiment(cfg).arms]
    unknown = sorted(set(logged_by) - set(names))
    if unknown:
        raise ConfigError(
            f"--logged-by names {unknown}, which are not arms of experiment {args.experiment!r}.",
            hint=f"Use arm names of [experiment]: {names}.",
        )
    slots = logged_slots(read_events(spark, events_path), args.experiment, logged_by).cache()
    try:
        model = reward_model(slots)
        slates = candidate_slates(slots, ref.path, seen)
        totals = estimate_on_spark(slots, slates, model, args.clip)
        result = estimates_from_totals(totals, args.alpha)
        logging = {
            str(r["arm"]): {"policy": r["policy"], "slots": int(r["n"]), "ctr": float(r["c"]) / int(r["n"])}
            for r in slots.groupBy("arm", "policy")
            .agg({"reward": "sum", "*": "count"})
            .withColumnsRenamed({"sum(reward)": "c", "count(1)": "n"})
            .collect()
        }
    finally:
        slots.unpersist()
    out: dict[str, Any] = {
        "experiment": args.experiment,
        "policy": policy,
        "model_version": ref.version,
        "logged_by": sorted(logged_by) or "all arms",
        "estimates": {name: result[name].to_dict() for name in ("ips", "snips", "dr")},
        "diagnostics": result["diagnostics"],
        "clip": None if math.isinf(args.clip) else args.clip,
        "alpha": args.alpha,
        "reward_model": model.to_dict(),
        "logging": logging,
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    os.makedirs(args.out_dir, exist_ok=True)
    path = os.path.join(args.out_dir, OFFPOLICY_FILE)
    with open(path + ".tmp", "w", encoding="utf-8") as fh:
        fh.write(to_json(out))
    os.replace(path + ".tmp", path)
    _print_estimate(out, console)
    console.print(f"off-policy estimate: {path}", markup=False, soft_wrap=True)
    return out


def _f4(x: float | None) -> str:
    """A rate with 4 decimals; "n/a" for None or NaN (an estimate without support)."""
    return "n/a" if x is None or x != x else f"{x:.4f}"


def _print_estimate(out: dict[str, Any], console: Console) -> None:
    from rich.table import Table

    d = out["diagnostics"]
    table = Table(title=f"{out['policy']} ({out['model_version']}): CTR off-policy, {1 - out['alpha']:.0%} interval")
    for col in ("estimator", "CTR", "interval"):
        table.add_column(col)
    for name, est in out["estimates"].items():
        table.add_row(name.upper(), _f4(est["value"]), f"[{_f4(est['ci_low'])}, {_f4(est['ci_high'])}]")
    console.print(table)
    console.print(
        f"{d['slots']} logged slots of {d['units']} users; the candidate agrees on {d['matched_slots']}; "
        f"effective sample size {d['effective_sample_size']:.0f}, max weight {d['max_weight']:.3g}"
        + (f", {d['clipped_slots']} clipped" if d["clipped_slots"] else ""),
        markup=False,
    )
    for arm, info in sorted(out["logging"].items()):
        console.print(f"logged by {arm} ({info['policy']}): {info['slots']} slots, CTR {info['ctr']:.4f}", markup=False)


def run_report(cfg: Config, console: Console) -> Any:
    """``sparktf experiment report``: print, save, chart and log the report."""
    from sparktf.experiments.report import ctr_chart, to_json

    report, args = build_report(cfg)
    os.makedirs(args.out_dir, exist_ok=True)
    json_path = os.path.join(args.out_dir, "report.json")
    png_path = os.path.join(args.out_dir, "ctr.png")
    tmp = json_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(to_json(report))
    os.replace(tmp, json_path)
    ctr_chart(report["curve"], png_path, f"experiment {args.assignment.experiment}: cumulative CTR, 95% band")
    report["mlflow_run_id"] = _log_to_mlflow(report, args, json_path, png_path)
    _print_report(report, console)
    console.print(f"report: {json_path}, chart: {png_path}", markup=False, soft_wrap=True)
    return report


def _log_to_mlflow(report: dict[str, Any], args: ReportArgs, json_path: str, png_path: str) -> str:
    """A run in the tracking experiment, tagged with each arm's model version (the report beside its models)."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from sparktf.training.tracking import open_experiment

    client = MlflowClient(tracking_uri=args.tracking_uri)
    exp_id = open_experiment(client, args.mlflow_experiment, args.artifact_root, args.tracking_uri)
    tags = {
        "sparktf.kind": "online_experiment",
        "sparktf.experiment": args.assignment.experiment,
        "sparktf.decision": report["decision"]["decision"],
        "mlflow.runName": f"experiment-{args.assignment.experiment}",
    }
    for arm, info in report["arm_models"].items():
        tags[f"sparktf.arm.{arm}"] = (
            f"{args.registered_model} v{info['version']}" if info["version"] is not None else info["model"]
        )
    run = client.create_run(exp_id, tags=tags)
    rid = run.info.run_id
    now = int(time.time() * 1000)
    from mlflow.entities import Metric

    metrics = []
    for arm, a in report["arms"].items():
        metrics += [Metric(f"{arm}/users", a["users"], now, 0), Metric(f"{arm}/impressions", a["impressions"], now, 0)]
        for name, r in a["rates"].items():
            if r["value"] == r["value"]:
                metrics.append(Metric(f"{arm}/{name}", r["value"], now, 0))
        for name, lf in a["lift"].items():
            for key in ("relative", "relative_ci_low", "relative_ci_high", "p_value"):
                if lf[key] == lf[key]:
                    metrics.append(Metric(f"{arm}/{name}_lift_{key}", lf[key], now, 0))
    metrics.append(Metric("srm_p_value", report["sample_ratio"]["p_value"], now, 0))
    client.log_batch(rid, metrics=metrics)
    client.log_artifact(rid, json_path, "experiment")
    client.log_artifact(rid, png_path, "experiment")
    client.set_terminated(rid)
    _ = mlflow
    return str(rid)


def _print_report(report: dict[str, Any], console: Console) -> None:
    """One paragraph per arm (lines wrap at any terminal width), then the checks and the decision."""

    def rate(r: dict[str, float]) -> str:
        return f"{r['value']:.4f} [{r['ci_low']:.4f}, {r['ci_high']:.4f}]"

    say = partial(console.print, markup=False, soft_wrap=True)
    say(f"experiment {report['experiment']}: control {report['control']}, 95% intervals over users")
    for arm, a in report["arms"].items():
        model = report["arm_models"][arm]
        what = ("@" if model["kind"] == "alias" else "") + model["model"]
        what += f" (v{model['version']})" if model["version"] is not None and model["kind"] != "version" else ""
        lf = a["lift"].get("ctr")
        lift_text = (
            f"lift over {report['control']} {lf['relative']:+.1%} [{lf['relative_ci_low']:+.1%}, "
            f"{lf['relative_ci_high']:+.1%}], p = {lf['p_value']:.2g}"
            if lf
            else "control"
        )
        g = a["guardrail"]
        health = (
            f"errors {g['error_rate']:.2%}, p99 ≤ {g['p99_latency_ms']:.0f} ms"
            if g["error_rate"] is not None and g["p99_latency_ms"] is not None
            else "guardrails unknown"
        )
        say(
            f"  {arm} = {what}: {a['users']} users, {a['impressions']} impressions, {a['clicks']} clicks; "
            f"CTR {rate(a['rates']['ctr'])}; {lift_text}; add-to-cart {rate(a['rates']['add_to_cart_rate'])}, "
            f"purchase {rate(a['rates']['purchase_rate'])} per impression; {health}"
        )
    srm = report["sample_ratio"]
    say(
        f"sample ratio: users {srm['observed']} vs expected {[round(x, 1) for x in srm['expected']]}, "
        f"p = {srm['p_value']:.3g}; users in several arms: {report['users_in_several_arms']}"
    )
    off = report.get("offline", {})
    if off.get("agrees") is not None:
        ties = "; ".join(f"{a} ≈ {b}" for a, b in off.get("ties", []))
        against = "; ".join(f"{a} < {b}" for a, b in off.get("contradictions", []))
        say(
            f"order by online CTR {off['by_online_ctr']} "
            f"{'matches' if off['agrees'] else 'differs from'} the order by offline {off['metric']} {off['by_offline']}"
            + (f"; significantly against it: {against}" if against else "; no significant contradiction")
            + (f"; not told apart online: {ties}" if ties else "")
        )
    op = report.get("off_policy")
    if op:
        parts = [
            f"{name.upper()} {_f4(e['value'])} [{_f4(e['ci_low'])}, {_f4(e['ci_high'])}]"
            for name, e in op["estimates"].items()
        ]
        online = "; ".join(
            f"online as arm {arm}: {c['value']:.4f} [{c['ci_low']:.4f}, {c['ci_high']:.4f}]"
            for arm, c in op["online"].items()
        )
        say(
            f"off-policy CTR of {op['policy']} ({op['model_version']}, from {op['diagnostics']['slots']} logged slots): "
            + ", ".join(parts)
            + (f"; {online}" if online else "; not served online yet")
        )
    d = report["decision"]
    say(f"decision: {d['decision']}" + (f" {d['arm']}" if d["arm"] else "") + " — " + "; ".join(d["reasons"]))


# --------------------------------------------------------------------------- conclude


def run_conclude(cfg: Config, console: Console) -> Any:
    """``sparktf experiment conclude``: the report's decision applied through the registry.

    Raises:
        ValidationGateError: the winner failed the offline gate (the champion is unchanged).
    """
    from sparktf.experiments.conclude import apply_decision
    from sparktf.registry.registry import ModelRegistry
    from sparktf.stages._common import spark_for
    from sparktf.stages._evaluation import catalogue_evaluator, eval_args

    report = run_report(cfg, console)
    args = report_args(cfg)
    registry = ModelRegistry(args.tracking_uri, args.registered_model)

    built: list[Any] = []

    def evaluate(uri: str) -> Any:  # built once, and only when a promotion needs it (Spark, the test split)
        if not built:
            built.append(catalogue_evaluator(spark_for(cfg), eval_args(cfg), tracking_uri=args.tracking_uri))
        return built[0](uri)

    done = apply_decision(registry, report, args.gate, evaluate, promote_alias=args.promote_alias)
    console.print(f"conclude: {done.message()}", markup=False, soft_wrap=True)
    if done.promotion is not None:
        done.promotion.raise_if_rejected()
    return done
