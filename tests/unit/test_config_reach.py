"""Every configuration field reaches the code that uses it (issue 14).

For each field of each section the table :data:`READS` says which stage or command
reads it and how to see the value *as that code receives it*: through the stage's
argument-building function (``launch_args``, ``eval_args``, ``serve_args``, ...), which
is what the stage passes on. The test sets a value other than the default and checks
that exactly that value arrives. Where a stage hands a whole section to a library
function (``[generator]`` to the generator, ``[gate]`` to the promotion), the entry also
names the module that reads the field, and the test checks that module reads it.

A new field fails :func:`test_every_field_is_covered` until it is added here, with the
code that reads it.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import pytest

import sparktf
from sparktf.config import Config, ExperimentArm, MetricThreshold
from sparktf.errors import ConfigError
from sparktf.spark import spark_conf
from sparktf.stages._evaluation import eval_args
from sparktf.stages.experiment import estimate_args, report_args, simulate_args
from sparktf.stages.features import features_args
from sparktf.stages.generate import generate_args
from sparktf.stages.index import index_args
from sparktf.stages.monitor import monitor_args
from sparktf.stages.recommend import batch_args
from sparktf.stages.register import registry_args
from sparktf.stages.serve import serve_args
from sparktf.stages.stream import stream_args
from sparktf.stages.tfrecords import tfrecords_args
from sparktf.stages.train import launch_args, model_params, profile_args, train_spec
from sparktf.stages.tune import tune_args
from sparktf.stages.validate import validate_args

SRC = Path(sparktf.__file__).parent


@dataclass(frozen=True)
class Reach:
    """Who reads a field, and the value it gets.

    Attributes:
        reader: the stage or command that reads it (for people).
        get: the value as the reading code receives it, from a config.
        module: when a whole section is handed over, the module (under ``sparktf/``)
            that reads this field of it.
        auto_default: the default (0 or "") means "choose automatically" and arrives computed.
        along: fields of the same section that a non-default value needs (a time split
            needs its cutoff).
    """

    reader: str
    get: Callable[[Config], Any]
    module: str = ""
    auto_default: bool = False  # the default means "automatic" and arrives computed
    along: tuple[tuple[str, Any], ...] = ()  # other fields of the section a value needs


def _spark(key: str) -> Callable[[Config], Any]:
    return lambda c: spark_conf(c.spark)[key]


def _uvicorn(c: Config) -> Any:
    from sparktf.serving.server import uvicorn_config

    return uvicorn_config(None, serve_args(c, None).settings)


def _agreed(*values: Any) -> Any:
    """The one value several readers of a field all got, or all of them (which then fails)."""
    return values[0] if all(v == values[0] for v in values) else values


def _spec(c: Config) -> Any:
    return train_spec(c, "sequential", run_dir="r", export_base="e", version=1, train_examples=1, run_id="x")


#: Where [monitoring]'s thresholds are read, for the server and the report alike.
_THRESHOLDS = "monitoring/profile.py"

READS: dict[str, Reach] = {
    "workdir": Reach("every stage", lambda c: validate_args(c).raw_path.rsplit("/data/raw", 1)[0]),
    # [spark]: the session of every stage (sparktf.spark.get_spark).
    "spark.master": Reach("get_spark", _spark("spark.master")),
    "spark.app_name": Reach("get_spark", _spark("spark.app.name")),
    "spark.shuffle_partitions": Reach(
        "get_spark", lambda c: int(spark_conf(c.spark)["spark.sql.shuffle.partitions"]), auto_default=True
    ),
    "spark.driver_memory": Reach("get_spark", _spark("spark.driver.memory")),
    "spark.ui": Reach("get_spark", lambda c: spark_conf(c.spark)["spark.ui.enabled"] == "true"),
    "spark.log_level": Reach("get_spark", lambda c: c.spark.log_level, "spark.py"),
    "spark.conf": Reach("get_spark", lambda c: {k: spark_conf(c.spark)[k] for k in c.spark.conf}),
    # [data]
    "data.source": Reach("generate", lambda c: generate_args(c).data.source, "stages/generate.py"),
    "data.path": Reach("generate", lambda c: generate_args(c).movielens_path),
    "data.format": Reach("generate (read_source)", lambda c: generate_args(c).data.format, "data/sources.py"),
    "data.table": Reach("generate (read_source)", lambda c: generate_args(c).data.table, "data/sources.py"),
    "data.event_types": Reach("validate, features", lambda c: features_args(c).event_types),
    "data.max_bad_fraction": Reach("validate", lambda c: validate_args(c).rules.max_bad_fraction, "data/validation.py"),
    "data.min_event_time": Reach("validate", lambda c: validate_args(c).rules.min_event_time, "data/validation.py"),
    "data.max_event_time": Reach("validate", lambda c: validate_args(c).rules.max_event_time, "data/validation.py"),
    # [features]
    "features.max_history": Reach("features, train, index, recommend", lambda c: model_params(c, "gru").max_history),
    "features.split": Reach(
        "features (build_features)",
        lambda c: features_args(c).features.split,
        "data/features.py",
        along=(("time_cutoff", "2026-01-20"),),
    ),
    "features.session_breaks": Reach(
        "features (build_features), train (the repeat term), stream (live histories)",
        lambda c: _agreed(
            features_args(c).features.session_breaks,
            model_params(c, "sasrec").session_breaks,
            stream_args(c).rules.session_breaks,
        ),
        "data/features.py",
    ),
    # [tfrecord]
    "tfrecord.codec": Reach("tfrecords", lambda c: tfrecords_args(c).codec),
    "tfrecord.compression_level": Reach("tfrecords", lambda c: tfrecords_args(c).compression_level),
    "tfrecord.files_per_split": Reach("tfrecords", lambda c: tfrecords_args(c).files_per_split),
    # [train]: the launcher
    "train.num_workers": Reach("train (SparkRunner.run)", lambda c: launch_args(c).num_workers),
    "train.use_gpu": Reach("train (SparkRunner.run)", lambda c: launch_args(c).use_gpu),
    "train.max_restarts": Reach("train (SparkRunner.run)", lambda c: launch_args(c).max_restarts),
    "train.backup_every_steps": Reach("train (SparkRunner.run)", lambda c: launch_args(c).backup_every_steps),
    "train.launch_timeout_s": Reach("train (SparkRunner.run)", lambda c: launch_args(c).launch_timeout_s),
    "train.worker_threads": Reach("train (SparkRunner.run)", lambda c: launch_args(c).worker_threads),
    "train.pin_cpus": Reach("train (SparkRunner.run)", lambda c: launch_args(c).pin_cpus),
    "train.models": Reach("train, register, index", lambda c: index_args(c).kinds),
    # [train]: the training function
    "train.epochs": Reach("train (TrainSpec)", lambda c: _spec(c).epochs),
    "train.batch_size": Reach("train (TrainSpec)", lambda c: _spec(c).global_batch_size),
    "train.learning_rate": Reach("train (TrainSpec)", lambda c: _spec(c).learning_rate),
    "train.lr_decay": Reach("train (TrainSpec)", lambda c: _spec(c).lr_decay),
    "train.weight_decay": Reach("train (TrainSpec)", lambda c: _spec(c).weight_decay),
    "train.calibrate_taste": Reach(
        "train (TrainSpec)", lambda c: _spec(c).calibrate_taste, along=(("repeat_buckets", 16),)
    ),
    "train.early_stopping_patience": Reach("train (TrainSpec)", lambda c: _spec(c).early_stopping_patience),
    # [tracking]
    "tracking.tracking_uri": Reach(
        "train, evaluate, register, index, serve", lambda c: registry_args(c).tracking_uri, auto_default=True
    ),
    "tracking.experiment": Reach("train, evaluate, index", lambda c: index_args(c).experiment),
    "tracking.registered_model": Reach("register, index, serve", lambda c: registry_args(c).registered_model),
    # [evaluation]: the protocol the evaluate stage and the gate share
    "evaluation.ks": Reach("evaluate, register", lambda c: eval_args(c).ks),
    "evaluation.exclude_seen": Reach("evaluate, register", lambda c: eval_args(c).exclude_seen),
    "evaluation.split": Reach("evaluate, register", lambda c: eval_args(c).split),
    "evaluation.batch_size": Reach("evaluate, register", lambda c: eval_args(c).batch_size),
    "evaluation.popularity_shares": Reach("evaluate, register", lambda c: eval_args(c).popularity_shares),
    # [tune]: sparktf tune (stages/tune.py tune_args; the study, trials and pruner take them from there)
    "tune.model": Reach("tune", lambda c: tune_args(c).kind),
    "tune.trials": Reach("tune", lambda c: tune_args(c).trials),
    "tune.parallelism": Reach("tune", lambda c: tune_args(c).parallelism),
    "tune.timeout_s": Reach("tune", lambda c: tune_args(c).timeout_s),
    "tune.epochs": Reach("tune", lambda c: tune_args(c).epochs),
    "tune.pruner_warmup_epochs": Reach("tune", lambda c: tune_args(c).pruner_warmup_epochs),
    "tune.seed": Reach("tune", lambda c: tune_args(c).seed),
    "tune.output": Reach("tune", lambda c: os.path.relpath(tune_args(c).output), auto_default=True),
    # [gate]
    "gate.protocol": Reach("register (the gate's evaluation)", lambda c: eval_args(c).gate_protocol),
    "gate.champion_alias": Reach("register, index, serve", lambda c: serve_args(c, None).model.rsplit("@", 1)[1]),
    # [index]
    "index.model": Reach("index", lambda c: index_args(c).model),
    "index.model_kind": Reach("index", lambda c: index_args(c).kinds[0], auto_default=True),
    # [batch]
    **{
        f"batch.{f}": Reach("recommend", lambda c, f=f: getattr(batch_args(c), f))
        for f in ("k", "table", "model", "users", "exclude_seen", "batch_size", "threads_per_worker", "partitions")
    },
    # [serve]
    "serve.features_path": Reach("serve", lambda c: serve_args(c, None).features_path, auto_default=True),
    # In a workdir without an index (the default workdir may hold `make run`'s, whose index
    # would arrive in place of the empty default).
    "serve.index_path": Reach(
        "serve", lambda c: serve_args(c.replace(workdir="/nonexistent/sparktf"), None).index_path
    ),
    "serve.header_timeout_s": Reach(
        "serve (uvicorn's protocol)", lambda c: _uvicorn(c).http.header_timeout_s, "serving/server.py"
    ),
    # [stream]: the streaming job (stream_args → run_stream → online.stream.start_query)
    "stream.trigger_interval_s": Reach(
        "stream (start_query)", lambda c: stream_args(c).settings.trigger_interval_s, "stages/stream.py"
    ),
    "stream.watermark_s": Reach("stream (apply_user)", lambda c: stream_args(c).rules.watermark_s, "online/stream.py"),
    "stream.max_future_s": Reach(
        "serve (POST /v1/events), stream (check_event)",
        lambda c: _same_for_both(serve_args(c, None).events, stream_args(c).rules.events).max_future_s,
        "online/events.py",
    ),
    "stream.max_files_per_trigger": Reach(
        "stream (start_query)", lambda c: stream_args(c).settings.max_files_per_trigger, "stages/stream.py"
    ),
    "stream.partitions": Reach(
        "stream (start_query)", lambda c: stream_args(c).settings.partitions, "stages/stream.py"
    ),
    "stream.clean_landing": Reach(
        "stream (start_query)", lambda c: stream_args(c).settings.clean_landing, "stages/stream.py"
    ),
    # [online]: opened by the server (read-only) and the stream (open_store)
    "online.store": Reach(
        "serve, stream (open_store)",
        lambda c: _same_for_both(serve_args(c, None).online, stream_args(c).online).store,
        "online/store.py",
        along=(("redis_url", "redis://127.0.0.1:6379/0"),),
    ),
    "online.sqlite_path": Reach(
        "serve, stream (open_store)",
        lambda c: _same_for_both(serve_args(c, None).online_path, stream_args(c).online_path),
        auto_default=True,
    ),
    "online.redis_url": Reach(
        "serve, stream (RedisStore)",
        lambda c: _same_for_both(serve_args(c, None).online, stream_args(c).online).redis_url,
        "online/store.py",
    ),
    "online.key_prefix": Reach(
        "serve, stream (RedisStore)",
        lambda c: _same_for_both(serve_args(c, None).online, stream_args(c).online).key_prefix,
        "online/store.py",
    ),
    # [experiment]: the server splits by it (serve_args), the report and conclude judge by it.
    "experiment.name": Reach(
        "serve, experiment report",
        lambda c: (
            ""
            if not c.experiment.name
            else _same_for_both(serve_args(c, None).experiment, report_args(c).assignment).experiment
        ),
    ),
    "experiment.salt": Reach(
        "serve (Assignment.arm_for)",
        lambda c: serve_args(_named(c), None).experiment.salt,
        "experiments/assignment.py",
        auto_default=True,
    ),
    "experiment.arms": Reach(
        "serve, experiment report",
        lambda c: tuple(
            ExperimentArm(
                a.name,
                "@" + a.model.value if a.model.kind == "alias" else a.model.value,
                a.weight,
                a.exploration.kind,
                a.exploration.epsilon,
                a.exploration.temperature,
                a.exploration.candidates,
            )
            for a in _same_for_both(serve_args(_named(c), None).experiment, report_args(_named(c)).assignment).arms
        ),
    ),
    "experiment.control": Reach(
        "experiment report (arm_results, decide)",
        lambda c: _same_for_both(report_args(_named(c)).assignment.control, report_args(_named(c)).rule.control),
        "experiments/report.py",
        auto_default=True,
    ),
    "experiment.buckets": Reach("serve (Assignment)", lambda c: serve_args(_named(c), None).experiment.buckets),
    "experiment.alpha": Reach(
        "experiment report (arm_results)",
        lambda c: report_args(_named(c)).rule.alpha,
        "stages/experiment.py",
    ),
    "experiment.srm_alpha": Reach(
        "experiment report (decide)",
        lambda c: report_args(_named(c)).rule.srm_alpha,
        "experiments/report.py",
    ),
    "experiment.min_users_per_arm": Reach(
        "experiment report (decide)",
        lambda c: report_args(_named(c)).rule.min_users_per_arm,
        "experiments/report.py",
    ),
    "experiment.min_lift": Reach(
        "experiment report (decide)",
        lambda c: report_args(_named(c)).rule.min_lift,
        "experiments/report.py",
    ),
    "experiment.max_error_rate": Reach(
        "experiment report (decide)",
        lambda c: report_args(_named(c)).rule.max_error_rate,
        "experiments/report.py",
    ),
    "experiment.max_p99_latency_ms": Reach(
        "experiment report (decide)",
        lambda c: report_args(_named(c)).rule.max_p99_latency_ms,
        "experiments/report.py",
    ),
    "experiment.ope_clip": Reach(
        "experiment estimate (slot_terms)",
        lambda c: estimate_args(_named(c)).clip if c.experiment.ope_clip else 0.0,
        "stages/experiment.py",
    ),
    "experiment.promote_alias": Reach(
        "experiment conclude", lambda c: report_args(_named(c)).promote_alias, auto_default=True
    ),
    # [simulate]: sparktf simulate (ShopperSimulator and its run)
    "simulate.seed": Reach("simulate", lambda c: simulate_args(c).settings.seed, "stages/experiment.py"),
    "simulate.duration_s": Reach("simulate", lambda c: simulate_args(c).settings.duration_s, "stages/experiment.py"),
    "simulate.rate": Reach("simulate", lambda c: simulate_args(c).settings.rate, "stages/experiment.py"),
    "simulate.concurrency": Reach("simulate", lambda c: simulate_args(c).settings.concurrency, "stages/experiment.py"),
    "simulate.k": Reach("simulate", lambda c: simulate_args(c).settings.k, "stages/experiment.py"),
    "simulate.position_bias": Reach(
        "simulate", lambda c: simulate_args(c).settings.position_bias, "stages/experiment.py"
    ),
    "simulate.steps_per_session": Reach(
        "simulate", lambda c: simulate_args(c).settings.steps_per_session, "stages/experiment.py"
    ),
    "simulate.dwell_s": Reach("simulate", lambda c: simulate_args(c).settings.dwell_s, "stages/experiment.py"),
    "simulate.users": Reach("simulate", lambda c: simulate_args(c).settings.users, "stages/experiment.py"),
    # [monitoring]: the server's windows and alerts (ServedMonitoring.from_config), and the
    # reference profile each trained model gets (the train stage's profile_args).
    "monitoring.enabled": Reach("serve", lambda c: serve_args(c, None).monitoring is not None),
    "monitoring.window_s": Reach("serve", lambda c: _mon(c).window_s, "serving/monitor.py"),
    "monitoring.window_slots": Reach("serve", lambda c: _mon(c).slots, "serving/monitor.py"),
    "monitoring.min_requests": Reach("serve", lambda c: _mon(c).thresholds.min_requests, _THRESHOLDS),
    "monitoring.psi_alert": Reach("serve", lambda c: _mon(c).thresholds.psi, _THRESHOLDS),
    "monitoring.js_alert": Reach("serve", lambda c: _mon(c).thresholds.js, _THRESHOLDS),
    "monitoring.max_fallback_rate": Reach(
        "serve", lambda c: _mon(c).thresholds.max_rates["fallback_rate"], _THRESHOLDS
    ),
    "monitoring.max_unknown_user_rate": Reach(
        "serve", lambda c: _mon(c).thresholds.max_rates["unknown_user_rate"], _THRESHOLDS
    ),
    "monitoring.max_unknown_item_rate": Reach(
        "serve", lambda c: _mon(c).thresholds.max_rates["unknown_item_rate"], _THRESHOLDS
    ),
    "monitoring.impressions": Reach("serve", lambda c: _mon(c).impressions, "serving/monitor.py"),
    "monitoring.score_bins": Reach("train (reference profile)", lambda c: profile_args(c).score_bins),
    "monitoring.length_bins": Reach("train (reference profile)", lambda c: profile_args(c).length_bins),
    "monitoring.top_categories": Reach("train (reference profile)", lambda c: profile_args(c).top_categories),
    # [monitoring]: sparktf monitor report (its alert thresholds are the server's too)
    "monitoring.skew_sample": Reach("monitor report", lambda c: monitor_args(c).skew_sample),
    "monitoring.report_hours": Reach("monitor report", lambda c: monitor_args(c).hours),
    # [generator]: the drift, which simulate replays against the server (generate writes it too)
    "generator.drift": Reach(
        "generate, simulate (build_catalog)", lambda c: simulate_args(c).generator.drift, "data/generator.py"
    ),
    "generator.drift_share": Reach(
        "generate, simulate (build_catalog)", lambda c: simulate_args(c).generator.drift_share, "data/generator.py"
    ),
}


def _mon(c: Config) -> Any:
    """The server's monitoring (on unless ``monitoring.enabled`` is off)."""
    served = serve_args(c, None).monitoring
    assert served is not None, "monitoring.enabled is on, but the server got no monitoring"
    return served


