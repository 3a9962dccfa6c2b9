"""The ``sparktf`` command line.

Every command takes the same configuration options: ``--config FILE`` (TOML),
``--set section.field=value`` (repeatable, any field), and the shortcuts
``--workdir`` and ``--master``. sparktf's own errors print as headline and
message; anything else prints as an internal error with its traceback.
"""

from __future__ import annotations

import shlex
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from sparktf.config import Config, config_to_toml, load_config
from sparktf.errors import SparkTFError
from sparktf.stages.runner import STAGES, Stage, get_stage

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

_PIPELINE_HELP = "\n".join(
    [
        "From a raw clickstream on Spark to TensorFlow recommenders, trained, tracked, validated and served.",
        "",
        "The pipeline (`sparktf run` runs it all; each stage also has its own command):",
        "",
        # click rewraps a paragraph into one unless it starts with a line holding only \b.
        "\b",
    ]
    + [f"{i}. {s.name}: {s.summary}" for i, s in enumerate(STAGES, 1)]
    + [
        "",
        "Serving: `sparktf serve` answers REST requests with the champion model.",
        "Online: `sparktf live` runs the server and `sparktf stream`, which turns posted events into live histories.",
        "Experiments: `sparktf simulate` sends shoppers; `sparktf experiment report|conclude` reads the outcome.",
    ]
)

app = typer.Typer(
    name="sparktf",
    help=_PIPELINE_HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="TOML config file.", show_default=False)]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override any field: section.field=value (repeatable).", show_default=False),
]
WorkdirOpt = Annotated[
    str | None,
    typer.Option("--workdir", "-w", help="Directory (or URI) for everything the run makes.", show_default=False),
]
VerboseOpt = Annotated[
    bool,
    typer.Option(
        "--verbose",
        "-v",
        help="Also show Spark's, TensorFlow's and MLflow's own output here; it always goes to <workdir>/logs/sparktf.log.",
    ),
]
MasterOpt = Annotated[
    str | None,
    typer.Option(
        "--master", "-m", help="Spark master: local[*], spark://host:7077, yarn, k8s://...", show_default=False
    ),
]


def _load(config: Path | None, sets: list[str] | None, workdir: str | None, master: str | None) -> Config:
    overrides = list(sets or [])
    if workdir is not None:
        overrides.append(f"workdir={_quote(workdir)}")
    if master is not None:
        overrides.append(f"spark.master={_quote(master)}")
    return load_config(config, overrides)


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --------------------------------------------------------------------------- env / check


