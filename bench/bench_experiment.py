"""Online experiment benchmark (issue 17): the statistics against the truth, and an experiment
on ``make run``'s data with the simulator's sustained throughput.

Run: ``python -m bench.bench_experiment stats [--repeats 200]`` and
``python -m bench.bench_experiment live [--workdir sparktf-work] [--seconds 240] [--rate 25]``
(without a part, both: ``make bench ARGS=experiment``; the live part needs a finished ``make run``).

``stats`` (in-process, :class:`~sparktf.experiments.simulator.LocalShop`, the default
``[generator]`` world, 1,500 sessions a repeat):

* A/A: both arms show the popularity ranking; a new salt and new shoppers each repeat. The
  share of 95% intervals of the CTR difference that contain 0, with its binomial band, and
  the share of p < 0.05.
* A/B truth: the treatment's ranking starts 20 places down the popularity list. The share of
  arm intervals that contain the arm's true CTR (expected clicks per impression from the
  shoppers' known probabilities), and of lifts whose interval contains the true lift.
* Broken split: a quarter of the treatment's users land in the control; the share of
  repeats the sample-ratio test flags (and of healthy repeats it flags, which should be ~0).

``live`` (needs a finished ``make run`` in ``--workdir``): ``sparktf live`` with the experiment
``seq-vs-popular``: arms ``popular`` (control), the champion (``@champion``) and every other
registered version, equal weights. Then, against it:

* **Reference**: the same two HTTP calls a shopper step makes (``:recommend`` with a history and
  no unit, so outside the experiment; ``POST /v1/events`` with one view), back to back on the
  same number of connections, with no simulation: the transport's ceiling.
* **Simulator, flat out**: ``sparktf simulate``'s shoppers at an unbounded rate, without dwell,
  on ``--concurrency`` connections for 30 s: its sustained requests/s and events/s, and their
  ratio to the reference.
* **Experiment**: the simulator at ``--rate`` with ``--shoppers`` at once, ``--dwell`` seconds on
  each page (the stream keeps their live histories current), for ``--seconds``, then, once the stream has applied
  everything, ``sparktf experiment report``: each arm's CTR with its interval against its true
  CTR, the lifts against ``popular``, and whether the order by online CTR matches the order by
  offline NDCG@10.

Tables to stdout and bench/results/experiment.md (experiment-{stats,live}.md for one part).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.bench_serving import start, stop, wait_http

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def _fmt(value: float | None, spec: str) -> str:
    return "?" if value is None else format(value, spec)


def _machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


# --------------------------------------------------------------------------- stats


def run_stats(repeats: int, sessions: int) -> str:
    from sparktf.config import GeneratorConfig
    from sparktf.data.generator import build_catalog
    from sparktf.experiments.assignment import Arm, ArmModel, Assignment, bucket_of
    from sparktf.experiments.simulator import LocalShop, ShopperSimulator, item_name
    from sparktf.experiments.stats import RatioTotals, lift, ratio_estimate, sample_ratio_test

    world = GeneratorConfig()
    pop = build_catalog(world).popularity
    order = np.argsort(-pop, kind="stable")
    ranking = [item_name(int(i)) for i in order]
    shifted = ranking[20:] + ranking[:20]
    model = ArmModel("baseline", "popular")

    def assignment(salt: str) -> Assignment:
        return Assignment("bench", salt, (Arm("control", model, 1.0), Arm("treatment", model, 1.0)), "control")

    def simulate(seed: int, shop: LocalShop) -> Any:
        sim = ShopperSimulator(world, seed=seed, k=10, position_bias=1.0, steps_per_session=6.0)
        return sim.run(lambda: shop, duration_s=3600, rate=1e9, concurrency=1, max_sessions=sessions)

    t0 = time.perf_counter()
    aa_cover, aa_sig = 0, 0
    for r in range(repeats):
        a = assignment(f"aa-{r}")
        shop = LocalShop(lambda u, a=a: a.arm_for(u).name, {"control": ranking, "treatment": ranking})
        simulate(1000 + r, shop)
        lf = lift(RatioTotals.of(*shop.user_counts("treatment")), RatioTotals.of(*shop.user_counts("control")))
        aa_cover += lf.absolute_ci[0] <= 0 <= lf.absolute_ci[1]
        aa_sig += lf.p_value < 0.05
    ab_repeats = max(20, repeats // 2)
    arm_cover, lift_cover, ab_sig = 0, 0, 0
    truths: list[tuple[float, float]] = []
    for r in range(ab_repeats):
        a = assignment(f"ab-{r}")
        shop = LocalShop(lambda u, a=a: a.arm_for(u).name, {"control": ranking, "treatment": shifted})
        res = simulate(5000 + r, shop)
        truth = {arm: t.true_ctr for arm, t in res.arms.items()}
        truths.append((truth["control"], truth["treatment"]))
        for arm in ("control", "treatment"):
            est = ratio_estimate(RatioTotals.of(*shop.user_counts(arm)))
            arm_cover += est.ci_low <= truth[arm] <= est.ci_high
        lf = lift(RatioTotals.of(*shop.user_counts("treatment")), RatioTotals.of(*shop.user_counts("control")))
        lift_cover += lf.absolute_ci[0] <= truth["treatment"] - truth["control"] <= lf.absolute_ci[1]
        ab_sig += lf.p_value < 0.05
    srm_repeats = 20
    flagged, false_flags = 0, 0
    for r in range(srm_repeats):
        a = assignment(f"srm-{r}")

        def broken(u: str, a: Assignment = a) -> str:
            arm = a.arm_for(u).name
            return "control" if arm == "treatment" and bucket_of("bug", u, 4) == 0 else arm

        for assign, healthy in ((broken, False), (lambda u, a=a: a.arm_for(u).name, True)):
            shop = LocalShop(assign, {"control": ranking, "treatment": ranking})
            simulate(9000 + r, shop)
            counts = [len(shop.per_user.get(x, {})) for x in ("control", "treatment")]
            mismatch = sample_ratio_test(counts, [0.5, 0.5]).mismatch
            if healthy:
                false_flags += mismatch
            else:
                flagged += mismatch
    seconds = time.perf_counter() - t0

    def band(m: int) -> str:
        return f"0.95 ± {1.96 * math.sqrt(0.95 * 0.05 / m):.3f}"

    c, t = np.mean(truths, axis=0)
    lines = [
        "## Online experiment statistics against the truth (issue 17)",
        "",
        f"Command: `python -m bench.bench_experiment stats --repeats {repeats} --sessions {sessions}` · measured "
        f"{time.strftime('%Y-%m-%d')} · {_machine()} · {seconds:.0f} s",
        "",
        "| check | repeats | result | expected |",
        "|---|---:|---:|---|",
        f"| A/A: 95% CI of the CTR difference contains 0 | {repeats} | {aa_cover / repeats:.3f} | {band(repeats)} |",
        f"| A/A: p < 0.05 | {repeats} | {aa_sig / repeats:.3f} | 0.05 |",
        f"| A/B: an arm's 95% CI contains its true CTR | {2 * ab_repeats} | {arm_cover / (2 * ab_repeats):.3f} | "
        f"{band(2 * ab_repeats)} |",
        f"| A/B: the lift's 95% CI contains the true lift | {ab_repeats} | {lift_cover / ab_repeats:.3f} | "
        f"{band(ab_repeats)} |",
        f"| A/B: p < 0.05 (power; true CTR {c:.4f} vs {t:.4f}) | {ab_repeats} | {ab_sig / ab_repeats:.3f} | — |",
        f"| broken split (¼ of treatment users moved) flagged, p < 0.001 | {srm_repeats} | "
        f"{flagged / srm_repeats:.2f} | 1 |",
        f"| healthy split flagged | {srm_repeats} | {false_flags / srm_repeats:.2f} | ≤ 0.001 |",
        "",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- live


def _reference(base: str, model: str, item: str, concurrency: int, seconds: float) -> float:
    """Closed-loop steps/s of the two HTTP calls of a shopper step, without the simulator."""
    import httpx

    done = [0]
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def worker(i: int) -> None:
        with httpx.Client(base_url=base, timeout=30) as client:
            while time.monotonic() < deadline:
                r = client.post(f"/v1/models/{model}:recommend", json={"history": [item], "k": 10})
                r.raise_for_status()
                ev = {"user_id": f"bench-ref-{i}", "item_id": item, "event_type": "view", "event_time": time.time()}
                client.post("/v1/events", json={"events": [ev]}).raise_for_status()
                with lock:
                    done[0] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    t0 = time.monotonic()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return done[0] / (time.monotonic() - t0)


def wait_stream_applied(status: str) -> None:
    """Wait for ``sparktf live``'s stream to apply everything: its applied count stops moving."""
    last, still = -1, 0
    while still < 3:
        time.sleep(2)
        with open(status, encoding="utf-8") as fh:
            st = json.load(fh)
        n = int(st.get("events", 0)) + int(st.get("quarantined", 0))
        still = still + 1 if n == last else 0
        last = n


