"""Adapters that let the engine run on River's clusterers or on the default micro-cluster model.

Every adapter learns from model-space numpy rows and summarises itself as centroids, weights and
per-segment variances (plus micro-cluster membership where the model has it), which is all the
registry and the soft membership need. River models learn with ``learn_one`` (slower).

>>> import numpy as np
>>> from river import cluster
>>> m = RiverAdapter("kmeans", cluster.KMeans(n_clusters=2, halflife=0.02, sigma=1.0, seed=1), True)
>>> X = np.vstack([np.zeros((20, 3)), np.ones((20, 3)) * 5])
>>> m.learn_many(X, np.zeros(40))
>>> s = m.summary(X, 0.0)
>>> s.centroids.shape
(2, 3)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from river import base

from models.segments.microclusters import MicroClusterKMeans, sq_distances

__all__ = [
    "FrozenLearner",
    "MicroAdapter",
    "ModelSummary",
    "RiverAdapter",
    "SegmentModel",
    "member_variances",
]

_VAR_FLOOR = 1e-3


@dataclass
class ModelSummary:
    centroids: np.ndarray  # (k, d) model space
    weights: np.ndarray  # (k,) decayed weight (or counts)
    variances: np.ndarray  # (k, d)
    member_uids: np.ndarray | None = None
    member_labels: np.ndarray | None = None
    member_weights: np.ndarray | None = None
    # The members' raw feature rows (original units, aligned with member_labels): what names
    # are judged on. Only the population sample has them (customers, not events).
    member_rows: np.ndarray | None = None


class SegmentModel(Protocol):
    supports_rescale: bool

    def learn_many(self, X: np.ndarray, t: np.ndarray, sample_weight: np.ndarray | None = None) -> None: ...

    def rescale(self, a: np.ndarray, b: np.ndarray) -> None: ...

    def summary(self, recent: np.ndarray, t: float) -> ModelSummary: ...


class MicroAdapter:
    """The default model (:class:`MicroClusterKMeans`) driven by the engine."""

    supports_rescale = True

    def __init__(
        self,
        n_clusters: int,
        seed: int,
        max_micro: int = 150,
        half_life: float = 60 * 86400.0,
        n_init: int = 10,
        restart_gain: float = 0.05,
    ) -> None:
        self.model = MicroClusterKMeans(
            n_clusters=n_clusters,
            max_micro=max_micro,
            half_life=half_life,
            recluster_every=0,
            n_init=n_init,
            restart_gain=restart_gain,
            seed=seed,
        )

    def learn_many(self, X: np.ndarray, t: np.ndarray, sample_weight: np.ndarray | None = None) -> None:
        self.model.learn_many(X, t, sample_weight)

    def rescale(self, a: np.ndarray, b: np.ndarray) -> None:
        self.model.rescale(a, b)

    def summary(self, recent: np.ndarray, t: float) -> ModelSummary:
        m = self.model
        m.recluster()
        n, mean, var = m.cluster_stats()
        f = m.decay_factor(t)
        keep = n > 0
        remap = np.cumsum(keep) - 1
        return ModelSummary(
            centroids=mean[keep],
            weights=n[keep] * f,
            variances=var[keep],
            member_uids=m.uid.copy(),
            member_labels=remap[m.micro_labels],
            member_weights=m.n * f,
        )


def member_variances(X: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Per-feature variance of each cluster's rows (1 where a cluster has fewer than 2 rows)."""
    var = np.ones((k, X.shape[1]))
    for j in range(k):
        members = X[labels == j]
        if len(members) > 1:
            var[j] = members.var(axis=0)
    return var


class RiverAdapter:
    """A River clusterer: learns row by row with ``learn_one``; summarised from its ``centers``."""

    def __init__(self, name: str, model: base.Clusterer, supports_rescale: bool = False) -> None:
        self.name = name
        self.model = model
        self.supports_rescale = supports_rescale

    def learn_many(self, X: np.ndarray, t: np.ndarray, sample_weight: np.ndarray | None = None) -> None:
        learn = self.model.learn_one  # River's clusterers take no weights
        for row in X.tolist():
            learn(dict(enumerate(row)))

    def rescale(self, a: np.ndarray, b: np.ndarray) -> None:
        if not self.supports_rescale:
            raise NotImplementedError(self.name)
        centers: Any = self.model.centers  # type: ignore[attr-defined]
        for c in centers.values():
            for i in list(c.keys()):
                c[i] = float(a[i] * c[i] + b[i])

    def _centers(self, d: int) -> np.ndarray:
        if self.name == "denstream" and self.model.p_micro_clusters:  # type: ignore[attr-defined]
            self.model.predict_one(dict.fromkeys(range(d), 0.0))  # DenStream clusters at prediction
        centers: Any = self.model.centers  # type: ignore[attr-defined]
        rows = [[float(c.get(i, 0.0)) for i in range(d)] for _, c in sorted(centers.items())]
        return np.array(rows, dtype=np.float64).reshape(-1, d)

    def summary(self, recent: np.ndarray, t: float) -> ModelSummary:
        d = recent.shape[1]
        C = self._centers(d)
        if len(C) == 0:
            C = recent.mean(axis=0, keepdims=True)
        lab = np.argmin(sq_distances(recent, C), axis=1)
        k = len(C)
        cnt = np.bincount(lab, minlength=k).astype(np.float64)
        var = member_variances(recent, lab, k)
        keep = cnt > 0
        return ModelSummary(centroids=C[keep], weights=cnt[keep], variances=np.maximum(var[keep], _VAR_FLOOR))


class FrozenLearner:
    """The learner of a checkpoint of a River model: River's objects have no safe encoding
    (models.segments.checkpoint), so their state stays in the process that learned. A restored
    engine on a River model assigns, names and profiles with its versions but cannot learn."""

    supports_rescale = False

    def __init__(self, name: str) -> None:
        self.name = name

    def _refuse(self) -> NotImplementedError:
        return NotImplementedError(
            f"model {self.name!r} is a River model, whose learner has no safe checkpoint: "
            "an engine restored from one assigns but cannot learn"
        )

    def learn_many(self, X: np.ndarray, t: np.ndarray, sample_weight: np.ndarray | None = None) -> None:
        raise self._refuse()

    def rescale(self, a: np.ndarray, b: np.ndarray) -> None:
        raise self._refuse()

    def summary(self, recent: np.ndarray, t: float) -> ModelSummary:
        raise self._refuse()