@app.command()
def env(
    tensorflow: Annotated[
        bool, typer.Option("--tensorflow/--no-tensorflow", help="Start TensorFlow to list the GPUs it sees.")
    ] = True,
) -> None:
    """Print Python, Java, Spark, TensorFlow, tf-keras, MLflow and ScaNN versions and the GPUs seen."""
    from sparktf.checks import environment_report

    table = Table(title="sparktf environment", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    for key, value in environment_report(probe_tensorflow=tensorflow).items():
        table.add_row(key, value)
    console.print(table)


def _print_checks(cfg: Config) -> bool:
    from sparktf.checks import run_checks

    results = run_checks(cfg)
    table = Table(title="sparktf check")
    table.add_column("check", style="bold")
    table.add_column("status")
    table.add_column("detail")
    colours = {"ok": "green", "warn": "yellow", "fail": "red"}
    for r in results:
        detail = r.detail + (f"\n→ {r.hint}" if r.hint and r.status != "ok" else "")
        # Text, not markup: details quote paths and values that may hold brackets.
        table.add_row(r.name, f"[{colours[r.status]}]{r.status}[/]", Text(detail))
    console.print(table)
    return all(r.status != "fail" for r in results)


@app.command()
def check(config: ConfigOpt = None, set_: SetOpt = None, workdir: WorkdirOpt = None, master: MasterOpt = None) -> None:
    """Validate the configuration and the environment before a run."""
    cfg = _load(config, set_, workdir, master)
    if not _print_checks(cfg):
        err_console.print("[red]Some checks failed; fix them before `sparktf run`.[/]")
        raise typer.Exit(1)
    console.print("[green]All checks passed.[/]")


@app.command("config")
def show_config(
    config: ConfigOpt = None, set_: SetOpt = None, workdir: WorkdirOpt = None, master: MasterOpt = None
) -> None:
    """Print the effective configuration as TOML (a starting point for --config)."""
    cfg = _load(config, set_, workdir, master)
    sys.stdout.write(config_to_toml(cfg))


# --------------------------------------------------------------------------- run

_ACTION_STYLE = {
    "run": "[green]run[/]",
    "forced": "[green]run (--from)[/]",
    "skip": "[dim]skip: unchanged[/]",
}


def _print_plan(cfg: Config, plan: list[tuple[Any, str]]) -> None:
    table = Table(title=f"Pipeline plan (workdir: {cfg.paths.root})")
    table.add_column("#", justify="right")
    table.add_column("stage", style="bold")
    table.add_column("what it does")
    table.add_column("writes")
    table.add_column("action")
    for i, (stage, action) in enumerate(plan):
        table.add_row(str(i + 1), stage.name, stage.summary, stage.writes, _ACTION_STYLE[action])
    console.print(table)


def _run_stage(name: str, cfg: Config) -> None:
    """Run one stage by itself (the per-stage commands), with the same display as `run`;
    its record is written like `run` writes it, so the next stage's command finds it."""
    from sparktf.stages.state import write_result

    stage = get_stage(name)
    console.rule(f"[bold]{stage.name}[/]: {stage.summary}")
    t0 = time.perf_counter()
    write_result(cfg.paths, stage.run(cfg))
    console.print(f"[green]✓[/] {stage.name} finished in {time.perf_counter() - t0:.1f} s")


def _stage_event(kind: str, stage: Stage, detail: dict[str, Any]) -> None:
    n = [s.name for s in STAGES].index(stage.name) + 1
    if kind == "start":
        console.rule(f"[bold][{n}/{len(STAGES)}] {stage.name}[/]: {stage.summary}")
    elif kind == "done":
        console.print(f"[green]✓[/] {stage.name} finished in {detail['record'].seconds:.1f} s")
    elif kind == "skip":
        rec = detail["record"]
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(rec.finished_at))
        console.print(f"[dim]↷ [{n}/{len(STAGES)}] {stage.name}: inputs unchanged since {when}; skipped.[/]")


def _command(name: str) -> str:
    """How to type ``name`` from this shell: bare when it is on PATH, else the full path
    of the one installed beside this Python (``.venv/bin/`` after ``make run``)."""
    beside = Path(sys.executable).with_name(name)
    found = shutil.which(name)
    if found and Path(found).resolve() == beside.resolve():
        return name
    return shlex.quote(str(beside)) if beside.exists() else name


