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
    DECAYED,
    KIND_GROUPS,
    NEVER_PURCHASED_DAYS,
    CustomerState,
    FeatureParams,
)
from models.features.table import FEATURE_INDEX, FEATURE_NAMES

_SNAP_FIELDS: Final = (*_COUNTERS, "spend", "refunded")
SNAPSHOT_WIDTH: Final = len(_SNAP_FIELDS) + len(DECAYED)


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
    ]


def evaluate(state: CustomerState, params: FeatureParams, at_ts: float) -> np.ndarray:
    """The feature vector (FEATURE_NAMES order, original units) as of event time ``at_ts``."""
    return evaluate_many(np.array([snapshot(state)]), params, np.array([float(at_ts)]))[0]


def evaluate_many(snaps: np.ndarray, params: FeatureParams, at_ts: np.ndarray) -> np.ndarray:
    """Feature vectors of many snapshots at once, each as of its own event time (vectorised)."""
    n = len(snaps)
    first, last, last_purchase, ref, events, purchases, refunds, promo, carts, spend, refunded = (
        snaps[:, i] for i in range(len(_SNAP_FIELDS))
    )
    dec = snaps[:, len(_SNAP_FIELDS) :]
    at = np.maximum(at_ts, ref)
    halves = np.array(params.group_half_lives)[list(_GROUP)]
    d = dec * np.exp2(-(at - ref)[:, None] / halves[None, :])
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
    kind_decayed = {f"{k}_decayed": d[:, _D[f"kind_{k}"]] for k in KIND_GROUPS}
    columns: dict[str, np.ndarray] = {
        "recency_purchase_days": np.where(
            bought, np.minimum((at - last_purchase) / DAY, NEVER_PURCHASED_DAYS), NEVER_PURCHASED_DAYS
        ),
        "recency_days": np.where(seen, (at - last) / DAY, NEVER_PURCHASED_DAYS),
        "tenure_days": np.where(seen, (at - first) / DAY, 0.0),
        "purchases": purchases,
        "spend": net,
        "purchases_decayed": d[:, _D["purchases_d"]],
        "spend_decayed": np.maximum(d[:, _D["spend_d"]], 0.0),
        "aov": np.where(bought, net / safe_p, 0.0),
        **channel_share,
        **kind_decayed,
        "promo_share": np.where(bought, promo / safe_p, 0.0),
        "refund_rate": np.where(bought, np.minimum(refunds / safe_p, 1.0), np.where(refunds > 0, 1.0, 0.0)),
        "cart_abandonment": np.where(
            carts > 0, np.maximum(carts - purchases, 0.0) / np.where(carts > 0, carts, 1.0), 0.0
        ),
        "engagement_trend": trend,
    }
    out = np.empty((n, len(FEATURE_NAMES)))
    for name, j in FEATURE_INDEX.items():  # the table's order; a feature without a column fails here
        out[:, j] = columns[name]
    return out


def _window(half_life_days: float, tenure_days: np.ndarray) -> np.ndarray:
    """Decayed count a rate of one event per day accumulates over ``tenure_days``."""
    tau = half_life_days / math.log(2)
    return tau * (1.0 - np.exp(-tenure_days / tau))
