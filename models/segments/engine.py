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
>>> params = EngineParams(n_segments=3, warmup_vectors=300, update_every=300, warmup_days=0, population=0)
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
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TypeVar

import numpy as np

from models.contracts import CustomerValue, RFMScore
from models.features import FeatureParams
from models.features.table import DEFAULT_WEIGHTS
from models.segments import checkpoint
from models.segments.aligned import AlignedLearning
from models.segments.alignment import SourceAligner
from models.segments.assignment import Assignment, AssignmentRow, Chunk
from models.segments.catalog import make_model
from models.segments.decide import Move, RowLike, clearly_elsewhere, decide_moves
from models.segments.explain import explain_many
from models.segments.hierarchy import Hierarchy
from models.segments.naming import SegmentNamer, group_stats
from models.segments.params import DAY, EngineParams
from models.segments.population import PopulationSample, aged_sample, sample_version
from models.segments.registry import ModelEvent, SegmentRegistry
from models.segments.rfm import RFMScorer
from models.segments.river_models import ModelSummary
from models.segments.value import ValueModel
from models.segments.vectorize import DEFAULT_FEATURES, Vectorizer
from models.segments.version import (
    WARMING_UP,
    ModelVersion,
    SegmentProfile,
    make_version,
    unassigned,
)

__all__ = [
    "DEFAULT_FEATURES",
    "Assignment",
    "AssignmentRow",
    "Chunk",
    "EngineParams",
    "ModelEvent",
    "SegmentEngine",
    "SegmentProfile",
]


