"""Adapters that let the engine run on River's clusterers or on the default micro-cluster model.

Every adapter learns from model-space numpy rows and summarises itself as centroids, weights and
per-segment variances (plus micro-cluster membership where the model has it), which is all the
registry and the soft membership need. River models learn with ``learn_one`` (slower).

>>> import numpy as np
>>> m = make_model("kmeans", n_clusters=2, seed=1)
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
from river import base, cluster

from models.segments.microclusters import MicroClusterKMeans, sq_distances

__all__ = [
    "MODEL_NAMES",
    "MicroAdapter",
    "ModelSummary",
    "RiverAdapter",
    "SegmentModel",
    "make_model",
    "member_variances",
]

MODEL_NAMES = ("microclusters", "kmeans", "streamkmeans", "clustream", "denstream", "dbstream")
_VAR_FLOOR = 1e-3


@dataclass
class ModelSummary:
    centroids: np.ndarray  # (k, d) model space
    weights: np.ndarray  # (k,) decayed weight (or counts)
    variances: np.ndarray  # (k, d)
    member_uids: np.ndarray | None = None
    member_labels: np.ndarray | None = None
    member_weights: np.ndarray | None = None


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


def _river_model(name: str, n_clusters: int, seed: int) -> base.Clusterer:
    if name == "kmeans":
        return cluster.KMeans(n_clusters=n_clusters, halflife=0.02, sigma=1.0, seed=seed)
    if name == "streamkmeans":
        return cluster.STREAMKMeans(chunk_size=50, n_clusters=n_clusters, halflife=0.5, sigma=1.0, seed=seed)
    if name == "clustream":
        return cluster.CluStream(n_macro_clusters=n_clusters, max_micro_clusters=100, time_gap=500, seed=seed)
    if name == "denstream":
        return cluster.DenStream(decaying_factor=0.01, beta=0.5, mu=2.5, epsilon=1.5, n_samples_init=500)
    if name == "dbstream":
        return cluster.DBSTREAM(clustering_threshold=2.5, fading_factor=0.001, cleanup_interval=1000)
    raise ValueError(f"unknown model {name!r}; choose one of {MODEL_NAMES}")


class RiverAdapter:
    """A River clusterer: learns row by row with ``learn_one``; summarised from its ``centers``."""

    def __init__(self, name: str, n_clusters: int, seed: int) -> None:
        self.name = name
        self.model = _river_model(name, n_clusters, seed)
        self.supports_rescale = name == "kmeans"

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


def make_model(
    name: str,
    n_clusters: int,
    seed: int,
    max_micro: int = 150,
    half_life: float = 60 * 86400.0,
    n_init: int = 10,
    restart_gain: float = 0.05,
) -> SegmentModel:
    if name == "microclusters":
        return MicroAdapter(n_clusters, seed, max_micro, half_life, n_init, restart_gain)
    return RiverAdapter(name, n_clusters, seed)