def _named(c: Config) -> Config:
    """``c`` with an experiment name, so the experiment's other fields are read (a nameless one is off)."""
    return c if c.experiment.name else c.replace(experiment=dataclasses.replace(c.experiment, name="exp"))


def _same_for_both(serve_side: Any, stream_side: Any) -> Any:
    """The server and the stream must get the same value (one collects, the other applies)."""
    assert serve_side == stream_side, f"serve gets {serve_side!r} but the stream {stream_side!r}"
    return stream_side


# Sections handed whole to the library code named by a field's stage: the value
# arrives as part of the section, and the module reads the field.
_WHOLE: dict[str, tuple[str, Callable[[Config], Any], str]] = {
    "generator": ("generate (generate_events)", lambda c: generate_args(c).generator, "data/generator.py"),
    "features": ("features (build_features)", lambda c: features_args(c).features, "data/features.py"),
    "train": ("train (ModelParams)", lambda c: model_params(c, "sequential"), "models/"),
    "evaluation": ("evaluate (evaluate_baselines)", lambda c: c.evaluation, "evaluation/baselines.py"),
    "gate": ("register, promote (promote_version)", lambda c: registry_args(c).gate, "registry/"),
    "index": ("index", lambda c: index_args(c).settings, "stages/index.py"),
    "serve": ("serve (create_app)", lambda c: serve_args(c, None).settings, "serving/"),
}