def _print_summary(cfg: Config, seconds: float) -> None:
    """Quality, outputs, what was promoted and why, and the commands to go on with."""
    from sparktf.stages.evaluate import quality_tables
    from sparktf.stages.state import EvaluateResult, RecommendResult, RegisterResult, read_result

    console.rule("[bold]Summary[/]")
    try:
        from sparktf.evaluation.metrics import EvaluationResult

        evaluation = read_result(cfg.paths, EvaluateResult)
        for table in quality_tables(
            {
                "product": [EvaluationResult.from_dict(r) for r in evaluation.results.values()],
                "literature": [EvaluationResult.from_dict(r) for r in evaluation.literature.values()],
            }
        ):
            console.print(table)
    except SparkTFError as exc:
        console.print(f"No quality table: {exc.message}", markup=False)
    try:
        reg = read_result(cfg.paths, RegisterResult)
    except SparkTFError:
        reg = None
    if reg is not None:
        console.print(f"Registry {reg.registered_model}: {reg.champion_alias} = version {reg.champion}", markup=False)
        for v in reg.versions:
            why = (
                "passed every gate check"
                if not v.failed_checks
                else "failed: "
                + "; ".join(
                    f"{c.get('metric')} ({c.get('slice', 'overall')}): {c.get('detail') or c.get('check')}"
                    for c in v.failed_checks
                )
            )
            console.print(f"  {v.model}: version {v.version} {v.outcome} ({why})", markup=False)
    try:
        recommendations = read_result(cfg.paths, RecommendResult).recommendations
    except SparkTFError:
        recommendations = cfg.paths.recommendations
    paths = cfg.paths
    outputs = Table(title="Where the outputs are", show_header=False)
    outputs.add_column("what", style="bold")
    outputs.add_column("path")
    for what, where in (
        ("events / quarantine", f"{paths.events}  /  {paths.quarantine}"),
        ("features", paths.features),
        ("TFRecords", paths.tfrecords),
        ("models (exports, checkpoints)", paths.models),
        ("MLflow", cfg.tracking_uri),
        ("ANN index", paths.index),
        ("recommendations", recommendations),
    ):
        outputs.add_row(what, str(where))
    console.print(outputs)
    sparktf_cmd, mlflow_cmd = _command("sparktf"), _command("mlflow")
    serve = f"{sparktf_cmd} serve --workdir {shlex.quote(paths.root)}"
    ui = (
        f"{mlflow_cmd} ui --backend-store-uri {shlex.quote(cfg.tracking_uri)} --host 127.0.0.1 --port 5000"
        if cfg.tracking_uri.startswith("sqlite")
        else f"open {cfg.tracking_uri}"
    )
    # soft_wrap: a command must stay on one line to be copied, even when the output
    # is not a terminal (rich then wraps at 80 columns).
    # The make targets serve the default workdir of the checkout (make run's).
    default = Path(paths.root) == Path("sparktf-work").resolve()
    console.print(
        f"Serve the champion:  [bold]{escape(serve)}[/]" + ("  (or: make serve)" if default else ""), soft_wrap=True
    )
    console.print(
        f"Open the MLflow UI:  [bold]{escape(ui)}[/]" + ("  (or: make ui)" if default else ""), soft_wrap=True
    )
    console.print(f"[green]Pipeline finished in {seconds / 60:.1f} min.[/]")


@app.command()
def run(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    workdir: WorkdirOpt = None,
    master: MasterOpt = None,
    from_: Annotated[str | None, typer.Option("--from", help="Rerun from this stage on.")] = None,
    plan: Annotated[bool, typer.Option("--plan", help="Check and print the plan, run nothing.")] = False,
    verbose: VerboseOpt = False,
) -> None:
    """Run the whole pipeline: check, then every stage whose inputs changed, in order."""
    from sparktf.stages.runner import PipelineRunner

    cfg = _load(config, set_, workdir, master)
    runner = PipelineRunner(cfg, on_event=_stage_event)
    steps = runner.plan(from_)
    _print_plan(cfg, steps)
    if not _print_checks(cfg):
        err_console.print("[red]Checks failed; nothing was run.[/]")
        raise typer.Exit(1)
    if plan:
        console.print("--plan given: nothing was run.")
        return
    from sparktf.runlog import RunLog

    t0 = time.perf_counter()
    log = cfg.paths.log_file
    console.print(f"[dim]Spark, TensorFlow and MLflow output goes to {escape(log)} (--verbose shows it here).[/]")
    with RunLog(log, title="sparktf run", verbose=verbose):
        runner.run(from_)
    _print_summary(cfg, time.perf_counter() - t0)
    console.print(f"Full log: {escape(log)}", soft_wrap=True)


# --------------------------------------------------------------------------- stage commands


def _add_stage_command(name: str, help_text: str, stages: tuple[str, ...] = ()) -> None:
    """``sparktf <name>``: the pipeline stage ``name`` (or the ``stages``, in order) by
    itself, with every command's options."""

    def command(
        config: ConfigOpt = None,
        set_: SetOpt = None,
        workdir: WorkdirOpt = None,
        master: MasterOpt = None,
        verbose: VerboseOpt = False,
    ) -> None:
        cfg = _load(config, set_, workdir, master)
        for stage in stages or (name,):
            _stage_command(stage, cfg, verbose)

    command.__doc__ = help_text
    app.command(name)(command)


