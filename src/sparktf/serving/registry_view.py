"""``GET /v1/registry``: the served model's versions, for the web page's Models section.

With an MLflow registry source (``models:/name@alias``), the registered model's versions,
newest first: aliases, creation time, run, the quality metrics its run holds (what the
evaluate stage logged: ``<split>/ndcg_at_10``, ``baseline/<name>/hr_at_10``...) and its
validation-gate outcome (the version tags and the report :mod:`sparktf.registry.promote`
logged to the run, ``gate/report.json`` and ``gate/report.md``). With a folder of exports,
the loaded versions and ``"registry": null``. Either way ``loaded`` lists what the server
holds now, with each export's ``kind``.

The registry is read in a worker thread (MLflow's client blocks) and the answer is kept for
:data:`CACHE_S` seconds, so a page that polls costs the registry one read per few seconds
whatever the number of browsers. Only fixed artifact names are read, never a path from the
request, and the tracking URI (which may hold credentials) is never returned: an error
from MLflow is returned with any ``user:password@`` in it masked.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import tempfile
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from fastapi import FastAPI
from fastapi.responses import Response

from sparktf.evaluation.protocols import PROTOCOLS
from sparktf.serving import tfserving as tfs
from sparktf.serving.error_handlers import json_response
from sparktf.serving.openapi import ERRORS
from sparktf.serving.repository import RegistrySource, Snapshot
from sparktf.serving.state import ServerState

__all__ = ["CACHE_S", "MAX_VERSIONS", "add_registry_routes", "loaded_versions", "registry_document"]

#: How long one read of the registry is reused.
CACHE_S = 5.0
#: The newest versions described in full (runs, metrics, gate reports); older ones are counted.
MAX_VERSIONS = 20
#: The largest gate report read from a run (a report is a few kilobytes).
_MAX_REPORT_BYTES = 1 << 20
_SPLITS = ("test", "validation")
_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")
_USERINFO = re.compile(r"(\w+://)[^/@\s]+@")


def add_registry_routes(app: FastAPI, state: ServerState) -> None:
    """``GET /v1/registry``, bound to ``state``."""
    cache = _Cache(CACHE_S)
    reports: dict[tuple[str, str], tuple[dict[str, Any] | None, str | None]] = {}

    @app.get(
        "/v1/registry",
        summary="The served model's versions: registry aliases, quality metrics and validation-gate reports",
        responses=ERRORS,
    )
    async def registry() -> Response:
        repository = state.repository
        snap = repository.snapshot
        source = repository.source
        doc: dict[str, Any] = {
            "model": snap.name,
            "default_version": snap.default,
            "labels": dict(snap.labels),
            "loaded": loaded_versions(snap),
        }
        if isinstance(source, RegistrySource):
            doc["source"] = "registry"
            doc["uri"] = f"models:/{source.model}" + (
                f"@{source.alias}" if source.alias is not None else f"/{source.fixed_version}"
            )
            loop = asyncio.get_running_loop()
            doc["registry"] = await cache.get(
                lambda: loop.run_in_executor(
                    None, partial(registry_document, source.tracking_uri, source.model, snap, reports=reports)
                )
            )
        else:
            doc["source"] = "folder"
            doc["registry"] = None
        return _reply(doc)


def _reply(doc: Any) -> Response:
    return json_response(tfs.encode_json(_finite(doc)))


class _Cache:
    """One value, fetched at most once per ``ttl_s`` (concurrent callers wait for one fetch)."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self.value: Any = None
        self.at = -math.inf
        self.lock = asyncio.Lock()

    async def get(self, fetch: Callable[[], Any]) -> Any:
        async with self.lock:
            if time.monotonic() - self.at >= self.ttl_s:
                self.value = await fetch()
                self.at = time.monotonic()
            return self.value


# --------------------------------------------------------------------------- what the server holds


def loaded_versions(snap: Snapshot) -> list[dict[str, Any]]:
    """The loaded versions, newest first: kind (``assets.extra/sparktf.json``), labels, and
    whether a reference profile came with it."""
    by_version: dict[int, list[str]] = {}
    for label, version in snap.labels.items():
        by_version.setdefault(version, []).append(label)
    out = []
    for version in sorted(snap.versions, reverse=True):
        lv = snap.versions[version]
        recommender = lv.recommender
        meta = getattr(recommender, "meta", None)
        if meta is None:
            meta = _export_meta(getattr(lv.servable, "path", ""))
        out.append(
            {
                "version": version,
                "kind": meta.get("kind") if isinstance(meta, Mapping) else None,
                "default": version == snap.default,
                "labels": sorted(by_version.get(version, ())),
                "loaded_at": _iso(lv.loaded_at),
                "recommender": recommender is not None,
                "index": getattr(recommender, "index_kind", None),
                "reference_profile": getattr(recommender, "reference", None) is not None,
            }
        )
    return out


def _export_meta(path: str) -> Mapping[str, Any] | None:
    if not path:
        return None
    try:
        with open(os.path.join(path, "assets.extra", "sparktf.json"), encoding="utf-8") as fh:
            meta = json.load(fh)
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, Mapping) else None