def _fields() -> list[tuple[str, str]]:
    out = [("", "workdir")]
    for section in dataclasses.fields(Config):
        if section.name == "workdir":
            continue
        out += [(section.name, f.name) for f in dataclasses.fields(getattr(Config(), section.name))]
    return out


def _reach(section: str, name: str) -> Reach:
    key = f"{section}.{name}" if section else name
    if key in READS:
        return READS[key]
    reader, get, module = _WHOLE[section]
    return Reach(reader, lambda c: getattr(get(c), name), module)


def test_every_field_is_covered() -> None:
    def covered(section: str, name: str) -> bool:
        if (f"{section}.{name}" if section else name) in READS:
            return True
        # A whole-section entry covers a field only if that object carries it.
        return section in _WHOLE and _carries(section, name)

    missing = [f"{s}.{n}" for s, n in _fields() if not covered(s, n)]
    assert not missing, f"fields nobody is shown to read: {missing}"


def _carries(section: str, name: str) -> bool:
    return hasattr(_WHOLE[section][1](Config()), name)


_CANDIDATES: dict[str, list[Any]] = {
    "str": [
        "local[3]",
        "3g",
        "other_name",
        "2026-02-01",
        "production",
        "/tmp/sparktf-reach",
        "models:/m@prod",
        "treatment",
    ],
}


