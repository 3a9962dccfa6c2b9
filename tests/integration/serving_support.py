"""Helpers of the serving tests: tiny SavedModels, a tiny recommender export with its
features tables, and a real uvicorn server on 127.0.0.1 in a thread."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ITEMS = [f"i{i}" for i in range(40)]
USERS = [f"u{u}" for u in range(12)]


def save_half_plus(base: Path, version: int, offset: float) -> str:
    """TF Serving's half_plus_* toy: ``serving_default`` y = x/2 + offset, the doc's regress
    signature, and a several-input, several-output signature ``multi``."""
    from sparktf.tfenv import import_tensorflow

    tf = import_tensorflow()

    class HalfPlus(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def serve(self, x: Any) -> Any:
            return {"y": x / 2.0 + offset}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def regress(self, x: Any) -> Any:
            return {"outputs": x / 2.0 + offset}

        @tf.function(
            input_signature=[
                tf.TensorSpec([None], tf.string, name="tag"),
                tf.TensorSpec([None, 3], tf.float32, name="signal"),
            ]
        )
        def multi(self, tag: Any, signal: Any) -> Any:
            return {"sum": tf.reduce_sum(signal, axis=1), "tag_bytes": tag, "upper": tf.strings.upper(tag)}

    module = HalfPlus()
    staging = base / f".staging-{version}"
    sigs = {"serving_default": module.serve, "tensorflow/serving/regress": module.regress, "multi": module.multi}
    tf.saved_model.save(module, str(staging), signatures=sigs)
    # Appear whole: a poller must never see a half-written version folder.
    os.replace(staging, base / str(version))
    return str(base / str(version))


def save_file_reader(base: Path, version: int) -> str:
    """A SavedModel whose ``serving_default`` returns the size of the file named by its
    string input: a missing file is a NotFoundError inside the model (a real 500, whose
    text holds a server-side path)."""
    from sparktf.tfenv import import_tensorflow

    tf = import_tensorflow()

    class Reader(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="path")])
        def serve(self, path: Any) -> Any:
            return {
                "size": tf.map_fn(lambda p: tf.strings.length(tf.io.read_file(p)), path, fn_output_signature=tf.int32)
            }

    module = Reader()
    staging = base / f".staging-{version}"
    tf.saved_model.save(module, str(staging), signatures={"serving_default": module.serve})
    os.replace(staging, base / str(version))
    return str(base / str(version))


#: Exports already built in this test process, by (kind, seed): each takes 8-15 s of TensorFlow
#: tracing and saving on 2 cores, and the serving tests ask for the same few about 20 times.
_EXPORTS: dict[tuple[str, int], str] = {}


def recommender_model(seed: int, kind: str = "two_tower") -> Any:
    """An untrained (seeded) sparktf model over ITEMS/USERS."""
    from sparktf.models.base import ModelParams
    from sparktf.models.catalog import Catalog
    from sparktf.models.factory import build_model

    catalog = Catalog.from_arrays(
        ITEMS,
        category=[f"c{i % 4}" for i in range(len(ITEMS))],
        brand=[f"b{i % 3}" for i in range(len(ITEMS))],
        price_bucket=[i % 5 for i in range(len(ITEMS))],
        user_ids=USERS,
    )
    # The user id on, so that the tests see a user the model knows without any history.
    return build_model(catalog, ModelParams(kind=kind, embedding_dim=8, seed=seed, two_tower_user_id=True))


def export_recommender(base: Path, version: int, seed: int, kind: str = "two_tower") -> str:
    """An untrained (seeded) sparktf model over ITEMS/USERS, exported as ``<base>/<version>``.

    The export depends on (kind, seed) only, so it is built once per test process and copied
    in: into a hidden folder first, then renamed, as :func:`sparktf.models.export.export_model`
    does, so that a server polling ``base`` never sees half of it.
    """
    import atexit
    import shutil
    import tempfile
    import uuid

    key = (kind, seed)
    if key not in _EXPORTS:
        from sparktf.models.export import export_model

        cache = tempfile.mkdtemp(prefix=f"sparktf-export-{kind}-{seed}-")
        atexit.register(shutil.rmtree, cache, ignore_errors=True)
        _EXPORTS[key] = export_model(recommender_model(seed, kind), cache, 1, k=5)
    path = base / str(int(version))
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise AssertionError(f"{path} already holds files")
    base.mkdir(parents=True, exist_ok=True)
    staging = base / f".{int(version)}.partial-{uuid.uuid4().hex[:12]}"
    shutil.copytree(_EXPORTS[key], staging)
    os.replace(staging, path)
    return str(path)


def write_features(path: Path) -> dict[str, Any]:
    """``items/``, ``seen/`` and ``examples/`` (partitioned by split) for USERS over ITEMS.

    Returns what was written: each user's full context (history + target of the last
    example) and seen items."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(7)
    items = pd.DataFrame(
        {
            "item_id": ITEMS,
            "category": [f"c{i % 4}" for i in range(len(ITEMS))],
            "brand": [f"b{i % 3}" for i in range(len(ITEMS))],
            "price": [round(5.0 + i * 1.5, 2) for i in range(len(ITEMS))],
            "price_bucket": [i % 5 for i in range(len(ITEMS))],
            "count": list(range(len(ITEMS), 0, -1)),
            "popularity_rank": list(range(1, len(ITEMS) + 1)),
        }
    )
    (path / "items").mkdir(parents=True)
    pq.write_table(pa.Table.from_pandas(items, preserve_index=False), path / "items" / "part-0.parquet")
    contexts, seen_rows = {}, []
    rows: dict[str, list[dict[str, Any]]] = {"train": [], "validation": [], "test": []}
    for u in USERS[:-2]:  # the last two users are unknown to the features
        seq = [ITEMS[int(x)] for x in rng.choice(len(ITEMS), size=6, replace=False)]
        for split, t in (("train", 3), ("validation", 4), ("test", 5)):
            rows[split].append(
                {
                    "user_id": u,
                    "history": seq[:t],
                    "history_len": t,
                    "target": seq[t],
                    "event_time": pd.Timestamp("2026-01-01") + pd.Timedelta(minutes=t),
                }
            )
        contexts[u] = seq
        seen_rows.append({"user_id": u, "items": seq[:4]})
    for split, data in rows.items():
        (path / "examples" / f"split={split}").mkdir(parents=True)
        table = pa.Table.from_pylist(data)
        pq.write_table(table, path / "examples" / f"split={split}" / "part-0.parquet")
    (path / "seen").mkdir()
    pq.write_table(pa.Table.from_pylist(seen_rows), path / "seen" / "part-0.parquet")
    return {"contexts": contexts, "seen": {r["user_id"]: r["items"] for r in seen_rows}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RunningServer:
    """``app`` under a real uvicorn on 127.0.0.1, in a thread, with the settings
    ``sparktf serve`` uses (its HTTP protocol and timeouts); ready when entered.

    Args:
        ready_timeout_s: how long entering waits for /readyz; 0 waits only for the server
            to listen (for servers that are not meant to become ready).
        header_timeout_s: the request-header deadline, when a test needs a short one.
    """

    def __init__(self, app: Any, ready_timeout_s: float = 120.0, header_timeout_s: float | None = None) -> None:
        import uvicorn

        from sparktf.config import ServeConfig
        from sparktf.serving.connection import with_header_timeout
        from sparktf.serving.server import uvicorn_config

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn_config(app, ServeConfig(host="127.0.0.1"), port=self.port)
        if header_timeout_s is not None:
            config.http = with_header_timeout(header_timeout_s)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.ready_timeout_s = ready_timeout_s

    def __enter__(self) -> RunningServer:
        import httpx

        self.thread.start()
        if self.ready_timeout_s:
            wait_ready(self.url, self.ready_timeout_s, httpx)
            return self
        deadline = time.monotonic() + 60
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise AssertionError(f"the server on {self.url} did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def wait_ready(url: str, timeout_s: float, httpx: Any, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """Poll ``/readyz`` until it answers 200 (bounded)."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            r = httpx.get(f"{url}/readyz", timeout=5, headers=headers)
            if r.status_code == 200:
                return dict(r.json())
            last = r.text
        except httpx.TransportError as exc:
            last = repr(exc)
        time.sleep(0.2)
    raise AssertionError(f"{url} not ready after {timeout_s} s: {last}")


def exact_top_k(query: np.ndarray, emb: np.ndarray, ids: list[str], k: int, exclude: set[str]) -> list[str]:
    scores = emb @ query
    order = [int(j) for j in np.argsort(-scores, kind="stable") if ids[int(j)] not in exclude]
    return [ids[j] for j in order[:k]]
