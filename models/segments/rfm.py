"""RFM scores from streaming quintiles, and the standard named RFM groups.

Quintile edges come from fixed, deterministic histograms over ``log1p(value)`` (512 bins up to a
cap per feature): additive, order-independent, mergeable and cheap to update in batches.

>>> import numpy as np
>>> s = RFMScorer()
>>> rng = np.random.default_rng(0)
>>> s.update(rng.uniform(0, 365, 1000), rng.poisson(3, 1000), rng.gamma(2, 50, 1000))
>>> s.score(2.0, 30, 5000.0).group
'Champions'
>>> s.score(360.0, 0, 0.0).group
'Lost'
"""

from __future__ import annotations

import math
from bisect import bisect_left

import numpy as np

from models.contracts import RFMScore

__all__ = ["RFMScore", "RFMScorer", "rfm_group"]

_BINS = 512
_CAPS = (730.0, 1e5, 1e8)  # recency days, purchases, spend
_GROUPS: tuple[tuple[str, set[int], set[int]], ...] = (
    # (group, R values, FM values): the common RFM segment map on R and the FM average.
    ("Champions", {5}, {4, 5}),
    ("Loyal", {3, 4}, {4, 5}),
    ("Potential Loyalist", {4, 5}, {2, 3}),
    ("New Customers", {5}, {1}),
    ("Promising", {4}, {1}),
    ("Need Attention", {3}, {3}),
    ("About To Sleep", {3}, {1, 2}),
    ("Can't Lose Them", {1, 2}, {5}),
    ("At Risk", {1, 2}, {3, 4}),
    ("Lost", {1}, {1}),
    ("Hibernating", {1, 2}, {1, 2}),
)


def rfm_group(r: int, f: int, m: int) -> str:
    fm = (f + m + 1) // 2
    for name, rs, fms in _GROUPS:
        if r in rs and fm in fms:
            return name
    return "Hibernating"


class RFMScorer:
    """Streaming quintiles of recency (days since purchase), frequency (purchases), monetary (spend)."""

    def __init__(self) -> None:
        self.counts = np.zeros((3, _BINS))
        self._hi = np.log1p(np.array(_CAPS))

    def _bin(self, values: np.ndarray, f: int) -> np.ndarray:
        v = np.log1p(np.clip(np.nan_to_num(np.asarray(values, dtype=np.float64)), 0.0, _CAPS[f]))
        return np.minimum((v / self._hi[f] * _BINS).astype(np.int64), _BINS - 1)

    def update(self, R: np.ndarray | float, F: np.ndarray | float, M: np.ndarray | float) -> None:
        for f, vals in enumerate((R, F, M)):
            self.counts[f] += np.bincount(self._bin(np.atleast_1d(vals), f), minlength=_BINS)
        self._edge_bins: list[list[int]] | None = None  # recomputed on the next score

    def _cached_edge_bins(self) -> list[list[int]] | None:
        """Quintile edges as bin indices (ascending), computed once per update: scoring is per
        change, and ``bisect`` on four ints is far cheaper than numpy on them."""
        cached = getattr(self, "_edge_bins", None)
        if cached is None:
            e = self.edges()
            if np.isnan(e).any():
                return None
            cached = [self._bin(e[f] * (1 - 1e-12), f).tolist() for f in range(3)]
            self._edge_bins = cached
        return cached

    def edges(self) -> np.ndarray:
        """(3, 4) quintile edges in raw units (upper bin edges), nan before any update."""
        out = np.full((3, 4), np.nan)
        for f in range(3):
            total = self.counts[f].sum()
            if total == 0:
                continue
            cdf = np.cumsum(self.counts[f]) / total
            idx = np.searchsorted(cdf, np.array([0.2, 0.4, 0.6, 0.8]), side="left")
            out[f] = np.expm1((idx + 1) / _BINS * self._hi[f])
        return out

    def score(self, R: float, F: float, M: float) -> RFMScore:
        edge_bins = self._cached_edge_bins()
        if edge_bins is None:
            return RFMScore(r=3, f=3, m=3, group=rfm_group(3, 3, 3))
        bins = [self._bin_one(v, f) for f, v in enumerate((R, F, M))]
        # Compare on bin indices, so a value scores by the quintile its histogram bin falls in:
        # bisect_left counts the edges strictly below the bin.
        r = 5 - bisect_left(edge_bins[0], bins[0])
        f = 1 + bisect_left(edge_bins[1], bins[1])
        m = 1 + bisect_left(edge_bins[2], bins[2])
        return RFMScore(r=r, f=f, m=m, group=rfm_group(r, f, m))

    def _bin_one(self, value: float, f: int) -> int:
        v = 0.0 if not math.isfinite(value) else min(max(float(value), 0.0), _CAPS[f])
        return min(int(math.log1p(v) / self._hi[f] * _BINS), _BINS - 1)