# --------------------------------------------------------------------------- the registry


def registry_document(
    tracking_uri: str,
    name: str,
    snap: Snapshot | None = None,
    *,
    reports: dict[tuple[str, str], tuple[dict[str, Any] | None, str | None]] | None = None,
) -> dict[str, Any]:
    """The registered model ``name``'s versions as ``GET /v1/registry`` answers them (blocking).

    Args:
        tracking_uri: the MLflow store (the registry lives there too).
        name: the registered model.
        snap: what the server has loaded (each version says whether it is).
        reports: gate reports already read, by (run id, ``validated_at`` tag); a report is
            read once per gate run, not once per request.

    An MLflow failure is not raised: the answer carries ``error`` (credentials masked) and
    no versions, so that the page still shows what the server holds.
    """
    doc: dict[str, Any] = {"name": name, "aliases": {}, "versions": [], "more_versions": 0, "error": None}
    doc["read_at"] = _iso(time.time())
    if not _NAME.match(name):
        doc["error"] = f"Registered model name {name!r} cannot be listed (letters, digits, '_', '.', '-' only)."
        return doc
    try:
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        model = client.get_registered_model(name)
        aliases = {str(a): int(str(v)) for a, v in (model.aliases or {}).items()}
        doc["aliases"] = aliases
        doc["description"] = str(model.description or "")
        found: list[Any] = []
        token: str | None = None
        while True:
            page = client.search_model_versions(f"name = '{name}'", max_results=1000, page_token=token)
            found.extend(page)
            token = page.token
            if not token:
                break
    except Exception as exc:  # noqa: BLE001 - an unreachable or failing registry is reported, not raised
        doc["error"] = _masked(f"Reading registered model {name!r} failed: {type(exc).__name__}: {exc}")
        return doc
    found.sort(key=lambda mv: int(str(mv.version)), reverse=True)
    loaded = set(snap.versions) if snap is not None else set()
    by_version: dict[int, list[str]] = {}
    for alias, version in aliases.items():
        by_version.setdefault(version, []).append(alias)
    for mv in found[:MAX_VERSIONS]:
        version = int(str(mv.version))
        aliased = sorted(by_version.get(version, ()))
        doc["versions"].append(_version_document(client, name, mv, aliased, loaded, reports))
    doc["more_versions"] = max(len(found) - MAX_VERSIONS, 0)
    return doc


def _version_document(
    client: Any,
    name: str,
    mv: Any,
    aliases: list[str],
    loaded: set[int],
    reports: dict[tuple[str, str], tuple[dict[str, Any] | None, str | None]] | None,
) -> dict[str, Any]:
    # The gate's version tags, named where sparktf.registry.registry writes them (their one home).
    from sparktf.registry.registry import (
        FAILED_CHECKS_TAG,
        PROMOTED_AT_TAG,
        REPLACED_TAG,
        REPORT_TAG,
        ROLLED_BACK_TO_TAG,
        STATUS_TAG,
        VALIDATED_AGAINST_TAG,
        VALIDATED_AT_TAG,
    )

    gate_tags = (VALIDATED_AGAINST_TAG, VALIDATED_AT_TAG, PROMOTED_AT_TAG, REPLACED_TAG, ROLLED_BACK_TO_TAG)

    version = int(str(mv.version))
    tags = {str(k): str(v) for k, v in (mv.tags or {}).items()}
    run_id = str(mv.run_id or "")
    out: dict[str, Any] = {
        "version": version,
        "aliases": aliases,
        "created": _iso(int(mv.creation_timestamp or 0) / 1000) if mv.creation_timestamp else None,
        "run_id": run_id or None,
        "status": str(mv.status or ""),
        "description": str(mv.description or ""),
        "loaded": version in loaded,
        "quality": None,
        "gate": None,
        "problems": [],
    }
    try:
        failed = json.loads(tags.get(FAILED_CHECKS_TAG, "[]"))
    except ValueError:
        failed = []
    gate: dict[str, Any] = {
        "status": tags.get(STATUS_TAG, "unvalidated"),
        **{key: tags.get(key) for key in gate_tags},
        "failed_checks": failed if isinstance(failed, list) else [],
        "report": None,
        "markdown": None,
    }
    out["gate"] = gate
    if run_id:
        try:
            run = client.get_run(run_id)
            out["quality"] = quality_metrics(run.data.metrics)
        except Exception as exc:  # noqa: BLE001 - a deleted run or a flaky store: said, not raised
            out["problems"].append(_masked(f"run {run_id}: {type(exc).__name__}: {exc}"))
    if out["quality"] is None:
        out["quality"] = _registered_metrics(tags)
    if run_id and tags.get(REPORT_TAG, "").startswith("runs:/"):
        try:
            key = (run_id, tags.get("validated_at", ""))
            if reports is not None and key in reports:
                report, markdown = reports[key]
            else:
                report, markdown = _gate_report(client, run_id)
                if reports is not None:
                    if len(reports) >= 256:
                        reports.clear()
                    reports[key] = (report, markdown)
        except Exception as exc:  # noqa: BLE001 - as above
            out["problems"].append(_masked(f"gate report of run {run_id}: {type(exc).__name__}: {exc}"))
        else:
            label = f"{name} v{version}"
            if report is not None and report.get("candidate") not in (None, label):
                # The run was registered again as a newer version, whose gate run replaced the report.
                out["problems"].append(f"the run's gate report is of {report.get('candidate')}, not {label}")
            else:
                gate["report"] = _report_summary(report)
                gate["markdown"] = markdown
    return out


