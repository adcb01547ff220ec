"""The segment engine: what the service calls.

Raw feature rows in stream order go in; stable segment ids, soft membership, confidence and
outlier flags come out, together with the model events of any new model version. Learning is
buffered up to fixed boundaries (``warmup_vectors`` first, then every ``update_every`` rows), so
the results do not depend on how the stream was cut into batches: every row is assigned with the
version in force at its position in the stream, and each boundary builds the next version
(scaler refreeze, learning, macro step, registry matching, names, outlier thresholds).

Times are event times in seconds (e.g. epoch seconds); parameters in days are converted.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> params = EngineParams(n_segments=3, warmup_vectors=300, update_every=300)
>>> engine = SegmentEngine(params)
>>> raw = np.abs(rng.normal(1.0, 0.5, (600, len(DEFAULT_FEATURES))))
>>> result, events = engine.process(raw, np.arange(600.0))
>>> engine.version, int(result.segment_ids[0]), int((result.segment_ids[300:] >= 0).sum())
(2, -1, 300)
>>> restored = SegmentEngine.restore(engine.snapshot())
>>> bool(np.array_equal(restored.assign(raw).segment_ids, engine.assign(raw).segment_ids))
True
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.contracts import RFMScore
from models.features import FeatureParams, evaluate_many, feature_label, format_value
from models.segments.alignment import SourceAligner
from models.segments.hierarchy import Hierarchy
from models.segments.microclusters import sq_distances
from models.segments.naming import SegmentNamer, qualify_duplicates, suggest_name
from models.segments.population import PopulationSample, fit_population
from models.segments.registry import ModelEvent, SegmentRegistry
from models.segments.rfm import RFMScorer
from models.segments.river_models import MODEL_NAMES, ModelSummary, make_model, member_variances
from models.segments.vectorize import DEFAULT_FEATURES, Vectorizer

__all__ = [
    "DEFAULT_FEATURES",
    "Assignment",
    "AssignmentRow",
    "EngineParams",
    "ModelEvent",
    "SegmentEngine",
    "SegmentProfile",
]

DAY = 86400.0
WARMING_UP = "warming up"
_SNAPSHOT_MAGIC = b"segstream-engine/1\n"
_VAR_FLOOR = 1e-2
# Bounds of the event-time alignment of sources, for a partition neither progressing nor known to
# be read to its end: it holds the others back by at most this much event time, and at most this
# many rows wait per queue (~50 MB of learned rows; SourceAligner). A catch-up read leaves
# partitions far apart in event time: kafka-python shares fetches out by bytes, not by time, and
# reading the crash test's 100-day log left them up to 56 days apart.
ALIGN_MAX_SKEW_DAYS = 90.0
ALIGN_MAX_HELD = 250_000


@dataclass(frozen=True)
class EngineParams:
    """Every knob of the engine (frozen: one value per model configuration)."""

    n_segments: int = 8
    max_micro: int = 150
    half_life_days: float = 60.0
    update_every: int = 2000
    update_days: float = 0.0  # and at most this much event time between versions (0: rows only)
    warmup_vectors: int = 2000
    warmup_days: float = 0.0  # event-time span the first version waits for (behaviour needs history)
    margin: float = 0.15
    min_dwell_days: float = 7.0
    outlier_quantile: float = 0.99
    gate: float = 0.5
    drift: float = 0.25
    model: str = "microclusters"
    seed: int = 42
    feature_weights: tuple[tuple[str, float], ...] = ()
    n_super: int = 3
    n_init: int = 10  # k-means++ restarts of the macro step (a third of them on warm versions)
    restart_gain: float = 0.05
    # Opt-in: a row with recency r days (an inactivity re-scoring) counts max(1, quiet_weight * r)
    # times, for the quiet days it stands for, so the model's population is closer to a snapshot
    # of the customers (0: every learned row counts once). Measured on the 600-customer logs,
    # 0.5 lowers SSQ/k-means 1.34 -> 1.13 and raises ARI 0.63 -> 0.67 but lowers id agreement
    # 0.89 -> 0.70 and raises flapping 0.2% -> 1-4%: not the default.
    quiet_weight: float = 0.0
    # Fit each version on a sample of the customers as they are at the version's event time
    # (the latest state of the `population` customers with the smallest key hashes, aged to the
    # version's time) instead of on the micro-clusters of the event stream; 0 turns it off.
    # A warm version moves its centroids `population_step` of the way to the sample's fit.
    population: int = 0
    population_step: float = 0.5
    population_restart_gain: float = 0.2  # a restart must cut the sample's SSQ by this share
    # D > 0: `population_step` is the share moved per D days of event time instead of per
    # version (a version dt days after the last moves 1 - (1 - step) ** (dt / D)), so the
    # centroids' smoothing does not depend on how often versions come.
    population_step_days: float = 0.0
    # Learning from several sources (partitions, see SegmentEngine.align_sources): rows wait
    # until every source's clock is past them by this much, then are learned in event-time order,
    # so versions do not depend on how the sources' records interleave (None: arrival order).
    align_lateness_days: float | None = None

    def __post_init__(self) -> None:
        if self.model not in MODEL_NAMES:
            raise ValueError(f"unknown model {self.model!r}; choose one of {MODEL_NAMES}")
        if self.n_segments < 1 or self.update_every < 1 or self.warmup_vectors < 1:
            raise ValueError("n_segments, update_every and warmup_vectors must be >= 1")
        if not 0.0 <= self.margin < 1.0:
            raise ValueError("margin must be in [0, 1)")
        if self.population < 0 or not 0.0 < self.population_step <= 1.0:
            raise ValueError("population must be >= 0 and population_step in (0, 1]")


@dataclass(frozen=True)
class AssignmentRow:
    """One customer's assignment: best id, soft membership and distances over the version's ids."""

    segment_id: int
    version: int
    membership: dict[int, float]
    distances: dict[int, float]
    confidence: float
    outlier: bool


@dataclass
class Assignment:
    """Assignments of a batch. Columns of ``membership``/``distances`` follow ``ids``; a column
    whose id did not exist in a row's version has probability 0 and distance ``inf``."""

    segment_ids: np.ndarray
    membership: np.ndarray
    ids: np.ndarray
    confidence: np.ndarray
    outlier: np.ndarray
    distances: np.ndarray
    versions: np.ndarray

    def __len__(self) -> int:
        return len(self.segment_ids)

    def memberships(self, rows: list[int], min_prob: float = 0.005) -> list[dict[str, float]]:
        """The rows' memberships as published: ``{"id": probability}`` by id, rounded to 4
        places, without the ids under ``min_prob`` or not in the row's version (one numpy pass
        for all the rows)."""
        order = np.argsort(self.ids, kind="stable")
        names = [str(sid) for sid in self.ids[order].tolist()]
        probs = self.membership[rows][:, order]
        keep = (np.isfinite(self.distances[rows][:, order]) & (probs >= min_prob)).tolist()
        return [
            {name: round(p, 4) for name, p, k in zip(names, row, kept, strict=True) if k}
            for row, kept in zip(probs.tolist(), keep, strict=True)
        ]

    def row(self, i: int) -> AssignmentRow:
        ok = np.isfinite(self.distances[i])
        ids = self.ids[ok].tolist()
        return AssignmentRow(
            segment_id=int(self.segment_ids[i]),
            version=int(self.versions[i]),
            membership=dict(zip(ids, self.membership[i, ok].tolist(), strict=True)),
            distances=dict(zip(ids, self.distances[i, ok].tolist(), strict=True)),
            confidence=float(self.confidence[i]),
            outlier=bool(self.outlier[i]),
        )

    @staticmethod
    def concat(parts: list[Assignment]) -> Assignment:
        if len(parts) == 1:
            return parts[0]
        ids = np.array(sorted({int(i) for p in parts for i in p.ids.tolist()}), dtype=np.int64)
        mem, dist = [], []
        for p in parts:
            m = np.zeros((len(p), len(ids)))
            d = np.full((len(p), len(ids)), np.inf)
            cols = np.searchsorted(ids, p.ids)
            m[:, cols] = p.membership
            d[:, cols] = p.distances
            mem.append(m)
            dist.append(d)
        return Assignment(
            segment_ids=np.concatenate([p.segment_ids for p in parts]),
            membership=np.vstack(mem),
            ids=ids,
            confidence=np.concatenate([p.confidence for p in parts]),
            outlier=np.concatenate([p.outlier for p in parts]),
            distances=np.vstack(dist),
            versions=np.concatenate([p.versions for p in parts]),
        )


