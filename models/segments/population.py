"""A bounded, deterministic sample of the customer population, and the k-means step fitted on it.

Segments are meant to describe customers, but a stream delivers *events*: a model that learns
from rows in stream order sees each customer as often as it acts, and sees it as it was at that
moment (recency 0 at every event). :class:`PopulationSample` keeps the latest feature state of a
sample of customers instead, so a model version can be fitted on the customers as they are at the
version's event time, which is what an offline snapshot fit sees.

The sample is a *bottom-k* sketch: the ``capacity`` customers with the smallest 64-bit key hashes.
Which customers it holds depends only on the set of keys seen, not on the order of the stream or
on how it was cut into batches, and a customer in it stays until one with a smaller hash arrives
(or it is forgotten). Keys are hashes, never customer ids (:func:`customer_key`).

>>> import numpy as np
>>> sample = PopulationSample(capacity=2)
>>> sample.update(np.array([5, 3, 9, 3], dtype=np.uint64), np.arange(8.0).reshape(4, 2))
>>> sorted(sample.keys.tolist()), sample.rows[sample.slot_of(3)].tolist()
([3, 5], [6.0, 7.0])
>>> sample.forget([5])
1
>>> len(sample)
1
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Iterable

import numpy as np

from models.features import DAY, FeatureParams, evaluate_many
from models.segments.microclusters import kmeans_pp, nearest
from models.segments.river_models import ModelSummary, member_variances
from models.segments.vectorize import Vectorizer
from models.segments.version import canonical_order

__all__ = ["PopulationFit", "PopulationSample", "customer_key", "fit_population"]


def customer_key(customer_id: str) -> int:
    """A customer's 64-bit sample key (BLAKE2b): uniform, stable across processes and releases."""
    return int.from_bytes(hashlib.blake2b(customer_id.encode(), digest_size=8).digest(), "big")