def _stage_command(name: str, cfg: Config, verbose: bool) -> None:
    from sparktf.runlog import RunLog

    with RunLog(cfg.paths.log_file, title=f"sparktf {name}", verbose=verbose):
        _run_stage(name, cfg)
    console.print(f"[dim]Log: {escape(cfg.paths.log_file)}[/]", soft_wrap=True)


_add_stage_command("generate", "Generate the synthetic flash-sale clickstream into the workdir.")


_add_stage_command(
    "prepare",
    "Validate events (with quarantine) and build features, vocabularies and splits.",
    ("validate", "features"),
)


_add_stage_command("train", "Train the recommenders on Spark and track them in MLflow.")


_add_stage_command("evaluate", "Evaluate over the full catalogue against the baselines.")


@app.command()
def tune(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    workdir: WorkdirOpt = None,
    master: MasterOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Search tune.model's settings with Optuna, trials running in parallel as Spark tasks, and
    write the best as a config file for `sparktf run --config`.

    The data stages run first when their inputs changed (as in `sparktf run`). Each trial
    trains one process, is pruned on validation NDCG@10 and is a nested MLflow run; the study
    stops starting trials after tune.trials or tune.timeout_s. Outputs: <workdir>/tune/
    (trials.json, each trial's log, optuna.db) and tune.output (default <workdir>/tune/best.toml).
    """
    from sparktf.runlog import RunLog
    from sparktf.stages import train as train_stage
    from sparktf.stages.runner import PipelineRunner
    from sparktf.stages.tune import run_tune

    cfg = _load(config, set_, workdir, master)
    data_stages = STAGES[: [s.name for s in STAGES].index("tfrecords") + 1]
    log = cfg.paths.log_file
    console.print(f"[dim]Spark, TensorFlow and MLflow output goes to {escape(log)} (--verbose shows it here).[/]")
    with RunLog(log, title="sparktf tune", verbose=verbose):
        PipelineRunner(cfg, on_event=_stage_event, stages=data_stages).run()
        console.rule("[bold]tune[/]: Optuna search, trials as Spark tasks")
        result = run_tune(cfg, console, train_spec=train_stage.train_spec)
    command = f"{_command('sparktf')} run --config {shlex.quote(result.best_config_path)}"
    console.print(f"Reproduce the best trial:  [bold]{escape(command)}[/]", soft_wrap=True)
    console.print(f"[dim]Log: {escape(log)}[/]", soft_wrap=True)


@app.command()
def promote(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    workdir: WorkdirOpt = None,
    master: MasterOpt = None,
    rollback: Annotated[
        bool, typer.Option("--rollback", help="Move the champion alias back to the previous version.")
    ] = False,
    version: Annotated[
        int | None,
        typer.Option("--version", help="The version to validate (default: the newest pending one).", min=1),
    ] = None,
) -> None:
    """Run the validation gate and move the champion alias (or roll it back)."""
    from sparktf.stages.register import promote_command

    promote_command(_load(config, set_, workdir, master), console, version=version, do_rollback=rollback)


@app.command()
def models(config: ConfigOpt = None, set_: SetOpt = None, workdir: WorkdirOpt = None, master: MasterOpt = None) -> None:
    """List registered model versions, aliases and validation statuses."""
    from sparktf.stages.register import models_command

    models_command(_load(config, set_, workdir, master), console)


_add_stage_command("index", "Build (and tune) the ScaNN index over the model's item embeddings.")


_add_stage_command("recommend", "Write top-K recommendations for every user with Spark.")


@app.command()
def serve(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    workdir: WorkdirOpt = None,
    master: MasterOpt = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model", help="models:/name@alias or a TF Serving base path (default: the registered model's champion)."
        ),
    ] = None,
    host: Annotated[
        str | None, typer.Option("--host", help="Address to bind (serve.host; loopback by default).")
    ] = None,
    port: Annotated[int | None, typer.Option("--port", help="REST port (serve.port; 8501 by default).")] = None,
) -> None:
    """Serve the model over REST (TF Serving API plus :recommend).

    --model takes models:/name@alias (follows the alias: a new version is loaded beside
    the old one, then switched), models:/name/<version>, or a TF Serving base path
    (numbered version folders; the highest is served). Address, batching, auth and
    hot-reload settings are in [serve] (`sparktf config`).
    """
    from sparktf.stages.serve import run_serve

    sets = list(set_ or [])
    if host is not None:
        sets.append(f"serve.host={_quote(host)}")
    if port is not None:
        sets.append(f"serve.port={port}")
    run_serve(_load(config, sets, workdir, master), model)


@app.command()
def stream(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    workdir: WorkdirOpt = None,
    master: MasterOpt = None,
    verbose: VerboseOpt = False,
    once: Annotated[
        bool, typer.Option("--once", help="Process the events that have landed, then stop (a catch-up run).")
    ] = False,
) -> None:
    """Run the streaming job: events the server acknowledged → validation → each user's live
    history in the online store, and the live event table the next `sparktf run` trains on.

    It resumes from its checkpoint (<workdir>/stream/checkpoint) after a stop or a crash,
    applying no event twice. Settings are in [stream] and [online] (`sparktf config`).
    """
    from sparktf.runlog import RunLog
    from sparktf.stages.stream import run_stream

    cfg = _load(config, set_, workdir, master)
    with RunLog(cfg.paths.log_file, title="sparktf stream", verbose=verbose):
        run_stream(cfg, available_now=once, out=console)


@app.command()
def live(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    workdir: WorkdirOpt = None,
    master: MasterOpt = None,
    model: Annotated[
        str | None,
        typer.Option("--model", help="What the server serves, as for `sparktf serve --model` (default: the champion)."),
    ] = None,
    port: Annotated[int | None, typer.Option("--port", help="REST port (serve.port; 8501 by default).")] = None,
) -> None:
    """Run the online side: the server (`sparktf serve`) and the streaming job (`sparktf stream`)
    together, with a status line each; Ctrl-C stops both.

    A click on the page at http://127.0.0.1:8501/ (or a POST to /v1/events) reaches that
    shopper's next recommendations within seconds. Their logs: <workdir>/logs/live-*.log.
    """
    from sparktf.stages.live import run_live

    options: list[str] = []
    if config is not None:
        options += ["--config", str(config)]
    for s in set_ or []:
        options += ["--set", s]
    if workdir is not None:
        options += ["--workdir", workdir]
    if master is not None:
        options += ["--master", master]
    if port is not None:
        options += ["--set", f"serve.port={port}"]
    cfg = _load(config, [*(set_ or []), *([f"serve.port={port}"] if port is not None else [])], workdir, master)
    run_live(cfg, options, console, serve_options=["--model", model] if model else [])


@app.command()
def simulate(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    workdir: WorkdirOpt = None,
    master: MasterOpt = None,
    duration: Annotated[
        float | None, typer.Option("--duration", help="Seconds to run (simulate.duration_s).", show_default=False)
    ] = None,
    rate: Annotated[
        float | None, typer.Option("--rate", help="Requests per second at most (simulate.rate).", show_default=False)
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="simulate.seed.", show_default=False)] = None,
) -> None:
    """Drive the running server with simulated shoppers from the generator's own world.

    Each session asks :recommend, clicks with a position bias on what it truly wants next,
    browses, adds to cart and buys, and posts every event back; the run prints what it sent
    and each arm's true CTR (saved under <workdir>/experiments/). Start `sparktf live` first.
    """
    from sparktf.stages.experiment import run_simulate

    sets = list(set_ or [])
    for name, value in (("duration_s", duration), ("rate", rate), ("seed", seed)):
        if value is not None:
            sets.append(f"simulate.{name}={value}")
    run_simulate(_load(config, sets, workdir, master), console)


experiment_app = typer.Typer(
    help="The online experiment of [experiment]: its report, off-policy estimates, and its conclusion.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(experiment_app, name="experiment")


@experiment_app.command("report")
def experiment_report(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    workdir: WorkdirOpt = None,
    master: MasterOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Per-arm CTR, add-to-cart and purchase rates with user-level 95% intervals, each arm's lift
    over the control, the sample-ratio test, guardrails from the server's /metrics, a CTR chart,
    and the decision; saved under <workdir>/experiments/<name>/ and logged to MLflow."""
    from sparktf.runlog import RunLog
    from sparktf.stages.experiment import run_report

    cfg = _load(config, set_, workdir, master)
    with RunLog(cfg.paths.log_file, title="sparktf experiment report", verbose=verbose):
        run_report(cfg, console)


@experiment_app.command("estimate")
def experiment_estimate(
    policy: Annotated[
        str,
        typer.Option(
            "--policy",
            help="The candidate: models:/<name>@<alias>, models:/<name>/<version>, or an export directory.",
        ),
    ],
    logged_by: Annotated[
        list[str] | None,
        typer.Option(
            "--logged-by",
            help="Estimate from the impressions of this arm only (repeat for several); default: every arm's.",
        ),
    ] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    workdir: WorkdirOpt = None,
    master: MasterOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Estimate a candidate model's CTR from the experiment's logged impressions, before it
    serves anyone: IPS, self-normalised IPS and doubly robust, each with a 95% interval (off-policy
    evaluation; the arms log each shown item's propensity). Saved beside the report, which shows it."""
    from sparktf.runlog import RunLog
    from sparktf.stages.experiment import run_estimate

    cfg = _load(config, set_, workdir, master)
    with RunLog(cfg.paths.log_file, title="sparktf experiment estimate", verbose=verbose):
        run_estimate(cfg, policy, console, logged_by or ())


@experiment_app.command("conclude")
def experiment_conclude(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    workdir: WorkdirOpt = None,
    master: MasterOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Apply the report's decision: promote the winning arm's version through the validation
    gate's promotion path, or keep / stop (recorded as tags on the arms' versions)."""
    from sparktf.runlog import RunLog
    from sparktf.stages.experiment import run_conclude

    cfg = _load(config, set_, workdir, master)
    with RunLog(cfg.paths.log_file, title="sparktf experiment conclude", verbose=verbose):
        run_conclude(cfg, console)


monitor_app = typer.Typer(
    help="Watching production: online quality, drift and training/serving skew of the served versions.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(monitor_app, name="monitor")


@monitor_app.command("report")
def monitor_report(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    workdir: WorkdirOpt = None,
    master: MasterOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Per model version and hour over the last monitoring.report_hours of the event table: CTR,
    add-to-cart and purchase rates with user-level 95% intervals, drift against the version's
    reference profile (PSI, JS distance), and the skew between served and batch histories; one
    self-contained HTML page and report.json under <workdir>/monitoring/, logged to MLflow."""
    from sparktf.runlog import RunLog
    from sparktf.stages.monitor import run_monitor_report

    cfg = _load(config, set_, workdir, master)
    with RunLog(cfg.paths.log_file, title="sparktf monitor report", verbose=verbose):
        run_monitor_report(cfg, console)


# --------------------------------------------------------------------------- entry point


def main(argv: list[str] | None = None) -> int:
    """Console entry point; returns the exit code."""
    import click

    try:
        rc = app(args=argv, standalone_mode=False)
    except SparkTFError as exc:
        # Messages quote user input ("[train]", "[/red]"): never read them as rich markup.
        err_console.print(f"[bold red]{exc.headline}[/]: ", end="")
        err_console.print(exc.message, markup=False)
        if exc.hint:
            err_console.print(f"→ {exc.hint}", markup=False)
        return 1
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        err_console.print("Aborted.")
        return 130
    except Exception:  # noqa: BLE001 - the one place that reports unexpected errors
        err_console.print("[bold red]Internal error[/] (a bug in sparktf; please report it with this traceback):")
        err_console.print(traceback.format_exc(), markup=False)
        return 2
    # With standalone_mode off, click returns typer.Exit's code instead of raising it.
    return rc if isinstance(rc, int) else 0


if __name__ == "__main__":
    sys.exit(main())
