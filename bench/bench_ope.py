"""Off-policy estimation benchmark: IPS, SNIPS and DR (sparktf.experiments.ope) against the truth.

Run: ``python -m bench.bench_ope obd [--clip inf] [--n-sim 100000] [--seed 12345]``
(without a section, all of them: ``make bench ARGS=ope``).

``obd``: the Open Bandit Dataset sample inside the ``obp==0.4.1`` wheel (fetched by pip into
the user cache, checksum-pinned: :func:`sparktf.experiments.open_bandit.obp_wheel`; needs
PyPI the first time). ZOZOTOWN ran a uniform-random policy and Bernoulli Thompson Sampling
side by side on the same traffic; BTS's CTR is estimated off-policy from the random log and
compared with the BTS log's own CTR (each log 10,000 shown slots, campaign ``all``). The
IPS estimate over the random log's CTR is compared with obp's README (1.198126...).
:func:`~sparktf.experiments.open_bandit.evaluate_bts_on_random` does the work.

Tables to stdout and bench/results/ope.md (ope-<section>.md for one section); each
section's raw numbers to bench/results/ope-<section>.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def _machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def _json_safe(value: Any) -> Any:
    """inf / NaN as strings, so the JSON is standard."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


# --------------------------------------------------------------------------- obd


def run_obd(a: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    from sparktf.experiments.open_bandit import OBP_VERSION, evaluate_bts_on_random, obp_wheel

    t0 = time.perf_counter()
    wheel = obp_wheel()
    fetched = time.perf_counter() - t0
    res = evaluate_bts_on_random(wheel, clip=a.clip, alpha=0.05, n_sim=a.n_sim, seed=a.seed)
    seconds = time.perf_counter() - t0
    bts, rnd, d = res["bts_log"], res["random_log"], res["diagnostics"]
    ess = d["effective_sample_size"]
    lines = [
        "## Off-policy estimates on the Open Bandit Dataset against the logged truth",
        "",
        f"Command: `python -m bench.bench_ope obd --clip {a.clip:g} --n-sim {a.n_sim} --seed {a.seed}` · measured "
        f"{time.strftime('%Y-%m-%d')} · {_machine()} · {res['seconds']:.1f} s "
        f"(reading the logs, {a.n_sim:,} Thompson draws, the estimates; {fetched:.1f} s to find the wheel)",
        "",
        f"Target: {res['target']}. Log: `{res['log']}` of the OBD sample in obp=={OBP_VERSION} "
        f"({int(rnd['rows']):,} slots, {int(rnd['clicks'])} clicks, uniform logging, propensity 1/80). "
        f"Truth: the BTS log's own CTR, `bts/{res['campaign']}` run beside it on the same traffic "
        f"({int(bts['rows']):,} slots, {int(bts['clicks'])} clicks): "
        f"**{bts['ctr']:.5f}** [{bts['ci_low']:.5f}, {bts['ci_high']:.5f}].",
        "",
        "| estimator | estimate | 95% CI | BTS logged CTR | relative error | CI contains it? | ESS |",
        "|---|---:|---|---:|---:|---|---:|",
    ]
    for name, e in res["estimates"].items():
        lines.append(
            f"| {name.upper()} | {e['value']:.5f} | [{e['ci_low']:.5f}, {e['ci_high']:.5f}] | {bts['ctr']:.5f} | "
            f"{e['relative_error']:+.1%} | {'yes' if e['contains_bts_ctr'] else 'no'} | {ess:,.0f} |"
        )
    ratio = res["ips_over_random_ctr"]
    lines += [
        f"| on-policy: random log's CTR | {rnd['ctr']:.5f} | [{rnd['ci_low']:.5f}, {rnd['ci_high']:.5f}] | "
        f"{bts['ctr']:.5f} | {(rnd['ctr'] - bts['ctr']) / bts['ctr']:+.1%} | "
        f"{'yes' if rnd['ci_low'] <= bts['ctr'] <= rnd['ci_high'] else 'no'} | {int(rnd['rows']):,} |",
        "",
        f"IPS / random CTR = **{ratio:.6f}**; obp's README: {res['readme_ratio']:.6f}... "
        f"(difference {ratio - res['readme_ratio']:+.1e}: the Thompson draws are obp's own, so the seed "
        "reproduces it to the digit; other seeds move it by about ±0.005). "
        f"Weights: mean {d['mean_weight']:.3f}, max {d['max_weight']:.2f}, {d['clipped_slots']} clipped, "
        f"{d['matched_slots']:,} of {d['slots']:,} slots with π > 0. DR's reward model: position-based, "
        f"θ = {[round(x, 3) for x in res['reward_model']['theta']]}, base CTR {res['reward_model']['base']:.4f}.",
        "",
        f"Wall time of the section: {seconds:.1f} s.",
        "",
    ]
    return "\n".join(lines), res


# --------------------------------------------------------------------------- simulation


def run_simulation(a: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """Coverage of the challenger's true online CTR over seeded trials, per logging policy."""
    from sparktf.config import load_config
    from sparktf.experiments.exploration import Exploration
    from sparktf.experiments.ope_simulation import SMALL_WORLD, TrialSettings, offpolicy_trial

    cfg = load_config(None, [f"generator.{k}={v}" for k, v in SMALL_WORLD.items()])
    policies = {
        "epsilon_greedy(0.5), top 50": Exploration("epsilon_greedy", epsilon=0.5, candidates=50),
        "plackett_luce(1.0), top 50": Exploration("plackett_luce", temperature=1.0, candidates=50),
        "epsilon_greedy(0.3), all 200": Exploration("epsilon_greedy", epsilon=0.3, candidates=200),
    }
    lines = [
        "### Off-policy estimates against the simulated shoppers' truth",
        "",
        f"Command: `python -m bench.bench_ope simulation --seeds {a.seeds} --sessions {a.sessions}` · "
        f"{time.strftime('%Y-%m-%d')} · {_machine()}",
        "",
        "Per trial: the champion explores over its top 50 while the seed's shoppers shop; the challenger's CTR "
        "is estimated from that log; the same shoppers then meet the challenger online (its true CTR from their "
        "known click probabilities) and the greedy champion (the cost of exploring). Support: the share of the "
        "challenger's shown items that the exploring champion could show at all.",
        "",
        "| logging policy | estimator | coverage of the true online CTR | mean estimate | mean truth | "
        "mean rel. error | mean SE | support | champion CTR greedy → exploring |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    raw: dict[str, Any] = {}
    t0 = time.perf_counter()
    for label, policy in policies.items():
        settings = TrialSettings(sessions=a.sessions, exploration=policy)
        trials = [offpolicy_trial(cfg.generator, seed, settings) for seed in range(1, a.seeds + 1)]
        raw[label] = trials
        truth = sum(t["challenger_true_ctr_online"] for t in trials) / len(trials)
        greedy = sum(t["champion_true_ctr_greedy"] for t in trials) / len(trials)
        exploring = sum(t["champion_true_ctr_exploring"] for t in trials) / len(trials)
        support = sum(t["support"] for t in trials) / len(trials)
        for name in ("ips", "snips", "dr"):
            cover = sum(t[name]["covers_online"] for t in trials)
            mean = sum(t[name]["value"] for t in trials) / len(trials)
            rel = sum(abs(t[name]["value"] / t["challenger_true_ctr_online"] - 1) for t in trials) / len(trials)
            se = sum(t[name]["se"] for t in trials) / len(trials)
            lines.append(
                f"| {label} | {name.upper()} | {cover}/{len(trials)} ({cover / len(trials):.2f}) | {mean:.5f} | "
                f"{truth:.5f} | {rel:.1%} | {se:.5f} | {support:.3f} | {greedy:.5f} → {exploring:.5f} ({exploring / greedy - 1:+.1%}) |"
            )
    lines += ["", f"Wall time of the section: {time.perf_counter() - t0:.0f} s.", ""]
    return "\n".join(lines), raw


# --------------------------------------------------------------------------- live


def _cli(workdir: str, sets: list[str], *args: str) -> str:
    import subprocess
    import sys

    argv = [sys.executable, "-m", "sparktf.cli", *args, "--workdir", workdir]
    for item in sets:
        argv += ["--set", item]
    out = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=1800)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return out.stdout


def run_live(a: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """The whole loop over HTTP on `make run`'s models: the champion explores, the challenger
    serves other users at the same time; the challenger's CTR is estimated from the champion's
    log alone and compared with its online CTR and its true CTR."""
    import sys

    from bench.bench_experiment import wait_stream_applied
    from bench.bench_serving import start, stop, wait_http
    from sparktf.config import load_config
    from sparktf.experiments.simulator import HttpShop, ShopperSimulator
    from sparktf.stages.state import RegisterResult, read_result
    from sparktf.stages.stream import stream_args

    workdir = a.workdir
    base_cfg = load_config(None, [f"workdir={workdir!r}"])
    registered = read_result(base_cfg.paths, RegisterResult)
    challenger = next(v for v in registered.versions if v.version != registered.champion)
    name = f"ope-{time.strftime('%Y%m%d%H%M%S')}"
    seed = int(time.time()) % 100_000 + 1
    arms = [
        f'{{name="champion", model="@champion", exploration="plackett_luce", temperature={a.temperature}, '
        f"candidates={a.candidates}}}",
        f'{{name="challenger", model="{challenger.version}"}}',
    ]
    sets = [f"experiment.name={name}", "experiment.arms=[" + ", ".join(arms) + "]", f"serve.port={a.port}"]
    cfg = load_config(None, [f"workdir={workdir!r}", *sets])
    argv = [sys.executable, "-m", "sparktf.cli", "live", "--workdir", workdir]
    for item in sets:
        argv += ["--set", item]
    log = RESULTS / "ope-live.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = start(argv, env, log)
    url = f"http://127.0.0.1:{a.port}"
    model = cfg.tracking.registered_model
    t0 = time.perf_counter()
    try:
        wait_http(f"{url}/readyz", 600, proc, log)
        status = stream_args(cfg).status_file
        while not os.path.exists(status):
            time.sleep(1)
        sim = ShopperSimulator(
            cfg.generator, seed=seed, k=10, position_bias=1.0, steps_per_session=6.0, dwell_s=a.dwell
        )
        result = sim.run(lambda: HttpShop(url, model), duration_s=a.seconds, rate=a.rate, concurrency=a.shoppers)
        wait_stream_applied(status)
        policy = f"models:/{model}/{challenger.version}"
        _cli(workdir, sets, "experiment", "estimate", "--policy", policy, "--logged-by", "champion")
        _cli(workdir, sets, "experiment", "report")
    finally:
        stop(proc)
    folder = Path(cfg.paths.local("experiments", name))
    report = json.loads((folder / "report.json").read_text())
    est = report["off_policy"]
    online = report["arms"]["challenger"]["rates"]["ctr"]
    truth = result.arms["challenger"].true_ctr
    lines = [
        "### The loop over HTTP on `make run`'s models",
        "",
        f"Command: `python -m bench.bench_ope live --workdir {workdir} --seconds {a.seconds:g} --rate {a.rate:g} "
        f"--shoppers {a.shoppers} --temperature {a.temperature:g} --candidates {a.candidates}` · "
        f"{time.strftime('%Y-%m-%d')} · {_machine()} · `sparktf live` (server + stream) on the same machine",
        "",
        f"Experiment `{name}`, shoppers' seed {seed}: arm `champion` = @champion (v{registered.champion}) exploring "
        f"with Plackett-Luce (temperature {a.temperature:g} over its top {a.candidates}), arm `challenger` = "
        f"{challenger.model} v{challenger.version} ranking deterministically, half the users each. The estimate "
        "uses the champion's impressions only (`--logged-by champion`).",
        "",
        "| challenger's CTR | value | 95% interval | holds the true CTR? |",
        "|---|---:|---|---|",
    ]
    for key, e in est["estimates"].items():
        held = e["ci_low"] is not None and e["ci_low"] <= truth <= e["ci_high"]
        lines.append(
            f"| off-policy {key.upper()} | {e['value']:.4f} | [{e['ci_low']:.4f}, {e['ci_high']:.4f}] | {held} |"
        )
    lines += [
        f"| online (the challenger arm's own clicks) | {online['value']:.4f} | "
        f"[{online['ci_low']:.4f}, {online['ci_high']:.4f}] | {online['ci_low'] <= truth <= online['ci_high']} |",
        f"| true (the shoppers' click probabilities on the challenger's replies) | {truth:.4f} | | |",
        "",
    ]
    champ = report["arms"]["champion"]["rates"]["ctr"]
    d = est["diagnostics"]
    lines += [
        f"Champion (exploring) online CTR {champ['value']:.4f}, true {result.arms['champion'].true_ctr:.4f}. "
        f"Logged slots {d['slots']} of {d['units']} users; the challenger agrees on {d['matched_slots']}; "
        f"effective sample size {d['effective_sample_size']:.0f}; max weight {d['max_weight']:.3g}. "
        f"Requests {result.requests} ({result.failed_requests} failed), events {result.events_sent}. "
        f"Wall time {time.perf_counter() - t0:.0f} s.",
        "",
    ]
    return "\n".join(lines), {"report": report, "simulation": result.to_dict()}


# --------------------------------------------------------------------------- main

#: Section name -> its runner; each returns (markdown, raw results for the JSON).
SECTIONS: dict[str, Callable[[argparse.Namespace], tuple[str, dict[str, Any]]]] = {
    "obd": run_obd,
    "simulation": run_simulation,
    "live": run_live,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("what", nargs="?", choices=[*SECTIONS, "all"], default="all")
    parser.add_argument("--clip", type=float, default=math.inf, help="weight clip (inf: none)")
    parser.add_argument("--n-sim", type=int, default=100_000, help="obd: Thompson draws of the target's distribution")
    parser.add_argument("--seed", type=int, default=12345, help="obd: seed of the draws (obp's README: 12345)")
    parser.add_argument("--seeds", type=int, default=20, help="simulation: seeded trials per logging policy")
    parser.add_argument("--sessions", type=int, default=1000, help="simulation: shopper sessions per run")
    parser.add_argument("--workdir", default="sparktf-work", help="live: a finished `make run`")
    parser.add_argument("--seconds", type=float, default=300.0, help="live: how long the shoppers shop")
    parser.add_argument("--rate", type=float, default=30.0, help="live: requests per second at most")
    parser.add_argument("--shoppers", type=int, default=96, help="live: shoppers at once")
    parser.add_argument("--dwell", type=float, default=3.0, help="live: mean seconds per page")
    parser.add_argument("--temperature", type=float, default=1.0, help="live: the champion's Plackett-Luce temperature")
    parser.add_argument("--candidates", type=int, default=50, help="live: the champion explores its top this many")
    parser.add_argument("--port", type=int, default=8531, help="live: the server's port")
    a = parser.parse_args()
    # "all" is what needs no running services; live needs a finished `make run`.
    names = ["obd", "simulation"] if a.what == "all" else [a.what]
    RESULTS.mkdir(parents=True, exist_ok=True)
    parts = []
    for name in names:
        t0 = time.perf_counter()
        text, raw = SECTIONS[name](a)
        print(text, flush=True)
        raw = {**raw, "section": name, "wall_seconds": time.perf_counter() - t0, "measured": time.strftime("%Y-%m-%d")}
        (RESULTS / f"ope-{name}.json").write_text(json.dumps(_json_safe(raw), indent=2, default=str), encoding="utf-8")
        parts.append(text)
    text = "\n".join(parts)
    (RESULTS / ("ope.md" if a.what == "all" else f"ope-{a.what}.md")).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