@dataclass(frozen=True)
class Chunk:
    """Rows ``lo:hi`` of a :meth:`SegmentEngine.process_chunks` call, all assigned by one version."""

    lo: int
    hi: int
    assignment: Assignment
    events_before: list[ModelEvent]  # model events of the build that preceded this chunk


@dataclass(frozen=True)
class SegmentProfile:
    id: int
    name: str
    size: float
    share: float
    centroid: dict[str, float]
    parent: int | None


@dataclass
class _Version:
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


def _canonical_order(Z: np.ndarray, C: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


class SegmentEngine:
    """Online segmentation with stable ids, soft membership, hysteresis, names, hierarchy and RFM.

    Parameters
    ----------
    params
        The engine configuration.
    feature_names
        Column names of the raw rows (default :data:`DEFAULT_FEATURES`).
    """

    def __init__(
        self,
        params: EngineParams,
        feature_names: tuple[str, ...] = DEFAULT_FEATURES,
        feature_params: FeatureParams | None = None,
    ) -> None:
        self.params = params
        self.feature_names = tuple(feature_names)
        # Population mode ages the sample's feature states with the service's feature parameters.
        self.feature_params = feature_params or FeatureParams()
        # River's models keep their own summaries: comparing them is what `evaluate` is for.
        sampled = params.population > 0 and params.model == "microclusters"
        self.population = PopulationSample(params.population) if sampled else None
        self._population_centroids: np.ndarray | None = None
        self._population_t = -np.inf  # event time of the last fit on the sample
        self._source_t: dict[int, float] = {}  # newest event time per row source (partition)
        self._population_rng = np.random.default_rng(params.seed)
        self._align_sources: frozenset[int] = frozenset()  # the sources read
        self._align_drained: frozenset[int] = frozenset()  # those read to their end
        self._aligner: SourceAligner | None = None  # rows waiting for them (or ready to learn)
        self.vectorizer = Vectorizer(self.feature_names, dict(params.feature_weights))
        self.model = make_model(
            params.model,
            params.n_segments,
            params.seed,
            params.max_micro,
            params.half_life_days * DAY,
            n_init=params.n_init,
            restart_gain=params.restart_gain,
        )
        self.registry = SegmentRegistry(gate=params.gate, drift=params.drift)
        self.namer = SegmentNamer()
        self.rfm_scorer = RFMScorer()
        self.version = 0
        self.learned = 0
        self.t_max = -np.inf
        self._pending_raw: list[np.ndarray] = []
        self._pending_t: list[np.ndarray] = []
        self._pending_n = 0
        self._t_lo = np.inf  # event-time span seen, for warmup_days
        self._t_hi = -np.inf
        self._version_t = -np.inf  # event time of the row the last version was built at
        self.trailing_events: list[ModelEvent] = []
        self._current: _Version | None = None
        self.retired_names: dict[int, str] = {}  # last name of each id a model update retired
        idx = {f: i for i, f in enumerate(self.feature_names)}
        self._rfm_cols = [idx.get(f) for f in ("recency_purchase_days", "purchases", "spend")]
        self._recency_col = idx.get("recency_days")

    def _row_weights(self, raw: np.ndarray) -> np.ndarray | None:
        """Learning weight of each row (None: all 1); see ``EngineParams.quiet_weight``."""
        q = self.params.quiet_weight
        col = getattr(self, "_recency_col", None)  # None in snapshots written before the knob
        if q <= 0 or col is None:
            return None
        return np.maximum(1.0, q * np.nan_to_num(raw[:, col]))

    # -- public API -------------------------------------------------------------------------
    @property
    def warmed_up(self) -> bool:
        return self._current is not None

    def process(
        self,
        raw: np.ndarray,
        event_times: np.ndarray,
        learn: np.ndarray | None = None,
        keys: np.ndarray | None = None,
        snaps: np.ndarray | None = None,
        sources: np.ndarray | None = None,
    ) -> tuple[Assignment, list[ModelEvent]]:
        """Assign then learn rows in stream order; returns their assignments and any model events.

        Rows are split at model-update boundaries: each chunk is assigned with the version in
        force, then buffered for learning; at a boundary the next version is built and the
        following rows use it. The result does not depend on how the stream is cut into batches.
        ``learn`` (one bool per row, default all) says which rows the model learns from: the
        caller can thin out heavy users so that segments describe customers, not events.
        The first version waits for ``warmup_vectors`` learned rows spanning ``warmup_days``.
        In population mode, ``keys`` (:func:`~models.segments.population.customer_key` of each
        row's customer) and ``snaps`` (each row's :func:`models.features.snapshot`) feed the
        customer sample, from every row whether learned or not (the sample keeps each customer's
        latest state); without them the sample stays empty and versions come from the
        micro-clusters. ``sources`` (an int per row, e.g. its Kafka partition) give each sampled
        customer the clock it is aged by: its source's newest event time, not the newest of all
        (partitions read at different speeds would make a lagging one's customers look quiet).
        """
        parts: list[Assignment] = []
        events: list[ModelEvent] = []
        for chunk in self.process_chunks(raw, event_times, learn, keys, snaps, sources):
            parts.append(chunk.assignment)
            events.extend(chunk.events_before)
        events.extend(self.trailing_events)
        if not parts:
            return self.assign(np.asarray(raw, dtype=np.float64)), events
        return Assignment.concat(parts), events

    def process_chunks(
        self,
        raw: np.ndarray,
        event_times: np.ndarray,
        learn: np.ndarray | None = None,
        keys: np.ndarray | None = None,
        snaps: np.ndarray | None = None,
        sources: np.ndarray | None = None,
    ) -> Iterator[Chunk]:
        """:meth:`process` one version at a time: while the caller handles a yielded chunk, the
        engine is still at the version that assigned it (names, explanations and RFM agree with
        the assignment); the next version is built when the caller asks for the next chunk.
        Events of a build are in the next chunk's ``events_before`` (or ``trailing_events``).
        """
        raw = np.asarray(raw, dtype=np.float64)
        times = np.asarray(event_times, dtype=np.float64).reshape(-1)
        if raw.ndim != 2 or raw.shape[1] != len(self.feature_names) or len(times) != len(raw):
            raise ValueError(
                f"expected raw (n, {len(self.feature_names)}) and n times, got {raw.shape}, {times.shape}"
            )
        mask = np.ones(len(raw), dtype=bool) if learn is None else np.asarray(learn, dtype=bool)
        sample = self.population if keys is not None and snaps is not None else None
        if sample is not None and (len(keys) != len(raw) or len(snaps) != len(raw)):  # type: ignore[arg-type]
            raise ValueError("keys and snaps must have one entry per row")
        self.trailing_events = []
        n = len(raw)
        if self._aligning() and sources is not None:
            # Assign now with the version in force; learn once every source has passed the rows.
            yield Chunk(0, n, self.assign(raw), [])
            self._hold(raw, times, mask, keys if sample is not None else None, snaps, sources)
            assert self._aligner is not None
            self._aligner.release(self._source_t, self._align_sources - self._align_drained)
            yield from self._learn_ready(n)
            return
        if sources is not None and self._aligner is not None and len(self._aligner):
            # A learner no longer aligning (one partition left): learn what waits first.
            self._aligner.release(self._source_t)
            yield from self._learn_ready(0)
        pending_events: list[ModelEvent] = []
        i = 0
        while i < n:
            j, hit = self._next_boundary(times[i:], mask[i:])
            j += i
            yield Chunk(i, j, self.assign(raw[i:j]), pending_events)
            src = np.zeros(j - i, dtype=np.int64) if sources is None else np.asarray(sources[i:j])
            sampled = (keys[i:j], snaps[i:j], src) if sample is not None else None  # type: ignore[index]
            self._learn_block(raw[i:j], times[i:j], mask[i:j], src, sampled)
            i = j
            pending_events = self._build_at(float(times[j - 1])) if hit else []
        self.trailing_events = pending_events

    def _next_boundary(self, times: np.ndarray, mask: np.ndarray) -> tuple[int, bool]:
        """How many of these rows belong before the next version, and whether it comes after them."""
        boundary = self.params.update_every if self.warmed_up else self.params.warmup_vectors
        ready = np.cumsum(mask) >= boundary - self._pending_n
        if not self.warmed_up and self.params.warmup_days > 0:
            lo = np.minimum(np.minimum.accumulate(times), self._t_lo)
            hi = np.maximum(np.maximum.accumulate(times), self._t_hi)
            ready &= hi - lo >= self.params.warmup_days * DAY
        if self.warmed_up and self.params.update_days > 0:
            # Also a version at the first learned row `update_days` after the last one: a small
            # population's rows come slowly, and its versions would lag in event time.
            ready |= mask & (times >= self._version_t + self.params.update_days * DAY)
        hits = np.flatnonzero(ready)
        return (int(hits[0]) + 1, True) if len(hits) else (len(times), False)

    def _learn_block(
        self,
        raw: np.ndarray,
        times: np.ndarray,
        mask: np.ndarray,
        src: np.ndarray,
        sampled: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
    ) -> None:
        """Buffer the rows to learn (``mask``) for the next version, and refresh the customer
        sample with ``sampled`` (keys, snapshots and sources of the rows it may take)."""
        if mask.any():  # an assign-only caller (a follower) must not pile up empty arrays
            self._pending_raw.append(raw[mask])
            self._pending_t.append(times[mask])
            self._pending_n += int(mask.sum())
        if sampled is not None and self.population is not None:
            self.population.update(*sampled)
        self._seen(times, src)

    def _seen(self, times: np.ndarray, src: np.ndarray) -> None:
        """The event-time span learned from, for ``warmup_days``, and the sources' clocks."""
        if len(times):
            self._tick(times, src)
            self._t_lo = min(self._t_lo, float(times.min()))
            self._t_hi = max(self._t_hi, float(times.max()))

    def _build_at(self, t: float) -> list[ModelEvent]:
        self._version_t = t  # the event time of the row the version comes after
        return self._build()

    def _tick(self, times: np.ndarray, src: np.ndarray) -> None:
        """Advance each source's clock (its newest event time) over these rows."""
        clock = self._source_t
        for source in np.unique(src).tolist():  # one per call from the pipeline
            clock[source] = max(clock.get(source, -np.inf), float(times[src == source].max()))

    # -- several sources, learned in event-time order ----------------------------------------
    def align_sources(self, sources: Iterable[int] | None, drained: Iterable[int] = ()) -> None:
        """The sources (partitions) this learner reads, and those of them read to their end.
        With two or more sources and ``align_lateness_days`` set, rows are learned in event-time
        order across them once every source not drained has passed them
        (:class:`~models.segments.alignment.SourceAligner`); otherwise in the order they come."""
        self._align_sources = frozenset(sources or ())
        self._align_drained = frozenset(drained) & self._align_sources

    def _aligning(self) -> bool:
        return self.params.align_lateness_days is not None and len(self._align_sources) > 1

    def _hold(
        self,
        raw: np.ndarray,
        times: np.ndarray,
        mask: np.ndarray,
        keys: np.ndarray | None,
        snaps: np.ndarray | None,
        sources: np.ndarray,
    ) -> None:
        """Keep the rows the model learns from, and those the customer sample may take, until
        every source has passed them."""
        if self._aligner is None:
            self._aligner = SourceAligner(
                ("learn", "sample"),
                (self.params.align_lateness_days or 0.0) * DAY,
                ALIGN_MAX_SKEW_DAYS * DAY,
                ALIGN_MAX_HELD,
            )
        src = np.asarray(sources, dtype=np.int64)
        self._tick(times, src)  # arrival clocks decide what is released
        rows = {"learn": {"raw": raw}}
        masks = {"learn": mask}
        if keys is not None and snaps is not None and self.population is not None:
            rows["sample"] = {"key": np.asarray(keys, dtype=np.uint64), "snap": np.asarray(snaps)}
            masks["sample"] = self.population.could_take(keys)
        self._aligner.add(times, src, rows, masks)

    def _learn_ready(self, end: int) -> Iterator[Chunk]:
        """Learn the released rows in order, one version at a time; each build is yielded as an
        empty chunk at ``end`` carrying its events (the rows left stay in the aligner, so a
        snapshot taken meanwhile has them)."""
        aligner = self._aligner
        assert aligner is not None
        while aligner.ready_rows():
            hit, last = False, (np.inf, 0, 0)
            learn = aligner.ready["learn"]
            if learn:
                j, hit = self._next_boundary(learn["t"], np.ones(len(learn["t"]), dtype=bool))
                last = (float(learn["t"][j - 1]), int(learn["source"][j - 1]), int(learn["seq"][j - 1]))
                rows = aligner.take("learn", j)
            else:
                rows = {}
            # The sample's rows up to the same point of the order (all of them without a version).
            snaps = aligner.take("sample", aligner.count_through("sample", *last) if hit else None)
            if rows:
                every = np.ones(len(rows["t"]), dtype=bool)
                self._learn_block(rows["raw"], rows["t"], every, rows["source"], None)
            if snaps and self.population is not None:
                self.population.update(snaps["key"], snaps["snap"], snaps["source"])
                # Not the span: taken up to the release cut, not to a learned row, it would make
                # the warm-up's end depend on when releases happen.
                self._tick(snaps["t"], snaps["source"])
            if hit:
                empty = np.zeros((0, len(self.feature_names)))
                yield Chunk(end, end, self.assign(empty), self._build_at(last[0]))

    def assign(self, raw: np.ndarray) -> Assignment:
        """Read-only assignment with the current version (ids -1 while warming up)."""
        raw = np.asarray(raw, dtype=np.float64)
        n = len(raw)
        v = self._current
        if v is None:
            return Assignment(
                segment_ids=np.full(n, -1, dtype=np.int64),
                membership=np.zeros((n, 0)),
                ids=np.zeros(0, dtype=np.int64),
                confidence=np.zeros(n),
                outlier=np.zeros(n, dtype=bool),
                distances=np.zeros((n, 0)),
                versions=np.zeros(n, dtype=np.int64),
            )
        Z = self.vectorizer.transform(raw)
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

    def decide(
        self, current_id: int | None, current_since: float | None, row: AssignmentRow, t: float
    ) -> int | None:
        """Hysteresis: the segment the customer should be in (``current_id`` if no move).

        A customer moves when the best segment is closer than ``(1 - margin)`` times the distance
        to the current one and the customer has been in the current segment for at least
        ``min_dwell_days``. A customer without a (live) segment takes the best one.
        """
        best = row.segment_id
        d_cur = row.distances.get(current_id, math.inf) if current_id is not None else math.inf
        return self.decide_distances(
            current_id, current_since, best, row.distances.get(best, math.inf), d_cur, t
        )

    def decide_distances(
        self,
        current_id: int | None,
        current_since: float | None,
        best: int,
        d_best: float,
        d_current: float,
        t: float,
    ) -> int | None:
        """:meth:`decide` on plain numbers (the hot path: no per-row dicts).

        ``d_current`` is ``inf`` when the current segment does not exist in the row's version.
        """
        if best < 0:
            return current_id
        if current_id is None or not math.isfinite(d_current):
            return best
        if best == current_id:
            return current_id
        dwelt = current_since is None or t - current_since >= self.params.min_dwell_days * DAY
        if dwelt and d_best <= (1.0 - self.params.margin) * d_current:
            return best
        return current_id

    def explain(self, raw_row: np.ndarray, from_id: int | None, to_id: int) -> str:
        """Plain words: the features that contribute most to ``to_id`` beating ``from_id``."""
        return self.explain_many(np.asarray(raw_row, dtype=np.float64).reshape(1, -1), [from_id], [to_id])[0]

    def explain_many(
        self, raw_rows: np.ndarray, from_ids: Sequence[int | None], to_ids: Sequence[int]
    ) -> list[str]:
        """:meth:`explain` for many rows at once: one transform and one ranking for the batch's
        changes instead of a handful of numpy calls per change (the change path's main cost)."""
        v = self._current
        n = len(to_ids)
        if v is None:
            return ["model warming up"] * n
        if n == 0:
            return []
        pos = {int(s): i for i, s in enumerate(v.ids.tolist())}
        raw = np.asarray(raw_rows, dtype=np.float64).reshape(n, -1)
        z = self.vectorizer.transform(raw)
        # Row of each segment in the centroid table; the zero vector stands for "no old segment".
        zero = len(v.centroids)
        table = np.vstack([v.centroids, np.zeros((1, v.centroids.shape[1]))])
        from_rows = np.array([pos.get(f, zero) if f is not None else zero for f in from_ids])
        to_rows = np.array([pos.get(t, zero) for t in to_ids])
        contrib = (z - table[from_rows]) ** 2 - (z - table[to_rows]) ** 2
        top = np.argsort(-contrib, axis=1, kind="stable")[:, :3].tolist()
        typical = self.vectorizer.inverse(v.centroids)  # each segment's typical values, raw units
        out = []
        for i, (from_id, to_id) in enumerate(zip(from_ids, to_ids, strict=True)):
            if to_id not in pos:
                out.append(f"segment {to_id} is not in model version {v.number}")
                continue
            from_row = -1 if from_id is None else pos.get(from_id, -1)
            known = from_row >= 0
            from_name = v.names.get(from_id, f"segment {from_id}") if from_id is not None else None
            parts = []
            for f in top[i]:
                if contrib[i, f] <= 0:
                    break
                name = self.feature_names[f]
                text = f"{feature_label(name)} {format_value(name, float(raw[i, f]))}"
                if known:
                    # Against the old segment's typical value: the customer's own previous value
                    # is not known here, so no "rose"/"fell".
                    text += f" (typical of {from_name}: {format_value(name, float(typical[from_row, f]))})"
                parts.append(text)
            lead = "" if known else f"closest to {v.names.get(to_id, to_id)}: "
            out.append(lead + ("; ".join(parts) if parts else "small changes across many features"))
        return out

    def name_of(self, segment_id: int) -> str:
        """A segment's name: the live one, else the last it had before a model update retired it
        (customers keep a retired segment until their next event or re-scoring)."""
        v = self._current
        if v is not None and segment_id in v.names:
            return v.names[segment_id]
        if segment_id in self.retired_names:
            return f"{self.retired_names[segment_id]} (retired)"
        return f"segment {segment_id}"

    def live_names(self) -> dict[int, str]:
        """Id -> name of the current version's segments (what :meth:`segments` lists, without
        computing profiles: the pipeline asks once per chunk)."""
        v = self._current
        if v is None:
            return {-1: WARMING_UP}
        return {int(sid): v.names.get(int(sid), str(int(sid))) for sid in v.ids.tolist()}

    def segments(self) -> list[SegmentProfile]:
        v = self._current
        if v is None:
            return [SegmentProfile(-1, WARMING_UP, 0.0, 0.0, {}, None)]
        total = float(v.weights.sum()) or 1.0
        raw_c = self.vectorizer.inverse(v.centroids)
        out = []
        for i in np.argsort(v.ids).tolist():
            sid = int(v.ids[i])
            out.append(
                SegmentProfile(
                    id=sid,
                    name=v.names.get(sid, str(sid)),
                    size=float(v.weights[i]),
                    share=float(v.weights[i]) / total,
                    centroid=dict(zip(self.feature_names, raw_c[i].tolist(), strict=True)),
                    parent=v.parents.get(sid),
                )
            )
        return out

    def hierarchy(self) -> Hierarchy:
        v = self._current
        if v is None:
            return Hierarchy([], [], [], np.zeros((0, 4)))
        ids = v.ids.tolist()
        return Hierarchy.build(v.centroids, v.weights, [v.names.get(i, str(i)) for i in ids], ids)

    def rfm(self, raw_row: np.ndarray) -> RFMScore | None:
        """R, F, M quintile scores and group; None for a customer who never purchased (RFM
        describes buyers: a browser is not "Lost", it never started)."""
        if any(c is None for c in self._rfm_cols):
            raise ValueError("RFM needs recency_purchase_days, purchases and spend features")
        r = np.asarray(raw_row, dtype=np.float64).reshape(-1)
        recency, purchases, spend = (float(r[c]) for c in self._rfm_cols if c is not None)
        if purchases <= 0:
            return None
        return self.rfm_scorer.score(recency, purchases, spend)

    def waiting_rows(self) -> int:
        """Rows held for other partitions (``align_sources``), not yet learned."""
        return len(self._aligner) if self._aligner is not None else 0

    def forget_customers(self, keys: set[int]) -> int:
        """Drop erased customers (by :func:`~models.segments.population.customer_key`) from the
        customer sample; returns how many it held."""
        if self.population is None or not keys:
            return 0
        if self._aligner is not None and len(self._aligner):  # rows still waiting to be learned
            self._aligner.drop("sample", "key", keys)
        return self.population.forget(keys)

    def snapshot(self, waiting: bool = False) -> bytes:
        """The exact engine state (pickled; restore only snapshots this service wrote).

        Rows waiting for other partitions (``align_sources``) are left out unless ``waiting``:
        during a catch-up read they can be weeks of rows, tens of megabytes, too much for every
        version's checkpoint and Kafka record. A graceful shutdown keeps them; a crash loses
        them, as it loses the rows learned since the last version."""
        state = self.__dict__
        if not waiting and self._aligner is not None:
            state = {**state, "_aligner": None}
        return _SNAPSHOT_MAGIC + pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def restore(cls, data: bytes) -> SegmentEngine:
        if not data.startswith(_SNAPSHOT_MAGIC):
            raise ValueError("not a segstream engine snapshot")
        state: dict[str, Any] = pickle.loads(data[len(_SNAPSHOT_MAGIC) :])
        engine = cls.__new__(cls)
        # Attributes newer than some snapshots written by earlier releases.
        engine.retired_names = {}
        engine.feature_params = FeatureParams()
        engine.population = None
        engine._version_t = -np.inf
        engine._population_centroids = None
        engine._population_t = -np.inf
        engine._source_t = {}
        engine._align_sources = frozenset()
        engine._align_drained = frozenset()
        engine._aligner = None
        engine._population_rng = np.random.default_rng(state["params"].seed)
        engine.__dict__.update(state)
        return engine

    # -- model versions ---------------------------------------------------------------------
    def _build(self) -> list[ModelEvent]:
        raw = np.vstack(self._pending_raw)
        t = np.concatenate(self._pending_t)
        self._pending_raw, self._pending_t, self._pending_n = [], [], 0
        self.t_max = max(self.t_max, float(t.max()))
        self.vectorizer.update(raw)
        if self.version == 0 or self.model.supports_rescale:
            a, b = self.vectorizer.freeze()
            if self.version > 0:
                self.model.rescale(a, b)
                self.registry.rescale(a, b)
                if self._population_centroids is not None:
                    self._population_centroids = a * self._population_centroids + b
        Z = self.vectorizer.transform(raw)
        self.model.learn_many(Z, t, self._row_weights(raw))
        self.learned += len(raw)
        if all(c is not None for c in self._rfm_cols):
            self.rfm_scorer.update(*(raw[:, c] for c in self._rfm_cols if c is not None))
        if self.population is not None and len(self.population) >= 4 * self.params.n_segments:
            s = self._population_summary()  # the micro-clusters' macro step is not needed
        else:
            s = self.model.summary(Z, self.t_max)
        self.version += 1
        ids, events = self.registry.update(
            s.centroids,
            s.weights,
            self.version,
            self.t_max,
            s.member_uids,
            s.member_labels,
            s.member_weights,
        )
        version = self._make_version(s, ids, Z)
        names, name_events = self.namer.update(self._suggest_names(version), self.version, self.t_max)
        version.names = names
        if self._current is not None:  # remember the last name of every id this version retires
            self.retired_names.update({sid: n for sid, n in self._current.names.items() if sid not in names})
        events.extend(name_events)
        if len(ids) > 1:
            h = Hierarchy.build(
                version.centroids, version.weights, [names[i] for i in ids.tolist()], ids.tolist()
            )
            version.parents = h.groups(min(self.params.n_super, len(ids)))
        self._current = version
        events.append(
            ModelEvent(
                "version",
                self.version,
                -1,
                tuple(sorted(ids.tolist())),
                f"model version {self.version}: {len(ids)} segments after {self.learned} vectors",
                self.t_max,
            )
        )
        return events

    def _population_summary(self) -> ModelSummary:
        """The version fitted on the customer sample, each state aged to its source's newest event
        time (at most the version's)."""
        assert self.population is not None
        keys, snaps = self.population.held()
        order = np.argsort(keys, kind="stable")  # smallest keys first: any head is a uniform sample
        keys, snaps = keys[order], snaps[order]
        if self._aligning():
            # Learned in event-time order: every source's rows up to the version's time are in
            # (a source read to its end has no more), so every customer is as of that time.
            at = np.full(len(keys), self.t_max)
        else:
            # Each customer as of its source's progress, at most the version's time.
            clock = self._source_t
            sources = self.population.held_sources()[order].tolist()
            at = np.minimum([clock.get(src, self.t_max) for src in sources], self.t_max)
        raw = evaluate_many(snaps, self.feature_params, at)
        Z = self.vectorizer.transform(raw)
        p = self.params
        step = p.population_step
        if p.population_step_days > 0 and np.isfinite(self._population_t):
            elapsed = max(self.t_max - self._population_t, 0.0) / (p.population_step_days * DAY)
            step = 1.0 - (1.0 - step) ** elapsed
        self._population_t = self.t_max
        fit = fit_population(
            Z,
            p.n_segments,
            self._population_centroids,
            self._population_rng,
            p.n_init,
            p.population_restart_gain,
            min(step, 1.0),
        )
        k = len(fit.centroids)
        counts = np.bincount(fit.labels, minlength=k).astype(np.float64)
        C, labels = _canonical_order(Z, fit.centroids[counts > 0], (np.cumsum(counts > 0) - 1)[fit.labels])
        self._population_centroids = C
        return ModelSummary(
            centroids=C,
            weights=np.bincount(labels, minlength=len(C)).astype(np.float64),
            variances=member_variances(Z, labels, len(C)),
            member_uids=keys.view(np.int64),
            member_labels=labels,
            member_weights=np.ones(len(keys)),
        )

    def _make_version(self, s: ModelSummary, ids: np.ndarray, Z: np.ndarray) -> _Version:
        var = np.maximum(s.variances, _VAR_FLOOR)
        inv = 1.0 / var
        mu_inv = s.centroids * inv
        w = np.maximum(s.weights, 1e-12)
        const = np.log(w / w.sum()) - 0.5 * np.log(var).sum(axis=1) - 0.5 * (s.centroids * mu_inv).sum(axis=1)
        # The Mahalanobis term enters with -0.5: fold it into the matrices used by assign().
        d2 = sq_distances(Z, s.centroids)
        best = np.argmin(d2, axis=1)
        dist = np.sqrt(d2[np.arange(len(Z)), best])
        q = self.params.outlier_quantile
        glob = float(np.quantile(dist, q)) if len(dist) else np.inf
        thresholds = np.full(len(ids), glob)
        for j in range(len(ids)):
            members = dist[best == j]
            if len(members) >= 20:
                thresholds[j] = float(np.quantile(members, q))
        return _Version(
            number=self.version,
            ids=ids.astype(np.int64),
            centroids=s.centroids,
            variances=var,
            weights=s.weights,
            thresholds=thresholds,
            inv_var=-0.5 * inv,
            mu_inv_var=-0.5 * mu_inv,
            const=const,
        )

    def _suggest_names(self, v: _Version) -> dict[int, str]:
        raw_c = self.vectorizer.inverse(v.centroids)
        z = self.vectorizer.standardised(v.centroids)
        out = {}
        zs: dict[int, dict[str, float]] = {}
        raws: dict[int, dict[str, float]] = {}
        for i, sid in enumerate(v.ids.tolist()):
            zs[sid] = dict(zip(self.feature_names, z[i].tolist(), strict=True))
            raws[sid] = dict(zip(self.feature_names, raw_c[i].tolist(), strict=True))
            out[sid] = suggest_name(raws[sid], zs[sid])
        return qualify_duplicates(out, zs, raws)
