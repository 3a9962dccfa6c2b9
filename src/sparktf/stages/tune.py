"""``sparktf tune``: ``[tune]`` turned into an Optuna study over ``[train]`` settings, and the
best settings written as a config file that ``sparktf run --config`` accepts.

It reads what the data stages wrote (``data/features`` and ``tfrecords/``; the ``sparktf
tune`` command runs those stages first, skipping the ones whose inputs have not changed,
as ``sparktf run`` would) and trains ``tune.model`` once per trial, each trial a Spark
task (:mod:`sparktf.tuning`). Every trial trains as ``sparktf run`` would with that
trial's settings (same ``[train]`` otherwise, ``train.epochs = tune.epochs``, the same
seed, early stopping on validation HR@10), on one process instead of
``train.num_workers``, and exports nothing.

Outputs, under ``<workdir>/tune``: ``optuna.db`` (every study of this workdir),
``<study>/trial-NNN/train.log`` (each trial's training output), ``trials.json`` (the
last study: each trial's state, settings, best validation NDCG@10, epochs and seconds),
and ``tune.output`` (default ``best.toml``): the effective configuration with the best
trial's settings, ``train.models = [tune.model]`` and ``train.epochs`` = the epochs the
trial was given (fewer if the time budget cut it), so that ``sparktf run --config
best.toml`` in the same workdir trains what that trial trained. In MLflow: a parent run
``tune-<model>`` (the ``[tune]`` section, the search space, the best value, ``best.toml``
and ``trials.json``) with one nested run per trial.

Secrets (``serve.auth_token``, ...) are left out of ``best.toml``, written empty with a
comment, not as ``<redacted>``: ``load_config`` refuses that marker, and the file must
load as it is.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sparktf.config import Config, config_to_dict, config_to_toml
from sparktf.data.schema import FeaturePaths
from sparktf.errors import DataError, PipelineError
from sparktf.spark import default_parallelism, is_local_master
from sparktf.stages._common import spark_for

if TYPE_CHECKING:
    from rich.console import Console

    from sparktf.tuning.study import StudyResult, TrialRecord

__all__ = ["TuneArgs", "TuneResult", "best_config", "best_config_text", "run_tune", "trial_config", "tune_args"]

#: ``stages.train.train_spec``, handed in by the CLI: stage modules do not import each other.
TrainSpecFn = Callable[..., Any]


@dataclass(frozen=True)
class TuneArgs:
    """Everything ``sparktf tune`` reads from the config besides the base ``[train]``.

    Attributes:
        kind: ``tune.model``.
        trials, parallelism, timeout_s, epochs, pruner_warmup_epochs, seed: ``[tune]``.
        output: ``tune.output`` as an absolute path (``<workdir>/tune/best.toml`` when empty).
        tune_dir: ``<workdir>/tune``; ``storage_url`` its ``optuna.db``.
        features_dir, tfrecords_dir: what the trials train on.
        tracking_uri, experiment, artifact_root: MLflow (``[tracking]``).
        threads_per_trial: TensorFlow threads per trial: the local master's cores shared
            among the trials running at once; 0 (TensorFlow's default) on a cluster.
        use_gpu: ``train.use_gpu``; without it trials hide the GPUs.
        dataset: ``data.source``, an MLflow tag.
    """

    kind: str
    trials: int
    parallelism: int
    timeout_s: float
    epochs: int
    pruner_warmup_epochs: int
    seed: int
    output: str
    tune_dir: str
    storage_url: str
    features_dir: str
    tfrecords_dir: str
    tracking_uri: str
    experiment: str
    artifact_root: str
    threads_per_trial: int
    use_gpu: bool
    dataset: str


def tune_args(cfg: Config) -> TuneArgs:
    t = cfg.tune
    tune_dir = cfg.paths.local("tune")
    master = cfg.spark.master
    threads = max(1, default_parallelism(master) // t.parallelism) if is_local_master(master) else 0
    return TuneArgs(
        kind=t.model,
        trials=t.trials,
        parallelism=t.parallelism,
        timeout_s=t.timeout_s,
        epochs=t.epochs,
        pruner_warmup_epochs=t.pruner_warmup_epochs,
        seed=t.seed,
        output=os.path.abspath(t.output) if t.output else os.path.join(tune_dir, "best.toml"),
        tune_dir=tune_dir,
        storage_url=f"sqlite:///{os.path.join(tune_dir, 'optuna.db')}",
        features_dir=cfg.paths.features,
        tfrecords_dir=cfg.paths.tfrecords,
        tracking_uri=cfg.tracking_uri,
        experiment=cfg.tracking.experiment,
        artifact_root=cfg.paths.mlflow_artifacts,
        threads_per_trial=threads,
        use_gpu=cfg.train.use_gpu,
        dataset=cfg.data.source,
    )


@dataclass(frozen=True)
class TuneResult:
    """A finished ``sparktf tune``: the study, and where its outputs went."""

    study: StudyResult
    best_config_path: str
    trials_path: str
    parent_run_id: str


# --------------------------------------------------------------------------- configs


def trial_config(cfg: Config, kind: str, params: Mapping[str, Any], epochs: int) -> Config:
    """The config one trial trains with: ``cfg`` with the trial's ``train.*`` settings,
    ``train.models = [kind]`` and ``train.epochs = epochs`` (checked like any config)."""
    train = dataclasses.replace(cfg.train, **{**params, "models": (kind,), "epochs": epochs})
    return cfg.replace(train=train)


def _without_secrets(obj: Any, prefix: str = "") -> tuple[Any, list[str]]:
    """``obj`` (a config or a section) with every non-empty secret field emptied, and their paths."""
    changes: dict[str, Any] = {}
    removed: list[str] = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        path = prefix + f.name
        if f.metadata.get("secret"):
            if value:
                changes[f.name] = ""
                removed.append(path)
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            new, inner = _without_secrets(value, path + ".")
            if inner:
                changes[f.name] = new
                removed += inner
        elif isinstance(value, tuple) and value and all(dataclasses.is_dataclass(v) for v in value):
            rows = [_without_secrets(v, f"{path}[{i}].") for i, v in enumerate(value)]
            if any(inner for _, inner in rows):
                changes[f.name] = tuple(new for new, _ in rows)
                removed += [p for _, inner in rows for p in inner]
    return (dataclasses.replace(obj, **changes) if changes else obj), removed


def best_config(cfg: Config, best: TrialRecord, args: TuneArgs) -> tuple[Config, list[str]]:
    """The config that reproduces trial ``best``, without secrets; and the secrets left out."""
    epochs = best.epochs_run if best.budget_cut else args.epochs
    out: Config
    out, removed = _without_secrets(trial_config(cfg, args.kind, best.params, epochs))
    return out, removed


def best_config_text(best_cfg: Config, best: TrialRecord, study: StudyResult, path: str, removed: list[str]) -> str:
    """``best.toml``: a comment saying where it comes from and how to use it, then the config."""
    lines = [
        f"# sparktf tune: the best of {len(study.trials)} trials of {study.kind} (study {study.study_name}):",
        f"# trial {best.number}, validation NDCG@10 = {best.value:.4f} over {best.epochs_run} epochs"
        + (" (cut by tune.timeout_s)" if best.budget_cut else "")
        + ".",
        f"# Settings searched: {', '.join(f'train.{k} = {v}' for k, v in best.params.items())}.",
        f"# Reproduce it: sparktf run --config {shlex.quote(path)}",
    ]
    if removed:
        lines.append(f"# Secrets left out (give them with --set): {', '.join(removed)}.")
    return "\n".join(lines) + "\n\n" + config_to_toml(best_cfg, redact_secrets=True)


# --------------------------------------------------------------------------- the run


def _check_inputs(args: TuneArgs) -> dict[str, Any]:
    stats_path = FeaturePaths(args.features_dir).stats
    schema = os.path.join(args.tfrecords_dir, "schema.json")
    for path, what in ((stats_path, "features"), (schema, "TFRecords")):
        if "://" not in path and not os.path.exists(path):
            raise DataError(
                f"{path} does not exist: the {what} that the trials train on have not been built in this workdir.",
                hint="`sparktf tune` builds them first (the data stages of `sparktf run`); "
                "or run `sparktf run` with the same configuration.",
            )
    with open(stats_path, encoding="utf-8") as fh:
        stats: dict[str, Any] = json.load(fh)
    return stats


def run_tune(cfg: Config, out: Console, *, train_spec: TrainSpecFn) -> TuneResult:
    """Run the study of ``[tune]``, print its trials, write ``trials.json`` and ``best.toml``.

    Args:
        cfg: the effective configuration (its ``[train]`` is every trial's base).
        out: the terminal.
        train_spec: :func:`sparktf.stages.train.train_spec`, so that a trial's training is
            built exactly as the train stage builds it.

    Raises:
        DataError: the features or TFRecords are missing.
        PipelineError: no trial completed.
    """
    from sparktf.training.tracking import RunTracker, driver_tag, git_commit
    from sparktf.tuning.space import describe
    from sparktf.tuning.study import StudyArgs, run_study
    from sparktf.version import __version__

    args = tune_args(cfg)
    stats = _check_inputs(args)
    train_examples = int((stats.get("examples") or {}).get("train") or 0)
    os.makedirs(args.tune_dir, exist_ok=True)
    spark = spark_for(cfg)
    study_name = f"{args.kind}-{time.strftime('%Y%m%d-%H%M%S')}"
    tags = {"workdir": cfg.paths.root, **driver_tag()}

    def spec_for(params: Mapping[str, Any], run_dir: str, run_id: str) -> Any:
        trial_cfg = trial_config(cfg, args.kind, params, args.epochs)
        spec = train_spec(
            trial_cfg,
            args.kind,
            run_dir=run_dir,
            export_base=os.path.join(run_dir, "export"),
            version=1,
            train_examples=train_examples,
            run_id=run_id,
        )
        return dataclasses.replace(spec, export=False)

    tracker = RunTracker(args.tracking_uri, args.experiment, args.artifact_root)
    parent = tracker.start(
        f"tune-{args.kind}",
        tags={
            "model_kind": args.kind,
            "dataset": args.dataset,
            "git_commit": git_commit(),
            "sparktf_version": __version__,
            "sparktf.tune.study": study_name,
            **tags,
        },
    )
    tracker.log_params({"tune": config_to_dict(cfg.tune, redact_secrets=True), **describe(args.kind)})
    tracker.log_text(config_to_toml(cfg, redact_secrets=True), "config.toml")
    slots = spark.sparkContext.defaultParallelism
    out.print(
        f"Tuning [bold]{args.kind}[/]: up to {args.trials} trials, {args.parallelism} at a time (one Spark task "
        f"each; {slots} task slots), within {args.timeout_s / 60:.0f} min; each trial up to {args.epochs} epochs, "
        f"pruned on validation NDCG@10 after {args.pruner_warmup_epochs}."
    )
    out.print(
        f"[dim]Study {study_name} in {args.storage_url}; trial logs under "
        f"{os.path.join(args.tune_dir, study_name)}; MLflow parent run {parent}.[/]",
        soft_wrap=True,
    )

    def on_trial(r: TrialRecord) -> None:
        out.print(f"  {_trial_line(r)}", soft_wrap=True)
        if r.state == "failed":
            out.print(f"    [red]{_first_line(r.error)}[/]", markup=True, soft_wrap=True)

    study_args = StudyArgs(
        kind=args.kind,
        trials=args.trials,
        parallelism=args.parallelism,
        timeout_s=args.timeout_s,
        pruner_warmup_epochs=args.pruner_warmup_epochs,
        seed=args.seed,
        storage_url=args.storage_url,
        tune_dir=args.tune_dir,
        tracking_uri=args.tracking_uri,
        experiment=args.experiment,
        artifact_root=args.artifact_root,
        threads_per_trial=args.threads_per_trial,
        hide_gpus=not args.use_gpu,
        tags=tags,
        study_name=study_name,
    )
    try:
        study = run_study(spark.sparkContext, study_args, spec_for, parent_run_id=parent, on_trial=on_trial)
    except KeyboardInterrupt:
        tracker.end("KILLED")
        raise
    except BaseException:
        tracker.end("FAILED")
        raise
    trials_path = os.path.join(args.tune_dir, "trials.json")
    with open(trials_path, "w", encoding="utf-8") as fh:
        json.dump(study.to_dict(), fh, indent=2)
    tracker.log_artifact(trials_path)
    tracker.log_metrics(
        {
            "trials_complete": study.count("complete"),
            "trials_pruned": study.count("pruned"),
            "trials_failed": study.count("failed"),
            "study_seconds": study.seconds,
        }
    )
    out.print(_table(study))
    out.print(f"[dim]Stopped starting trials: {study.stop_reason}. Trials: {trials_path}[/]", soft_wrap=True)
    if study.best is None:
        tracker.end("FAILED")
        raise PipelineError(
            f"No trial of study {study_name} completed ({study.count('pruned')} pruned, "
            f"{study.count('failed')} failed, in {study.seconds:.0f} s), so there are no best settings to write.",
            hint=f"See the errors in {trials_path} and the trials' train.log files; give the study more time "
            "(tune.timeout_s) or trials (tune.trials).",
        )
    best_cfg, removed = best_config(cfg, study.best, args)
    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as fh:
        fh.write(best_config_text(best_cfg, study.best, study, args.output, removed))
    tracker.log_artifact(args.output)
    tracker.log_metrics({"best_val_ndcg_at_10": float(study.best.value or 0.0)})
    tracker.set_tags({"sparktf.tune.best_trial": str(study.best.number), "sparktf.tune.best_config": args.output})
    tracker.end()
    out.print(
        f"Best: trial {study.best.number}, validation NDCG@10 {study.best.value:.4f} ({_settings(study.best.params)}).",
        soft_wrap=True,
    )
    out.print(f"Best settings as a config file: {args.output}", markup=False, soft_wrap=True)
    return TuneResult(study=study, best_config_path=args.output, trials_path=trials_path, parent_run_id=parent)


# --------------------------------------------------------------------------- display

_STATE_STYLE = {"complete": "green", "pruned": "yellow", "failed": "red"}


def _settings(params: Mapping[str, Any]) -> str:
    def fmt(v: Any) -> str:
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    return ", ".join(f"{k}={fmt(v)}" for k, v in params.items())


def _value(r: TrialRecord) -> str:
    return f"{r.value:.4f}" if r.value is not None else "-"


def _trial_line(r: TrialRecord) -> str:
    state = r.state + (f" after epoch {r.pruned_at}" if r.pruned_at else "") + (" (time up)" if r.budget_cut else "")
    return (
        f"trial {r.number:>2} [{_STATE_STYLE.get(r.state, 'white')}]{state}[/]: val NDCG@10 {_value(r)}, "
        f"{r.epochs_run} epochs, {r.seconds:.0f} s  [dim]{_settings(r.params)}[/]"
    )


def _first_line(text: str) -> str:
    from rich.markup import escape

    return escape(text.strip().splitlines()[0] if text.strip() else "failed")


def _table(study: StudyResult) -> Any:
    from rich.table import Table
    from rich.text import Text

    best = study.best.number if study.best else None
    table = Table(title=f"sparktf tune: {study.kind}, study {study.study_name} ({study.seconds / 60:.1f} min)")
    for name, justify in (("trial", "right"), ("state", "left"), ("val NDCG@10", "right"), ("epochs", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    table.add_column("s", justify="right")
    table.add_column("settings")
    for r in study.trials:
        mark = " ★" if r.number == best else ""
        table.add_row(
            f"{r.number}{mark}",
            Text(r.state + (" (time up)" if r.budget_cut else ""), style=_STATE_STYLE.get(r.state, "")),
            _value(r),
            str(r.epochs_run),
            f"{r.seconds:.0f}",
            Text(_settings(r.params)),
        )
    return table