class PopulationSample:
    """The latest row of each of the ``capacity`` customers with the smallest keys."""

    def __init__(self, capacity: int, width: int | None = None) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self.keys = np.zeros(0, dtype=np.uint64)  # slot -> key (slots past len(self) unused)
        self.sources = np.zeros(0, dtype=np.int64)  # slot -> where the row came from (a partition)
        self.rows = np.zeros((0, width or 0))
        self._slot: dict[int, int] = {}  # key -> slot
        self._heap: list[int] = []  # negated keys: the largest key held is -heap[0]

    def __len__(self) -> int:
        return len(self._slot)

    def slot_of(self, key: int) -> int:
        return self._slot[int(key)]

    def could_take(self, keys: np.ndarray) -> np.ndarray:
        """Which of these keys the sample could still admit (a full sample's largest key only
        falls, so a key above it now never gets in)."""
        keys = np.asarray(keys, dtype=np.uint64)
        if len(self._slot) < self.capacity:
            return np.ones(len(keys), dtype=bool)
        return keys < np.uint64(-self._heap[0])

    def update(self, keys: np.ndarray, rows: np.ndarray, sources: np.ndarray | None = None) -> None:
        """Rows in stream order; a key seen twice keeps its last row (and its ``source``).

        The pipeline passes every row, so this is on the hot path: when the sample is full, keys
        above the largest one held are dropped at once, and each key's last row is written once.
        Keys are admitted in ascending order; the result is the same as one by one in stream
        order, because a key that leaves the bottom-k can never come back."""
        rows = np.asarray(rows, dtype=np.float64)
        keys = np.asarray(keys, dtype=np.uint64)
        if len(rows) == 0:
            return
        sources = (
            np.zeros(len(keys), dtype=np.int64) if sources is None else np.asarray(sources, dtype=np.int64)
        )
        if self.rows.shape[1] != rows.shape[1]:
            if len(self):
                raise ValueError(f"expected rows of width {self.rows.shape[1]}, got {rows.shape[1]}")
            self.rows = np.zeros((0, rows.shape[1]))
        slot, heap, cap = self._slot, self._heap, self.capacity
        if len(slot) >= cap:
            below = self.could_take(keys)
            if not below.any():
                return
            keys, rows, sources = keys[below], rows[below], sources[below]
        unique, first_from_end = np.unique(keys[::-1], return_index=True)
        last_row = len(keys) - 1 - first_from_end
        slots = np.full(len(unique), -1, dtype=np.intp)
        for j, key in enumerate(unique.tolist()):
            s = slot.get(key)
            if s is None:
                if len(slot) < cap:
                    s = len(slot)
                    if s == len(self.keys):  # grow by doubling: a young sample stays small
                        size = min(cap, max(16, 2 * s))
                        self.keys = np.concatenate([self.keys, np.zeros(size - s, dtype=np.uint64)])
                        self.sources = np.concatenate([self.sources, np.zeros(size - s, dtype=np.int64)])
                        self.rows = np.vstack([self.rows, np.zeros((size - s, self.rows.shape[1]))])
                elif key < -heap[0]:
                    s = slot.pop(-heapq.heappop(heap))
                else:
                    continue
                slot[key] = s
                heapq.heappush(heap, -key)
                self.keys[s] = key
            slots[j] = s
        kept = slots >= 0
        self.rows[slots[kept]] = rows[last_row[kept]]
        self.sources[slots[kept]] = sources[last_row[kept]]

    def __getstate__(self) -> dict[str, object]:
        # No unused slots, and in key order: which slot a customer took depends on how its rows
        # came in blocks, the sample's content (all that is read of it) does not.
        keys, rows = self.held()
        order = np.argsort(keys, kind="stable")
        return {
            "capacity": self.capacity,
            "keys": keys[order],
            "rows": rows[order],
            "sources": self.held_sources()[order],
        }

    def __setstate__(self, state: dict[str, object]) -> None:
        self.capacity = int(state["capacity"])  # type: ignore[call-overload]
        self.keys = np.asarray(state["keys"], dtype=np.uint64)
        self.rows = np.asarray(state["rows"], dtype=np.float64)
        # Snapshots written before sources were kept: one source for all.
        self.sources = np.asarray(state.get("sources", np.zeros(len(self.keys))), dtype=np.int64)
        self._slot = {int(k): i for i, k in enumerate(self.keys.tolist())}
        self._heap = [-k for k in self._slot]
        heapq.heapify(self._heap)

    def forget(self, keys: Iterable[int]) -> int:
        """Drop these customers (erasure); returns how many were held. The remaining rows are
        compacted, so nothing of a dropped customer stays in the arrays or in a snapshot."""
        gone = {k for k in map(int, keys) if k in self._slot}
        if not gone:
            return 0
        held_keys, held_rows = self.held()
        keep = np.array([k not in gone for k in held_keys.tolist()], dtype=bool)
        held_sources = self.held_sources()
        self.__setstate__(
            {
                "capacity": self.capacity,
                "keys": held_keys[keep],
                "rows": held_rows[keep],
                "sources": held_sources[keep],
            }
        )
        return len(gone)

    def held(self) -> tuple[np.ndarray, np.ndarray]:
        """(keys, rows) of the customers held, in slot order."""
        n = len(self._slot)
        return self.keys[:n], self.rows[:n]

    def held_sources(self) -> np.ndarray:
        """The source (a partition) of each held customer's row, in slot order."""
        return self.sources[: len(self._slot)]


class PopulationFit:
    """Result of :func:`fit_population`."""

    __slots__ = ("centroids", "labels", "restarted")

    def __init__(self, centroids: np.ndarray, labels: np.ndarray, restarted: bool) -> None:
        self.centroids = centroids
        self.labels = labels
        self.restarted = restarted


def lloyd(Z: np.ndarray, init: np.ndarray, max_iter: int = 50) -> tuple[np.ndarray, np.ndarray, float]:
    """Plain k-means iterations from ``init`` (one matmul per step; an empty cluster keeps its
    centre). Returns (centres, labels, SSQ)."""
    C = np.array(init, dtype=np.float64, copy=True)
    k = len(C)
    labels = np.full(len(Z), -1)
    cols = np.arange(len(Z))
    for _ in range(max_iter):
        new = nearest(Z, C)[0]
        if np.array_equal(new, labels):
            break
        labels = new
        onehot = np.zeros((k, len(Z)))
        onehot[labels, cols] = 1.0
        counts = onehot.sum(axis=1)
        filled = counts > 0
        C[filled] = (onehot @ Z)[filled] / counts[filled, None]
    labels, d2 = nearest(Z, C)
    return C, labels, float(d2.sum())


