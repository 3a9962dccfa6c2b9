"""The two models on a small synthetic catalogue with real first-order structure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.slow

V = 200
ITEMS = [f"i{i}" for i in range(V)]


def _examples(seed: int, users: int = 300, length: int = 12) -> list[tuple[str, list[str], str]]:
    rng = np.random.default_rng(seed)
    succ = np.random.default_rng(0).integers(0, V, size=V)  # the same structure for every split
    rows = []
    for u in range(users):
        s = [int(rng.integers(V))]
        for _ in range(length - 1):
            s.append(int(succ[s[-1]]) if rng.random() < 0.7 else int(rng.integers(V)))
        for t in range(1, length):
            rows.append((f"u{u}", [ITEMS[x] for x in s[max(0, t - 10) : t]], ITEMS[s[t]]))
    return rows


@pytest.fixture(scope="module")
def catalog() -> Any:
    from sparktf.models.catalog import Catalog

    return Catalog.from_arrays(
        ITEMS,
        category=[f"c{i % 7}" for i in range(V)],
        brand=[f"b{i % 11}" for i in range(V)],
        price_bucket=[i % 5 for i in range(V)],
        user_ids=[f"u{u}" for u in range(300)],
    )


def _dataset(rows: list[tuple[str, list[str], str]]) -> Any:
    from sparktf.models.layers import tf

    idx = [int(r[2][1:]) for r in rows]
    return tf.data.Dataset.from_tensor_slices(
        {
            "user_id": tf.constant([r[0] for r in rows]),
            "history": tf.ragged.constant([r[1] for r in rows]),
            "target": tf.constant([r[2] for r in rows]),
            "target_category": tf.constant([f"c{i % 7}" for i in idx]),
            "target_brand": tf.constant([f"b{i % 11}" for i in idx]),
            "target_price_bucket": tf.constant([i % 5 for i in idx], dtype=tf.int64),
        }
    )


def _hr_at_10(model: Any, rows: list[tuple[str, list[str], str]]) -> float:
    scores = model.score_numpy(np.array([r[0] for r in rows]), [r[1] for r in rows])
    top = np.argsort(-scores, axis=1)[:, :10]
    targets = np.array([int(r[2][1:]) for r in rows])
    return float(np.mean([t in row for t, row in zip(targets, top, strict=True)]))


@pytest.mark.parametrize(
    ("kind", "options"),
    [
        ("sequential", {}),
        # The repeat term, for every item (256 buckets, 200 items) and for the 64 most popular: in the export's dot product.
        ("sequential", {"tie_embeddings": True, "mask_history": False, "repeat_buckets": 256, "repeat_recent": 2}),
        ("two_tower", {}),
        ("two_tower", {"two_tower_user_id": True, "mask_history": False}),
        # One sasrec case (each costs ~20 s of the suite): two heads, tied, the repeat term.
        (
            "sasrec",
            {
                "max_history": 10,
                "attention_heads": 2,
                "mask_history": False,
                "tie_embeddings": True,
                "repeat_buckets": 64,
                "repeat_recent": 3,
            },
        ),
    ],
)
def test_model_learns_the_next_item_and_exports_raw_id_serving(
    kind: str, options: dict[str, Any], catalog: Any, tmp_path: Path
) -> None:
    from sparktf.models.base import ModelParams, make_optimizer
    from sparktf.models.export import export_model, load_exported
    from sparktf.models.factory import build_model

    train, test = _examples(1), _examples(2, users=100)
    model = build_model(catalog, ModelParams(kind=kind, embedding_dim=32, seed=3, **options))  # type: ignore[arg-type]
    model.compile(optimizer=make_optimizer(0.01, 0.9, 20))
    model.fit(_dataset(train).shuffle(5000, seed=1).batch(256), epochs=4, verbose=0)

    # Popularity cannot exceed ~10/200 here; the successor structure gives far more.
    hr = _hr_at_10(model, test)
    assert hr > 0.3, hr
    # Validation ranks the whole catalogue (what early stopping watches), like this test.
    logs = model.evaluate(_dataset(test).batch(128), return_dict=True, verbose=0)
    assert logs["hr_at_10"] == pytest.approx(hr, abs=0.02)

    export = export_model(model, str(tmp_path / kind), version=1, k=10)
    users = ["u1", "nobody"]  # an unknown user maps to the OOV index instead of failing
    histories = [["i1", "i2", "i3"], ["unknown-item"]]
    in_process = model.score_numpy(np.array(users), histories)

    loaded = load_exported(export)
    out = loaded(users, histories)
    assert out["top_k_ids"].shape == (2, 10)
    expected = [[ITEMS[j] for j in np.argsort(-row, kind="stable")[:10]] for row in in_process]
    assert [x.decode() for x in out["top_k_ids"][0][:3]] == expected[0][:3]
    np.testing.assert_allclose(out["top_k_scores"][:, 0], in_process.max(axis=1), rtol=1e-5)
    # The saved item embeddings reproduce the scores by one dot product.
    np.testing.assert_allclose(out["query_embedding"] @ loaded.item_embeddings.T, in_process, rtol=1e-4, atol=1e-4)

    # A fresh process (nothing shared with this one) gets identical scores.
    code = (
        "import json, sys, numpy as np, sparktf; from sparktf.models.export import load_exported; "
        "m = load_exported(sys.argv[1]); out = m(['u1','nobody'], [['i1','i2','i3'], ['unknown-item']]); "
        "print(json.dumps({'scores': out['top_k_scores'].tolist(), 'ids': [[x.decode() for x in r] for r in out['top_k_ids']]}))"
    )
    proc = subprocess.run([sys.executable, "-c", code, export], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    fresh = json.loads(proc.stdout.strip().splitlines()[-1])
    assert fresh["ids"] == [[x.decode() for x in row] for row in out["top_k_ids"]]
    np.testing.assert_array_equal(np.array(fresh["scores"], dtype=np.float32), out["top_k_scores"])


def test_two_tower_factorized_top_k_over_the_catalogue(catalog: Any) -> None:
    from sparktf.models.base import ModelParams, make_optimizer
    from sparktf.models.factory import build_model
    from sparktf.models.two_tower import factorized_top_k

    model = build_model(catalog, ModelParams(kind="two_tower", embedding_dim=16, seed=1))
    model.compile(optimizer=make_optimizer(0.01, 0.9, 10))
    rows = _examples(5, users=100)
    model.fit(_dataset(rows).batch(256), epochs=2, verbose=0)
    got = factorized_top_k(model, _dataset(rows[:300]).batch(100), ks=(10, 100))
    assert set(got) == {"factorized_top_k/top_10_categorical_accuracy", "factorized_top_k/top_100_categorical_accuracy"}
    # Cross-check the TFRS metric against a brute-force rank of the same scores.
    assert got["factorized_top_k/top_10_categorical_accuracy"] == pytest.approx(_hr_at_10(model, rows[:300]), abs=1e-6)
    assert got["factorized_top_k/top_10_categorical_accuracy"] <= got["factorized_top_k/top_100_categorical_accuracy"]


def test_catalogue_hits_match_a_numpy_rank_whatever_the_chunk() -> None:
    from sparktf.models.base import catalogue_hits
    from sparktf.models.layers import tf

    rng = np.random.default_rng(0)
    q, items = rng.normal(size=(64, 8)).astype(np.float32), rng.normal(size=(1000, 8)).astype(np.float32)
    target = rng.integers(0, 1000, size=64)
    scores = q @ items.T
    target[3:20] = np.argsort(-scores[3:20], axis=1)[:, 9]  # exactly 10th: still a hit
    target[20:30] = np.argsort(-scores[20:30], axis=1)[:, 10]  # 11th: a miss
    target[:3] = -1  # out of vocabulary: a miss
    own = scores[np.arange(64), np.maximum(target, 0)]
    expected = ((scores >= own[:, None]).sum(axis=1) - 1 < 10) & (target >= 0)
    assert expected[3:20].all() and not expected[20:30].any() and not expected[:3].any()
    for chunk in (7, 128, 1000, 5000):
        got = catalogue_hits(tf.constant(q), tf.constant(items), tf.constant(target, tf.int32), k=10, chunk=chunk)
        np.testing.assert_array_equal(got.numpy(), expected.astype(np.float32))


def test_catalogue_hits_leave_out_the_excluded_items_once_each() -> None:
    from sparktf.models.base import catalogue_hits
    from sparktf.models.layers import tf

    rng = np.random.default_rng(1)
    q, items = rng.normal(size=(32, 8)).astype(np.float32), rng.normal(size=(500, 8)).astype(np.float32)
    scores = q @ items.T
    order = np.argsort(-scores, axis=1)
    target = order[:, 12]  # 13th: a miss, unless excluded items above it are left out
    exclude = np.full((32, 6), -1)
    exclude[:16, :3] = order[:16, :3]  # three above it: now 10th, a hit
    exclude[:16, 3] = order[:16, 0]  # a repeat counts once
    exclude[:16, 4] = target[:16]  # the target itself is never left out
    exclude[16:, :2] = order[16:, 20:22]  # below it: no change
    got = catalogue_hits(
        tf.constant(q), tf.constant(items), tf.constant(target, tf.int32), chunk=64, exclude=tf.constant(exclude)
    )
    np.testing.assert_array_equal(got.numpy(), np.r_[np.ones(16), np.zeros(16)].astype(np.float32))


@pytest.mark.parametrize("user_id", [False, True])
def test_two_tower_query_uses_the_user_id_only_when_asked(user_id: bool, catalog: Any) -> None:
    # Without the user id, a known user with no history is as unknown as a stranger,
    # so serving falls back to popular items for both (the OOV probe sees the same query).
    from sparktf.models.base import ModelParams
    from sparktf.models.factory import build_model

    model = build_model(catalog, ModelParams(kind="two_tower", embedding_dim=8, seed=1, two_tower_user_id=user_id))
    known, stranger = model.score_numpy(np.array(["u1", "nobody"]), [[], []])
    assert np.allclose(known, stranger) is not user_id


@pytest.mark.parametrize(
    ("kind", "options"),
    [
        ("sequential", {}),
        ("sequential", {"tie_embeddings": True, "rnn": "lstm"}),
        ("two_tower", {"two_tower_user_id": True}),
        ("two_tower", {"two_tower_history": "mean"}),
        ("sasrec", {"repeat_buckets": 16}),
    ],
)
def test_ensure_built_creates_every_variable_fit_uses(kind: str, options: dict[str, Any], catalog: Any) -> None:
    # BackupAndRestore restores into the variables that exist when fit begins; one created
    # later, inside the first traced step, is restored lazily (and under MultiWorkerMirroredStrategy
    # that fails: "You must feed a value for placeholder tensor"). So nothing may be left for fit to create.
    from sparktf.models.base import ModelParams, make_optimizer
    from sparktf.models.factory import build_model

    model = build_model(catalog, ModelParams(kind=kind, embedding_dim=8, seed=3, **options))  # type: ignore[arg-type]
    assert not model.built
    model.ensure_built()
    assert model.built
    before = [(id(v), v.name, tuple(v.shape)) for v in model.variables]
    model.compile(optimizer=make_optimizer(0.01, 0.9, 1))
    model.fit(_dataset(_examples(4, users=10)).batch(64), epochs=1, steps_per_epoch=1, verbose=0)
    after = [(id(v), v.name, tuple(v.shape)) for v in model.variables]
    assert after == before, sorted(set(after) ^ set(before))
    model.ensure_built()  # once built, a no-op
    assert [(id(v), v.name, tuple(v.shape)) for v in model.variables] == before


def test_sasrec_learns_from_every_position_of_a_window(catalog: Any) -> None:
    """Issue 20: one window of history plus target is one label per position — the next
    item of the history, then the target — and the loss counts exactly those."""
    from sparktf.models.base import ModelParams
    from sparktf.models.factory import build_model
    from sparktf.models.layers import tf

    L = 6
    for options in ({}, {"softmax": "sampled", "num_sampled": 20}, {"mask_history": False}):
        model = build_model(catalog, ModelParams(kind="sasrec", embedding_dim=8, max_history=L, seed=1, **options))
        model.ensure_built()
        batch = model.prepare(
            {
                "user_id": tf.constant(["u1", "u2", "u3"]),
                # 3 known items; 1 item; an unknown item in the middle (not a label, still context)
                "history": tf.ragged.constant([["i1", "i2", "i3"], ["i9"], ["i4", "nope", "i5"]]),
                "target": tf.constant(["i4", "i7", "i6"]),
            }
        )
        per_ex, counted, _ = model._per_example_loss(batch, training=True)
        # Labels: [i2, i3, i4], [i7], [nope (OOV: none), i5, i6].
        np.testing.assert_allclose(np.asarray(counted) * L, [3, 1, 2], atol=1e-6)
        assert np.all(np.asarray(per_ex) > 0)
    # Validation and serving still score the target from the last position only.
    logits = model(batch)
    assert logits.shape == (3, V)
    # Position j sees items 0..j only: appending an item changes nothing before it.
    enc = model.encoder
    short = model.history_lookup(tf.constant([["i1", "i2", "", "", "", ""]]))
    long = model.history_lookup(tf.constant([["i1", "i2", "i3", "i8", "", ""]]))
    np.testing.assert_allclose(np.asarray(enc(short))[0, :2], np.asarray(enc(long))[0, :2], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["sequential", "sasrec"])
def test_the_repeat_term_learns_whether_shoppers_come_back(kind: str, catalog: Any) -> None:
    """Issue 20: the repeat weight is learnt, not a rule: positive where the next item is always
    one the history holds (grocery), negative where it never is (movies)."""
    from sparktf.models.base import ModelParams, make_optimizer
    from sparktf.models.factory import build_model

    rng = np.random.default_rng(5)
    rows: dict[str, list[tuple[str, list[str], str]]] = {"again": [], "never": []}
    for u in range(1500):
        # "never": 7 distinct items. "again": 2 distinct items, then each next one an earlier item
        # other than the one just before (the features collapse consecutive repeats), so every
        # label but the second item is a repeat: sasrec learns from every position.
        never = [int(x) for x in rng.choice(V, size=7, replace=False)]
        again = never[:2]
        while len(again) < 7:
            again.append(int(rng.choice([x for x in set(again) if x != again[-1]])))
        for name, seq in (("again", again), ("never", never)):
            rows[name].append((f"u{u % 300}", [ITEMS[x] for x in seq[:-1]], ITEMS[seq[-1]]))
    beta = {}
    for name, data in rows.items():
        params = ModelParams(
            kind=kind, embedding_dim=8, max_history=6, mask_history=False, repeat_buckets=V, repeat_recent=1, seed=2
        )
        model = build_model(catalog, params)  # type: ignore[arg-type]
        model.compile(optimizer=make_optimizer(0.01, 1.0, 12))
        model.fit(_dataset(data).batch(128), epochs=3, verbose=0)
        beta[name] = float(model.repeat.beta)
        if name == "again":
            # The item just before is never next: its recency weight says so.
            assert float(model.repeat.recent_weights[0]) < -0.1, model.repeat.recent_weights.numpy()
        hr = _hr_at_10(model, data[:300])
        if name == "again":
            assert hr > 0.99, hr  # the 6 history items rank first: the target is one of them
    assert beta["again"] > 1.0 and beta["never"] < -1.0, beta


def test_repeat_term_recency_weights_are_exact_at_every_position(catalog: Any) -> None:
    """The recency weights of the repeat term (``train.repeat_recent``): the end-of-history
    terms (the query vector's extra dimensions) equal the training prefix's last position,
    and both equal a count plus the weights of the last steps, computed here by hand."""
    from sparktf.models.layers import tf
    from sparktf.models.repeat import BETA_SCALE, RepeatTerm

    term = RepeatTerm(V, 8, recent=3)
    term.seen_weight.assign(0.05)
    term.often_weight.assign(0.1)
    term.recent_weights.assign([-0.3, -0.2, 0.1])
    # Right-padded (-2); -1 an unknown item (a step, no bucket); 9 and 12 have no bucket either.
    pos = np.array([[1, 2, 1, 3, -2, -2], [4, -1, 4, 9, 5, 12], [6, -2, -2, -2, -2, -2]], dtype=np.int32)
    lengths = [4, 6, 1]
    got = term.terms(tf.constant(pos)).numpy()
    prefix = term.prefix_terms(tf.constant(pos)).numpy()
    w = BETA_SCALE * np.array([-0.3, -0.2, 0.1])
    for b, n in enumerate(lengths):
        hist = pos[b, :n]
        want = np.zeros(8)
        for d in range(8):
            c = float(np.sum(hist == d))
            want[d] = BETA_SCALE * (0.05 * min(c, 1.0) + 0.1 * np.log1p(c))
        for k in range(min(3, n)):
            if 0 <= hist[n - 1 - k] < 8:
                want[hist[n - 1 - k]] += w[k]
        np.testing.assert_allclose(got[b], want, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(prefix[b, n - 1], want, rtol=1e-5, atol=1e-6)


def test_repeat_term_session_weight_counts_only_the_session_in_progress(catalog: Any) -> None:
    """``features.session_breaks``: the session weight goes to the items after the last
    break, in the query's terms and at every prefix of SASRec's training, checked against
    a hand count (the break is no item, so no count and no bucket)."""
    from sparktf.models.layers import tf
    from sparktf.models.repeat import BETA_SCALE, RepeatTerm

    term = RepeatTerm(V, 8, session=True)
    term.seen_weight.assign(0.05)
    term.often_weight.assign(0.1)
    term.session_weight.assign(-0.4)
    brk = -1  # a break reads as an unknown entry: its position is below 0
    pos = np.array([[1, 2, brk, 2, 3, -2], [4, brk, 5, brk, 4, 5], [6, 6, -2, -2, -2, -2]], dtype=np.int32)
    breaks = np.array([[0, 0, 1, 0, 0, 0], [0, 1, 0, 1, 0, 0], [0, 0, 0, 0, 0, 0]], dtype=bool)
    lengths = [5, 6, 2]
    got = term.terms(tf.constant(pos), tf.constant(breaks)).numpy()
    prefix = term.prefix_terms(tf.constant(pos), tf.constant(breaks)).numpy()

    def want(hist: np.ndarray, brks: np.ndarray) -> np.ndarray:
        last = max([i for i, b in enumerate(brks) if b], default=-1)
        out = np.zeros(8)
        for d in range(8):
            c = float(np.sum(hist == d))
            out[d] = BETA_SCALE * (0.05 * min(c, 1.0) + 0.1 * np.log1p(c))
            if np.any(hist[last + 1 :] == d):
                out[d] += BETA_SCALE * -0.4
        return out

    for b, n in enumerate(lengths):
        np.testing.assert_allclose(got[b], want(pos[b, :n], breaks[b, :n]), rtol=1e-5, atol=1e-6)
        for j in range(n):
            np.testing.assert_allclose(prefix[b, j], want(pos[b, : j + 1], breaks[b, : j + 1]), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="session breaks"):
        term.terms(tf.constant(pos))


def test_the_session_weight_learns_that_the_basket_in_progress_is_not_next(catalog: Any) -> None:
    """``features.session_breaks``: shoppers rebuy from their last order, never what the order
    in progress holds. Every history item occurs once, so only the break tells the two
    apart: with it the model learns a negative session weight and ranks the last order
    first; the served dot product (query and item vectors) gives the training logits."""
    from sparktf.data.schema import SESSION_BREAK
    from sparktf.models.base import ModelParams, make_optimizer
    from sparktf.models.factory import build_model
    from sparktf.models.layers import tf

    rng = np.random.default_rng(11)
    rows = []
    for u in range(1500):
        items = [ITEMS[int(x)] for x in rng.choice(V, size=6, replace=False)]
        last_order, basket = items[:3], items[3:5]
        for k in range(1, 3):  # the basket so far: its first k items, then a rebuy from the last order
            rows.append((f"u{u % 300}", [*last_order, SESSION_BREAK, *basket[:k]], last_order[int(rng.integers(3))]))
    top_in_last_order = {}
    for breaks in (True, False):
        data = rows if breaks else [(u, [x for x in h if x != SESSION_BREAK], t) for u, h, t in rows]
        params = ModelParams(
            kind="sasrec", embedding_dim=8, max_history=6, mask_history=False, repeat_buckets=V,
            session_breaks=breaks, seed=4,
        )  # fmt: skip
        model = build_model(catalog, params)
        model.compile(optimizer=make_optimizer(0.01, 1.0, 12))
        model.fit(_dataset(data).batch(128), epochs=3, verbose=0)
        test = data[:400]
        scores = model.score_numpy(np.array([r[0] for r in test]), [r[1] for r in test])
        hits = [ITEMS[int(np.argmax(row))] in (h[:3]) for row, (_, h, _) in zip(scores, test, strict=True)]
        top_in_last_order[breaks] = float(np.mean(hits))
        if breaks:
            assert float(model.repeat.session_weight) < -0.1, float(model.repeat.session_weight)
            feats = model.prepare(
                {
                    "user_id": tf.constant([r[0] for r in test[:8]]),
                    "history": tf.ragged.constant([r[1] for r in test[:8]]),
                }
            )
            served = np.asarray(model.query_vectors(feats)) @ np.asarray(model.item_vectors()).T
            np.testing.assert_allclose(served, np.asarray(model(feats)), rtol=1e-4, atol=1e-4)
    assert top_in_last_order[True] > 0.95 and top_in_last_order[True] > top_in_last_order[False] + 0.2, (
        top_in_last_order
    )


def test_weight_decay_shrinks_the_tables_but_not_biases_norms_or_the_repeat_term(catalog: Any) -> None:
    """``train.weight_decay`` (AdamW) decays what can memorise a shopper and leaves out
    the variables :data:`NO_DECAY` names, matched against the models' real variable names."""
    from sparktf.models.base import ModelParams, make_optimizer
    from sparktf.models.factory import build_model
    from sparktf.tfenv import import_tensorflow

    tf = import_tensorflow()
    lr, wd = 0.01, 3.0
    params = ModelParams(kind="sasrec", embedding_dim=8, max_history=10, repeat_buckets=16, repeat_recent=2)
    model = build_model(catalog, params)
    model.ensure_built()
    for v in model.trainable_variables:
        v.assign(tf.ones_like(v) * 0.5)  # non-zero everywhere, so a decay would show
    optimizer = make_optimizer(lr, 1.0, 10, weight_decay=wd)
    # Zero gradients: Adam moves nothing, so what changes is the decay alone.
    optimizer.apply_gradients([(tf.zeros_like(v), v) for v in model.trainable_variables])
    decayed = {v.name for v in model.trainable_variables if not np.allclose(v.numpy(), 0.5)}
    for v in model.trainable_variables:
        if v.name in decayed:
            np.testing.assert_allclose(v.numpy(), 0.5 * (1 - lr * wd), rtol=1e-5, err_msg=v.name)
    names = {v.name for v in model.trainable_variables}
    kept = names - decayed
    # The input, position and output tables (the output table's variable is ".../embeddings").
    assert sum("embeddings" in n for n in decayed) == sum("embeddings" in n for n in names) == 3
    assert any("kernel" in n for n in decayed)
    assert any("item_bias" in n for n in kept) and any("gamma" in n for n in kept)
    assert {n for n in kept if "repeat" in n} == {n for n in names if "repeat" in n} != set()
    # Without it, plain Adam: nothing moves under zero gradients.
    for v in model.trainable_variables:
        v.assign(tf.ones_like(v) * 0.5)
    make_optimizer(lr, 1.0, 10).apply_gradients([(tf.zeros_like(v), v) for v in model.trainable_variables])
    assert all(np.allclose(v.numpy(), 0.5) for v in model.trainable_variables)


@pytest.mark.parametrize("mask_history", [False, True])
def test_calibrate_taste_picks_the_best_weight_and_the_query_vectors_carry_it(
    mask_history: bool, catalog: Any, tmp_path: Path
) -> None:
    """``train.calibrate_taste``: every weight's NDCG@10 is the one a numpy ranking of the
    model's own vectors gives (ties against the target, the history masked when the model
    masks it, unknown targets left out); the best is kept, and the query vectors, so the
    export and the index, serve the taste part times it."""
    from sparktf.models.base import ModelParams, make_optimizer
    from sparktf.models.export import export_model, load_exported
    from sparktf.models.factory import build_model
    from sparktf.models.sequential import TASTE_GRID

    params = ModelParams(
        kind="sequential", embedding_dim=8, max_history=10, mask_history=mask_history, repeat_buckets=64
    )
    model = build_model(catalog, params)
    model.compile(optimizer=make_optimizer(0.01, 1.0, 10))
    model.fit(_dataset(_examples(1, users=200)).batch(256), epochs=2, verbose=0)
    val = _examples(9, users=40, length=4)
    val[0] = (val[0][0], val[0][1], "i99999")  # out of vocabulary: left out
    feats = {"user_id": np.array([r[0] for r in val]), "history": [r[1] for r in val]}
    from sparktf.models.layers import tf

    ragged = tf.ragged.constant(feats["history"])
    q = np.asarray(model.query_vectors(model.prepare({"user_id": tf.constant(feats["user_id"]), "history": ragged})))
    items = np.asarray(model.item_vectors())
    taste, rest = q[:, :8] @ items[:, :8].T, q[:, 8:] @ items[:, 8:].T
    pos = {x: i for i, x in enumerate(ITEMS)}
    expected = {}
    for w in TASTE_GRID:
        s = w * taste + rest
        gains = []
        for b, (_, hist, target) in enumerate(val):
            if target not in pos:
                continue
            t = pos[target]
            row = s[b].copy()
            if mask_history:
                row[[pos[x] for x in hist if pos[x] != t]] = -np.inf
            rank = int((np.delete(row, t) >= row[t]).sum())
            gains.append(1 / np.log2(rank + 2) if rank < 10 else 0.0)
        expected[w] = float(np.mean(gains))
    weight, scores = model.calibrate_taste(_dataset(val).batch(16))
    assert scores.keys() == expected.keys()
    np.testing.assert_allclose([scores[w] for w in TASTE_GRID], [expected[w] for w in TASTE_GRID], atol=1e-6)
    assert weight == max(TASTE_GRID, key=lambda w: (expected[w], w))
    assert float(model.taste_weight) == weight
    q2 = np.asarray(model.query_vectors(model.prepare({"user_id": tf.constant(feats["user_id"]), "history": ragged})))
    np.testing.assert_allclose(q2[:, :8], weight * q[:, :8], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(q2[:, 8:], q[:, 8:], rtol=1e-6)
    # The export serves the calibrated query (the weight is a variable of the SavedModel).
    exported = load_exported(export_model(model, str(tmp_path / "m"), version=1, k=10))
    padded = tf.constant([r[1] + [""] * (10 - len(r[1])) for r in val])
    served = exported.signature(user_id=tf.constant(feats["user_id"]), history=padded)["query_embedding"]
    np.testing.assert_allclose(np.asarray(served), q2, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("rnn", ["gru", "lstm"])
def test_the_unrolled_recurrence_computes_what_the_loop_does(rnn: str) -> None:
    """Issue 22: up to ``UNROLL_MAX_STEPS`` the history encoder unrolls its recurrence for speed;
    with the same weights it must give the loop's output, padding and empty histories included."""
    from sparktf.models import layers
    from sparktf.models.layers import HistoryEncoder, keras, tf

    emb = keras.layers.Embedding(30, 8)
    unrolled = HistoryEncoder(emb, rnn, 8, steps=6)
    loop = HistoryEncoder(emb, rnn, 8, steps=None)
    assert unrolled.rnn.unroll and not loop.rnn.unroll
    assert not HistoryEncoder(emb, rnn, 8, steps=layers.UNROLL_MAX_STEPS + 1).rnn.unroll
    assert HistoryEncoder(emb, rnn, 8, steps=layers.UNROLL_MAX_STEPS).rnn.unroll
    indices = tf.constant([[5, 7, 9, 0, 0, 0], [3, 4, 5, 6, 7, 8], [0, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0]])
    want = loop(indices)
    unrolled(indices)
    unrolled.set_weights(loop.get_weights())
    np.testing.assert_allclose(np.asarray(unrolled(indices)), np.asarray(want), rtol=1e-5, atol=1e-6)
