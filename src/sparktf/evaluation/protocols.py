"""The two evaluation protocols every quality table reports, each under its name.

* ``product``: what recommendations show. Each query ranks the full catalogue with the
  items the user interacted with before the target (train part and history) left out,
  the target itself kept — unless ``evaluation.exclude_seen`` is false, as for data
  where people buy again (groceries: configs/instacart.toml), where nothing is left out.
  The validation gate checks this protocol unless ``gate.protocol`` says otherwise.
* ``literature``: the protocol of the published full-ranking sequential results
  (RecBole, the SASRec/BERT4Rec replicability studies; see
  ``shared/reference/recsys-quality.md`` §2): leave-last-out, the full catalogue,
  nothing excluded, and the test item's history includes the validation item
  (the features' histories hold every earlier step, whatever its split).

The two share the queries, the metrics and the tie rule; only the exclusions differ,
so :func:`under` derives one from the other without reading the features again. On
MovieLens-100K the exclusion alone was worth +0.084 HR@10 to the GRU model (0.209
against 0.125), which is why a number without its protocol's name means nothing.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from sparktf.evaluation.evalset import EvalSet

__all__ = ["PROTOCOLS", "Protocol", "under"]

Protocol = Literal["product", "literature"]
#: Every protocol, in the order reports show them.
PROTOCOLS: tuple[Protocol, ...] = ("product", "literature")


def under(eval_set: EvalSet, protocol: str) -> EvalSet:
    """``eval_set`` (read with the product protocol's exclusions) under ``protocol``."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown evaluation protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    if eval_set.queries.protocol == protocol:
        return eval_set
    queries = dataclasses.replace(eval_set.queries, protocol=protocol)
    if protocol == "literature":
        queries = dataclasses.replace(queries, exclude=None)
    elif eval_set.queries.protocol == "literature":
        raise ValueError("a literature-protocol eval set has no exclusions to give the product protocol back")
    return dataclasses.replace(eval_set, queries=queries)
