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


# --------------------------------------------------------------------------- main

#: Section name -> its runner; each returns (markdown, raw results for the JSON).
SECTIONS: dict[str, Callable[[argparse.Namespace], tuple[str, dict[str, Any]]]] = {
    "obd": run_obd,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("what", nargs="?", choices=[*SECTIONS, "all"], default="all")
    parser.add_argument("--clip", type=float, default=math.inf, help="weight clip (inf: none)")
    parser.add_argument("--n-sim", type=int, default=100_000, help="obd: Thompson draws of the target's distribution")
    parser.add_argument("--seed", type=int, default=12345, help="obd: seed of the draws (obp's README: 12345)")
    a = parser.parse_args()
    names = list(SECTIONS) if a.what == "all" else [a.what]
    RESULTS.mkdir(parents=True, exist_ok=True)
    parts = []
    for name in names:
        t0 = time.perf_counter()
        text, raw = SECTIONS[name](a)
        raw = {**raw, "section": name, "wall_seconds": time.perf_counter() - t0, "measured": time.strftime("%Y-%m-%d")}
        (RESULTS / f"ope-{name}.json").write_text(json.dumps(_json_safe(raw), indent=2), encoding="utf-8")
        parts.append(text)
    text = "\n".join(parts)
    print(text)
    (RESULTS / ("ope.md" if a.what == "all" else f"ope-{a.what}.md")).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
