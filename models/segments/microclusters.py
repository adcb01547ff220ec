"""The default segment model: decayed micro-clusters plus a weighted k-means macro step.

Each micro-cluster keeps a decayed count ``n``, linear sum ``ls`` and squared sum ``ss`` per
feature. Decay is in event time with a configurable half-life and is applied as *forward
decay*: a point at time ``t`` enters with weight ``2 ** ((t - t0) / half_life)`` relative to a
landmark ``t0``, so the statistics stay purely additive (mergeable across instances, independent
of the order of additions) and a common factor turns them into the decayed values at any time.

Learning assigns a batch to the nearest micro-clusters with numpy and adds it with
``np.add.at``; points outside every micro-cluster's boundary become new micro-clusters, and when
there are more than ``max_micro`` the closest pairs (weighted Ward cost) are merged. The macro
step (:meth:`MicroClusterKMeans.recluster`) runs a weighted k-means over the micro-cluster centres,
warm-started from the previous centroids (k-means++ seeded with ``seed`` the first time, and as a
restart that replaces the warm solution only when it is clearly better).

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> X = np.vstack([rng.normal(0, 0.1, (200, 2)), rng.normal(5, 0.1, (200, 2))])
>>> model = MicroClusterKMeans(n_clusters=2, max_micro=20, seed=1)
>>> model.learn_many(X)
>>> model.recluster()
>>> labels = model.predict_many(np.array([[0.0, 0.0], [5.0, 5.0]]))
>>> bool(labels[0] != labels[1])
True
>>> model.learn_one({"a": 0.1, "b": 0.0})
"""

from __future__ import annotations

from typing import Any

import numpy as np
from river import base

__all__ = ["MicroClusterKMeans", "kmeans_pp", "nearest", "sq_distances", "weighted_kmeans"]

_RENORMALISE_AFTER = 30.0  # half-lives between landmark moves (2**30 stays far from overflow)


