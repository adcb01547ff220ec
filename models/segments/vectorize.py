"""Raw per-customer features -> the model space the clusterers work in.

Three steps, all per feature and all invertible: a fixed shaping (``log1p`` for heavy-tailed
counts, spend and day counts; clipping for shares, rates and the engagement trend), an online
standardisation, and a per-feature weight. The standardisation statistics keep updating (plain
Welford, merged chunk by chunk with Chan's formula) but the ones used by ``transform`` are
*frozen*: they change only when :meth:`Vectorizer.freeze` is called, i.e. when a new model
version is built, so a version always assigns with the scaler it was built with.

>>> import numpy as np
>>> v = Vectorizer(feature_names=("spend", "share_web"))
>>> v.update(np.array([[0.0, 0.2], [10.0, 0.4], [100.0, 0.6]]))
>>> _ = v.freeze()
>>> z = v.transform(np.array([[10.0, 0.4]]))
>>> np.round(z, 3).tolist()
[[0.026, -0.0]]
>>> np.round(v.inverse(z), 6).tolist()
[[10.0, 0.4]]
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from models.features.table import CLIP_RANGES, FEATURE_NAMES, LOG_FEATURES

__all__ = ["CLIP_RANGES", "DEFAULT_FEATURES", "LOG_FEATURES", "Vectorizer"]

# The feature vector the service computes (models/features.py), in its order.
DEFAULT_FEATURES: tuple[str, ...] = FEATURE_NAMES

_MIN_STD = 1e-3


class Vectorizer:
    """Shape, standardise (frozen per model version) and weight raw feature vectors.

    Parameters
    ----------
    feature_names
        Column names of the raw matrices, in order.
    weights
        Per-feature multipliers applied after standardisation (default 1.0): a weight of 2 makes
        a feature count twice as much in distances, 0 removes it.
    max_count
        If set, the running count saturates at this value, so older data is gradually forgotten
        (an exponentially decayed standardisation); None keeps the plain running statistics.
    """

    def __init__(
        self,
        feature_names: tuple[str, ...] = DEFAULT_FEATURES,
        weights: Mapping[str, float] | None = None,
        max_count: float | None = None,
    ) -> None:
        self.feature_names = tuple(feature_names)
        self.max_count = max_count
        weights = dict(weights or {})
        unknown = set(weights) - set(self.feature_names)
        if unknown:
            raise ValueError(f"weights for unknown features: {sorted(unknown)}")
        d = len(self.feature_names)
        self.weights = np.array([float(weights.get(f, 1.0)) for f in self.feature_names])
        self._log = np.array([f in LOG_FEATURES for f in self.feature_names])
        lo = [CLIP_RANGES.get(f, (-np.inf, np.inf))[0] for f in self.feature_names]
        hi = [CLIP_RANGES.get(f, (-np.inf, np.inf))[1] for f in self.feature_names]
        self._lo = np.array(lo, dtype=float)
        self._hi = np.array(hi, dtype=float)
        # Running statistics in shaped space.
        self.count = 0.0
        self.mean_ = np.zeros(d)
        self.m2_ = np.zeros(d)
        # Frozen statistics used by transform().
        self.frozen_mean = np.zeros(d)
        self.frozen_std = np.ones(d)

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    def shape(self, raw: np.ndarray) -> np.ndarray:
        """Fixed per-feature shaping: log1p of heavy-tailed features, clipping of bounded ones."""
        x = np.asarray(raw, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"expected an (n, {self.n_features}) matrix, got shape {x.shape}")
        x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
        x = np.clip(x, self._lo, self._hi)
        out = x.copy()
        out[:, self._log] = np.log1p(np.maximum(x[:, self._log], 0.0))
        return out

    def unshape(self, shaped: np.ndarray) -> np.ndarray:
        out = np.array(shaped, dtype=np.float64, copy=True)
        out[:, self._log] = np.expm1(out[:, self._log])
        return out

    def update(self, raw: np.ndarray) -> None:
        """Merge a chunk of raw rows into the running statistics (does not touch the frozen ones)."""
        s = self.shape(raw)
        n = float(s.shape[0])
        if n == 0:
            return
        mean_b = s.mean(axis=0)
        m2_b = ((s - mean_b) ** 2).sum(axis=0)
        if self.max_count is not None and self.count + n > self.max_count:
            # Saturate: shrink the history so that history + chunk == max_count.
            keep = max(self.max_count - n, 0.0)
            if self.count > 0:
                self.m2_ *= keep / self.count
            self.count = keep
        total = self.count + n
        delta = mean_b - self.mean_
        self.mean_ = self.mean_ + delta * (n / total)
        self.m2_ = self.m2_ + m2_b + delta**2 * (self.count * n / total)
        self.count = total

    def freeze(self) -> tuple[np.ndarray, np.ndarray]:
        """Make the running statistics the ones used by ``transform``.

        Returns the affine map ``(a, b)`` from the old model space to the new one
        (``z_new = a * z_old + b``), so state kept in model space can be carried over exactly.
        """
        old_mean, old_std = self.frozen_mean, self.frozen_std
        std = np.sqrt(self.m2_ / (self.count - 1)) if self.count > 1 else np.ones(self.n_features)
        std = np.where(std < _MIN_STD, 1.0, std)
        self.frozen_mean = self.mean_.copy()
        self.frozen_std = std
        a = old_std / std
        b = (old_mean - self.frozen_mean) / std * self.weights
        return a, b

    def transform(self, raw: np.ndarray) -> np.ndarray:
        """Raw rows -> model space with the frozen statistics."""
        return (self.shape(raw) - self.frozen_mean) / self.frozen_std * self.weights

    def inverse(self, z: np.ndarray) -> np.ndarray:
        """Model space -> raw units (features with weight 0 come back as the population mean)."""
        z = np.atleast_2d(np.asarray(z, dtype=np.float64))
        w = np.where(self.weights == 0, 1.0, self.weights)
        zz = np.where(self.weights == 0, 0.0, z)
        return self.unshape(zz / w * self.frozen_std + self.frozen_mean)

    def steps(self) -> dict[str, list[bool] | list[float | None] | list[float]]:
        """What :meth:`transform` does, per feature, as plain lists (the published model's
        ``transform``: models.contracts.model.ModelTransform; an infinite clip bound is None)."""

        def bound(b: float) -> float | None:
            return float(b) if np.isfinite(b) else None

        return {
            "log1p": [bool(x) for x in self._log],
            "clip_low": [bound(b) for b in self._lo.tolist()],
            "clip_high": [bound(b) for b in self._hi.tolist()],
            "mean": self.frozen_mean.tolist(),
            "std": self.frozen_std.tolist(),
            "weight": self.weights.tolist(),
        }

    def standardised(self, z: np.ndarray) -> np.ndarray:
        """Model space -> unweighted z-scores against the population (for naming)."""
        w = np.where(self.weights == 0, 1.0, self.weights)
        return np.where(self.weights == 0, 0.0, np.asarray(z) / w)
