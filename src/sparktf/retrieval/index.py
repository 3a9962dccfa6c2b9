"""Top-K retrieval by inner product: one small interface, a ScaNN index and an exact one.

Every sparktf model scores ``query · item`` (see :mod:`sparktf.models.base`), so
retrieval is maximum-inner-product search over the item embeddings of an export.
:class:`AnnIndex` is the interface the batch job, the SQL function and the server
code against; :func:`build_index` makes one and :func:`load_index` reads back what
``save`` wrote, whatever its kind (``manifest.json`` names it).

* :class:`ScannIndex`: ScaNN through its pybind module (``scann.scann_ops_pybind``):
  a k-means tree, anisotropic hashing and exact reordering. No TensorFlow op is
  involved at query time; the TF op is only used by :mod:`~sparktf.retrieval.tfrs_export`.
* :class:`BruteForceIndex`: the exact answer, a numpy matmul plus ``argpartition`` in
  chunks. It is the reference ScaNN is tuned and tested against, and the index used
  for catalogues too small for a meaningful tree (the manifest says so).

Why our own code around ScaNN: ScaNN answers row positions and has no notion of
per-query exclusions (items a user already has), raw string ids, padding when fewer
than K items remain, or a manifest that says how the index was built; TFRS's layers
do some of this but only inside TensorFlow. The exclusion is done by over-fetching
``k + |excluded|`` neighbours and filtering, so an excluded item is never returned.

Results: ``ids`` [Q, k] object array of str and ``scores`` [Q, k] float32, best
first; rows with fewer than k results are padded with ``""`` and ``-inf``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from sparktf.errors import AnnIndexError

__all__ = [
    "DEFAULT_SCANN_MIN_ITEMS",
    "INDEX_KINDS",
    "MANIFEST",
    "PAD_ID",
    "AnnIndex",
    "BruteForceIndex",
    "ScannIndex",
    "ScannParams",
    "build_index",
    "exact_top_k",
    "load_index",
    "read_manifest",
]

INDEX_KINDS = ("scann", "brute_force")
MANIFEST = "manifest.json"
FORMAT = "sparktf-ann-index"
FORMAT_VERSION = 1
PAD_ID = ""
#: Below this many items ``kind="scann"`` builds the exact index instead: a tree of
#: sqrt(N) leaves over a few thousand points has leaves of a few dozen items, and
#: brute force over them is as fast as ScaNN and exact.
DEFAULT_SCANN_MIN_ITEMS = 2048

_IDS_FILE = "ids.json"
_EMBEDDINGS_FILE = "embeddings.npy"
_SCANN_DIR = "scann"
# Scores held at once by the exact search (64 MiB of float32): bounds memory for
# large catalogues while keeping each matmul big enough for BLAS to be efficient.
_SCORE_CHUNK = 1 << 24
# Queries per ScaNN call; rows are grouped by exclusion size so one user with a
# long history does not make a whole batch over-fetch.
_QUERY_CHUNK = 1024


@runtime_checkable
class AnnIndex(Protocol):
    """What every index offers.

    Attributes:
        ids: [N] raw item ids (str), in the order of the embeddings it was built from.
        dim: embedding size D.
    """

    ids: np.ndarray
    dim: int

    def search(
        self, queries: np.ndarray, k: int, exclude: Sequence[Sequence[str]] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """queries [Q, D] float32 → (ids [Q, k] object array of str, scores [Q, k] float32),
        best first; excluded ids are never returned; rows with fewer than k results are
        padded with "" and -inf."""
        ...

    def save(self, path: str) -> None:
        """Write the index to the directory ``path`` (created; must be empty or absent)."""
        ...


# --------------------------------------------------------------------------- checks


def _as_ids(ids: Sequence[str] | np.ndarray, num_items: int) -> np.ndarray:
    out = np.asarray([str(x) if isinstance(x, str) else x for x in ids], dtype=object)
    if out.ndim != 1 or len(out) != num_items:
        raise AnnIndexError(
            f"Got {len(out)} item ids for {num_items} embedding rows; there must be one id per row.",
            hint="Pass the ids in the order of the embedding rows (ExportedModel.item_ids).",
        )
    for i, value in enumerate(out):
        if not isinstance(value, str) or value == PAD_ID:
            raise AnnIndexError(
                f"Item id at position {i} is {value!r}; ids must be non-empty strings "
                f"({PAD_ID!r} marks padding in results).",
                hint="Map ids to strings (str(id)) and drop rows without an id before building the index.",
            )
    if len(set(out.tolist())) != len(out):
        seen: dict[str, int] = {}
        for i, value in enumerate(out.tolist()):
            if value in seen:
                raise AnnIndexError(
                    f"Item id {value!r} appears at positions {seen[value]} and {i}; ids must be unique.",
                    hint="Deduplicate the catalogue before building the index.",
                )
            seen[value] = i
    return out


def _as_embeddings(embeddings: np.ndarray) -> np.ndarray:
    emb = np.asarray(embeddings)
    if emb.ndim != 2 or emb.shape[0] == 0 or emb.shape[1] == 0:
        raise AnnIndexError(
            f"Item embeddings must be a non-empty [num_items, dim] matrix (got shape {emb.shape}).",
            hint="Pass ExportedModel.item_embeddings or another 2-D float array.",
        )
    emb = np.ascontiguousarray(emb, dtype=np.float32)
    bad = np.argwhere(~np.isfinite(emb))
    if len(bad):
        row, col = (int(v) for v in bad[0])
        raise AnnIndexError(
            f"Item embedding row {row}, column {col} is {float(emb[row, col])}; "
            f"{len(bad)} values are not finite and cannot be ranked.",
            hint="Retrain or re-export the model: its item vectors contain NaN or inf.",
        )
    return emb


def _as_queries(queries: np.ndarray, dim: int) -> np.ndarray:
    q = np.asarray(queries)
    if q.ndim != 2 or q.shape[1] != dim:
        raise AnnIndexError(
            f"Queries must be a [num_queries, {dim}] matrix for this index (got shape {q.shape}).",
            hint="Use the query embeddings of the model the index was built from (one row per query).",
        )
    q = np.ascontiguousarray(q, dtype=np.float32)
    bad = np.argwhere(~np.isfinite(q))
    if len(bad):
        row, col = (int(v) for v in bad[0])
        raise AnnIndexError(
            f"Query row {row}, column {col} is {float(q[row, col])}; queries must be finite.",
            hint="Check the query model's inputs and weights.",
        )
    return q


def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise AnnIndexError(f"k = {k!r} is not allowed; expected a positive integer.")
    return int(k)


def _excluded_positions(
    positions: Mapping[str, int], exclude: Sequence[Sequence[str]] | None, num_queries: int
) -> list[np.ndarray] | None:
    """Catalogue positions to leave out, per query. Ids outside the catalogue cannot be
    returned anyway, so they need no exclusion."""
    if exclude is None:
        return None
    if len(exclude) != num_queries:
        raise AnnIndexError(
            f"exclude has {len(exclude)} rows for {num_queries} queries; pass one list of ids per query "
            "(an empty list for none).",
        )
    out = []
    for row, items in enumerate(exclude):
        if isinstance(items, str):
            raise AnnIndexError(
                f"exclude row {row} is the string {items!r}; it must be a list of item ids.",
                hint="Wrap a single id in a list: [[id], ...].",
            )
        found = {positions[x] for x in (items if items is not None else ()) if x in positions}
        out.append(np.fromiter(sorted(found), dtype=np.int64, count=len(found)))
    return out


def _positions_to_ids(ids: np.ndarray, positions: np.ndarray) -> np.ndarray:
    out = np.full(positions.shape, PAD_ID, dtype=object)
    mask = positions >= 0
    out[mask] = ids[positions[mask]]
    return out


# --------------------------------------------------------------------------- exact search


def exact_top_k(
    queries: np.ndarray, embeddings: np.ndarray, k: int, excluded: Sequence[np.ndarray] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by inner product (pure numpy).

    Args:
        queries: [Q, D] float32.
        embeddings: [N, D] float32.
        k: results per query.
        excluded: per query, catalogue positions never to return.

    Returns:
        positions [Q, k] int64 (-1 = padding) and scores [Q, k] float32 (-inf = padding),
        best first; equal scores are ordered by catalogue position.
    """
    n = embeddings.shape[0]
    kk = min(k, n)
    positions = np.full((len(queries), k), -1, dtype=np.int64)
    scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    step = max(1, _SCORE_CHUNK // n)
    for start in range(0, len(queries), step):
        block = queries[start : start + step] @ embeddings.T
        if excluded is not None:
            for r, ex in enumerate(excluded[start : start + step]):
                if len(ex):
                    block[r, ex] = -np.inf
        if kk < n:
            part = np.argpartition(block, n - kk, axis=1)[:, n - kk :]
            part = _lowest_positions_on_ties(block, part, kk)
        else:
            part = np.broadcast_to(np.arange(n), block.shape).copy()
        top = np.take_along_axis(block, part, axis=1)
        order = np.lexsort((part, -top), axis=1)
        part = np.take_along_axis(part, order, axis=1)
        top = np.take_along_axis(top, order, axis=1)
        valid = np.isfinite(top)
        stop = start + len(block)
        positions[start:stop, :kk] = np.where(valid, part, -1)
        scores[start:stop, :kk] = np.where(valid, top, -np.inf)
    return positions, scores


def _lowest_positions_on_ties(block: np.ndarray, part: np.ndarray, kk: int) -> np.ndarray:
    """Make ties at the cut deterministic: ``argpartition`` keeps an arbitrary subset of
    the items whose score equals the k-th best; keep the lowest catalogue positions."""
    cut = np.take_along_axis(block, part, axis=1).min(axis=1)
    kept = (np.take_along_axis(block, part, axis=1) == cut[:, None]).sum(axis=1)
    tied = (block == cut[:, None]).sum(axis=1)
    for r in np.nonzero(tied > kept)[0]:
        above = np.nonzero(block[r] > cut[r])[0]
        equal = np.nonzero(block[r] == cut[r])[0][: kk - len(above)]
        part[r] = np.concatenate([above, equal])
    return part


# --------------------------------------------------------------------------- manifest


def _write_manifest(path: str, body: Mapping[str, Any]) -> None:
    doc = {"format": FORMAT, "format_version": FORMAT_VERSION, **body}
    with open(os.path.join(path, MANIFEST), "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=2, default=_json_default)
        fh.write("\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def _prepare_dir(path: str) -> None:
    if os.path.isdir(path) and os.listdir(path):
        raise AnnIndexError(
            f"Cannot save the index to {path}: the directory is not empty.",
            hint="Save to a new directory (the index stage writes a fresh one and then swaps it in).",
        )
    if os.path.exists(path) and not os.path.isdir(path):
        raise AnnIndexError(f"Cannot save the index to {path}: it is a file, not a directory.")
    os.makedirs(path, exist_ok=True)


def read_manifest(path: str) -> dict[str, Any]:
    """The manifest of the index saved at ``path``.

    Raises:
        AnnIndexError: there is no manifest, it is not valid JSON, or it is not a
            sparktf index of a version this code reads.
    """
    file = os.path.join(path, MANIFEST)
    try:
        with open(file, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        raise AnnIndexError(
            f"No index at {path}: {file} does not exist.",
            hint="Build one with `sparktf index` (or build_index(...).save(path)).",
        ) from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        offset = len(text[: exc.pos].encode("utf-8"))  # json counts characters; a file has bytes
        raise AnnIndexError(
            f"{file} is not valid JSON at byte offset {offset} (line {exc.lineno}, column {exc.colno}): {exc.msg}.",
            hint="The index is damaged; rebuild it with `sparktf index`.",
        ) from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise AnnIndexError(
            f"{file} is not a sparktf index manifest (field 'format' = "
            f"{doc.get('format') if isinstance(doc, dict) else doc!r}, expected {FORMAT!r}).",
            hint="Point at a directory written by AnnIndex.save or `sparktf index`.",
        )
    if doc.get("format_version") != FORMAT_VERSION:
        raise AnnIndexError(
            f"{file} has format_version {doc.get('format_version')!r}; this sparktf reads version {FORMAT_VERSION}.",
            hint="Rebuild the index with this version of sparktf (`sparktf index`).",
        )
    if doc.get("kind") not in INDEX_KINDS:
        raise AnnIndexError(
            f"{file} names kind {doc.get('kind')!r}; expected one of {', '.join(INDEX_KINDS)}.",
            hint="Rebuild the index with `sparktf index`.",
        )
    return doc


def _save_ids(path: str, ids: np.ndarray) -> None:
    with open(os.path.join(path, _IDS_FILE), "w", encoding="utf-8") as fh:
        json.dump(ids.tolist(), fh)


def _load_ids(path: str, num_items: int) -> np.ndarray:
    file = os.path.join(path, _IDS_FILE)
    try:
        with open(file, encoding="utf-8") as fh:
            values = json.load(fh)
    except FileNotFoundError:
        raise AnnIndexError(f"{file} is missing.", hint="The index is incomplete; rebuild it.") from None
    except json.JSONDecodeError as exc:
        raise AnnIndexError(f"{file} is not valid JSON at byte offset {exc.pos}: {exc.msg}.") from None
    if not isinstance(values, list) or len(values) != num_items:
        raise AnnIndexError(
            f"{file} holds {len(values) if isinstance(values, list) else type(values).__name__} ids but the "
            f"manifest says num_items = {num_items}.",
            hint="The index is damaged; rebuild it.",
        )
    return _as_ids(values, num_items)


# --------------------------------------------------------------------------- brute force


class _Catalogue:
    """The id side both indexes share: raw ids in catalogue order and their positions."""

    ids: np.ndarray
    _positions: dict[str, int] | None

    @property
    def num_items(self) -> int:
        return len(self.ids)

    def positions(self) -> dict[str, int]:
        """Item id → catalogue position (built on first use)."""
        if self._positions is None:
            self._positions = {x: i for i, x in enumerate(self.ids.tolist())}
        return self._positions


class BruteForceIndex(_Catalogue):
    """Exact inner-product search.

    Args:
        embeddings: [N, D] item vectors.
        ids: [N] raw item ids, one per row.
        info: JSON-able facts kept in the manifest (where the vectors came from, why
            this kind was chosen).
    """

    kind: Literal["brute_force"] = "brute_force"

    def __init__(self, embeddings: np.ndarray, ids: Sequence[str] | np.ndarray, info: Mapping[str, Any] | None = None):
        self.embeddings = _as_embeddings(embeddings)
        self.ids = _as_ids(ids, self.embeddings.shape[0])
        self.dim = int(self.embeddings.shape[1])
        self.info: dict[str, Any] = dict(info or {})
        self._positions: dict[str, int] | None = None

    def search(
        self, queries: np.ndarray, k: int, exclude: Sequence[Sequence[str]] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        q = _as_queries(queries, self.dim)
        k = _check_k(k)
        excluded = _excluded_positions(self.positions(), exclude, len(q)) if exclude is not None else None
        positions, scores = exact_top_k(q, self.embeddings, k, excluded)
        return _positions_to_ids(self.ids, positions), scores

    def save(self, path: str) -> None:
        _prepare_dir(path)
        np.save(os.path.join(path, _EMBEDDINGS_FILE), self.embeddings)
        _save_ids(path, self.ids)
        _write_manifest(
            path, {"kind": self.kind, "dim": self.dim, "num_items": self.num_items, "params": {}, "info": self.info}
        )

    @classmethod
    def load(cls, path: str, manifest: Mapping[str, Any] | None = None) -> BruteForceIndex:
        doc = dict(manifest or read_manifest(path))
        file = os.path.join(path, _EMBEDDINGS_FILE)
        try:
            emb = np.load(file, allow_pickle=False)
        except FileNotFoundError:
            raise AnnIndexError(f"{file} is missing.", hint="The index is incomplete; rebuild it.") from None
        if emb.shape != (doc["num_items"], doc["dim"]):
            raise AnnIndexError(
                f"{file} has shape {emb.shape} but the manifest says ({doc['num_items']}, {doc['dim']}).",
                hint="The index is damaged; rebuild it.",
            )
        return cls(emb, _load_ids(path, int(doc["num_items"])), info=doc.get("info"))

    def __repr__(self) -> str:
        return f"BruteForceIndex(num_items={self.num_items}, dim={self.dim})"


# --------------------------------------------------------------------------- ScaNN


@dataclass(frozen=True)
class ScannParams:
    """ScaNN settings (a k-means tree, anisotropic hashing, exact reordering).

    Attributes:
        num_leaves: tree leaves; 0 = about sqrt(N).
        leaves_to_search: leaves scanned per query; 0 = a tenth of the leaves. Can be
            overridden per search.
        reorder: candidates rescored exactly (ScaNN's ``pre_reorder_num_neighbors``);
            0 = 250. Can be overridden per search; always at least the number fetched.
        dims_per_block: anisotropic-hashing dimensions per 4-bit code.
        anisotropic_threshold: ScaNN's ``anisotropic_quantization_threshold``
            (0.2 is the value ScaNN recommends for normalised vectors).
        training_sample_size: points used to train the tree and the codebooks;
            capped at N.
        training_threads: threads for building; 0 = all cores.
    """

    num_leaves: int = 0
    leaves_to_search: int = 0
    reorder: int = 0
    dims_per_block: int = 2
    anisotropic_threshold: float = 0.2
    training_sample_size: int = 250_000
    training_threads: int = 0

    def resolved(self, num_items: int) -> ScannParams:
        """The settings with the automatic values filled in for ``num_items``, checked."""
        leaves = self.num_leaves or max(1, round(num_items**0.5))
        searched = self.leaves_to_search or max(1, round(leaves / 10))
        out = replace(
            self,
            num_leaves=leaves,
            leaves_to_search=searched,
            reorder=self.reorder or 250,
            training_sample_size=min(self.training_sample_size, num_items),
        )
        checks = [
            ("num_leaves", 1 <= out.num_leaves <= num_items, f"between 1 and the number of items ({num_items})"),
            ("leaves_to_search", 1 <= out.leaves_to_search <= out.num_leaves, f"between 1 and num_leaves ({leaves})"),
            ("reorder", out.reorder >= 1, "a positive number of candidates"),
            ("dims_per_block", out.dims_per_block >= 1, "a positive integer (2 is usual)"),
            ("training_sample_size", out.training_sample_size >= out.num_leaves, f"at least num_leaves ({leaves})"),
            ("training_threads", out.training_threads >= 0, "0 (all cores) or more"),
        ]
        for name, ok, allowed in checks:
            if not ok:
                raise AnnIndexError(f"ScaNN {name} = {getattr(out, name)!r} is not allowed; expected {allowed}.")
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _scann() -> Any:
    """The ScaNN pybind module, with an install hint when it is missing."""
    try:
        from scann.scann_ops.py import scann_ops_pybind
    except ImportError as exc:
        raise AnnIndexError(
            f"ScaNN cannot be imported ({exc}).",
            hint="Install it with `pip install scann==1.4.2` (Linux x86 with AVX+FMA, or ARM), "
            "or use kind='brute_force'.",
        ) from exc
    return scann_ops_pybind


class ScannIndex(_Catalogue):
    """ScaNN (pybind) over the item embeddings. Build with :meth:`build` or :func:`build_index`.

    Args:
        searcher: a ``scann_ops_pybind.ScannSearcher``.
        ids: [N] raw item ids in the order of the vectors the searcher was built on.
        dim: embedding size.
        params: the resolved settings it was built with.
        info: JSON-able facts kept in the manifest (tuning, source model).
    """

    kind: Literal["scann"] = "scann"

    def __init__(
        self,
        searcher: Any,
        ids: Sequence[str] | np.ndarray,
        dim: int,
        params: ScannParams,
        info: Mapping[str, Any] | None = None,
    ) -> None:
        self.searcher = searcher
        self.ids = _as_ids(ids, len(ids))
        self.dim = int(dim)
        self.params = params
        self.info: dict[str, Any] = dict(info or {})
        #: Threads of a search that does not say; > 1 searches batches in parallel.
        self.threads = 1
        self._positions: dict[str, int] | None = None

    @classmethod
    def build(
        cls,
        embeddings: np.ndarray,
        ids: Sequence[str] | np.ndarray,
        params: ScannParams | None = None,
        info: Mapping[str, Any] | None = None,
    ) -> ScannIndex:
        """Train and build a searcher over ``embeddings`` [N, D] (inner product)."""
        emb = _as_embeddings(embeddings)
        item_ids = _as_ids(ids, emb.shape[0])
        p = (params or ScannParams()).resolved(emb.shape[0])
        t0 = time.perf_counter()
        try:
            builder = (
                _scann()
                .builder(emb, 10, "dot_product")
                .tree(
                    num_leaves=p.num_leaves,
                    num_leaves_to_search=p.leaves_to_search,
                    training_sample_size=p.training_sample_size,
                )
                .score_ah(p.dims_per_block, anisotropic_quantization_threshold=p.anisotropic_threshold)
                .reorder(p.reorder)
            )
            if p.training_threads:
                builder = builder.set_n_training_threads(p.training_threads)
            searcher = builder.build()
        except AnnIndexError:
            raise
        except Exception as exc:  # ScaNN raises plain RuntimeError/ValueError from C++
            raise AnnIndexError(
                f"ScaNN could not build an index over {emb.shape[0]} items of dimension {emb.shape[1]} with {p}: {exc}",
                hint="Lower num_leaves (or use kind='brute_force' for small catalogues).",
            ) from exc
        built = {"build_seconds": round(time.perf_counter() - t0, 3), **dict(info or {})}
        return cls(searcher, item_ids, emb.shape[1], p, built)

    def search(
        self,
        queries: np.ndarray,
        k: int,
        exclude: Sequence[Sequence[str]] | None = None,
        *,
        leaves_to_search: int | None = None,
        reorder: int | None = None,
        threads: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """See :meth:`AnnIndex.search`.

        Args:
            leaves_to_search, reorder: override the built settings for this call
                (tuning uses this; one tree serves many settings).
            threads: > 1 searches the batch on that many threads; default :attr:`threads`.
        """
        q = _as_queries(queries, self.dim)
        k = _check_k(k)
        excluded = _excluded_positions(self.positions(), exclude, len(q)) if exclude is not None else None
        positions, scores = self.search_positions(q, k, excluded, leaves_to_search, reorder, threads or self.threads)
        return _positions_to_ids(self.ids, positions), scores

    def search_positions(
        self,
        queries: np.ndarray,
        k: int,
        excluded: Sequence[np.ndarray] | None = None,
        leaves_to_search: int | None = None,
        reorder: int | None = None,
        threads: int = 1,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Like :func:`exact_top_k` (positions, -1 padded), for checked float32 queries."""
        n = self.num_items
        lts = leaves_to_search or self.params.leaves_to_search
        base_reorder = reorder or self.params.reorder
        counts = np.array([len(e) for e in excluded]) if excluded is not None else np.zeros(len(queries), int)
        positions = np.full((len(queries), k), -1, dtype=np.int64)
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        order = np.argsort(counts, kind="stable")
        for start in range(0, len(order), _QUERY_CHUNK):
            rows = order[start : start + _QUERY_CHUNK]
            fetch = int(min(n, k + counts[rows].max()))
            pre = max(base_reorder, fetch)
            if threads > 1:
                self.searcher.set_num_threads(threads)
                idx, dist = self.searcher.search_batched_parallel(
                    queries[rows], final_num_neighbors=fetch, pre_reorder_num_neighbors=pre, leaves_to_search=lts
                )
            else:
                idx, dist = self.searcher.search_batched(
                    queries[rows], final_num_neighbors=fetch, pre_reorder_num_neighbors=pre, leaves_to_search=lts
                )
            idx = np.asarray(idx, dtype=np.int64)
            dist = np.asarray(dist, dtype=np.float32)
            # ScaNN pads rows it could not fill with index 0 and a NaN distance.
            valid = np.isfinite(dist)
            if excluded is not None and counts[rows].max() > 0:
                keys = np.concatenate([excluded[r] + i * n for i, r in enumerate(rows)])
                valid &= ~np.isin(idx + np.arange(len(rows))[:, None] * n, keys)
            pick = np.argsort(~valid, axis=1, kind="stable")[:, :k]
            got_valid = np.take_along_axis(valid, pick, axis=1)
            width = pick.shape[1]
            positions[rows, :width] = np.where(got_valid, np.take_along_axis(idx, pick, axis=1), -1)
            scores[rows, :width] = np.where(got_valid, np.take_along_axis(dist, pick, axis=1), -np.inf)
        return positions, scores

    def save(self, path: str) -> None:
        _prepare_dir(path)
        scann_dir = os.path.join(path, _SCANN_DIR)
        os.makedirs(scann_dir)
        # Relative asset paths keep the directory movable (copy, rename, download).
        self.searcher.serialize(scann_dir, relative_path=True)
        _save_ids(path, self.ids)
        _write_manifest(
            path,
            {
                "kind": self.kind,
                "dim": self.dim,
                "num_items": self.num_items,
                "params": self.params.to_dict(),
                "scann_version": _dist_version("scann"),
                "info": self.info,
            },
        )

    @classmethod
    def load(cls, path: str, manifest: Mapping[str, Any] | None = None) -> ScannIndex:
        doc = dict(manifest or read_manifest(path))
        scann_dir = os.path.join(path, _SCANN_DIR)
        if not os.path.isdir(scann_dir):
            raise AnnIndexError(f"{scann_dir} is missing.", hint="The index is incomplete; rebuild it.")
        try:
            searcher = _scann().load_searcher(scann_dir)
        except AnnIndexError:
            raise
        except Exception as exc:
            raise AnnIndexError(
                f"ScaNN cannot load the searcher in {scann_dir}: {exc}",
                hint=f"It was written by scann {doc.get('scann_version')}; rebuild the index with "
                f"this one ({_dist_version('scann')}).",
            ) from exc
        names = {f.name for f in fields(ScannParams)}
        params = ScannParams(**{k: v for k, v in dict(doc.get("params") or {}).items() if k in names})
        return cls(searcher, _load_ids(path, int(doc["num_items"])), int(doc["dim"]), params, doc.get("info"))

    def __repr__(self) -> str:
        return f"ScannIndex(num_items={self.num_items}, dim={self.dim}, params={self.params})"


def _dist_version(dist: str) -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


# --------------------------------------------------------------------------- entry points


def build_index(
    embeddings: np.ndarray,
    ids: Sequence[str] | np.ndarray,
    kind: Literal["scann", "brute_force"] = "scann",
    **params: Any,
) -> AnnIndex:
    """Build an index over item ``embeddings`` [N, D] with raw ``ids`` [N].

    Args:
        embeddings: item vectors; scores are inner products with query vectors.
        ids: one non-empty, unique string id per row.
        kind: ``scann`` (approximate, the default) or ``brute_force`` (exact).
        **params: for ``scann``, the fields of :class:`ScannParams` plus ``min_items``
            (default :data:`DEFAULT_SCANN_MIN_ITEMS`): a smaller catalogue gets the
            exact index, and its manifest says so. ``info``, a dict, is stored in the
            manifest for either kind.

    Raises:
        AnnIndexError: a bad kind, parameter, id or embedding.

    Example:
        >>> import numpy as np
        >>> index = build_index(np.eye(3, dtype=np.float32), ["a", "b", "c"], kind="brute_force")
        >>> index.search(np.array([[0, 1, 0]], dtype=np.float32), k=2, exclude=[["b"]])[0].tolist()
        [['a', 'c']]
    """
    info = dict(params.pop("info", None) or {})
    if kind == "brute_force":
        if params:
            raise AnnIndexError(
                f"kind='brute_force' takes no parameters (got {', '.join(sorted(params))}).",
                hint="Drop them, or use kind='scann'.",
            )
        return BruteForceIndex(embeddings, ids, info=info)
    if kind != "scann":
        raise AnnIndexError(f"Index kind {kind!r} is not known; expected one of {', '.join(INDEX_KINDS)}.")
    min_items = int(params.pop("min_items", DEFAULT_SCANN_MIN_ITEMS))
    allowed = {f.name for f in fields(ScannParams)}
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise AnnIndexError(
            f"Unknown ScaNN parameter {unknown[0]!r}; allowed: {', '.join(sorted(allowed | {'min_items', 'info'}))}."
        )
    n = len(embeddings)
    if n < min_items:
        reason = (
            f"the catalogue has {n} items, fewer than min_items = {min_items}: a ScaNN tree over so few "
            "items would be degenerate, so the exact brute-force index is used"
        )
        return BruteForceIndex(embeddings, ids, info={**info, "requested_kind": "scann", "fallback_reason": reason})
    return ScannIndex.build(embeddings, ids, ScannParams(**params), info=info)


def load_index(path: str) -> AnnIndex:
    """Read an index written by ``save``; ``manifest.json`` says which kind it is.

    Raises:
        AnnIndexError: nothing, or a damaged index, at ``path``.
    """
    doc = read_manifest(path)
    if doc["kind"] == "brute_force":
        return BruteForceIndex.load(path, doc)
    return ScannIndex.load(path, doc)
