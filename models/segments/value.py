"""Churn risk and predicted value per customer, from the model version's Buy-Till-You-Die fit.

At each version the learner fits a BG/NBD (purchase rhythm and dropout) and a Gamma-Gamma
(spend per purchase) on its customer sample, every customer aged to the version's event time,
warm-started from the previous fit; between versions every customer's scores are closed forms
of its own feature row (:mod:`models.segments.btyd`). A customer's history is its distinct
purchase days (``x`` = days - 1 repeat purchases), the span from its first purchase to its
newest (``t_x``) and its age since the first purchase (``T``), in days.

>>> import numpy as np
>>> m = ValueModel(("purchase_days", "purchase_span_days", "buyer_age_days", "aov"))
>>> rng = np.random.default_rng(3)
>>> days = rng.integers(1, 12, 400).astype(float)
>>> span = np.where(days > 1, rng.uniform(30, 300, 400), 0.0)
>>> rows = np.column_stack([days, span, span + rng.uniform(0, 60, 400), rng.uniform(10, 90, 400)])
>>> m.fit(rows)
True
>>> v = m.score(np.array([[8.0, 200.0, 205.0, 40.0], [8.0, 200.0, 500.0, 40.0]]))
>>> bool(v[0].p_alive > v[1].p_alive and v[0].value_365d > v[1].value_365d)
True
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models.contracts import CustomerValue
from models.segments.btyd import BGNBD, GammaGamma, fit_bgnbd, fit_gamma_gamma

__all__ = ["MIN_BUYERS", "ValueModel"]

# Buyers a fit needs, and repeat buyers among them: fewer say nothing about a population.
MIN_BUYERS = 50
# Population parameters move slowly: refit at most once a week of event time (a fit and its
# aged sample cost ~25 ms, and a busy learner builds many versions per day of event time).
REFIT_SECONDS = 7 * 86400.0
_INPUTS = ("purchase_days", "purchase_span_days", "buyer_age_days", "aov")


class ValueModel:
    """The BTYD fits of the current version over feature rows named ``feature_names``."""

    def __init__(self, feature_names: Sequence[str]) -> None:
        index = {f: i for i, f in enumerate(feature_names)}
        self._cols = [index.get(f) for f in _INPUTS]
        self.bgnbd: BGNBD | None = None
        self.gamma_gamma: GammaGamma | None = None
        self.fitted_at = -np.inf  # event time of the last fit

    def due(self, t: float) -> bool:
        """Whether a version at event time ``t`` refits (the first fit, then once a week)."""
        return self.usable and t - self.fitted_at >= REFIT_SECONDS

    @property
    def usable(self) -> bool:
        return all(c is not None for c in self._cols)

    def _history(self, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        days, span, age, aov = (raw[:, c] for c in self._cols if c is not None)
        return np.maximum(days - 1.0, 0.0), span, np.maximum(age, span), aov

    def fit(self, raw: np.ndarray, t: float = -np.inf) -> bool:
        """Fit on a sample's feature rows as of event time ``t``; False (the previous fit kept)
        when the sample has too few buyers or repeat buyers."""
        if not self.usable or len(raw) == 0:
            return False
        buyers = raw[raw[:, self._cols[0]] >= 1]
        x, t_x, T, aov = self._history(buyers)
        if len(buyers) < MIN_BUYERS or int((x > 0).sum()) < MIN_BUYERS // 5:
            return False
        self.bgnbd = fit_bgnbd(x, t_x, np.maximum(T, 1e-3), start=self.bgnbd)
        self.gamma_gamma = fit_gamma_gamma(x, aov, start=self.gamma_gamma)
        self.fitted_at = t
        return True

    def score(self, raw: np.ndarray) -> list[CustomerValue | None]:
        """Each row's scores; None for a row that never bought or before the first fit."""
        if self.bgnbd is None or self.gamma_gamma is None or len(raw) == 0:
            return [None] * len(raw)
        x, t_x, T, aov = self._history(raw)
        T = np.maximum(T, 1e-3)
        bought = raw[:, self._cols[0]] >= 1
        alive = self.bgnbd.p_alive(x, t_x, T)
        next_90 = self.bgnbd.expected_purchases(90.0, x, t_x, T)
        next_365 = self.bgnbd.expected_purchases(365.0, x, t_x, T)
        spend = self.gamma_gamma.expected_spend(x, aov)
        spend = np.where(np.isfinite(spend), spend, aov)
        out: list[CustomerValue | None] = []
        for k in range(len(raw)):
            if not bought[k]:
                out.append(None)
                continue
            p = float(np.clip(alive[k], 0.0, 1.0))
            out.append(
                CustomerValue(
                    p_alive=round(p, 4),
                    churn_risk=round(1.0 - p, 4),
                    purchases_90d=round(float(max(next_90[k], 0.0)), 3),
                    spend_per_purchase=round(float(max(spend[k], 0.0)), 2),
                    value_365d=round(float(max(next_365[k], 0.0) * max(spend[k], 0.0)), 2),
                )
            )
        return out
