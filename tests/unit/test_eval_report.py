"""Reports (markdown, rich, JSON), MLflow metric names, and the [evaluation] config."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from sparktf.config import load_config
from sparktf.errors import ConfigError
from sparktf.evaluation.metrics import EvalProtocol, EvaluationResult
from sparktf.evaluation.report import (
    comparison_markdown,
    default_metrics,
    mlflow_metric_name,
    mlflow_metric_names,
    print_report,
    report_markdown,
    results_from_json,
    results_to_json,
    slices_markdown,
)

PROTO = EvalProtocol(split="test", num_items=1682, exclude_seen=True, ks=(10, 20), num_queries=943, oov_targets=0)


def _result(model: str, base: float, proto: EvalProtocol = PROTO) -> EvaluationResult:
    overall = {
        "hr@10": base,
        "ndcg@10": base / 2,
        "hr@20": base * 1.5,
        "ndcg@20": base / 1.5,
        "mrr": base / 3,
        "coverage@10": 0.1,
        "coverage@20": 0.2,
    }
    slices = {
        "user_activity": {
            "low": {"hr@10": base, "ndcg@10": base / 2, "mrr": base / 3, "count": 500.0},
            "high": {"hr@10": base, "ndcg@10": base / 2, "mrr": base / 3, "count": 443.0},
        },
        "target_category": {
            "Sci-Fi & Fantasy": {"hr@10": base, "count": 1.0},
            "Sci-Fi / Fantasy": {"hr@10": base, "count": 2.0},
        },
    }
    return EvaluationResult(model=model, protocol=proto, overall=overall, slices=slices)


def test_default_metric_order_groups_by_k_then_mrr_then_coverage() -> None:
    assert default_metrics([_result("a", 0.1)]) == [
        "hr@10",
        "ndcg@10",
        "hr@20",
        "ndcg@20",
        "mrr",
        "coverage@10",
        "coverage@20",
    ]


def test_markdown_states_the_protocol_and_bolds_the_best() -> None:
    md = comparison_markdown([_result("most_popular", 0.0859), _result("sequential", 0.2)])
    assert md.startswith(PROTO.sentence())
    rows = [line for line in md.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| model | hr@10 | ndcg@10 |")
    assert "| most_popular | 0.0859 |" in md
    assert "| sequential | **0.2000** |" in md
    assert "not comparable" not in md


def test_different_protocols_are_flagged() -> None:
    other = EvalProtocol(split="test", num_items=1682, exclude_seen=False, ks=(10, 20), num_queries=943, oov_targets=0)
    md = comparison_markdown([_result("a", 0.1), _result("b", 0.2, other)])
    assert "not comparable" in md
    assert "- a: " + PROTO.sentence() in md and "- b: " + other.sentence() in md


def test_slices_and_full_report() -> None:
    r = _result("als", 0.1)
    md = slices_markdown(r)
    assert "#### als by user_activity" in md
    assert "| low | 500 | 0.1000 |" in md
    assert "coverage" not in md
    full = report_markdown([r])
    assert PROTO.sentence() in full and "#### als by target_category" in full


def test_rich_table_prints_protocol_and_models() -> None:
    buf = io.StringIO()
    print_report([_result("most_popular", 0.0859)], console=Console(file=buf, width=400, highlight=False))
    text = " ".join(buf.getvalue().split())  # the caption wraps at the table's width
    assert "most_popular" in text and "0.0859" in text and "1,682 items" in text
    # Issue 20: every table names its protocol, in the title and the caption.
    assert "Evaluation, product protocol" in text and "Product protocol: " in text


def test_json_round_trip() -> None:
    results = [_result("a", 0.1), _result("b", 0.2)]
    assert results_from_json(results_to_json(results)) == results


def test_mlflow_names_are_safe_and_unique() -> None:
    assert mlflow_metric_name("ndcg@10") == "ndcg_at_10"
    assert mlflow_metric_name("mrr@100") == "mrr_at_100"
    names = mlflow_metric_names(_result("a", 0.1), prefix="test/")
    assert "test/ndcg_at_10" in names and names["test/ndcg_at_10"] == ("", "", "ndcg@10")
    assert names["test/user_activity/high/count"] == ("user_activity", "high", "count")
    # Two category names that clean up to the same text stay apart.
    cats = {v for s, v, _ in names.values() if s == "target_category"}
    assert cats == {"Sci-Fi & Fantasy", "Sci-Fi / Fantasy"}
    cat_names = {n.split("/")[2] for n, (s, _, _) in names.items() if s == "target_category"}
    assert len(cat_names) == 2
    assert all(re.fullmatch(r"[A-Za-z0-9_.\-/]+", n) for n in names)
    assert len(names) == 7 + 2 * 4 + 2 * 2


def test_config_defaults_and_new_fields() -> None:
    cfg = load_config().evaluation
    assert cfg.ks == (10, 20, 50, 100) and cfg.exclude_seen and cfg.split == "test"
    cfg = load_config(overrides=["evaluation.split=validation", "evaluation.als_rank=8"]).evaluation
    assert cfg.split == "validation" and cfg.als_rank == 8


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("evaluation.popularity_shares=[0.8, 0.5]", "two increasing fractions"),
        ("evaluation.popularity_shares=[0.5]", "two increasing fractions"),
        ("evaluation.split=train", "one of 'validation', 'test'"),
        ("evaluation.batch_size=0", "between 1 and 1,000,000"),
        ('evaluation.baselines=["als", "als"]', "each baseline at most once"),
        ("evaluation.ks=[10, 20000]", "cut-offs of at most 10,000"),
        ("evaluation.als_alpha=0", "a positive number"),
        ("evaluation.als_rank=0", "between 1 and 1024"),
    ],
)
def test_config_rejects_bad_values(override: str, message: str) -> None:
    field = override.split("=")[0]
    with pytest.raises(ConfigError, match=re.escape(field) + r" = .* is not allowed; expected " + re.escape(message)):
        load_config(overrides=[override])


def test_importing_the_evaluation_package_stays_light() -> None:
    import json
    import subprocess
    import sys

    code = (
        "import sys, json, sparktf.evaluation as e; "
        "print(json.dumps([m for m in ('pyspark', 'mlflow', 'pandas', 'tensorflow', 'rich') if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