def _other_value(section: str, name: str, default: Any, tp: Any) -> list[Any]:
    origin = get_origin(tp)
    if origin is Literal:
        return [a for a in get_args(tp) if a != default]
    if tp is bool:
        return [not default]
    if tp is int:
        return [default + 1, default + 2, default * 2, 1, 3]
    if tp is float:
        return [default * 0.5, default + 0.01, 0.5, 2.0] if not math.isnan(default) else [0.5]
    if tp is str:
        return _CANDIDATES["str"]
    if origin is tuple:
        (item,) = get_args(tp)[:1]
        if item is MetricThreshold:
            return [(MetricThreshold(metric="hr@20", min_value=0.25),)]
        if item is ExperimentArm:
            return [(ExperimentArm("a", "cooccurrence", 2.0), ExperimentArm("b", "@challenger", 1.0))]
        options = [tuple(reversed(default)), default[:1], (*default, *default[:1])]
        if get_origin(item) is Literal:
            options.append(tuple(get_args(item)[:1]))
        if item is int:
            options.append((5,))
        if item is float:
            options.append((0.4, 0.9))
        return [o for o in options if o != default]
    if origin is dict:
        return [{"spark.sparktf.reach": "yes"}, {"canary": "2"}]
    raise AssertionError(f"no candidate values for {section}.{name} ({tp})")


