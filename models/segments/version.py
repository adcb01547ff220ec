"""A model version: the segments it holds, how it assigns rows, how it is built from a fit."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from models.segments.assignment import Assignment
from models.segments.microclusters import sq_distances
from models.segments.river_models import ModelSummary

__all__ = [
    "VAR_FLOOR",
    "WARMING_UP",
    "ModelVersion",
    "SegmentProfile",
    "canonical_order",
    "make_version",
    "unassigned",
]

WARMING_UP = "warming up"
VAR_FLOOR = 1e-2


@dataclass(frozen=True)
class SegmentProfile:
    id: int
    name: str
    size: float
    share: float
    centroid: dict[str, float]
    parent: int | None


@dataclass
class ModelVersion:
    """One model version: its segments (ids, centroids in model space, variances, weights),
    outlier thresholds, names and super-segments; it assigns rows (:meth:`assign`)."""

    number: int
    ids: np.ndarray
    centroids: np.ndarray
    variances: np.ndarray
    weights: np.ndarray
    thresholds: np.ndarray
    names: dict[int, str] = field(default_factory=dict)
    parents: dict[int, int] = field(default_factory=dict)
    # Precomputed Gaussian terms for the soft membership.
    inv_var: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    mu_inv_var: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    const: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def assign(self, Z: np.ndarray) -> Assignment:
        """Rows of the model space (vectorised already) assigned with this version."""
        v = self
        n = len(Z)
        d2 = sq_distances(Z, v.centroids)
        best = np.argmin(d2, axis=1)
        rows = np.arange(n)
        dist = np.sqrt(d2)
        # Diagonal Gaussian mixture: log w_k - 0.5 * sum(log var) - 0.5 * Mahalanobis^2.
        q = (Z * Z) @ v.inv_var.T - 2.0 * (Z @ v.mu_inv_var.T) + v.const[None, :]
        q -= q.max(axis=1, keepdims=True)
        p = np.exp(q)
        p /= p.sum(axis=1, keepdims=True)
        order = np.argsort(v.ids)
        return Assignment(
            segment_ids=v.ids[best],
            membership=p[:, order],
            ids=v.ids[order],
            confidence=p[rows, best],
            outlier=dist[rows, best] > v.thresholds[best],
            distances=dist[:, order],
            versions=np.full(n, v.number, dtype=np.int64),
        )

    def profiles(self, raw_centroids: np.ndarray, feature_names: tuple[str, ...]) -> list[SegmentProfile]:
        """Each segment's size, share and centroid in original units (``raw_centroids``)."""
        total = float(self.weights.sum()) or 1.0
        out = []
        for i in np.argsort(self.ids).tolist():
            sid = int(self.ids[i])
            out.append(
                SegmentProfile(
                    id=sid,
                    name=self.names.get(sid, str(sid)),
                    size=float(self.weights[i]),
                    share=float(self.weights[i]) / total,
                    centroid=dict(zip(feature_names, raw_centroids[i].tolist(), strict=True)),
                    parent=self.parents.get(sid),
                )
            )
        return out


def unassigned(n: int) -> Assignment:
    """``n`` rows before any version: no segment (-1), no membership."""
    return Assignment(
        segment_ids=np.full(n, -1, dtype=np.int64),
        membership=np.zeros((n, 0)),
        ids=np.zeros(0, dtype=np.int64),
        confidence=np.zeros(n),
        outlier=np.zeros(n, dtype=bool),
        distances=np.zeros((n, 0)),
        versions=np.zeros(n, dtype=np.int64),
    )


def make_version(
    number: int, s: ModelSummary, ids: np.ndarray, Z: np.ndarray, outlier_quantile: float
) -> ModelVersion:
    """The version of a fit: ``s`` summarises it, ``ids`` are its segments' stable ids, ``Z`` the
    rows it was fitted on (for the outlier thresholds: ``outlier_quantile`` of member distances)."""
    var = np.maximum(s.variances, VAR_FLOOR)
    inv = 1.0 / var
    mu_inv = s.centroids * inv
    w = np.maximum(s.weights, 1e-12)
    const = np.log(w / w.sum()) - 0.5 * np.log(var).sum(axis=1) - 0.5 * (s.centroids * mu_inv).sum(axis=1)
    # The Mahalanobis term enters with -0.5: fold it into the matrices used by assign().
    d2 = sq_distances(Z, s.centroids)
    best = np.argmin(d2, axis=1)
    dist = np.sqrt(d2[np.arange(len(Z)), best])
    q = outlier_quantile
    glob = float(np.quantile(dist, q)) if len(dist) else np.inf
    thresholds = np.full(len(ids), glob)
    for j in range(len(ids)):
        members = dist[best == j]
        if len(members) >= 20:
            thresholds[j] = float(np.quantile(members, q))
    return ModelVersion(
        number=number,
        ids=ids.astype(np.int64),
        centroids=s.centroids,
        variances=var,
        weights=s.weights,
        thresholds=thresholds,
        inv_var=-0.5 * inv,
        mu_inv_var=-0.5 * mu_inv,
        const=const,
    )


def canonical_order(Z: np.ndarray, C: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Clusters ordered by the first row (rows sorted by customer key) among each one's closer
    half of members, so that births are numbered by who is in a segment, not by the order a
    fit happened to produce: two fits of about the same customers (a replay, a learner resumed
    from a checkpoint after a crash) give their new segments the same ids."""
    d2 = ((Z - C[labels]) ** 2).sum(axis=1)
    first = np.full(len(C), len(Z))
    for j in range(len(C)):
        members = np.flatnonzero(labels == j)
        if len(members):
            core = members[d2[members] <= np.median(d2[members])]
            first[j] = core[0]
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return C[order], rank[labels]
