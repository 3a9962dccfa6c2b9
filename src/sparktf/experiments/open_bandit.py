"""The off-policy estimators on real logs: the Open Bandit Dataset sample inside the obp wheel.

The Open Bandit Dataset (OBD, Saito et al. 2020) is ZOZOTOWN's fashion-recommendation log of
two policies run side by side on the same traffic: ``random`` (each of the 80 items equally
likely at each of the 3 positions, propensity 1/80) and ``bts`` (Bernoulli Thompson Sampling).
Because both ran at the same time, the BTS log's own click rate is an on-policy measurement of
the very policy one can evaluate off-policy from the random log: a real-data check of
:mod:`sparktf.experiments.ope`. The ``obp==0.4.1`` wheel on PyPI ships a 10,000-row sample
of each log (``obp/dataset/obd/{random,bts}/{all,men,women}``) and the prior of ZOZOTOWN's BTS
(``obp/policy/conf/prior_bts.yaml``); :func:`obp_wheel` fetches it with pip (checksum-pinned,
:func:`sparktf.data.wheels.pinned_wheel`) and everything is read straight from the zip.

:func:`evaluate_bts_on_random` is obp's README quickstart (BernoulliTS with the ZOZOTOWN
prior evaluated by IPW on ``random/all``; published: estimate / random CTR = 1.198126...)
done with our estimators, plus SNIPS and DR and the comparison with the BTS log's own CTR.

Why our own code (and not ``import obp``): obp 0.4.1 does not run with this stack. Its
dataset loader calls ``DataFrame.drop(col, 1)`` and ``np.int`` (TypeError on pandas 2,
AttributeError on numpy 2) and ``obp.ope`` imports torch, which we neither need nor want.
The wheel is only a carrier of data files here; it is never installed or imported. What
obp's code does with them is short and mirrored exactly below (obp 0.4.1's
``dataset/real.py``, ``policy/contextfree.py``):

* ``OpenBanditDataset`` reads ``{behavior_policy}/{campaign}/{campaign}.csv``, sorts it by
  ``timestamp``, and takes ``item_id`` as the action (0..79 for ``all``), ``click`` as the
  reward, ``propensity_score`` as the logging propensity and the dense rank of ``position``
  minus 1 as the position (positions 1..3, so position - 1).
* ``BernoulliTS(n_actions, len_list=3, is_zozotown_prior=True, campaign, random_state)``
  takes ``prior[campaign]["alpha"]`` / ``["beta"]`` as per-item Beta parameters (list index
  = item id). ``compute_batch_action_dist(n_sim)`` draws, ``n_sim`` times, one Beta sample
  per item from ``RandomState(random_state)``, ranks the items by it (``argsort()[::-1]``)
  and counts each item at each of the first ``len_list`` places; the frequencies are the
  (context-free) ``action_dist[item, position]``. :func:`bts_action_dist` draws the same
  numbers in one vectorised call per chunk (the legacy generator fills an array in C order,
  the same stream as obp's loop), so its ``action_dist`` is obp's bit for bit.
"""

from __future__ import annotations

import io
import math
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sparktf.data.wheels import pinned_wheel
from sparktf.errors import DataError
from sparktf.experiments.ope import ESTIMATORS, estimate, fit_pbm_reward
from sparktf.experiments.stats import RatioTotals, ratio_estimate

__all__ = [
    "BEHAVIOR_POLICIES",
    "CAMPAIGNS",
    "OBD_COLUMNS",
    "OBP_SHA256",
    "OBP_VERSION",
    "README_BTS_OVER_RANDOM",
    "BtsPrior",
    "bts_action_dist",
    "bts_prior",
    "evaluate_bts_on_random",
    "obp_wheel",
    "read_obd",
]