def sq_distances(X: np.ndarray, C: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances (n, k), vectorised, clipped at 0."""
    d2 = X @ np.ascontiguousarray(C.T)
    d2 *= -2.0
    d2 += np.einsum("ij,ij->i", X, X)[:, None]
    d2 += np.einsum("ij,ij->i", C, C)[None, :]
    return np.maximum(d2, 0.0, out=d2)


def nearest(X: np.ndarray, C: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest row of ``C`` for every row of ``X``, and the squared distance to it."""
    half = X @ np.ascontiguousarray(C.T)
    half *= -2.0
    half += np.einsum("ij,ij->i", C, C)[None, :]
    idx = np.argmin(half, axis=1)
    d2 = half[np.arange(len(X)), idx] + np.einsum("ij,ij->i", X, X)
    return idx, np.maximum(d2, 0.0)


def kmeans_pp(X: np.ndarray, w: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Weighted k-means++ seeding (deterministic for a given generator state)."""
    p = w / w.sum()
    centres = [X[rng.choice(len(X), p=p)]]
    closest = sq_distances(X, centres[0][None, :])[:, 0]
    for _ in range(1, k):
        pot = w * closest
        total = pot.sum()
        idx = int(np.argmax(w)) if total <= 0 else int(rng.choice(len(X), p=pot / total))
        centres.append(X[idx])
        closest = np.minimum(closest, sq_distances(X, X[idx][None, :])[:, 0])
    return np.array(centres)


def weighted_kmeans(
    X: np.ndarray, w: np.ndarray, init: np.ndarray, max_iter: int = 100
) -> tuple[np.ndarray, np.ndarray, float]:
    """Weighted Lloyd iterations from ``init``. Returns (centres, labels, weighted inertia).

    An empty cluster is moved to the point with the largest weighted squared distance.
    """
    C = np.array(init, dtype=np.float64, copy=True)
    k = len(C)
    labels = np.full(len(X), -1)
    for _ in range(max_iter):
        d2 = sq_distances(X, C)
        new_labels = np.argmin(d2, axis=1)
        if np.array_equal(new_labels, labels):
            break
        labels = new_labels
        wsum = np.bincount(labels, weights=w, minlength=k)
        for j in np.flatnonzero(wsum <= 0):
            contrib = w * d2[np.arange(len(X)), labels]
            far = int(np.argmax(contrib))
            labels[far] = j
            d2[far] = 0.0
        wsum = np.bincount(labels, weights=w, minlength=k)
        for f in range(X.shape[1]):
            C[:, f] = np.bincount(labels, weights=w * X[:, f], minlength=k) / np.maximum(wsum, 1e-300)
    d2 = sq_distances(X, C)
    labels = np.argmin(d2, axis=1)
    inertia = float((w * d2[np.arange(len(X)), labels]).sum())
    return C, labels, inertia


class MicroClusterKMeans(base.Clusterer):
    """Decayed micro-clusters with a warm-started weighted k-means macro step.

    Parameters
    ----------
    n_clusters
        Number of macro clusters (segments).
    max_micro
        Maximum number of micro-clusters kept.
    half_life
        Half-life of the decay, in the units of the times passed to ``learn_many`` (seconds in
        the engine). ``inf`` disables decay.
    radius_factor
        A point joins its nearest micro-cluster when it lies within ``radius_factor`` times the
        micro-cluster's RMS radius (half the distance to the nearest other micro-cluster for
        micro-clusters of fewer than 3 points).
    recluster_every
        Run the macro step automatically after this many learned points (0: only when
        :meth:`recluster` is called, as the engine does).
    n_init
        Number of k-means++ restarts tried at each macro step.
    restart_gain
        A restart replaces the warm-started solution only if its inertia is lower by this fraction.
    seed
        Random seed (k-means++ seeding).
    """

    def __init__(
        self,
        n_clusters: int = 8,
        max_micro: int = 150,
        half_life: float = 60.0 * 86400.0,
        radius_factor: float = 2.0,
        recluster_every: int = 1000,
        n_init: int = 10,
        restart_gain: float = 0.05,
        seed: int = 42,
    ) -> None:
        self.n_clusters = n_clusters
        self.max_micro = max_micro
        self.half_life = half_life
        self.radius_factor = radius_factor
        self.recluster_every = recluster_every
        self.n_init = n_init
        self.restart_gain = restart_gain
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self._keys: list[Any] | None = None
        self._dim: int | None = None
        self.t0: float | None = None
        self.t_max = -np.inf
        self.n = np.zeros(0)
        self.ls = np.zeros((0, 0))
        self.ss = np.zeros((0, 0))
        self.count = np.zeros(0, dtype=np.int64)
        self.uid = np.zeros(0, dtype=np.int64)
        self._next_uid = 0
        self._since_recluster = 0
        self.centroids: np.ndarray | None = None
        self.micro_labels = np.zeros(0, dtype=np.int64)

    # -- River API --------------------------------------------------------------------------
    def _vec(self, x: dict[Any, Any]) -> np.ndarray:
        if self._keys is None:
            self._keys = list(x.keys())
        return np.array([[float(x.get(key, 0.0)) for key in self._keys]])

    def learn_one(self, x: dict[Any, Any], t: float | None = None) -> None:
        self.learn_many(self._vec(x), None if t is None else np.array([t]))

    def predict_one(self, x: dict[Any, Any]) -> int:
        return int(self.predict_many(self._vec(x))[0])

    @classmethod
    def _unit_test_params(cls):
        yield {"n_clusters": 3, "max_micro": 20}

    # -- state helpers ----------------------------------------------------------------------
    @property
    def n_micro(self) -> int:
        return len(self.n)

    def centres(self) -> np.ndarray:
        return self.ls / self.n[:, None]

    def variances(self) -> np.ndarray:
        c = self.centres()
        return np.maximum(self.ss / self.n[:, None] - c * c, 0.0)

    def decay_factor(self, t: float | None = None) -> float:
        """Factor turning the stored (forward-decayed) weights into decayed weights at time ``t``."""
        if self.t0 is None or not np.isfinite(self.half_life):
            return 1.0
        t = self.t_max if t is None else t
        return float(np.exp2(-(t - self.t0) / self.half_life))

    def decayed_weights(self, t: float | None = None) -> np.ndarray:
        return self.n * self.decay_factor(t)

    def _init_dim(self, d: int) -> None:
        if self._dim is None:
            self._dim = d
            self.ls = np.zeros((0, d))
            self.ss = np.zeros((0, d))
        elif d != self._dim:
            raise ValueError(f"expected {self._dim} features, got {d}")

    def _renormalise(self, t_new: float) -> None:
        assert self.t0 is not None
        f = np.exp2(-(t_new - self.t0) / self.half_life)
        self.n = self.n * f
        self.ls = self.ls * f
        self.ss = self.ss * f
        self.t0 = t_new

    def _boundaries(self) -> np.ndarray:
        m = self.n_micro
        rms = np.sqrt(self.variances().sum(axis=1))
        bound = self.radius_factor * rms
        small = self.count < 3
        if small.any():
            if m > 1:
                c = self.centres()
                d2 = sq_distances(c[small], c)
                d2[np.arange(int(small.sum())), np.flatnonzero(small)] = np.inf
                bound[small] = 0.5 * np.sqrt(d2.min(axis=1))
            else:
                bound[small] = 0.0
        return bound

    # -- learning ---------------------------------------------------------------------------
    def learn_many(
        self, X: np.ndarray, t: np.ndarray | None = None, sample_weight: np.ndarray | None = None
    ) -> None:
        """Learn a batch of vectors (rows in stream order) observed at event times ``t``, each
        counting ``sample_weight`` times (default 1)."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or len(X) == 0:
            return
        self._init_dim(X.shape[1])
        if t is None:
            t_arr = np.full(len(X), self.t_max if np.isfinite(self.t_max) else 0.0)
        else:
            t_arr = np.asarray(t, dtype=np.float64)
        if self.t0 is None:
            self.t0 = float(t_arr.min())
        self.t_max = max(self.t_max, float(t_arr.max()))
        if np.isfinite(self.half_life):
            if (self.t_max - self.t0) / self.half_life > _RENORMALISE_AFTER:
                self._renormalise(self.t_max)
            w = np.exp2((t_arr - self.t0) / self.half_life)
        else:
            w = np.ones(len(X))
        if sample_weight is not None:
            w = w * np.asarray(sample_weight, dtype=np.float64)

        if self.n_micro > 0:
            near, d2 = nearest(X, self.centres())
            inside = np.sqrt(d2) <= self._boundaries()[near]
        else:
            near = np.zeros(len(X), dtype=np.int64)
            inside = np.zeros(len(X), dtype=bool)

        if inside.any():
            idx = near[inside]
            wi = w[inside]
            Xi = X[inside]
            # Sum per micro-cluster with a one-hot matmul (much faster than np.add.at on rows).
            onehot = np.zeros((self.n_micro, len(idx)))
            onehot[idx, np.arange(len(idx))] = wi
            self.n += onehot.sum(axis=1)
            self.ls += onehot @ Xi
            self.ss += onehot @ (Xi * Xi)
            self.count += np.bincount(idx, minlength=self.n_micro)

        out = ~inside
        if out.any():
            self._add_new(X[out], w[out])
        self._since_recluster += len(X)
        if self.recluster_every and self._since_recluster >= self.recluster_every:
            self.recluster()

    def _add_new(self, X: np.ndarray, w: np.ndarray) -> None:
        if len(X) > self.max_micro:
            # Many new points at once (a cold start or a new region): summarise them first.
            init = kmeans_pp(X, w, self.max_micro, self._rng)
            _, labels, _ = weighted_kmeans(X, w, init, max_iter=10)
            k = self.max_micro
            n = np.bincount(labels, weights=w, minlength=k)
            keep = n > 0
            ls = np.stack(
                [np.bincount(labels, weights=w * X[:, f], minlength=k) for f in range(X.shape[1])], 1
            )
            ss = np.stack(
                [np.bincount(labels, weights=w * X[:, f] ** 2, minlength=k) for f in range(X.shape[1])], 1
            )
            cnt = np.bincount(labels, minlength=k)
            n, ls, ss, cnt = n[keep], ls[keep], ss[keep], cnt[keep]
        else:
            n, ls, ss, cnt = w.copy(), X * w[:, None], X * X * w[:, None], np.ones(len(X), dtype=np.int64)
        uids = np.arange(self._next_uid, self._next_uid + len(n))
        self._next_uid += len(n)
        self.n = np.concatenate([self.n, n])
        self.ls = np.vstack([self.ls, ls])
        self.ss = np.vstack([self.ss, ss])
        self.count = np.concatenate([self.count, cnt])
        self.uid = np.concatenate([self.uid, uids])
        self._reduce()

    def _reduce(self) -> None:
        """Merge the closest pairs (weighted Ward cost) until at most ``max_micro`` remain."""
        m = self.n_micro
        if m <= self.max_micro:
            return
        c = self.centres()
        n = self.n.copy()
        cost = (n[:, None] * n[None, :] / (n[:, None] + n[None, :])) * sq_distances(c, c)
        np.fill_diagonal(cost, np.inf)
        alive = np.ones(m, dtype=bool)
        for _ in range(m - self.max_micro):
            flat = int(np.argmin(cost))
            a, b = divmod(flat, m)
            a, b = min(a, b), max(a, b)
            if self.n[b] > self.n[a]:
                self.uid[a] = self.uid[b]
            self.n[a] += self.n[b]
            self.ls[a] += self.ls[b]
            self.ss[a] += self.ss[b]
            self.count[a] += self.count[b]
            alive[b] = False
            cost[b, :] = np.inf
            cost[:, b] = np.inf
            ca = self.ls[a] / self.n[a]
            row = (self.n[a] * n / (self.n[a] + n)) * ((c - ca) ** 2).sum(axis=1)
            n[a] = self.n[a]
            c[a] = ca
            row[~alive] = np.inf
            row[a] = np.inf
            cost[a, :] = row
            cost[:, a] = row
        self.n, self.ls, self.ss = self.n[alive], self.ls[alive], self.ss[alive]
        self.count, self.uid = self.count[alive], self.uid[alive]

    def merge(self, other: MicroClusterKMeans) -> None:
        """Add another instance's micro-clusters (same feature space and half-life)."""
        if other.n_micro == 0:
            return
        self._init_dim(other.ls.shape[1])
        assert other.t0 is not None
        if self.t0 is None:
            self.t0 = other.t0
        f = 1.0 if not np.isfinite(self.half_life) else float(np.exp2((other.t0 - self.t0) / self.half_life))
        self.t_max = max(self.t_max, other.t_max)
        uids = np.arange(self._next_uid, self._next_uid + other.n_micro)
        self._next_uid += other.n_micro
        self.n = np.concatenate([self.n, other.n * f])
        self.ls = np.vstack([self.ls, other.ls * f])
        self.ss = np.vstack([self.ss, other.ss * f])
        self.count = np.concatenate([self.count, other.count])
        self.uid = np.concatenate([self.uid, uids])
        self._reduce()

    def rescale(self, a: np.ndarray, b: np.ndarray) -> None:
        """Carry the state over an affine change of feature space ``z' = a * z + b`` (exact)."""
        ls = self.ls
        self.ss = a * a * self.ss + 2 * a * b * ls + b * b * self.n[:, None]
        self.ls = a * ls + b * self.n[:, None]
        if self.centroids is not None:
            self.centroids = a * self.centroids + b

    # -- macro step -------------------------------------------------------------------------
    def recluster(self) -> None:
        """Weighted k-means over the micro-cluster centres (warm start, then seeded restarts)."""
        self._since_recluster = 0
        m = self.n_micro
        if m == 0:
            return
        C = self.centres()
        w = self.n / self.n.sum()
        k = min(self.n_clusters, m)
        best: tuple[np.ndarray, np.ndarray, float] | None = None
        if self.centroids is not None and len(self.centroids) == k:
            best = weighted_kmeans(C, w, self.centroids)
        fresh: tuple[np.ndarray, np.ndarray, float] | None = None
        for _ in range(self.n_init if best is None else max(1, self.n_init // 3)):
            run = weighted_kmeans(C, w, kmeans_pp(C, w, k, self._rng))
            if fresh is None or run[2] < fresh[2] - 1e-12:
                fresh = run
        assert fresh is not None
        if best is None or fresh[2] < (1.0 - self.restart_gain) * best[2]:
            best = fresh
        self.centroids, self.micro_labels, _ = best

    def cluster_stats(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per macro cluster: (stored weight, mean, variance) from the merged micro-clusters."""
        if self.centroids is None:
            raise RuntimeError("recluster() has not run yet")
        k = len(self.centroids)
        if len(self.micro_labels) != self.n_micro:  # micro-clusters changed since the macro step
            self.micro_labels = self.predict_many(self.centres())
        lab = self.micro_labels
        n = np.bincount(lab, weights=self.n, minlength=k)
        d = self.ls.shape[1]
        ls = np.stack([np.bincount(lab, weights=self.ls[:, f], minlength=k) for f in range(d)], 1)
        ss = np.stack([np.bincount(lab, weights=self.ss[:, f], minlength=k) for f in range(d)], 1)
        safe = np.maximum(n, 1e-300)[:, None]
        mean = np.where(n[:, None] > 0, ls / safe, self.centroids)
        var = np.maximum(ss / safe - mean * mean, 0.0)
        return n, mean, var

    def predict_many(self, X: np.ndarray) -> np.ndarray:
        """Index of the nearest macro centroid for every row (zeros before the first macro step)."""
        X = np.asarray(X, dtype=np.float64)
        if self.centroids is None:
            return np.zeros(len(X), dtype=np.int64)
        return nearest(X, self.centroids)[0]