class SegmentEngine(AlignedLearning):
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
        # Each feature's default weight from the feature table, then the settings' overrides.
        weights = {f: DEFAULT_WEIGHTS.get(f, 1.0) for f in self.feature_names} | dict(params.feature_weights)
        self.vectorizer = Vectorizer(self.feature_names, weights)
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
        self.namer = SegmentNamer(params.rename_versions)
        # The currencies of the events' amounts (at most two kept: two is "mixed"), for the money
        # figures of a rename's evidence; the caller notes them (note_currencies).
        self.currencies: frozenset[str] = frozenset()
        self.rfm_scorer = RFMScorer()
        self.value_model = ValueModel(self.feature_names)  # churn risk and CLV, fitted per version
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
        # Per row source, the last position taken in (process_chunks' ``positions``).
        self.fed: dict[int, int] = {}
        self._current: ModelVersion | None = None
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

    def model_space(self, raw: np.ndarray) -> np.ndarray:
        """Raw feature rows in the current version's model space (shaped, standardised, weighted)."""
        return self.vectorizer.transform(np.asarray(raw, dtype=np.float64))

    @property
    def retired_count(self) -> int:
        """How many segment ids model updates have retired so far (it only grows)."""
        return len(self.registry.retired)

    def note_currencies(self, codes: Iterable[str]) -> None:
        """Currencies seen in the events' amounts (the pipeline reports each batch's)."""
        if len(self.currencies) < 2:
            self.currencies = frozenset(sorted(self.currencies | set(codes))[:2])

    @property
    def currency(self) -> str | None:
        """The one currency of the events' amounts; None when none was seen or they are mixed."""
        return next(iter(self.currencies)) if len(self.currencies) == 1 else None

    def decide_moves(
        self,
        rows: Sequence[RowLike],
        assignment: Assignment,
        segment: list[int],
        segment_since: list[int],
        seq: list[int],
        deltas: dict[int, int],
        first_seen: Sequence[float] | np.ndarray | None = None,
    ) -> list[Move]:
        """:func:`~models.segments.decide.decide_moves` for rows this engine assigned, with its
        parameters' :attr:`~models.segments.params.EngineParams.hysteresis` and its live segments."""
        return decide_moves(
            rows,
            assignment.segment_ids.tolist(),
            assignment.distances,
            {int(sid): j for j, sid in enumerate(assignment.ids.tolist())},
            self.live_names(),
            segment,
            segment_since,
            seq,
            deltas,
            self.params.hysteresis,
            first_seen,
        )

    def rescore_limit(self, segmented: int) -> int:
        """How many customers one re-scoring of a partition with ``segmented`` customers in a
        segment may move (``rescore_max_share`` of them, rounded down)."""
        return math.floor(self.params.rescore_max_share * segmented + 1e-9)

    def clearly_elsewhere(
        self,
        customers: Sequence[str],
        current: Sequence[int],
        since: Sequence[float],
        assignment: Assignment,
        t: Sequence[float],
        limit: int,
    ) -> list[int]:
        """:func:`~models.segments.decide.clearly_elsewhere` for customers this engine assigned
        (``assignment``, one row each), with its re-scoring margin and its dwell."""
        column = {int(sid): j for j, sid in enumerate(assignment.ids.tolist())}
        best = assignment.segment_ids.tolist()
        d = assignment.distances
        d_current = [float(d[j, column[c]]) if c in column else math.inf for j, c in enumerate(current)]
        d_best = [float(d[j, column[b]]) if b in column else math.inf for j, b in enumerate(best)]
        p = self.params
        return clearly_elsewhere(
            customers, current, since, best, d_current, d_best, t, p.rescore_margin, p.min_dwell_days, limit
        )

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
        positions: np.ndarray | None = None,
    ) -> Iterator[Chunk]:
        """:meth:`process` one version at a time: while the caller handles a yielded chunk, the
        engine is still at the version that assigned it (names, explanations and RFM agree with
        the assignment); the next version is built when the caller asks for the next chunk.
        Events of a build are in the next chunk's ``events_before`` (or ``trailing_events``).

        ``positions`` (with ``sources``: an int per row, increasing within a source, e.g. its
        place in the partition): the engine records, per source, the last position it has taken
        in (:attr:`fed`), and a checkpoint names the rows still waiting by position, so that
        whoever kept the rows (the service's learn log) can hand them back (:meth:`refill`) and
        feed what came after: the model is then a function of the rows, not of the crashes.
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
        pos = None if positions is None or sources is None else np.asarray(positions, dtype=np.int64)
        if self._aligning() and sources is not None:
            # Assign now with the version in force; learn once every source has passed the rows.
            yield Chunk(0, n, self.assign(raw), [])
            self._hold(raw, times, mask, keys if sample is not None else None, snaps, sources, pos)
            if pos is not None:
                self._note_fed(np.asarray(sources), pos)
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
            if pos is not None:
                self._note_fed(src, pos[i:j])
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
        self._source_t = _key_ordered(clock)

    def assign(self, raw: np.ndarray) -> Assignment:
        """Read-only assignment with the current version (ids -1 while warming up)."""
        raw = np.asarray(raw, dtype=np.float64)
        if self._current is None:
            return unassigned(len(raw))
        return self._current.assign(self.vectorizer.transform(raw))

    def decide(
        self, current_id: int | None, current_since: float | None, row: AssignmentRow, t: float
    ) -> int | None:
        """Hysteresis: the segment the customer should be in (``current_id`` if no move).

        A customer moves when the best segment is closer than ``(1 - margin)`` times the distance
        to the current one (the margin narrowing to ``margin_floor`` with the stay) and the
        customer has been in the current segment for at least ``min_dwell_days``. A customer
        without a (live) segment takes the best one.
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
        """:meth:`decide` on plain numbers (:meth:`~models.segments.decide.Hysteresis.target` of
        ``params.hysteresis``); ``d_current`` is ``inf`` when the current segment does not exist in
        the row's version."""
        return self.params.hysteresis.target(current_id, current_since, best, d_best, d_current, t)

    def explain(self, raw_row: np.ndarray, from_id: int | None, to_id: int) -> str:
        """Plain words: the features that contribute most to ``to_id`` beating ``from_id``."""
        return self.explain_many(np.asarray(raw_row, dtype=np.float64).reshape(1, -1), [from_id], [to_id])[0]

    def explain_many(
        self, raw_rows: np.ndarray, from_ids: Sequence[int | None], to_ids: Sequence[int]
    ) -> list[str]:
        """:meth:`explain` for many rows at once (:func:`~models.segments.explain.explain_many`)."""
        return explain_many(self._current, self.vectorizer, self.feature_names, raw_rows, from_ids, to_ids)

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
        return v.profiles(self.vectorizer.inverse(v.centroids), self.feature_names)

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

    def value_many(self, raw_rows: np.ndarray) -> list[CustomerValue | None]:
        """Churn risk and predicted value of each row (None: never bought, or no fit yet)."""
        return self.value_model.score(np.asarray(raw_rows, dtype=np.float64).reshape(len(raw_rows), -1))

    def _note_fed(self, sources: np.ndarray, positions: np.ndarray) -> None:
        fed = self.__dict__.setdefault("fed", {})  # absent in checkpoints from before it
        for source in np.unique(sources).tolist():
            fed[source] = max(fed.get(source, -1), int(positions[sources == source].max()))
        self.fed = _key_ordered(fed)

    def refill(self, rows: Callable[[str, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]) -> int:
        """Give the rows a checkpoint named by position back their columns (``rows(column,
        sources, positions)``: the ``raw`` or ``snap`` values, and which rows were found); rows
        not found are dropped. Returns how many were dropped."""
        if self._aligner is None:
            return 0
        return self._aligner.refill(rows)

    def waiting_floor(self) -> dict[int, int]:
        """Per source, the smallest position among the rows still waiting (none: {})."""
        return self._aligner.floor() if self._aligner is not None else {}

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

    def snapshot(self, waiting: bool | None = False) -> bytes:
        """The exact engine state (:func:`~models.segments.checkpoint.dump`): rows waiting for
        other partitions named by position (whole with ``waiting``, left out with None)."""
        return checkpoint.dump(self, waiting)

    @classmethod
    def restore(cls, data: bytes) -> SegmentEngine:
        """The engine of a :meth:`snapshot` (:func:`~models.segments.checkpoint.load`: data only;
        a :class:`~models.segments.checkpoint.CheckpointError` for anything else)."""
        return checkpoint.load(cls, data)

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
            # Churn risk and value from the same sample as of the same time: customers observed
            # at one moment, not at their purchases (learned rows would all look just-bought).
            if self.value_model.due(self.t_max):
                _, sample_rows = aged_sample(
                    self.population, self.feature_params, self.t_max, self._sources()
                )
                self.value_model.fit(sample_rows, self.t_max)
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
        version = make_version(self.version, s, ids, Z, self.params.outlier_quantile)
        # Names are judged on the version's members: the customer sample as fitted, else the
        # rows this version learned from, as it assigns them.
        if s.member_rows is not None and s.member_labels is not None:
            member_rows, member_ids = s.member_rows, ids[s.member_labels]
        else:
            member_rows, member_ids = raw, version.assign(Z).segment_ids
        stats, population = group_stats(member_rows, member_ids, ids.tolist(), self.feature_names)
        names, name_events = self.namer.update(stats, population, self.version, self.t_max, self.currency)
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

    def _sources(self) -> dict[int, float] | None:
        """Each source's newest event time, to age the sample to (None: all to the version's)."""
        return None if self._aligning() else self._source_t

    def _population_summary(self) -> ModelSummary:
        """The version fitted on the customer sample, each state aged to its source's newest event
        time (at most the version's): :func:`~models.segments.population.sample_version`."""
        assert self.population is not None
        p = self.params
        summary, self._population_centroids, self._population_t = sample_version(
            self.population,
            self.vectorizer,
            self.feature_params,
            self.t_max,
            self._sources(),
            self._population_centroids,
            self._population_t,
            self._population_rng,
            n_segments=p.n_segments,
            step=p.population_step,
            step_days=p.population_step_days,
            n_init=p.n_init,
            restart_gain=p.population_restart_gain,
        )
        return summary


_V = TypeVar("_V")


def _key_ordered(by_source: dict[int, _V]) -> dict[int, _V]:
    """A per-source map in source order, whichever source came first: the same state gives the
    same checkpoint bytes whatever order the polls delivered the partitions in."""
    if list(by_source) == sorted(by_source):
        return by_source
    return dict(sorted(by_source.items()))