OBP_VERSION = "0.4.1"
OBP_SHA256 = "87dec9caf4283c25ab13036532e0a24566f1c7bdcad1653a8ded43b2f5ef8208"
BEHAVIOR_POLICIES: tuple[str, ...] = ("random", "bts")
CAMPAIGNS: tuple[str, ...] = ("all", "men", "women")
#: The columns of an OBD log this module uses (the files also hold user features and affinities).
OBD_COLUMNS: tuple[str, ...] = ("timestamp", "item_id", "position", "click", "propensity_score")
#: obp 0.4.1's README: BernoulliTS (ZOZOTOWN prior, campaign all, random_state 12345, n_sim 100,000)
#: estimated by IPW on random/all, over the random log's mean click.
README_BTS_OVER_RANDOM = 1.198126
_OBD_ROOT = "obp/dataset/obd"
_PRIOR_MEMBER = "obp/policy/conf/prior_bts.yaml"
_CHUNK = 10_000


def obp_wheel(cache: Path | None = None) -> Path:
    """The checksum-verified ``obp==0.4.1`` wheel in the cache, downloaded by pip if absent.

    Args:
        cache: the cache directory; :func:`sparktf.data.wheels.cache_dir` by default.

    Raises:
        DataError: pip cannot download it (the hint is the command to run with network
            access), or its SHA-256 is not the pinned one.
    """
    return pinned_wheel("obp", OBP_VERSION, OBP_SHA256, cache, contents="the Open Bandit Dataset sample")


def _member(z: zipfile.ZipFile, wheel: Path, member: str) -> bytes:
    try:
        return z.read(member)
    except KeyError:
        raise DataError(
            f"{wheel} has no {member}; is it the obp=={OBP_VERSION} wheel?",
            hint="Use obp_wheel() to fetch the pinned wheel.",
        ) from None