def run_live(
    workdir: str, seconds: float, rate: float, concurrency: int, port: int, shoppers: int, dwell: float
) -> str:
    from sparktf.config import load_config
    from sparktf.experiments.simulator import HttpShop, ShopperSimulator
    from sparktf.stages.state import RegisterResult, read_result
    from sparktf.stages.stream import stream_args

    base_cfg = load_config(None, [f"workdir={workdir!r}"])
    registered = read_result(base_cfg.paths, RegisterResult)
    arms = ['{name="popular", model="popular"}', '{name="champion", model="@champion"}']
    arms += [
        f'{{name="{v.model}_v{v.version}", model="{v.version}"}}'
        for v in registered.versions
        if v.version != registered.champion
    ]
    # A new experiment (name and salt) and new shoppers each run: the workdir remembers earlier
    # runs (live histories, seen items), which a replayed seed would collide with.
    name = f"seq-vs-popular-{time.strftime('%Y%m%d%H%M%S')}"
    seed = int(time.time()) % 100_000 + 1
    sets = [
        f"experiment.name={name}",
        "experiment.arms=[" + ", ".join(arms) + "]",
        "experiment.min_users_per_arm=100",
        f"serve.port={port}",
    ]
    cfg = load_config(None, [f"workdir={workdir!r}", *sets])
    argv = [sys.executable, "-m", "sparktf.cli", "live", "--workdir", workdir]
    for s in sets:
        argv += ["--set", s]
    log = RESULTS / "experiment-live.log"
    RESULTS.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = start(argv, env, log)
    base = f"http://127.0.0.1:{port}"
    model = cfg.tracking.registered_model
    try:
        wait_http(f"{base}/readyz", 600, proc, log)
        status = stream_args(cfg).status_file
        while not os.path.exists(status):
            time.sleep(1)
        ref = _reference(base, model, "i1", concurrency, 20)
        sim = ShopperSimulator(cfg.generator, seed=seed, k=10, position_bias=1.0, steps_per_session=6.0)
        flat = sim.run(lambda: HttpShop(base, model), duration_s=30, rate=1e6, concurrency=concurrency)
        paced = ShopperSimulator(
            cfg.generator,
            seed=seed + 1,
            k=10,
            position_bias=1.0,
            steps_per_session=6.0,
            dwell_s=dwell,
        ).run(lambda: HttpShop(base, model), duration_s=seconds, rate=rate, concurrency=shoppers)
        wait_stream_applied(status)
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "sparktf.cli",
                "experiment",
                "report",
                "--workdir",
                workdir,
                *[arg for s in sets for arg in ("--set", s)],
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=900,
        )
        if out.returncode != 0:
            raise SystemExit(f"experiment report failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    finally:
        stop(proc)
    report = json.loads(Path(cfg.paths.local("experiments", name, "report.json")).read_text())
    truth = {}
    for res in (flat, paced):
        for arm, t in res.arms.items():
            acc = truth.setdefault(arm, [0.0, 0])
            acc[0] += t.expected_clicks
            acc[1] += t.impressions
    lines = [
        "## Online experiment on `make run`'s data, and the simulator's throughput (issue 17)",
        "",
        f"Command: `python -m bench.bench_experiment live --workdir {workdir} --seconds {seconds:g} --rate {rate:g} "
        f"--concurrency {concurrency} --shoppers {shoppers} --dwell {dwell:g}` · measured {time.strftime('%Y-%m-%d')} · {_machine()} · `sparktf live` "
        "(server + stream) on the same machine",
        "",
        f"Experiment `{name}`, shoppers' seeds {seed} (flat out) and {seed + 1} (paced).",
        "",
        "| load | steps (requests)/s | events/s | vs reference |",
        "|---|---:|---:|---:|",
        f"| reference: :recommend + POST one event, no simulation, {concurrency} connections | {ref:.1f} | {ref:.1f} | 1.00 |",
        f"| sparktf simulate, unbounded rate, 30 s | {flat.requests_per_s:.1f} | {flat.events_per_s:.1f} | "
        f"{flat.requests_per_s / ref:.2f} |",
        f"| sparktf simulate at --rate {rate:g}, {shoppers} shoppers, {dwell:g} s per page, {seconds:g} s | "
        f"{paced.requests_per_s:.1f} | "
        f"{paced.events_per_s:.1f} | — |",
        "",
        f"Failed requests: {flat.failed_requests + paced.failed_requests}; rejected events: "
        f"{flat.events_rejected + paced.events_rejected}.",
        "",
        "| arm | model | offline NDCG@10 | users | impressions | clicks | CTR [95% CI] | true CTR "
        "| lift vs popular [95% CI] | p | errors | p99 ≤ ms |",
        "|---|---|---:|---:|---:|---:|---|---:|---|---:|---:|---:|",
    ]
    offline = report.get("offline", {}).get("values", {})
    for arm, a in report["arms"].items():
        ctr = a["rates"]["ctr"]
        lf = a["lift"].get("ctr")
        m = report["arm_models"][arm]
        t = truth.get(arm)
        lines.append(
            f"| {arm} | {'@' if m['kind'] == 'alias' else ''}{m['model']}"
            f"{' (v' + str(m['version']) + ')' if m['version'] is not None and m['kind'] != 'version' else ''} | "
            f"{offline.get(arm) if offline.get(arm) is None else format(offline[arm], '.4f')} | {a['users']} | "
            f"{a['impressions']} | {a['clicks']} | {ctr['value']:.4f} [{ctr['ci_low']:.4f}, {ctr['ci_high']:.4f}] | "
            f"{(t[0] / t[1]) if t and t[1] else float('nan'):.4f} | "
            + (
                f"{lf['relative']:+.1%} [{lf['relative_ci_low']:+.1%}, {lf['relative_ci_high']:+.1%}] | {lf['p_value']:.2g} |"
                if lf
                else "control | |"
            )
            + f" {_fmt(a['guardrail']['error_rate'], '.2%')} | {_fmt(a['guardrail']['p99_latency_ms'], '.0f')} |"
        )
    off = report.get("offline", {})
    srm = report["sample_ratio"]
    lines += [
        "",
        f"Sample ratio: {srm['observed']} users against {[round(x, 1) for x in srm['expected']]} expected, "
        f"p = {srm['p_value']:.3g}. Order by online CTR {off.get('by_online_ctr')} "
        f"{'matches' if off.get('agrees') else 'does not match'} the order by offline NDCG@10 {off.get('by_offline')}; "
        f"pairs the online CTR cannot tell apart (95% CI of the difference contains 0): {off.get('ties') or 'none'}; "
        f"pairs significantly against the offline order: {off.get('contradictions') or 'none'}. "
        f"Decision: {report['decision']['decision']} ({'; '.join(report['decision']['reasons'])}).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", nargs="?", choices=["stats", "live", "all"], default="all")
    parser.add_argument("--repeats", type=int, default=200, help="stats: A/A repeats (A/B: half as many)")
    parser.add_argument("--sessions", type=int, default=1500, help="stats: sessions per repeat")
    parser.add_argument("--workdir", default=str(ROOT / "sparktf-work"), help="live: a finished `make run`")
    parser.add_argument("--seconds", type=float, default=240)
    parser.add_argument("--rate", type=float, default=25)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--port", type=int, default=8591)
    parser.add_argument("--shoppers", type=int, default=96)
    parser.add_argument("--dwell", type=float, default=3.0)
    a = parser.parse_args()
    parts = []
    if a.what in ("stats", "all"):
        parts.append(run_stats(a.repeats, a.sessions))
    if a.what in ("live", "all"):
        if os.path.exists(os.path.join(a.workdir, "state", "register.json")):
            parts.append(
                run_live(os.path.abspath(a.workdir), a.seconds, a.rate, a.concurrency, a.port, a.shoppers, a.dwell)
            )
        else:
            print(f"bench_experiment: no finished `make run` in {a.workdir}; the live part is skipped", file=sys.stderr)
    text = "\n".join(parts)
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / ("experiment.md" if a.what == "all" else f"experiment-{a.what}.md")).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
