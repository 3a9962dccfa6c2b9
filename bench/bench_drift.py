"""Drift alerts against the truth of the generator's world: false alerts and detection.

Run: ``cd /work/main && .venv/bin/python -m bench.bench_drift [--repeats 10] [--requests 800]``

Each repeat is a new world (``generator.seed``): the reference profile is measured on 2,000
of its shoppers' histories (each shopper's items but the last, capped at 20, as training
measures its validation queries), then ``--requests`` other shoppers are counted into a window
with the same :class:`~sparktf.monitoring.profile.Profiler` the server uses, from the world as
it was (``drift = none``) and shifted by ``category_surge`` or ``unseen_items`` at several
``drift_share``. The thresholds are ``[monitoring]``'s defaults (PSI 0.25, JS 0.1, unknown
items 10%, at least 500 requests). The model's top-1 score is not profiled here (no model);
the HTTP test (tests/integration/test_monitoring.py) covers it.

The truth: ``none`` must not alert; a surge must alert on ``history_category``; unseen items
must alert on ``unknown_item_rate``, whose value is compared with the true share of unseen
items in the requests' histories. Output: stdout and bench/results/drift.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from sparktf.config import FeatureConfig, GeneratorConfig

ROOT = Path(__file__).resolve().parent.parent
CAP = 20
WORLD = GeneratorConfig(num_events=60_000, num_users=4_000, num_items=300, num_categories=8, num_brands=12, days=4)


def _histories(gen: GeneratorConfig) -> list[list[str]]:
    from sparktf.data.generator import num_blocks, simulate_block

    out: dict[int, list[str]] = {}
    for block in range(num_blocks(gen)):
        sim = simulate_block(gen, block)
        for user in np.unique(sim.user):
            out[int(user)] = [f"i{i}" for i in sim.item[sim.user == user]]
    return [out[u] for u in sorted(out)]


def _reference(gen: GeneratorConfig, histories: list[list[str]]) -> Any:
    from sparktf.data.generator import build_catalog
    from sparktf.data.item_attributes import price_bucket
    from sparktf.monitoring.profile import build_reference

    cat = build_catalog(gen)
    items = [f"i{i}" for i in range(cat.num_items)]
    counts = {x: 0 for x in items}
    for h in histories:
        for x in h:
            counts[x] += 1
    edges = FeatureConfig().price_buckets
    return build_reference(
        model_kind="sequential",
        split="validation",
        item_ids=items,
        item_counts=[counts[x] for x in items],
        item_category={x: f"c{int(c)}" for x, c in zip(items, cat.category, strict=True)},
        item_price_bucket={x: price_bucket(float(p), edges) for x, p in zip(items, cat.price, strict=True)},
        histories=[h[:-1][-CAP:] for h in histories],
        top1_scores=np.full(len(histories), np.nan),
        history_cap=CAP,
    ), items


def _window(ref: Any, items: list[str], histories: list[list[str]]) -> dict[str, Any]:
    from sparktf.monitoring.profile import Profiler, Thresholds, compare

    prof = Profiler(ref, items)
    counts = prof.new_counts()
    for h in histories:
        prof.observe(counts, h[:-1], top1=None, fallback=False, unknown_user=None)
    return compare(ref, counts, Thresholds())


def main() -> None:
    ap = argparse.ArgumentParser(description="drift alerts against the world's truth")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--requests", type=int, default=800)
    ap.add_argument("--shares", default="0.05,0.1,0.2,0.5")
    args = ap.parse_args()
    shares = [float(x) for x in args.shares.split(",")]
    started = time.perf_counter()
    rows: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for r in range(args.repeats):
        base = replace(WORLD, seed=1000 + r)
        world = _histories(base)
        ref, items = _reference(base, world[:2000])
        cases = [("none", 0.0)] + [(d, s) for d in ("category_surge", "unseen_items") for s in shares]
        for drift, share in cases:
            gen = base if drift == "none" else replace(base, drift=drift, drift_share=share)
            traffic = (world if drift == "none" else _histories(gen))[2000 : 2000 + args.requests]
            out = _window(ref, items, traffic)
            shown = [x for h in traffic for x in h[:-1][-CAP:]]
            unseen = sum(int(x[1:]) >= base.num_items for x in shown) / max(len(shown), 1)
            rows.setdefault((drift, share), []).append(
                {
                    "alerting": {a["feature"] for a in out["alerts"]},
                    "cat_psi": out["features"]["history_category"]["psi"],
                    "cat_js": out["features"]["history_category"]["js"],
                    "unknown": out["rates"]["unknown_item_rate"]["value"],
                    "unseen_truth": unseen,
                }
            )
    elapsed = time.perf_counter() - started

    def share_of(cases: list[dict[str, Any]], feature: str) -> str:
        return f"{sum(feature in c['alerting'] for c in cases)}/{len(cases)}"

    lines = [
        "## Drift alerts against the simulated world's truth (issue #19)",
        "",
        f"Command: `.venv/bin/python -m bench.bench_drift --repeats {args.repeats} --requests {args.requests}` · "
        f"{time.strftime('%Y-%m-%d')} · {os.cpu_count()} cores ({platform.machine()}), Python "
        f"{platform.python_version()} · {elapsed:.0f} s · 1-minute load average at the end {os.getloadavg()[0]:.1f}",
        "",
        f"Per repeat a new world ({WORLD.num_items} items, {WORLD.num_categories} categories, seed 1000 + r): the "
        f"reference from 2,000 shoppers, a window of {args.requests} other shoppers' requests, the default "
        "thresholds (PSI 0.25, JS 0.1, unknown items 10%, min 500 requests). Median over repeats.",
        "",
        "| traffic | drift share | any alert | history_category alerts | unknown_item_rate alerts | "
        "category PSI | category JS | unknown-item rate (truth) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (drift, share), cases in rows.items():
        anything = f"{sum(bool(c['alerting']) for c in cases)}/{len(cases)}"
        lines.append(
            f"| {drift} | {share:g} | {anything} | {share_of(cases, 'history_category')} | "
            f"{share_of(cases, 'unknown_item_rate')} | {statistics.median(c['cat_psi'] for c in cases):.3f} | "
            f"{statistics.median(c['cat_js'] for c in cases):.3f} | "
            f"{statistics.median(c['unknown'] for c in cases):.3f} "
            f"({statistics.median(c['unseen_truth'] for c in cases):.3f}) |"
        )
    table = "\n".join(lines) + "\n"
    print(table)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "drift.md").write_text(table, encoding="utf-8")


if __name__ == "__main__":
    main()