def _with(cfg: Config, section: str, name: str, value: Any, along: tuple[tuple[str, Any], ...] = ()) -> Config:
    if not section:
        return cfg.replace(**{name: value})
    changes = {**dict(along), name: value}
    return cfg.replace(**{section: dataclasses.replace(getattr(cfg, section), **changes)})


@pytest.mark.parametrize(("section", "name"), _fields(), ids=lambda x: x)
def test_a_non_default_value_arrives_where_it_is_read(section: str, name: str) -> None:
    base = Config()
    owner = getattr(base, section) if section else base
    tp = typing.get_type_hints(type(owner))[name]
    default = getattr(owner, name)
    reach = _reach(section, name)
    if not reach.auto_default:
        assert _same(reach.get(base), default), f"{section}.{name}: the default does not arrive as it is"
    tried = []
    for value in _other_value(section, name, default, tp):
        try:
            cfg = _with(base, section, name, value, reach.along)
        except ConfigError as exc:
            tried.append(f"{value!r}: {exc}")
            continue
        value = getattr(getattr(cfg, section) if section else cfg, name)  # as coerced
        got = reach.get(cfg)
        assert _same(got, value), f"{section}.{name} = {value!r} reaches {reach.reader} as {got!r}"
        break
    else:
        pytest.fail(f"no valid non-default value for {section}.{name}: {tried}")
    if reach.module:
        _assert_module_reads(reach.module, name, f"{section}.{name}")


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str) and ("/" in a or "/" in b):
        return Path(a).resolve() == Path(b).resolve() if a and b else a == b
    return bool(a == b)


def _assert_module_reads(module: str, name: str, key: str) -> None:
    root = SRC / module
    files = sorted(root.rglob("*.py")) if root.is_dir() else [root]
    pattern = re.compile(rf"\.{re.escape(name)}\b")
    assert any(pattern.search(p.read_text(encoding="utf-8")) for p in files), (
        f"{key}: no code under sparktf/{module} reads .{name}"
    )


def test_the_four_misrouted_settings_of_issue_14_arrive() -> None:
    """The settings that changed nothing before issue 14, each through its real path."""
    cfg = Config().replace(
        train=dataclasses.replace(Config().train, launch_timeout_s=7.5, backup_every_steps=3),
        evaluation=dataclasses.replace(Config().evaluation, split="validation", popularity_shares=(0.3, 0.6)),
        gate=dataclasses.replace(Config().gate, champion_alias="production"),
    )
    launch = launch_args(cfg)
    assert (launch.launch_timeout_s, launch.backup_every_steps) == (7.5, 3)
    ev = eval_args(cfg)
    assert (ev.split, ev.popularity_shares) == ("validation", (0.3, 0.6))
    assert serve_args(cfg, None).model == "models:/sparktf-recommender@production"
