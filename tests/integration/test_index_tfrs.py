"""The TFRS ScaNN layer SavedModel: raw query features in, top-K item ids out; it reloads
in a fresh process with the same answers, and searching every leaf gives the export's
own exact top-K."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

V = 600
USERS = ["u1", "u7", "stranger"]
HISTORIES = [["i1", "i2", "i3"], ["i500"], ["unknown-item", "i4"]]


def test_tfrs_scann_savedmodel_reloads_with_the_same_answers(tmp_path: Path) -> None:
    from sparktf.models.base import ModelParams
    from sparktf.models.catalog import Catalog
    from sparktf.models.export import export_model, load_exported
    from sparktf.models.factory import build_model
    from sparktf.retrieval.index import ScannParams
    from sparktf.retrieval.tfrs_export import export_tfrs_scann, load_tfrs_scann
    from sparktf.tfenv import import_tensorflow

    tf = import_tensorflow()
    catalog = Catalog.from_arrays([f"i{i}" for i in range(V)], user_ids=[f"u{i}" for i in range(20)])
    model = build_model(catalog, ModelParams(kind="sequential", embedding_dim=8, seed=2))
    export = export_model(model, str(tmp_path / "export"), 1, k=10)
    # Every leaf searched and every item rescored: the layer must agree with exact top-K.
    out = export_tfrs_scann(
        export, str(tmp_path / "tfrs" / "1"), k=10, params=ScannParams(num_leaves=10, leaves_to_search=10, reorder=V)
    )
    meta = json.loads((Path(out) / "assets.extra" / "sparktf.json").read_text())
    assert meta["kind"] == "tfrs_scann" and meta["params"]["num_leaves"] == 10

    serve = load_tfrs_scann(out)
    padded = [h + [""] * (3 - len(h)) for h in HISTORIES]
    got = serve(user_id=tf.constant(USERS), history=tf.constant(padded))
    ids = [[x.decode() for x in row] for row in got["top_k_ids"].numpy()]
    scores = got["top_k_scores"].numpy()
    assert np.array(ids).shape == (3, 10)

    exact = load_exported(export)(USERS, HISTORIES)
    np.testing.assert_allclose(scores, exact["top_k_scores"], rtol=1e-4, atol=1e-5)
    assert [set(r) for r in ids] == [{x.decode() for x in row} for row in exact["top_k_ids"]]

    code = (
        "import json, sys, sparktf, tensorflow as tf; "
        "from sparktf.retrieval.tfrs_export import load_tfrs_scann; "
        "f = load_tfrs_scann(sys.argv[1]); "
        f"o = f(user_id=tf.constant({USERS!r}), history=tf.constant({padded!r})); "
        "print(json.dumps({'ids': [[x.decode() for x in r] for r in o['top_k_ids'].numpy()], "
        "'scores': o['top_k_scores'].numpy().tolist()}))"
    )
    proc = subprocess.run([sys.executable, "-c", code, out], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    fresh = json.loads(proc.stdout.strip().splitlines()[-1])
    assert fresh["ids"] == ids
    np.testing.assert_array_equal(np.array(fresh["scores"], dtype=np.float32), scores)
