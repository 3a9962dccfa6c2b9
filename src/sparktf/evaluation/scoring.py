"""The one way an exported model is scored over the catalogue, for evaluation and the gate.

:func:`export_score_fn` turns a loaded export (:class:`sparktf.models.export.ExportedModel`:
``item_ids``, ``item_embeddings`` and a call that gives ``query_embedding``) into a
``score_fn`` for :func:`~sparktf.evaluation.evalset.evaluate_scores`: the query
embedding dotted with every item embedding, columns in the evaluation's catalogue
order. The evaluate stage's quality table and the validation gate both use it, so
the numbers a user reads are the numbers the gate decides on.

Items the model does not know score ``-inf`` (with a warning) instead of failing: a
champion trained before the catalogue grew must still be comparable with the
candidate on today's queries; it cannot recommend the new items, and is measured
that way.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import numpy as np

__all__ = ["export_score_fn"]

log = logging.getLogger(__name__)


def export_score_fn(exported: Any, catalogue: Iterable[Any]) -> Any:
    """A ``score_fn``: ``[rows, len(catalogue)]`` scores of every catalogue item per query row.

    Args:
        exported: a loaded export (``item_ids``, ``item_embeddings``, called as
            ``exported(user_ids, histories)["query_embedding"]``).
        catalogue: the evaluation's item ids, in column order.
    """
    position = {str(i): n for n, i in enumerate(exported.item_ids.tolist())}
    columns = np.asarray([position.get(str(i), -1) for i in catalogue], dtype=np.int64)
    known = columns >= 0
    items = exported.item_embeddings[np.where(known, columns, 0)]
    if not known.all():
        log.warning(
            "%s does not know %d of %d catalogue items; they score -inf",
            getattr(exported, "path", "the model"),
            int((~known).sum()),
            len(known),
        )

    def score(frame: Any) -> Any:
        users = frame["user_id"].astype(str).tolist() if "user_id" in frame else [""] * len(frame)
        histories = [list(h) if h is not None else [] for h in frame["history"]]
        scores = exported(users, histories)["query_embedding"] @ items.T
        scores[:, ~known] = -np.inf
        return scores

    return score