def read_obd(wheel: Path, behavior_policy: str, campaign: str = "all") -> pd.DataFrame:
    """One OBD log from the wheel, sorted by timestamp as obp's loader does.

    Args:
        wheel: the obp wheel (:func:`obp_wheel`).
        behavior_policy: ``random`` or ``bts``.
        campaign: ``all``, ``men`` or ``women``.

    Returns:
        Every column of the file (:data:`OBD_COLUMNS` and the features), one row per shown
        slot, with a fresh index; ``position`` stays 1-based as in the file.

    Raises:
        DataError: an unknown policy or campaign, a missing file or column, or positions
            that are not whole numbers from 1.
    """
    if behavior_policy not in BEHAVIOR_POLICIES:
        raise DataError(f"behavior_policy must be one of {list(BEHAVIOR_POLICIES)}; got {behavior_policy!r}.")
    if campaign not in CAMPAIGNS:
        raise DataError(f"campaign must be one of {list(CAMPAIGNS)}; got {campaign!r}.")
    member = f"{_OBD_ROOT}/{behavior_policy}/{campaign}/{campaign}.csv"
    with zipfile.ZipFile(wheel) as z:
        raw = _member(z, wheel, member)
    df = pd.read_csv(io.BytesIO(raw), index_col=0)
    missing = [c for c in OBD_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(
            f"{wheel}:{member} lacks the column(s) {missing} (it has {list(df.columns)[:8]}...).",
            hint=f"Use the obp=={OBP_VERSION} wheel (obp_wheel()).",
        )
    pos = df["position"].to_numpy()
    if not (np.issubdtype(pos.dtype, np.integer) and (pos >= 1).all()):
        raise DataError(f"{wheel}:{member}: position must be whole numbers from 1; got {sorted(set(pos))[:5]}.")
    return df.sort_values("timestamp", kind="stable").reset_index(drop=True)


@dataclass(frozen=True)
class BtsPrior:
    """ZOZOTOWN's Beta prior of one campaign: item ``i`` has ``Beta(alpha[i], beta[i])``."""

    campaign: str
    alpha: np.ndarray
    beta: np.ndarray


def bts_prior(wheel: Path, campaign: str = "all") -> BtsPrior:
    """The campaign's BTS prior from ``obp/policy/conf/prior_bts.yaml`` in the wheel.

    Raises:
        DataError: no such campaign, or alpha and beta of different lengths or not > 0.
    """
    import yaml  # mlflow's dependency; only this reader needs it

    with zipfile.ZipFile(wheel) as z:
        conf = yaml.safe_load(_member(z, wheel, _PRIOR_MEMBER))
    if not isinstance(conf, dict) or campaign not in conf:
        raise DataError(f"{wheel}:{_PRIOR_MEMBER} has no campaign {campaign!r}; it has {list(conf or {})}.")
    alpha = np.asarray(conf[campaign].get("alpha", []), dtype=np.float64)
    beta = np.asarray(conf[campaign].get("beta", []), dtype=np.float64)
    if alpha.ndim != 1 or alpha.shape != beta.shape or alpha.size == 0 or not ((alpha > 0).all() and (beta > 0).all()):
        raise DataError(
            f"{wheel}:{_PRIOR_MEMBER}: campaign {campaign!r} needs alpha and beta lists of one length, all > 0; "
            f"got {alpha.size} and {beta.size}."
        )
    return BtsPrior(campaign, alpha, beta)


def bts_action_dist(prior: BtsPrior, len_list: int = 3, n_sim: int = 100_000, seed: int = 12345) -> np.ndarray:
    """obp's ``BernoulliTS.compute_batch_action_dist`` (one round): P(item at position), by simulation.

    Each of ``n_sim`` draws samples ``theta_i ~ Beta(alpha_i, beta_i)`` for every item from
    ``numpy.random.RandomState(seed)`` and puts the ``len_list`` largest, in decreasing order,
    at positions 0..len_list-1. The draws are obp's own, so the result equals obp 0.4.1's.

    Returns:
        ``(n_items, len_list)`` frequencies; each column sums to 1.

    Raises:
        DataError: ``len_list`` not in 1..n_items, or ``n_sim`` < 1.
    """
    n = prior.alpha.size
    if not 1 <= len_list <= n or n_sim < 1:
        raise DataError(f"bts_action_dist needs 1 <= len_list <= {n} items and n_sim >= 1; got {len_list}, {n_sim}.")
    rng = np.random.RandomState(seed)
    counts = np.zeros((n, len_list), dtype=np.int64)
    done = 0
    while done < n_sim:
        m = min(_CHUNK, n_sim - done)
        theta = rng.beta(prior.alpha, prior.beta, size=(m, n))
        top = np.argsort(theta, axis=1)[:, ::-1][:, :len_list]
        for k in range(len_list):
            counts[:, k] += np.bincount(top[:, k], minlength=n)
        done += m
    return counts / n_sim


def _ctr(click: np.ndarray, alpha: float) -> dict[str, float]:
    """Mean click with its normal interval, each row its own unit."""
    e = ratio_estimate(RatioTotals.of(click, np.ones_like(click)), alpha)
    return {
        "rows": float(click.size),
        "clicks": float(click.sum()),
        "ctr": e.value,
        "se": e.se,
        "ci_low": e.ci_low,
        "ci_high": e.ci_high,
    }


def evaluate_bts_on_random(
    wheel: Path,
    clip: float = math.inf,
    alpha: float = 0.05,
    *,
    campaign: str = "all",
    n_sim: int = 100_000,
    seed: int = 12345,
) -> dict[str, Any]:
    """BernoulliTS's CTR estimated from the random log by IPS, SNIPS and DR, against the BTS log's.

    The target is obp's README policy (:func:`bts_action_dist` with the campaign's prior), the
    log ``random/<campaign>``; each row is its own unit (OBD has no user ids). DR's reward
    model is :func:`~sparktf.experiments.ope.fit_pbm_reward` fitted on the same random log.

    Args:
        wheel: the obp wheel.
        clip: weight clip of the estimators (inf: none; the random log's weights are at most 80).
        alpha: two-sided level of the intervals.
        campaign: the OBD campaign.
        n_sim, seed: of the Monte-Carlo action distribution (obp's README: 100,000, 12345).

    Returns:
        ``estimates`` (per estimator: value, se, ci_low, ci_high, ``relative_error`` =
        (value − BTS CTR) / BTS CTR, ``contains_bts_ctr``), ``random_log`` and ``bts_log``
        (rows, clicks, ctr and its interval), ``ips_over_random_ctr`` (the README's ratio) and
        ``readme_ratio``, ``diagnostics`` (of :func:`~sparktf.experiments.ope.estimate`),
        ``reward_model``, the settings, and ``seconds``.
    """
    t0 = time.perf_counter()
    log = read_obd(wheel, "random", campaign)
    bts_log = read_obd(wheel, "bts", campaign)
    prior = bts_prior(wheel, campaign)
    item = log["item_id"].to_numpy(dtype=np.int64)
    pos = log["position"].to_numpy(dtype=np.int64)  # 1-based, as ope.py's reward model expects
    click = log["click"].to_numpy(dtype=np.float64)
    n_items = int(item.max()) + 1  # obp's n_actions
    len_list = int(pos.max())
    if prior.alpha.size != n_items or item.min() < 0:
        raise DataError(
            f"The {campaign!r} prior has {prior.alpha.size} items but random/{campaign} has item ids "
            f"{item.min()}..{item.max()}."
        )
    dist = bts_action_dist(prior, len_list, n_sim, seed)
    target_prob = dist[item, pos - 1]

    frame = pd.DataFrame({"item": item.astype(str), "pos": pos, "click": click})
    by_pos = frame.groupby("pos")["click"].agg(["sum", "size"])
    position_counts = {int(k): (float(r["sum"]), float(r["size"])) for k, r in by_pos.iterrows()}
    item_position_counts: dict[str, dict[int, tuple[float, float]]] = {}
    for (a, k), r in frame.groupby(["item", "pos"])["click"].agg(["sum", "size"]).iterrows():
        item_position_counts.setdefault(str(a), {})[int(k)] = (float(r["sum"]), float(r["size"]))
    model = fit_pbm_reward(position_counts, item_position_counts)
    labels = [str(a) for a in range(n_items)]
    q_hat = np.stack([model.q(labels, np.full(n_items, k)) for k in range(1, len_list + 1)], axis=1)
    q_target = (dist * q_hat).sum(axis=0)[pos - 1]
    q_logged = model.q(list(frame["item"]), pos)

    est = estimate(
        log["propensity_score"].to_numpy(dtype=np.float64),
        click,
        target_prob,
        q_logged=q_logged,
        q_target=q_target,
        clip=clip,
        alpha=alpha,
        where=[f"random/{campaign} row {i} (timestamp {t})" for i, t in enumerate(log["timestamp"])],
    )
    random_ctr = _ctr(click, alpha)
    bts_ctr = _ctr(bts_log["click"].to_numpy(dtype=np.float64), alpha)
    truth = bts_ctr["ctr"]
    estimates: dict[str, dict[str, Any]] = {}
    for name in ESTIMATORS:
        e = est[name]
        estimates[name] = {
            **e.to_dict(),
            "relative_error": (e.value - truth) / truth if truth else math.nan,
            "contains_bts_ctr": bool(e.ci_low <= truth <= e.ci_high),
        }
    return {
        "campaign": campaign,
        "target": f"BernoulliTS (ZOZOTOWN prior, campaign {campaign}, n_sim {n_sim}, seed {seed})",
        "log": f"random/{campaign}",
        "clip": clip,
        "alpha": alpha,
        "estimates": estimates,
        "random_log": random_ctr,
        "bts_log": bts_ctr,
        "ips_over_random_ctr": est["ips"].value / random_ctr["ctr"] if random_ctr["ctr"] else math.nan,
        "readme_ratio": README_BTS_OVER_RANDOM,
        "diagnostics": est["diagnostics"],
        "reward_model": model.to_dict(),
        "seconds": time.perf_counter() - t0,
    }
