"""Feature vectors: a customer's state evaluated as of an event time, many at once.

The columns are the feature table's (:mod:`models.features.table`), each computed here by name.

>>> from models.features.state import CustomerState, Fact, FeatureParams, apply_event
>>> p = FeatureParams()
>>> s = CustomerState.new()
>>> apply_event(s, p, Fact(ts=1_767_225_600, kind="purchase", channel="web", amount=40.0,
...                        promo=False, event_hash=1))
True
>>> v = evaluate(s, p, at_ts=1_767_225_600 + 10 * 86400)
>>> float(v[FEATURE_INDEX["recency_purchase_days"]]), float(v[FEATURE_INDEX["purchases"]])
(10.0, 1.0)
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np

from models.features.state import (
    _COUNTERS,
    _D,
    _GROUP,
    CHANNEL_GROUPS,
    DAY,
    DAY_SLOTS,
    DECAYED,
    KIND_GROUPS,
    NEVER_PURCHASED_DAYS,
    CustomerState,
    FeatureParams,
)
from models.features.table import FEATURE_INDEX, FEATURE_NAMES

_SNAP_FIELDS: Final = (*_COUNTERS, "spend", "refunded")
# A snapshot: the counters and sums the batch path captures (BASE_SNAPSHOT_WIDTH), then the
# rhythm as of the row (RHYTHM_WIDTH: first purchase, purchase days, active days, and the newest
# purchase days and active days, each DAY_SLOTS slots ascending with empty slots first).
BASE_SNAPSHOT_WIDTH: Final = len(_SNAP_FIELDS) + len(DECAYED)
RHYTHM_WIDTH: Final = 3 + 2 * DAY_SLOTS
SNAPSHOT_WIDTH: Final = BASE_SNAPSHOT_WIDTH + RHYTHM_WIDTH
# The gap a customer is given before it has one (fewer than two distinct days): "no rhythm yet".
NO_RHYTHM_DAYS: Final = 365.0


def snapshot(state: CustomerState) -> list[float]:
    """The numbers :func:`evaluate_many` needs, copied: rows of a batch are evaluated together."""
    return [
        state.first_ts,
        state.last_ts,
        state.last_purchase_ts,
        state.ref_ts,
        state.events,
        state.purchases,
        state.refunds,
        state.promo_purchases,
        state.carts,
        state.spend,
        state.refunded,
        *state.decayed,
        *rhythm_columns(state),
    ]


def rhythm_columns(state: CustomerState) -> list[int]:
    """The rhythm part of a snapshot (see RHYTHM_WIDTH)."""
    zeros = [0] * DAY_SLOTS
    p, a = state.purchase_day_list, state.active_day_list
    return [
        state.first_purchase_ts,
        state.purchase_days,
        state.active_days,
        *(zeros[len(p) :] + p),
        *(zeros[len(a) :] + a),
    ]


def day_gaps(days: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median gap (days) between a customer's newest distinct days, and their spread (standard
    deviation over mean; 0 with fewer than two gaps), per row of ``days`` (DAY_SLOTS columns,
    ascending, 0 = empty). No gap: NO_RHYTHM_DAYS and 0.

    >>> g, cv = day_gaps(np.array([[0, 0, 0, 0, 0, 10, 17, 24], [0] * 7 + [5]]))
    >>> g.tolist(), cv.tolist()
    ([7.0, 365.0], [0.0, 0.0])
    """
    valid = (days[:, 1:] > 0) & (days[:, :-1] > 0)
    raw_gaps = (days[:, 1:] - days[:, :-1]).astype(np.float64)
    count = valid.sum(axis=1)
    # Sorting with the empty slots last and indexing the middle: numpy's nanmedian takes a slow
    # path on short rows (10x the rest of a single customer's evaluation).
    ordered = np.sort(np.where(valid, raw_gaps, np.inf), axis=1)
    rows = np.arange(len(days))
    lo, hi = np.maximum((count - 1) // 2, 0), np.maximum(count // 2 - (count == 0), 0)
    with np.errstate(all="ignore"):
        median = np.where(count > 0, (ordered[rows, lo] + ordered[rows, hi]) / 2, NO_RHYTHM_DAYS)
        gaps = np.where(valid, raw_gaps, 0.0)
        n = np.maximum(count, 1)
        mean = gaps.sum(axis=1) / n
        std = np.sqrt((np.where(valid, raw_gaps - mean[:, None], 0.0) ** 2).sum(axis=1) / n)
    spread = np.where(count > 1, std / np.where(mean > 0, mean, 1.0), 0.0)
    return median, spread


def evaluate(state: CustomerState, params: FeatureParams, at_ts: float) -> np.ndarray:
    """The feature vector (FEATURE_NAMES order, original units) as of event time ``at_ts``."""
    return evaluate_many(np.array([snapshot(state)]), params, np.array([float(at_ts)]))[0]


def evaluate_many(snaps: np.ndarray, params: FeatureParams, at_ts: np.ndarray) -> np.ndarray:
    """Feature vectors of many snapshots at once, each as of its own event time (vectorised)."""
    n = len(snaps)
    first, last, last_purchase, ref, events, purchases, refunds, promo, carts, spend, refunded = (
        snaps[:, i] for i in range(len(_SNAP_FIELDS))
    )
    dec = snaps[:, len(_SNAP_FIELDS) : BASE_SNAPSHOT_WIDTH]
    rhythm = snaps[:, BASE_SNAPSHOT_WIDTH:]
    first_purchase = np.where(rhythm[:, 0] > 0, rhythm[:, 0], first)
    purchase_days = rhythm[:, 1]
    purchase_gap, purchase_spread = day_gaps(rhythm[:, 3 : 3 + DAY_SLOTS])
    visit_gap, _ = day_gaps(rhythm[:, 3 + DAY_SLOTS :])
    at = np.maximum(at_ts, ref)
    halves = np.array(params.group_half_lives)[list(_GROUP)]
    d = dec * np.exp2(-(at - ref)[:, None] / halves[None, :])
    # Spend and purchase counts as of the last purchase: silence lowers neither (the stage reads
    # silence), so a quiet customer keeps the segment its buying describes.
    money_at = np.where(purchases > 0, np.minimum(last_purchase, at), at)
    money = dec[:, :2] * np.exp2(-(money_at - ref)[:, None] / halves[None, :2])
    seen = events > 0
    bought = purchases > 0
    safe_p = np.where(bought, purchases, 1.0)
    net = np.maximum(spend - refunded, 0.0)
    ch = d[:, _D["ch_web"] : _D["ch_other"] + 1]
    ch_total = ch.sum(axis=1, keepdims=True)
    shares = np.divide(ch, ch_total, out=np.zeros_like(ch), where=ch_total > 0)
    # Activity rates per day from the decayed counts, corrected for tenure: a customer younger
    # than the long half-life has not filled its window yet, and must not look "rising".
    tenure = np.where(seen, np.maximum((at - first) / DAY, 1.0), 1.0)
    rate_short = d[:, _D["act_short"]] / _window(params.short_half_life_days, tenure)
    rate_long = d[:, _D["act_long"]] / _window(params.long_half_life_days, tenure)
    trend = np.where(
        rate_long > 1e-12, np.minimum(rate_short / np.where(rate_long > 1e-12, rate_long, 1.0), 5.0), 0.0
    )
    channel_share = {f"share_{c}": shares[:, j] for j, c in enumerate(CHANNEL_GROUPS)}
    kinds = d[:, _D["kind_browse"] : _D["kind_support"] + 1]
    kind_decayed = {f"{k}_decayed": kinds[:, j] for j, k in enumerate(KIND_GROUPS)}
    kinds_total = kinds.sum(axis=1, keepdims=True)
    mix = np.divide(kinds, kinds_total, out=np.zeros_like(kinds), where=kinds_total > 0)
    interaction_mix = {f"mix_{k}": mix[:, j] for j, k in enumerate(KIND_GROUPS)}
    # Purchase days per 30 days from the first purchase to the last (at least 30 days: a new
    # customer's one purchase is not a daily habit); silence does not lower it, as above.
    bought_until = np.minimum(np.maximum(last_purchase, first_purchase), at)
    buying_days = np.maximum((bought_until - first_purchase) / DAY, 30.0)
    purchase_rate = np.where(bought, purchase_days / buying_days * 30.0, 0.0)
    columns: dict[str, np.ndarray] = {
        "recency_purchase_days": np.where(
            bought, np.minimum((at - last_purchase) / DAY, NEVER_PURCHASED_DAYS), NEVER_PURCHASED_DAYS
        ),
        "recency_days": np.where(seen, (at - last) / DAY, NEVER_PURCHASED_DAYS),
        "tenure_days": np.where(seen, (at - first) / DAY, 0.0),
        "purchases": purchases,
        "spend": net,
        "purchases_decayed": money[:, _D["purchases_d"]],
        "spend_decayed": np.maximum(money[:, _D["spend_d"]], 0.0),
        "aov": np.where(bought, net / safe_p, 0.0),
        **channel_share,
        **kind_decayed,
        "promo_share": np.where(bought, promo / safe_p, 0.0),
        "refund_rate": np.where(bought, np.minimum(refunds / safe_p, 1.0), np.where(refunds > 0, 1.0, 0.0)),
        "cart_abandonment": np.where(
            carts > 0, np.maximum(carts - purchases, 0.0) / np.where(carts > 0, carts, 1.0), 0.0
        ),
        "engagement_trend": trend,
        "purchase_gap_days": np.where(purchase_days >= 2, purchase_gap, NO_RHYTHM_DAYS),
        "purchase_regularity": purchase_spread,
        "visit_gap_days": visit_gap,
        "purchase_rate": purchase_rate,
        "purchase_days": np.where(bought, np.maximum(purchase_days, 1.0), 0.0),
        "purchase_span_days": np.where(bought, np.maximum(last_purchase - first_purchase, 0.0) / DAY, 0.0),
        "buyer_age_days": np.where(bought, np.maximum(at - first_purchase, 0.0) / DAY, 0.0),
        **interaction_mix,
    }
    out = np.empty((n, len(FEATURE_NAMES)))
    for name, j in FEATURE_INDEX.items():  # the table's order; a feature without a column fails here
        out[:, j] = columns[name]
    return out


def _window(half_life_days: float, tenure_days: np.ndarray) -> np.ndarray:
    """Decayed count a rate of one event per day accumulates over ``tenure_days``."""
    tau = half_life_days / math.log(2)
    return tau * (1.0 - np.exp(-tenure_days / tau))