def quality_metrics(metrics: Mapping[str, Any]) -> dict[str, Any] | None:
    """The overall quality metrics of an evaluated run: ``{"split", "protocol": "product",
    "model": {...}, "baselines": {name: {...}}, "literature": {"model", "baselines"}}``
    with the metric names as the evaluation writes them (``ndcg@10``); None when the
    run has none. The evaluate stage logs ``<split>/<protocol>/<metric>`` and
    ``baseline/<name>/<protocol>/<metric>`` (evaluation/protocols.py); a run evaluated
    before there were two protocols has ``<split>/<metric>``, which was the product
    protocol. Slices and the gate's copies (``gate/...``) are left out."""
    per_split: dict[tuple[str, str], dict[str, float]] = {}
    baselines: dict[str, dict[str, dict[str, float]]] = {p: {} for p in PROTOCOLS}
    for key, value in metrics.items():
        number = _number(value)
        if number is None:
            continue
        parts = str(key).split("/")
        if len(parts) == 2 and parts[0] in _SPLITS:
            per_split.setdefault((parts[0], "product"), {})[_display(parts[1])] = number
        elif len(parts) == 3 and parts[0] in _SPLITS and parts[1] in PROTOCOLS:
            per_split.setdefault((parts[0], parts[1]), {})[_display(parts[2])] = number
        elif len(parts) == 3 and parts[0] == "baseline":
            baselines["product"].setdefault(parts[1], {})[_display(parts[2])] = number
        elif len(parts) == 4 and parts[0] == "baseline" and parts[2] in PROTOCOLS:
            baselines[parts[2]].setdefault(parts[1], {})[_display(parts[3])] = number
    if not per_split and not any(baselines.values()):
        return None
    split = next((s for s in _SPLITS if (s, "product") in per_split or (s, "literature") in per_split), None)

    def part(protocol: str) -> dict[str, Any]:
        found = baselines[protocol]
        return {
            "model": per_split.get((split, protocol), {}) if split else {},
            "baselines": {k: found[k] for k in sorted(found)},
        }

    return {"split": split, "protocol": "product", **part("product"), "literature": part("literature")}


def _registered_metrics(tags: Mapping[str, str]) -> dict[str, Any] | None:
    """The overall metrics recorded in the ``metrics`` tag at registration (a run-less version)."""
    from sparktf.registry.registry import METRICS_TAG

    try:
        raw = json.loads(tags.get(METRICS_TAG, "{}"))
    except ValueError:
        return None
    if not isinstance(raw, dict):
        return None
    values = {str(k): n for k, v in raw.items() if (n := _number(v)) is not None}
    return {"split": "registration", "model": values, "baselines": {}} if values else None


def _gate_report(client: Any, run_id: str) -> tuple[dict[str, Any] | None, str | None]:
    """The gate report promote.py logged to the run: (JSON, markdown); None for a missing one."""
    from sparktf.registry.promote import REPORT_JSON, REPORT_MARKDOWN

    texts: dict[str, str | None] = {}
    with tempfile.TemporaryDirectory(prefix="sparktf-gate-") as tmp:
        for artifact in (REPORT_JSON, REPORT_MARKDOWN):
            try:
                local = client.download_artifacts(run_id, artifact, tmp)
            except Exception:  # noqa: BLE001 - not logged (an older promotion), or not readable
                texts[artifact] = None
                continue
            if os.path.getsize(local) > _MAX_REPORT_BYTES:
                texts[artifact] = None
                continue
            with open(local, encoding="utf-8", errors="replace") as fh:
                texts[artifact] = fh.read()
    raw = texts.get(REPORT_JSON)
    report = None
    if raw:
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = None
        report = parsed if isinstance(parsed, dict) else None
    return report, texts.get(REPORT_MARKDOWN)


def _report_summary(report: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The report's verdict and checks (the metrics, slices included, stay in the run)."""
    if report is None:
        return None
    checks = report.get("checks")
    return {
        "status": report.get("status"),
        "candidate": report.get("candidate"),
        "champion": report.get("champion"),
        "checks": checks if isinstance(checks, list) else [],
    }


# --------------------------------------------------------------------------- helpers


def _display(name: str) -> str:
    """``ndcg_at_10`` -> ``ndcg@10`` (the evaluation's key, before MLflow's renaming)."""
    return name.replace("_at_", "@")


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _finite(obj: Any) -> Any:
    """``obj`` with NaN and infinities as null (a browser's JSON.parse refuses them)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def _masked(text: str) -> str:
    """``text`` with URL credentials masked, cut to one line of at most 500 characters."""
    first = _USERINFO.sub(r"\1***@", text).strip().splitlines()
    line = first[0] if first else ""
    return line if len(line) <= 500 else line[:497] + "..."


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))