def fit_population(
    Z: np.ndarray,
    k: int,
    previous: np.ndarray | None,
    rng: np.random.Generator,
    n_init: int,
    restart_gain: float,
    step: float,
    restart_rows: int = 1024,
) -> PopulationFit:
    """k-means on the sample (model space). A warm version starts from ``previous`` and moves the
    centroids ``step`` of the way to that fit, so consecutive versions differ by small steps. Seeded
    k-means++ restarts (``n_init`` for the first version, a third of that later) are fitted on the
    first ``restart_rows`` rows, the best one is finished on all of them, and it replaces the warm
    fit only when its SSQ is lower by ``restart_gain`` (a new persona, a shifted population)."""
    k = min(k, len(Z))
    warm = None
    if previous is not None and len(previous) == k:
        warm = lloyd(Z, previous)
    head = Z[:restart_rows]
    ones = np.ones(len(head))
    fresh = None
    for _ in range(n_init if warm is None else max(1, n_init // 3)):
        run = lloyd(head, kmeans_pp(head, ones, k, rng))
        if fresh is None or run[2] < fresh[2] - 1e-12:
            fresh = run
    assert fresh is not None
    best = lloyd(Z, fresh[0]) if len(Z) > len(head) else fresh
    if warm is None or best[2] < (1.0 - restart_gain) * warm[2]:
        return PopulationFit(best[0], best[1], restarted=warm is not None)
    assert previous is not None
    C = previous + step * (warm[0] - previous)
    return PopulationFit(C, nearest(Z, C)[0], restarted=False)


def aged_sample(
    sample: PopulationSample,
    feature_params: FeatureParams,
    t_max: float,
    source_clocks: dict[int, float] | None,
) -> tuple[np.ndarray, np.ndarray]:
    """The sample's keys (ascending: any head is a uniform sample) and feature rows, each state
    aged to its source's newest event time (at most ``t_max``; all to ``t_max`` when
    ``source_clocks`` is None)."""
    keys, snaps = sample.held()
    order = np.argsort(keys, kind="stable")
    keys, snaps = keys[order], snaps[order]
    if source_clocks is None:
        at = np.full(len(keys), t_max)
    else:
        sources = sample.held_sources()[order].tolist()
        at = np.minimum([source_clocks.get(src, t_max) for src in sources], t_max)
    return keys, evaluate_many(snaps, feature_params, at)


def sample_version(
    sample: PopulationSample,
    vectorizer: Vectorizer,
    feature_params: FeatureParams,
    t_max: float,
    source_clocks: dict[int, float] | None,
    previous: np.ndarray | None,
    previous_t: float,
    rng: np.random.Generator,
    *,
    n_segments: int,
    step: float,
    step_days: float,
    n_init: int,
    restart_gain: float,
) -> tuple[ModelSummary, np.ndarray, float]:
    """A version fitted on the customer sample: each sampled state aged to its source's newest
    event time (``source_clocks``; at most ``t_max``), or to ``t_max`` for all of them when the
    learner aligns its sources (``None``: every source's rows up to the version's time are in).
    A warm fit moves ``previous`` centroids ``step`` of the way (per ``step_days`` of event time
    since ``previous_t`` when that is > 0). Returns the summary, its centroids (the next
    version's ``previous``) and the fit's event time."""
    keys, raw = aged_sample(sample, feature_params, t_max, source_clocks)
    Z = vectorizer.transform(raw)
    if step_days > 0 and np.isfinite(previous_t):
        elapsed = max(t_max - previous_t, 0.0) / (step_days * DAY)
        step = 1.0 - (1.0 - step) ** elapsed
    fit = fit_population(Z, n_segments, previous, rng, n_init, restart_gain, min(step, 1.0))
    k = len(fit.centroids)
    counts = np.bincount(fit.labels, minlength=k).astype(np.float64)
    C, labels = canonical_order(Z, fit.centroids[counts > 0], (np.cumsum(counts > 0) - 1)[fit.labels])
    summary = ModelSummary(
        centroids=C,
        weights=np.bincount(labels, minlength=len(C)).astype(np.float64),
        variances=member_variances(Z, labels, len(C)),
        member_uids=keys.view(np.int64),
        member_labels=labels,
        member_weights=np.ones(len(keys)),
        member_rows=raw,
    )
    return summary, C, t_max
