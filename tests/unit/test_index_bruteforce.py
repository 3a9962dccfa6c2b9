"""The exact index, the shared search contract (exclusion, padding, raw ids), the manifest
and its errors, and ``build_index``'s choices: numpy only, no ScaNN or TensorFlow."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparktf.errors import AnnIndexError
from sparktf.retrieval.index import (
    MANIFEST,
    PAD_ID,
    AnnIndex,
    BruteForceIndex,
    build_index,
    exact_top_k,
    load_index,
    read_manifest,
)


def _catalogue(n: int = 50, dim: int = 6, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, dim)).astype(np.float32), [f"item-{i}" for i in range(n)]


def _naive(queries: np.ndarray, emb: np.ndarray, ids: list[str], k: int, exclude: list[list[str]]) -> list[list[str]]:
    """Sort every score: the slow, obviously right answer."""
    out = []
    for q, ex in zip(queries, exclude, strict=True):
        scores = emb @ q
        order = sorted(range(len(ids)), key=lambda i: (-scores[i], i))
        out.append([ids[i] for i in order if ids[i] not in ex][:k])
    return out


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 40),
    k=st.integers(1, 45),
    seed=st.integers(0, 10_000),
    excluded=st.lists(st.integers(0, 39), max_size=10),
    coarse=st.booleans(),
)
def test_exact_search_matches_sorting_every_score(n: int, k: int, seed: int, excluded: list[int], coarse: bool) -> None:
    emb, ids = _catalogue(n, 4, seed)
    queries = np.random.default_rng(seed + 1).standard_normal((3, 4)).astype(np.float32)
    if coarse:  # small integers: many exactly equal scores, which must rank by catalogue position
        emb, queries = np.round(emb), np.round(queries)
    exclude = [[ids[i] for i in excluded if i < n], [], ["not-in-catalogue"]]
    got, scores = BruteForceIndex(emb, ids).search(queries, k, exclude)
    want = _naive(queries, emb, ids, k, exclude)
    assert got.shape == (3, k) and scores.shape == (3, k) and scores.dtype == np.float32
    for row in range(3):
        found = [x for x in got[row].tolist() if x != PAD_ID]
        assert found == want[row]
        # Padding fills the rest of the row: "" and -inf, never a real item.
        assert got[row].tolist()[len(found) :] == [PAD_ID] * (k - len(found))
        assert np.all(np.isneginf(scores[row, len(found) :]))
        np.testing.assert_allclose(
            scores[row, : len(found)], [float(emb[ids.index(x)] @ queries[row]) for x in found], rtol=1e-5, atol=1e-5
        )


def test_chunked_search_equals_one_big_matmul(monkeypatch: pytest.MonkeyPatch) -> None:
    import sparktf.retrieval.index as index_module

    emb, _ = _catalogue(300, 8)
    q = np.random.default_rng(3).standard_normal((25, 8)).astype(np.float32)
    whole = exact_top_k(q, emb, 10)
    monkeypatch.setattr(index_module, "_SCORE_CHUNK", 300 * 4)  # 4 queries per chunk
    chunked = exact_top_k(q, emb, 10)
    # BLAS may round a smaller product differently in the last bit; the ranking is the same.
    np.testing.assert_array_equal(whole[0], chunked[0])
    np.testing.assert_allclose(whole[1], chunked[1], rtol=1e-6)


def test_save_and_load_give_identical_results_from_a_moved_directory(tmp_path: Path) -> None:
    emb, ids = _catalogue()
    index = build_index(emb, ids, kind="brute_force", info={"model": {"version": "two_tower/3"}})
    index.save(str(tmp_path / "a"))
    (tmp_path / "a").rename(tmp_path / "b")
    loaded = load_index(str(tmp_path / "b"))
    assert isinstance(loaded, BruteForceIndex) and isinstance(loaded, AnnIndex)
    q = np.random.default_rng(1).standard_normal((7, 6)).astype(np.float32)
    for a, b in zip(index.search(q, 5, [["item-1"]] * 7), loaded.search(q, 5, [["item-1"]] * 7), strict=True):
        np.testing.assert_array_equal(a, b)
    assert loaded.info == {"model": {"version": "two_tower/3"}}
    assert read_manifest(str(tmp_path / "b"))["kind"] == "brute_force"


def test_small_catalogue_gets_the_exact_index_and_the_manifest_says_why(tmp_path: Path) -> None:
    emb, ids = _catalogue(100)
    index = build_index(emb, ids, kind="scann", min_items=2048)
    assert isinstance(index, BruteForceIndex)
    index.save(str(tmp_path / "i"))
    info = read_manifest(str(tmp_path / "i"))["info"]
    assert info["requested_kind"] == "scann"
    assert "100 items, fewer than min_items = 2048" in info["fallback_reason"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "faiss"}, "Index kind 'faiss' is not known"),
        ({"kind": "brute_force", "num_leaves": 3}, "takes no parameters"),
        ({"kind": "scann", "leaves": 3}, "Unknown ScaNN parameter 'leaves'"),
    ],
)
def test_build_index_rejects_bad_kinds_and_parameters(kwargs: dict[str, object], message: str) -> None:
    emb, ids = _catalogue()
    with pytest.raises(AnnIndexError, match=message):
        build_index(emb, ids, **kwargs)  # type: ignore[arg-type]


def test_bad_catalogues_and_queries_say_where() -> None:
    emb, ids = _catalogue(5)
    with pytest.raises(AnnIndexError, match="Item id 'item-1' appears at positions 1 and 3"):
        BruteForceIndex(emb, ["item-0", "item-1", "item-2", "item-1", "item-4"])
    with pytest.raises(AnnIndexError, match="Item id at position 2 is ''"):
        BruteForceIndex(emb, ["a", "b", "", "c", "d"])
    with pytest.raises(AnnIndexError, match="Got 4 item ids for 5 embedding rows"):
        BruteForceIndex(emb, ids[:4])
    bad = emb.copy()
    bad[3, 2] = np.nan
    with pytest.raises(AnnIndexError, match="row 3, column 2 is nan"):
        BruteForceIndex(bad, ids)
    index = BruteForceIndex(emb, ids)
    with pytest.raises(AnnIndexError, match=r"\[num_queries, 6\] matrix .*got shape \(6,\)"):
        index.search(emb[0], 3)
    with pytest.raises(AnnIndexError, match="k = 0 is not allowed"):
        index.search(emb[:1], 0)
    with pytest.raises(AnnIndexError, match="exclude has 1 rows for 2 queries"):
        index.search(emb[:2], 3, [["item-0"]])
    with pytest.raises(AnnIndexError, match="exclude row 0 is the string 'item-0'"):
        index.search(emb[:1], 3, ["item-0"])  # type: ignore[list-item]


def test_manifest_errors_name_the_file_and_the_offset(tmp_path: Path) -> None:
    with pytest.raises(AnnIndexError, match=r"No index at .*manifest.json does not exist"):
        load_index(str(tmp_path))
    (tmp_path / MANIFEST).write_text('{"format": "sparktf-ann-index", "kind": }')
    with pytest.raises(AnnIndexError, match="not valid JSON at byte offset 40"):
        load_index(str(tmp_path))
    (tmp_path / MANIFEST).write_text(json.dumps({"format": "sparktf-ann-index", "format_version": 99, "kind": "scann"}))
    with pytest.raises(AnnIndexError, match="format_version 99"):
        load_index(str(tmp_path))
    (tmp_path / MANIFEST).write_text(json.dumps({"format": "other"}))
    with pytest.raises(AnnIndexError, match="not a sparktf index manifest"):
        load_index(str(tmp_path))


def test_save_refuses_a_non_empty_directory_and_load_checks_the_files(tmp_path: Path) -> None:
    emb, ids = _catalogue(10)
    index = BruteForceIndex(emb, ids)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("x")
    with pytest.raises(AnnIndexError, match="not empty"):
        index.save(str(tmp_path / "taken"))
    index.save(str(tmp_path / "ok"))
    (tmp_path / "ok" / "ids.json").write_text(json.dumps(ids[:9]))
    with pytest.raises(AnnIndexError, match="holds 9 ids but the manifest says num_items = 10"):
        load_index(str(tmp_path / "ok"))
