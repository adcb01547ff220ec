"""The batch pipeline: decode, validate, update features, assign segments, publish, commit.

One call of :meth:`BatchProcessor.process` handles the records of one poll. Per partition, in
offset order: records the partition already applied are skipped (a replay after a crash); bad
records become dead letters; events update the features; customers whose inactivity crossed a
threshold before the watermark are re-scored at the crossing time. Then every row goes through
the segment engine in stream order, and hysteresis decides who moves. Each partition's state and
its outputs (changes, dead letters: its outbox) are written in one atomic Redis step, the outputs
are published once it landed, and the caller commits the Kafka offsets last.
"""

from __future__ import annotations

import bisect
import gc
import heapq
import itertools
import logging
import math
import operator
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import ValidationError

from models.contracts import (
    KIND_OF_TYPE,
    DecodedEvent,
    EventType,
    InteractionEvent,
    decode_fast,
    describe_validation_error,
    repeated_field,
)
from models.features import (
    FeatureParams,
    admit,
    crosses,
    due_after,
    due_after_event,
    evaluate_many,
    threshold_offsets,
)
from models.features.batch import BatchEvents, StateBatch
from models.features.clock import PartitionClock
from models.features.vector import RHYTHM_WIDTH
from models.segments.decide import DAY, learn_mask
from models.segments.engine import Chunk, SegmentEngine
from models.segments.lifecycle import History, day_thresholds, describe_stage, step
from models.segments.population import customer_key
from stream.config import Settings
from stream.errors import BatchAbandoned
from stream.io.kafka import Record
from stream.io.sinks import OutputSink, Sink
from stream.runtime.batch import BatchResult, PartitionBatch, Row, iso, iso_seconds
from stream.runtime.engines import restore
from stream.runtime.merge import Place, decode_place, encode_place, merge_order, safe_prefix, version_at
from stream.runtime.metrics import Metrics
from stream.runtime.outputs import OutputsMixin
from stream.runtime.relearn import RelearnMixin
from stream.runtime.retired import UNPLACED, RetiredMovesMixin
from stream.state import OrderedIO, PartitionView, PartitionWrite, StateStore, topic_changed
from stream.state.learnlog import decode_rows, encode_rows, entry_name, position, rows_after

log = logging.getLogger(__name__)

_OFFSET = operator.attrgetter("offset")
# Versions the learner keeps for its followers at most (they need those built since the slowest
# partition's written watermark: a few; more only when the merge was forced out of order).
MAX_KEPT_VERSIONS = 64


def _event_offset(x: tuple[Record, Any, int]) -> int:
    return x[0].offset


# Event type -> (feature kind, is an add-to-cart): what fact_of derives from the type, looked up once.
_TYPE_INFO: dict[EventType, tuple[str, bool]] = {
    t: (KIND_OF_TYPE[t], t is EventType.ADD_TO_CART) for t in EventType
}


_Decoded = tuple[Record, DecodedEvent | None, int]  # a record, its event (None: bad), its time


class _Quiet:
    """Metrics that count nothing (the merge's dry run of the event loop)."""

    def __getattr__(self, name: str) -> _Quiet:
        return self

    def __call__(self, *args: Any, **kwargs: Any) -> _Quiet:
        return self


_QUIET = _Quiet()


@dataclass
class _DryRows:
    """A dry run's rows of a partition's records: each row's clock and record offset, and the
    offset of the last record it went through."""

    clocks: np.ndarray
    offsets: np.ndarray
    through: int

    def after(self, offset: int) -> _DryRows:
        """The rows of the records from ``offset`` on."""
        keep = self.offsets >= offset
        return _DryRows(self.clocks[keep], self.offsets[keep], self.through)


@dataclass
class _Prepared:
    """A partition's part of a batch between its event loop and its write."""

    batch: PartitionBatch
    applied_offset: int
    new_offset: int
    placed_before: list[int]
    due_updates: dict[str, int]
    clock: PartitionClock
    staged: list[Any]  # its outputs in the making
    deltas: dict[int, int] = field(default_factory=dict)  # segment count changes
    moved_out: dict[str, bytes] = field(default_factory=dict)  # states of customers outside the batch
    learned: tuple[str, bytes] = ("", b"")  # its learn-log entry
    rescores: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class _Inputs:
    """What the engine takes of a partition's rows (from ``unclocked`` on, but ``raw``: all)."""

    raw: np.ndarray
    unclocked: int
    times: np.ndarray
    learn: np.ndarray
    keys: np.ndarray | None
    sources: np.ndarray | None
    positions: np.ndarray | None


class BatchProcessor(RetiredMovesMixin, RelearnMixin, OutputsMixin):
    def __init__(
        self,
        settings: Settings,
        store: StateStore,
        engine: SegmentEngine,
        sink: Sink,
        metrics: Metrics,
    ) -> None:
        self.settings = settings
        self.store = store
        self.engine = engine
        self.sink = sink
        self.metrics = metrics
        self.params: FeatureParams = settings.features.params()
        f = settings.features
        self._lateness = int(f.allowed_lateness_hours * 3600)
        self._future = int(f.max_future_hours * 3600)
        self._clock_customers = f.watermark_customers
        # The input topic's id (Kafka 4 topic id), recorded with each partition's state; a write
        # onto state built from another topic of the same name fails. "": not checked (files).
        self.topic_id = ""
        self._thresholds = f.inactivity_thresholds_days
        self._lifecycle = settings.lifecycle.params()
        self._won_back_seconds = self._lifecycle.won_back_days * DAY
        self._max_bytes = settings.kafka.max_record_bytes
        self._learn_interval = settings.model.learn_interval_hours * 3600
        self.learns = settings.model.role == "learner"
        # The partitions this instance reads (set by the service on each assignment): a learner
        # learns from them in event-time order (SegmentEngine.align_sources). None: a replay or
        # an evaluation, which feed their partitions in a fixed order of their own.
        self.owned: frozenset[int] | None = None
        self.drained: frozenset[int] = frozenset()  # owned partitions read to their end (service)
        self._unfed: set[int] = set()  # partitions of the batch not yet given to the engine
        # Per partition, how many retired segment ids the engine had when the partition was last
        # checked for customers left in a retired segment (see _move_retired).
        self._checked_retired: dict[int, tuple[int, bool]] = {}
        self._warmup_saved_at = -math.inf  # watermark of the last warm-up checkpoint
        # State and outputs together, published after, offsets last: each partition's changes and
        # dead letters are staged while it computes, written into Redis with its state (the
        # outbox), published once that write landed, and deleted once acknowledged (OrderedIO).
        self.io = OrderedIO(store, publish=self._publish_written, flush=self._flush_outputs)
        self._staged: list[tuple[str, Any]] = []  # the partition's outputs, in the making
        self._unacked_versions: deque[int] = deque()
        # The learner's merge (stream.runtime.merge): records read ahead of a partition that may
        # still deliver earlier rows wait here, at most ``max_held_records``; each partition's
        # clock as last written (a partition without records in a batch bounds the others by it).
        # Every partition's rows go to the learner in the merge's order: a follower writes its
        # rows to its partitions' learn logs, the learner takes them from there (``remote``).
        all_rows = settings.model.align_partitions and settings.model.learn_all_partitions
        self._logs_rows = self.learns or all_rows
        # A follower of a merging learner assigns each row with the version the learner's merge
        # had at its place: it logs its rows first, waits (bounded) until the merge passed them,
        # then assigns, decides and writes (_assign_following). Its own partitions' rows are
        # merged as the learner merges (a row of one waits for the others to pass it): else a
        # row waiting for the next batch of another of its partitions would wait for itself.
        self.waits_for_merge = False
        self._merge = self.learns and settings.model.align_partitions
        self.follow_merge(not self.learns and all_rows)
        self.remote: frozenset[int] = frozenset()  # partitions another instance reads (set by the service)
        self._remote_drained: frozenset[int] = frozenset()
        self._remote_bound: dict[int, int] = {}  # each remote partition's clock as far as pulled
        self._remote_written: dict[int, int] = {}  # and its written watermark
        # The learner's side of its followers' waits (decision 0032): how far its merge got, and
        # the versions kept for them with the place each was built after.
        self._merged_to: Place = (-1, -1, -1)
        self._merge_published: Place = (-1, -1, -1)
        self._built_after: dict[int, Place] = {}
        self._kept_loaded = False
        self.await_learner: Callable[[], bool] = _pause  # False: stop waiting (the service stops)
        self._merge_wait = settings.model.follower_wait_seconds
        self._versions: dict[int, SegmentEngine] = {}  # the versions a follower assigned with lately
        self._pulled: dict[int, int] = {}  # the last learn-log position pulled of each
        self._held: dict[int, list[_Decoded]] = {}
        self._held_rows: dict[int, _DryRows] = {}  # the dry run's rows of the held records
        self._clock_of: dict[int, int] = {}
        # Learn-log rows of records already applied that wait for their place in the merge (a
        # restart after a crash between two partitions' writes of a batch: RelearnMixin.relearn),
        # per partition, and how many of each the batch in progress releases.
        self._ghosts: dict[int, dict[str, np.ndarray]] = {}
        self._ghost_go: dict[int, int] = {}
        self._max_held = settings.model.max_held_records
        # Calls to make once the batch's writes landed (the learner's checkpoints); None: outside
        # a batch, where they run at once.
        self._after_writes: list[Callable[[], None]] | None = None
        self._queued_version = engine.version  # the newest version checkpointed or about to be
        self._trims: deque[tuple[float, dict[int, int]]] = deque()  # OutputsMixin._trim_learn_log
        # An OutputSink takes outputs as bytes, which the outbox stores; minimal sinks (tests,
        # evaluation) take the objects, and nothing is stored for them.
        self._encoded = isinstance(sink, OutputSink)
        # A sink that publishes from another process takes each partition's outputs as they are
        # made (OutputSink.ship; stream.io.sinks.process); minimal sinks (tests, evaluation) send on
        # each call and need not have it.
        self._ship: Callable[[], None] = getattr(sink, "ship", lambda: None)

    def follow_merge(self, on: bool) -> None:
        """A follower waits for the learner's merge (decision 0032) or swaps to the newest version
        between batches: the service turns it off where partitions move between instances (a
        subscribing group), whose new owner would find rows logged ahead of what was applied."""
        self.waits_for_merge = on and not self.learns
        self._merge = (self.learns or self.waits_for_merge) and self.settings.model.align_partitions

    def drain(self) -> None:
        """Wait until every processed batch's state is in the store (raises a failed commit)."""
        # Batches about to be redone may have moved customers out of retired segments: look again.
        self._checked_retired.clear()
        self.io.drain()

    def close(self) -> None:
        self.io.close()

    # ---- decode ----
    def _decode(self, rec: Record, result: BatchResult) -> InteractionEvent | None:
        """The slow path of a record the fast path refused: the contract's decision, and for a bad
        record its dead letter with the reason."""
        value = rec.value
        if value is None:
            self._dead(rec, "EmptyRecord", "record has no value", result)
            return None
        if len(value) > self._max_bytes:
            self._dead(
                rec, "RecordTooLarge", f"record is {len(value):,} bytes, limit {self._max_bytes:,}", result
            )
            return None
        try:
            event = InteractionEvent.model_validate_json(value)
        except ValidationError as e:
            kind = (
                "InvalidJSON" if any(err["type"] == "json_invalid" for err in e.errors()) else "InvalidEvent"
            )
            self._dead(rec, kind, describe_validation_error(e), result)
            return None
        repeated = repeated_field(value)
        if repeated is not None:
            self._dead(rec, "InvalidEvent", repeated, result)
            return None
        if rec.key is None:
            self._dead(
                rec,
                "MissingKey",
                "record has no key; the key must be the customer_id (Kafka partitions by it, so a "
                "keyless record may land beside another partition's state of the customer)",
                result,
            )
            return None
        if rec.key != event.customer_id.encode():
            self._dead(
                rec,
                "KeyMismatch",
                f"record key {rec.key[:64]!r} is not the customer_id {event.customer_id!r}",
                result,
            )
            return None
        return event

    # ---- the batch ----
    def process(self, records: Sequence[Record]) -> BatchResult:
        # A batch allocates hundreds of thousands of short-lived, acyclic objects: the cyclic
        # collector would rescan the long-lived heap (model, clients) many times per batch for
        # nothing. Pause it for the batch; young objects are collected after it as usual.
        paused = gc.isenabled()
        if paused:
            gc.disable()
        try:
            return self._process(records)
        except BaseException:
            # A batch that failed before handing its writes over takes the checkpoints it queued
            # with it (the caller goes back to the stored version and relearns): what runs next,
            # outside a batch, must not join its list (a relearn's versions were lost that way).
            self._after_writes = None
            raise
        finally:
            if paused:
                gc.enable()

    def _process(self, records: Sequence[Record]) -> BatchResult:
        started = time.perf_counter()
        result = BatchResult()
        by_partition: dict[int, list[Record]] = {}
        for rec in records:
            by_partition.setdefault(rec.partition, []).append(rec)
        self.metrics.events_consumed.inc(len(records))
        self.metrics.batch_size.observe(len(records))
        # Decode every partition first, so that all loads go to the store at once and Redis
        # reads the next partition while this one computes.
        decode = self._decode_quiet
        work = []
        merging = self._merging()
        still_held = self._still_held(by_partition) if merging else set()
        for p in sorted(set(by_partition) | set(self._held)):
            recs = sorted(by_partition.get(p, ()), key=_OFFSET)
            # (record, event, event time in whole seconds): the time is computed once per event.
            # Records held back by the learner's merge come first (they precede in the partition).
            decoded = [(r, *d) if (d := decode(r)) else (r, None, 0) for r in recs]
            if p in still_held:
                self._held[p].extend(decoded)  # nothing of it can go: not loaded, not looked at
                continue
            events = self._held.pop(p, []) + decoded
            customers = sorted({e.customer_id for _, e, _ in events if e is not None})
            max_ts = max((ts for _, e, ts in events if e is not None), default=0)
            work.append((p, events, self.io.load(p, customers, due_until=max_ts)))
        self.io.release()  # the previous batch's writes, behind this batch's loads
        self._after_writes = []
        self._unfed = set(by_partition)
        if self._ghosts and not merging:
            self._learn_ghosts()
        if merging:
            work = self._hold_back([(p, events, self.io.view(loading)) for p, events, loading in work])
        prepared: list[_Prepared] = []
        for p, events, loading in work:
            if not events:
                continue
            result.offsets[p] = events[-1][0].offset + 1
            view = loading if isinstance(loading, PartitionView) else self.io.view(loading)
            if (prep := self._prepare_partition(p, events, view, result)) is None:
                continue
            prepared.append(prep)
            if not merging and not self.waits_for_merge:
                # A partition read to its end stops holding the learner's rows back only once this
                # batch's rows of it are in the engine; they go in before anything is released.
                self._unfed.discard(p)
                self._assign(prep, result)
        if self.waits_for_merge:
            if prepared:
                self._assign_following(prepared, result)
        elif merging and (prepared or self._ghost_go):
            self._assign_merged(prepared, result)
        writes = [self._finish_partition(prep) for prep in prepared]
        # State and outputs together, outputs published after, offsets last: a crash in between
        # publishes the written outputs again (the same bytes) but never loses a change, publishes
        # none Redis does not hold, and never applies an event twice. The writes run in the
        # background, after the next batch's loads (OrderedIO); ``durable`` is done once the
        # outputs are acknowledged, and the caller commits offsets then.
        if self.learns and not self.engine.warmed_up and writes:
            self._checkpoint_warmup(max(w.watermark for w in writes))  # saved once they are written
        if self.learns and self.remote and self._merged_to > self._merge_published:
            self._publish_merge_progress()
        after, self._after_writes = self._after_writes or [], None
        if writes or after:
            result.durable = self.io.commit(writes, after)
            self.metrics.unwritten_batches.set(self.io.unwritten())
        for w in writes:
            self.metrics.watermark.labels(partition=str(w.partition)).set(w.watermark)
            result.watermarks[w.partition] = w.watermark
            self._clock_of[w.partition] = w.watermark
        if self.learns:
            self.metrics.model_waiting_rows.set(self.engine.waiting_rows() + self.held_records())
        self.metrics.batch_seconds.observe(time.perf_counter() - started)
        return result

    # ---- the learner's merge (stream.runtime.merge) ----
    def _merging(self) -> bool:
        """A learner reading several partitions processes their rows in one merged order."""
        return self._merge and self.owned is not None and len(self.owned | self.remote) > 1

    def _still_held(self, by_partition: dict[int, list[Record]]) -> set[int]:
        """Partitions whose held records all wait through this batch, known before any load: a
        partition not read to its end that delivers nothing now and holds nothing bounds the
        others by its clock exactly, and a held partition's first row after that bound stays
        (a catch-up reads one partition far ahead while others are silent: its held records
        would otherwise be reloaded and looked at in every batch)."""
        incoming = sum(len(r) for r in by_partition.values())
        if not self._held or self.held_records() + incoming > self._max_held:
            return set()  # near the bound, the whole batch is looked at (_hold_back forces it)

        def last_known(q: int, clock: int) -> int:
            # Its waiting learn-log rows may all go: it bounds the merge at the last of them.
            ghost = self._ghosts.get(q)
            return max(clock, int(ghost["t"][-1])) if ghost is not None and len(ghost["t"]) else clock

        silent = (self.owned or frozenset()) - self.drained - set(by_partition) - set(self._held)
        bounds = [(last_known(q, self._clock_of[q]), q) for q in silent if q in self._clock_of]
        remote = self.remote - self._remote_drained
        bounds += [(last_known(q, self._remote_bound.get(q, 0)), q) for q in remote]
        if not bounds:
            return set()
        bound = min(bounds)
        return {
            p
            for p, rows in self._held_rows.items()
            if p in self._held and len(rows.clocks) and (int(rows.clocks[0]), p) > bound
        }

    def held_records(self) -> int:
        """Records read but held back by the merge (processed by a later batch), and learn-log
        rows waiting for their place in it."""
        return sum(len(h) for h in self._held.values()) + sum(len(g["t"]) for g in self._ghosts.values())

    def _learn_ghosts(self) -> None:
        """Learn the waiting learn-log rows now (a learner no longer merging: one partition)."""
        ghosts, self._ghosts = list(self._ghosts.values()), {}
        self._learn_again(ghosts, merged=True)

    def _take_ghosts(self) -> dict[int, dict[str, np.ndarray]]:
        """The waiting learn-log rows this batch releases (``_ghost_go``), per partition."""
        out = {}
        for p, k in self._ghost_go.items():
            g = self._ghosts.pop(p)
            out[p] = {c: v[:k] for c, v in g.items()}
            if k < len(g["t"]):
                self._ghosts[p] = {c: v[k:] for c, v in g.items()}
        self._ghost_go = {}
        return out

    def held_until(self, p: int) -> int | None:
        """The offset after the last record of ``p`` held back (None: none held)."""
        held = self._held.get(p)
        return held[-1][0].offset + 1 if held else None

    def drop_held(self, partitions: Iterable[int] | None = None) -> dict[int, int]:
        """Forget the held records (of ``partitions``, default all): the caller seeks back and
        reads them again (a rebalance, a resync, a rewind). Returns, per partition, the offset of
        its first record dropped: where to seek when the store has applied nothing of it."""
        gone = list(self._held) if partitions is None else [p for p in partitions if p in self._held]
        first = {p: self._held[p][0][0].offset for p in gone if self._held[p]}
        for p in gone:
            del self._held[p]
        # The dry-run rows too, of held records or not: a batch that failed had taken its held
        # records out of ``_held`` before its loads, and their rows, kept, would be read as those
        # of the records read again from an earlier offset (seen after a Redis failover: rows
        # learned out of the merge's order).
        if partitions is None:
            self._held_rows.clear()
            self._clock_of.clear()
        else:
            for p in partitions:
                self._held_rows.pop(p, None)
                self._clock_of.pop(p, None)
        return first

    def _hold_back(
        self, work: list[tuple[int, list[_Decoded], PartitionView]]
    ) -> list[tuple[int, list[_Decoded], Any]]:
        """Each partition's records that may go now; the rest wait in ``_held`` for a later batch.
        The rows' clocks come from a dry run of the event loop (no state, output or metric is
        touched); a row goes once no partition not read to its end can deliver one before it.

        The clocks of held records are kept with them (``_held_rows``): the real run of the
        records that went ends in the state the dry run had reached there, so they stay valid.
        A partition's records that came after those known are dry-run only once all its known
        rows may go: until then they are held anyway, and a partition read first in a catch-up
        (tens of thousands of records before any other delivers) costs one dry run, not one per
        batch."""
        owned = self.owned or frozenset()
        remote = self.remote - self._remote_drained
        waiting = set(owned - self.drained) | remote
        # Partitions left out of the batch (_still_held) keep their rows and bound the others by
        # their first one held.
        cached = self._held_rows
        self._held_rows = {p: r for p, r in cached.items() if p in self._held}
        # Waiting learn-log rows precede their partition's records (RelearnMixin.relearn).
        ghost_n = {p: len(g["t"]) for p, g in self._ghosts.items()}
        self._ghost_go = ghost_n
        if not waiting:
            return work  # every partition read to its end: nothing can come before these rows
        known: dict[int, _DryRows] = {}
        complete: dict[int, bool] = {}
        before: dict[int, int] = {}
        fresh_of: dict[int, list[_Decoded]] = {}
        views: dict[int, PartitionView] = {}
        for p, events, view in work:
            before[p], views[p] = view.watermark, view
            first = bisect.bisect_right(events, view.applied_offset, key=_event_offset)
            fresh = fresh_of[p] = events[first:] if first else events
            rows = cached.get(p)
            if rows is None or (fresh and rows.through < fresh[0][0].offset):
                known[p], complete[p] = self._dry_rows(view, fresh), True
            else:
                known[p] = rows
                complete[p] = not fresh or fresh[-1][0].offset <= rows.through
        for p, rows in self._held_rows.items():
            if len(rows.clocks):
                before[p] = int(rows.clocks[0])
        for q in remote - set(before):
            before[q] = self._remote_bound.get(q, 0)  # only what was pulled: its rows below are known
        for q in waiting - set(before):
            if q not in self._clock_of:
                self._clock_of[q] = self.store.watermark(q)
            before[q] = self._clock_of[q]
        while True:
            # A partition with records beyond its known rows may deliver rows from its last known
            # clock on: it is waited for, as a partition not read to its end.
            open_ = {p for p, done in complete.items() if not done}
            bounds = dict(before)
            for p in open_:
                if len(known[p].clocks):
                    bounds[p] = int(known[p].clocks[-1])
            clocks = {p: r.clocks for p, r in known.items()}
            for p, g in self._ghosts.items():
                clocks[p] = np.concatenate([g["t"].astype(np.int64), clocks.get(p, np.zeros(0, np.int64))])
            go = safe_prefix(clocks, bounds, waiting | open_)
            more = [p for p in open_ if go[p] == len(clocks[p])]
            if not more:
                break
            for p in more:  # every known row may go: the rest's clocks are needed now
                known[p], complete[p] = self._dry_rows(views[p], fresh_of[p]), True
        self._ghost_go = {p: min(go[p], n) for p, n in ghost_n.items() if go[p]}
        live = {p: go[p] - ghost_n.get(p, 0) for p in known}  # negative: ghosts still wait
        held = {p: int(r.offsets[max(live[p], 0)]) for p, r in known.items() if live[p] < len(r.clocks) > 0}
        cut_at = {p: bisect.bisect_left(e, held[p], key=_event_offset) for p, e, _ in work if p in held}
        kept = sum(len(events) - cut_at[p] for p, events, _ in work if p in held)
        if kept > self._max_held:
            # Too much read ahead of a partition that does not deliver: go on out of order (the
            # merge no longer guarantees the segments; counted) rather than grow without bound.
            self.metrics.merge_forced.inc(kept)
            self._ghost_go = ghost_n
            return work
        out = []
        for p, events, view in work:
            cut = held.get(p)
            if cut is None:
                out.append((p, events, view))
                continue
            self._held[p] = events[cut_at[p] :]
            self._held_rows[p] = known[p].after(cut)
            out.append((p, events[: cut_at[p]], view))
        return out

    def _dry_rows(self, view: PartitionView, fresh: Sequence[_Decoded]) -> _DryRows:
        rows = self._apply_dry(view, fresh)
        return _DryRows(
            np.array([r.clock for r in rows], dtype=np.int64),
            np.array([r.offset for r in rows], dtype=np.int64),
            fresh[-1][0].offset if fresh else -1,
        )

    def _prepare_partition(
        self,
        p: int,
        events: Sequence[tuple[Record, DecodedEvent | None, int]],
        view: PartitionView,
        result: BatchResult,
    ) -> _Prepared | None:
        if self.topic_id and view.topic_id and view.topic_id != self.topic_id:
            raise topic_changed(p, view.topic_id, self.topic_id)  # before anything is published
        applied_offset = view.applied_offset
        fresh = [x for x in events if x[0].offset > applied_offset]
        skipped = len(events) - len(fresh)
        if skipped:
            self.metrics.events_skipped.inc(skipped)
        if not fresh:
            return None
        if self.learns and len(self.engine.currencies) < 2:
            # The amounts' currency, for the money figures of segment renames (two seen: mixed).
            self.engine.note_currencies({e.currency for _, e, _ in fresh if e is not None and e.currency})
        ids = list(view.states)
        states = StateBatch([view.states[c] for c in ids])
        self._staged = []
        placed_before = list(states.segment)
        rows, snaps, dirty, due_updates, clock = self._apply(view, ids, states, fresh, result)
        batch = PartitionBatch(p, ids, view.states, states, rows, snaps, dirty, view.watermark)
        return _Prepared(
            batch, view.applied_offset, fresh[-1][0].offset, placed_before, due_updates, clock, self._staged
        )

    def _finish_partition(self, prep: _Prepared) -> PartitionWrite:
        batch, states, ids, dirty = prep.batch, prep.batch.states, prep.batch.ids, prep.batch.dirty
        deltas = prep.deltas
        # Customers without a segment are counted too (under -1): a version that comes after
        # their last row places them (_move_retired), and only if there are any.
        unplaced = sum(
            (states.segment[i] < 0) - (prep.placed_before[i] < 0 and batch.loaded[ids[i]] is not None)
            for i in dirty
        )
        if unplaced:
            deltas[UNPLACED] = deltas.get(UNPLACED, 0) + unplaced
        order = sorted(dirty, key=ids.__getitem__)
        self._staged = prep.staged
        outputs, outbox = self._take_staged()
        learned_name, learned = prep.learned
        return PartitionWrite(
            partition=batch.partition,
            expected_offset=prep.applied_offset,
            new_offset=prep.new_offset,
            watermark=prep.clock.value,
            states=dict(zip([ids[i] for i in order], states.pack(order), strict=True)) | prep.moved_out,
            due=prep.due_updates,
            segment_deltas=deltas,
            clock=prep.clock.pack(),
            topic_id=self.topic_id,
            outbox=outbox,
            outputs=outputs,
            learned=learned,
            learned_name=learned_name,
        )

    def _decode_quiet(self, rec: Record) -> tuple[DecodedEvent, int] | None:
        """Decode without side effects; dead letters are emitted later, only for unapplied offsets.
        The fast path first; what it cannot vouch for is decided by InteractionEvent."""
        value = rec.value
        if value is None or len(value) > self._max_bytes:
            return None
        decoded = decode_fast(value)
        if decoded is None:
            try:
                event = InteractionEvent.model_validate_json(value)
            except ValidationError:
                return None
            if repeated_field(value) is not None:
                return None
            decoded = DecodedEvent.of(event), int(event.ts.timestamp())
        if rec.key != decoded[0].customer_id.encode():  # no key, or another customer's
            return None
        return decoded

    def _apply(
        self,
        view: PartitionView,
        ids: list[str],
        states: StateBatch,
        decoded: Sequence[tuple[Record, DecodedEvent | None, int]],
        result: BatchResult,
        dry: bool = False,
    ) -> tuple[list[Row], np.ndarray, set[int], dict[str, int], PartitionClock]:
        """The per-event loop: dead letters, duplicates, the watermark, the inactivity schedule and
        the rows to assign, in stream order, on the batch's plain columns; the feature arithmetic
        itself runs vectorised in StateBatch.apply (rows' snapshots are taken there).

        Time bounds: a record dated more than ``max_future_hours`` after the wall clock is a
        ``FutureEvent``; one more than ``allowed_lateness_hours`` before its own customer's newest
        event is a ``LateEvent``. No other record, customer or quiet period decides, so a gap of
        any length costs nothing and a record far off in time costs only its own customer. The
        watermark (inactivity re-scoring) is the partition's :class:`PartitionClock`.

        ``dry``: only the rows (their clocks), for the learner's merge; the caller passes throwaway
        states and hides outputs and metrics (:meth:`_apply_dry`)."""
        index = {c: i for i, c in enumerate(ids)}
        rows: list[Row] = []
        dirty: set[int] = set()
        due_updates: dict[str, int] = {}
        due_heap: list[tuple[int, str]] = list(view.due)
        heapq.heapify(due_heap)
        clock = PartitionClock.unpack(view.clock, self._clock_customers, view.watermark)
        observe = clock.observe
        wm = clock.value
        lateness = self._lateness
        # The one use of the wall clock: a time further ahead than this is a clock bug or a bad
        # record. Everything else is judged in event time, against the customer's own events.
        now = time.time()
        future_limit = now + self._future
        offsets = threshold_offsets(tuple(self._thresholds))
        type_info = _TYPE_INFO
        crc32 = zlib.crc32
        heappush = heapq.heappush
        heappop = heapq.heappop
        add_row = rows.append
        mark = dirty.add
        recent = states.recent
        last_ts = states.last_ts
        next_due = states.next_due
        events = BatchEvents()
        add_event = events.add
        note, rhythm = states.note, states.rhythm
        stage_step = self._stage_step
        rhythms: list[list[int]] = []
        add_rhythm = rhythms.append
        # Per customer, what its rhythm columns give until note() changes them (most events repeat
        # a day already noted): its rhythm row and its lifecycle day thresholds.
        rhythm_of: dict[int, list[int]] = {}
        thresholds_of: dict[int, tuple[int, int, int, int]] = {}
        duplicates = 0
        for rec, event, ts in decoded:
            if event is None:
                self._decode(rec, result)  # emits the dead letter with its reason
                continue
            if ts > future_limit:
                self._dead(
                    rec,
                    "FutureEvent",
                    f"event time {iso(event.ts)} is {(ts - now) / 3600:,.1f} h ahead of this machine's "
                    f"clock ({iso_seconds(now)}); at most {self._future / 3600:g} h allowed",
                    result,
                )
                continue
            cid = event.customer_id
            i = index[cid]
            newest = last_ts[i]
            if newest and ts < newest - lateness:
                self._dead(
                    rec,
                    "LateEvent",
                    f"event time {iso(event.ts)} is {(newest - ts) / 3600:,.1f} h behind this customer's "
                    f"newest event ({iso_seconds(newest)}); allowed lateness is {lateness / 3600:g} h",
                    result,
                )
                continue
            h = crc32(event.event_id.encode())
            if not admit(recent(i), ts, h):
                duplicates += 1
                continue
            kind, is_cart = type_info[event.type]
            n = 1 + add_event(
                i,
                ts,
                kind,
                event.channel.value,
                event.amount or 0.0,
                event.campaign_id is not None or bool(event.discount),
                h,
                is_cart,
            )
            mark(i)
            if note(i, ts, kind == "purchase"):
                rhythm_of.pop(i, None)
                thresholds_of.pop(i, None)
            if ts > newest:
                last_ts[i] = newest = ts
            wm = observe(cid, ts)
            stage, stage_move, crossing = stage_step(states, i, ts, thresholds_of)
            add_row(Row(cid, i, n, float(ts), "event", rec.offset, wm, stage, stage_move))
            row_rhythm = rhythm_of.get(i)
            if row_rhythm is None:
                row_rhythm = rhythm_of[i] = rhythm(i)
            add_rhythm(row_rhythm)
            due = due_after_event(newest, next_due[i], offsets, wm)
            if crossing and (due == 0 or crossing < due):
                due = crossing
            if due != next_due[i]:
                next_due[i] = due_updates[cid] = due
                heappush(due_heap, (due, cid))
            # Customers whose quiet spell crossed a threshold before the watermark: re-score them at
            # the crossing time, so the result does not depend on where the batch was cut.
            while due_heap and due_heap[0][0] <= wm:
                due_ts, qcid = heappop(due_heap)
                qi = index[qcid]
                if next_due[qi] != due_ts:
                    continue  # stale heap entry: rescheduled since
                stage, stage_move, crossing = stage_step(states, qi, due_ts, thresholds_of)
                # A threshold of silence or a change of stage; else an early look of the lazy
                # schedule (the customer was active since).
                if stage_move is not None or crosses(last_ts[qi], offsets, due_ts):
                    add_row(
                        Row(
                            qcid,
                            qi,
                            events.applied(qi),
                            float(due_ts),
                            "inactivity",
                            rec.offset,
                            wm,
                            stage,
                            stage_move,
                        )
                    )
                    row_rhythm = rhythm_of.get(qi)
                    if row_rhythm is None:
                        row_rhythm = rhythm_of[qi] = rhythm(qi)
                    add_rhythm(row_rhythm)
                    self.metrics.reevaluations.inc()
                due = due_after(last_ts[qi], offsets, due_ts)
                if crossing and (due == 0 or crossing < due):
                    due = crossing
                next_due[qi] = due_updates[qcid] = due
                mark(qi)
                if next_due[qi]:
                    heappush(due_heap, (next_due[qi], qcid))
        if dry:
            return rows, np.zeros((0, 0)), dirty, due_updates, clock
        if duplicates:
            self.metrics.duplicates.inc(duplicates)
        result.applied += len(events)
        self.metrics.events_applied.inc(len(events))
        base = states.apply(self.params, events, [(r.index, r.applied) for r in rows])
        # The rhythm of each row as the loop noted it, beside the counters and sums.
        snaps = np.hstack([base, np.array(rhythms, dtype=np.float64).reshape(len(rows), RHYTHM_WIDTH)])
        return rows, snaps, dirty, due_updates, clock

    def _apply_dry(self, view: PartitionView, fresh: Sequence[_Decoded]) -> list[Row]:
        """The rows :meth:`_apply` would make of these records, touching nothing."""
        if not fresh:
            return []
        ids = list(view.states)
        metrics, staged = self.metrics, self._staged
        self.metrics, self._staged = _QUIET, []  # type: ignore[assignment]
        try:
            states = StateBatch([view.states[c] for c in ids])
            return self._apply(view, ids, states, fresh, BatchResult(), dry=True)[0]
        finally:
            self.metrics, self._staged = metrics, staged

    def _stage_step(
        self, states: StateBatch, i: int, at: int, thresholds_of: dict[int, tuple[int, int, int, int]]
    ) -> tuple[int, tuple[int, int, str] | None, int]:
        """Customer ``i``'s lifecycle stage as of ``at`` (written to the columns), the move when it
        changed (before, after, why), and the time of its next crossing (0: none).
        ``thresholds_of``: the customers' day thresholds, kept while their days stay the same."""
        p = self._lifecycle
        purchase_days = states.purchase_days[i]
        thresholds = thresholds_of.get(i)
        if thresholds is None:
            pdays, adays = states.days(i)
            thresholds = thresholds_of[i] = day_thresholds(History(purchase_days, 0, pdays, 0, adays), p)
        old = states.stage[i]
        new, since, crossing = step(
            old,
            states.stage_since[i],
            at,
            purchase_days,
            states.last_purchase_ts[i],
            states.last_ts[i],
            thresholds,
            self._won_back_seconds,
        )
        if new == old:
            return new, None, crossing
        states.stage_since[i], states.stage[i] = since, new
        pdays, adays = states.days(i)
        h = History(purchase_days, states.last_purchase_ts[i], pdays, states.last_ts[i], adays)
        return new, (old, new, describe_stage(new, at, h, p)), crossing

    def _inputs(self, prep: _Prepared) -> _Inputs:
        """What the engine takes of a partition's rows: features, times, what it learns."""
        batch = prep.batch
        p, rows, snaps, states = batch.partition, batch.rows, batch.snaps, batch.states
        times = np.array([r.at for r in rows])
        raw = evaluate_many(snaps, self.params, times)
        # Rows made before the partition had a watermark (its first customers) are assigned but
        # not learned: nothing yet says whether their times are where the partition is. The
        # clock never goes back to 0, so they are the batch's first rows.
        unclocked = next((k for k, r in enumerate(rows) if r.clock), len(rows))
        clocks = np.array([r.clock for r in rows[unclocked:]], dtype=np.float64)
        if self._merging() or not self.learns:
            # The merge's order: the partition's clock at each row (it never goes back).
            order_times = clocks
        else:
            # The engine learns in, ages its sample to and times its versions by each row's place
            # in the partition's event time: its time kept within [watermark - lateness,
            # watermark], so that one customer's far-off clock moves no version, and a
            # partition's later rows never come before what it has passed by more than the
            # lateness (the learner's alignment).
            order_times = np.clip(times[unclocked:], clocks - self._lateness, clocks)
        learn = self._learn_mask(rows, states, unclocked)
        keys = positions = sources = None
        if self._logs_rows:
            sources = np.full(len(rows) - unclocked, p, dtype=np.int64)  # each customer ages by its partition
            positions = row_positions(rows, unclocked)
        if self.engine.population is not None and self._logs_rows:
            # Every row refreshes the customer sample, learned or not: the sample must hold each
            # customer's latest state (a second purchase the same day counts), which is what an
            # offline snapshot of the population sees.
            ids = [r.customer_id for r in rows[unclocked:]]
            key_of = {c: customer_key(c) for c in dict.fromkeys(ids)}  # one hash per customer
            keys = np.fromiter(map(key_of.__getitem__, ids), dtype=np.uint64, count=len(ids))
        if positions is not None:
            prep.learned = self._learn_entry(
                positions, order_times, learn, raw[unclocked:], keys, snaps[unclocked:]
            )
        prep.rescores = self._rescore_rows(rows, batch.watermark)
        if not self.learns:  # a follower's engine only assigns: its rows are for the learner
            # (Its rows' positions place them in the learner's merge: _assign_following.)
            return _Inputs(
                raw, unclocked, order_times, np.zeros(len(learn), dtype=bool), None, None, positions
            )
        return _Inputs(raw, unclocked, order_times, learn, keys, sources, positions)

    def _assign(self, prep: _Prepared, result: BatchResult) -> None:
        """Assign one partition's rows chunk by chunk (one chunk per model version: names,
        explanations and RFM come from the version that assigned the row, so the output does not
        depend on where batches were cut)."""
        if not prep.batch.rows:
            return
        engine = self.engine
        x = self._inputs(prep)
        u = x.unclocked
        if self.learns:
            engine.align_sources(self.owned, self.drained - self._unfed)
            snaps = prep.batch.snaps[u:] if x.keys is not None else None
            chunks: Iterable[Chunk] = engine.process_chunks(
                x.raw[u:], x.times, x.learn, x.keys, snaps, x.sources, x.positions
            )
        else:
            # A follower's engine only assigns, with the version it holds: it never builds one.
            # (Fed even without learning, a warm-up checkpoint it loaded built the first version
            # itself once its rows passed the warm-up span, and stopped on the learner's.)
            engine.trailing_events = []
            n = len(x.raw) - u
            chunks = [Chunk(0, n, engine.assign(x.raw[u:]), [])] if n else []
        if u:
            chunks = itertools.chain(
                [Chunk(0, u, engine.assign(x.raw[:u]), [])],
                (Chunk(c.lo + u, c.hi + u, c.assignment, c.events_before) for c in chunks),
            )
        now = time.time()
        for chunk in chunks:
            self._publish_model_events(chunk.events_before)
            self._take_chunk(prep, chunk, x.raw, engine.live_names(), now, result)
        self._publish_model_events(engine.trailing_events)

    def _assign_merged(self, preps: list[_Prepared], result: BatchResult) -> None:
        """Assign the partitions' rows in the merge's order (stream.runtime.merge): the engine
        takes them as one stream, so a version built after a row of one partition assigns the
        rows of every partition that come after it, and none before."""
        engine = self.engine
        engine.align_sources(None)  # the merge orders the rows; nothing waits in the engine
        now = time.time()
        inputs = {prep.batch.partition: self._inputs(prep) for prep in preps if prep.batch.rows}
        by_p = {prep.batch.partition: prep for prep in preps}
        # Learn-log rows of applied records first in their partitions: learned, not assigned.
        ghosts = self._take_ghosts()
        # Rows before a partition has a clock are assigned by the version in force, not learned.
        for p, x in inputs.items():
            if x.unclocked:
                chunk = Chunk(0, x.unclocked, engine.assign(x.raw[: x.unclocked]), [])
                self._take_chunk(by_p[p], chunk, x.raw, engine.live_names(), now, result)
        clocked = {p: x.times for p, x in inputs.items() if len(x.times)}
        for p, g in ghosts.items():
            clocked[p] = np.concatenate([g["t"], clocked.get(p, np.zeros(0))])
        if not clocked:
            return
        # Each partition's rows' places in the merged stream (its own order is kept).
        part = merge_order(clocked)
        placed = {p: np.flatnonzero(part == p) for p in clocked}
        n = len(part)
        raw = np.zeros((n, len(engine.feature_names)))
        times = np.empty(n)
        learn = np.empty(n, dtype=bool)
        sources = np.empty(n, dtype=np.int64)
        positions = np.empty(n, dtype=np.int64)
        keys = np.zeros(n, dtype=np.uint64) if engine.population is not None else None
        snaps = None
        order: dict[int, np.ndarray] = {}  # each partition's live rows' places
        for p, at in placed.items():
            sources[at] = p
            ghost = ghosts.get(p)
            k = len(ghost["t"]) if ghost is not None else 0
            if ghost is not None:
                gat = at[:k]
                raw[gat], times[gat], learn[gat] = ghost["raw"], ghost["t"], ghost["learn"]
                positions[gat] = ghost["pos"]
                if keys is not None and "key" in ghost:
                    keys[gat] = ghost["key"]
                    if snaps is None:
                        snaps = np.zeros((n, ghost["snap"].shape[1]))
                    snaps[gat] = ghost["snap"]
            if p not in inputs or not len(inputs[p].times):
                continue
            pos = order[p] = at[k:]
            x, u = inputs[p], inputs[p].unclocked
            raw[pos] = x.raw[u:]
            times[pos] = x.times
            learn[pos] = x.learn
            positions[pos] = x.positions if x.positions is not None else -1
            if keys is not None and x.keys is not None:
                keys[pos] = x.keys
                psnaps = by_p[p].batch.snaps[u:]
                if snaps is None:
                    snaps = np.zeros((n, psnaps.shape[1]))
                snaps[pos] = psnaps
        chunks = engine.process_chunks(raw, times, learn, keys, snaps, sources, positions)

        def place(i: int) -> Place:
            return int(times[i]), int(sources[i]), int(positions[i])

        for chunk in chunks:
            self._publish_model_events(chunk.events_before, place(chunk.lo - 1) if chunk.lo else None)
            live = engine.live_names()
            for p, pos in order.items():
                a, b = np.searchsorted(pos, [chunk.lo, chunk.hi])
                if b <= a:
                    continue
                u = inputs[p].unclocked
                mine = Chunk(int(a) + u, int(b) + u, chunk.assignment.take(pos[a:b] - chunk.lo), [])
                self._take_chunk(by_p[p], mine, inputs[p].raw, live, now, result)
        self._publish_model_events(engine.trailing_events, place(n - 1))
        self._merged_to = max(self._merged_to, place(n - 1))

    # ---- a follower of the learner's merge (decision 0032) ----
    def _assign_following(self, preps: list[_Prepared], result: BatchResult) -> None:
        """A follower's batch: its rows into the learn logs, a wait until the learner's merge has
        passed them, then each row assigned by the version in force at its place in the merge,
        as one instance reading every partition would have assigned it."""
        inputs = {prep.batch.partition: self._inputs(prep) for prep in preps if prep.batch.rows}
        last: Place | None = None
        for p, rows in self._held_rows.items():  # partitions whose records all wait: their bound
            if p not in inputs and len(rows.clocks):
                self.store.log_rows(p, self.store.applied_offset(p), 0, "", b"", -1, int(rows.clocks[0]))
        for prep in preps:
            p = prep.batch.partition
            self._log_rows(prep)
            x = inputs.get(p)
            if x is not None and x.positions is not None and len(x.positions):
                place = (int(x.times[-1]), p, int(x.positions[-1]))
                last = place if last is None else max(last, place)
        built = self._await_merge(last)
        now = time.time()
        for prep in preps:
            p = prep.batch.partition
            if (x := inputs.get(p)) is None:
                continue
            u = x.unclocked
            # Rows before the partition has a clock sit at clock 0 of the merge (until it has one,
            # a partition bounds the merge there: no version is built past it).
            first = row_positions(prep.batch.rows[:u], 0).tolist()
            versions = [version_at((0, p, pos), built) for pos in first]
            if x.positions is not None:
                versions += [
                    version_at((int(t), p, int(pos)), built)
                    for t, pos in zip(x.times.tolist(), x.positions.tolist(), strict=True)
                ]
            lo = 0
            while lo < len(versions):
                hi = lo + 1
                while hi < len(versions) and versions[hi] == versions[lo]:
                    hi += 1
                self.engine = engine = self._version(versions[lo])
                chunk = Chunk(lo, hi, engine.assign(x.raw[lo:hi]), [])
                self._take_chunk(prep, chunk, x.raw, engine.live_names(), now, result)
                lo = hi
        if self._versions:  # (none when the batch's records made no row: dead letters, duplicates)
            newest = max(self._versions)
            self._versions = {v: e for v, e in self._versions.items() if v == newest}
            self.engine = self._versions[newest]

    def _log_rows(self, prep: _Prepared) -> None:
        """A follower's rows of a partition into its learn log ahead of the batch's write (the
        learner merges them from there); a redo after a crash sends only those not logged yet."""
        p = prep.batch.partition
        name, blob = prep.learned
        prep.learned = ("", b"")  # not written again with the state
        columns = decode_rows(blob) if blob else None
        # Its next row's clock: of the first record held back, else its last row's.
        held = self._held_rows.get(p)
        clock = int(held.clocks[0]) if held is not None and len(held.clocks) else prep.clock.value
        while True:
            first = int(columns["pos"][0]) if columns is not None else 0
            logged = self.store.log_rows(p, prep.applied_offset, first, name, blob, prep.new_offset, clock)
            if logged < 0 or columns is None:
                return
            columns = rows_after(columns, logged)
            if columns is None:
                name, blob = "", b""
            else:
                name, blob = entry_name(int(columns["pos"][-1])), encode_rows(columns)

    def _await_merge(self, last: Place | None) -> list[tuple[Place, int]]:
        """Wait until the learner's merge has passed ``last`` (None: nothing to wait for); the
        kept versions with the place each was built after, sorted by place. Not passed within
        ``follower_wait_seconds`` (a learner dead or catching up, a rebalance under way): the
        batch is abandoned, unwritten, and read again after the next poll (BatchAbandoned)."""
        started = time.monotonic()
        while True:
            merged, kept = self.store.merge_state()
            if last is None or (merged and decode_place(merged) >= last):
                break
            if time.monotonic() - started > self._merge_wait:
                self.metrics.follower_retried_batches.inc()
                raise BatchAbandoned(
                    f"the learner's merge did not pass this follower's rows within {self._merge_wait:g} s "
                    f"(at {merged or 'nothing yet'}, rows to {encode_place(last)}): reading the batch again"
                )
            if not self.await_learner():
                raise BatchAbandoned("stopping while waiting for the learner; the batch is read again")
        self.metrics.follower_wait_seconds.observe(time.monotonic() - started)
        return sorted((decode_place(at), v) for v, at in kept.items())

    def _version(self, v: int) -> SegmentEngine:
        """Version ``v`` as the learner built it (0: before its first), from the kept versions."""
        engine = self._versions.get(v)
        if engine is not None:
            return engine
        if v == 0:
            engine = SegmentEngine(self.engine.params, feature_params=self.engine.feature_params)
        elif (blob := self.store.kept_version(v)) is not None:
            engine = restore(self.settings, blob)
        elif self.engine.version == v:
            engine = self.engine
        else:
            # Forgotten: no follower should need a version built before every partition's
            # written watermark (only a merge forced out of order goes back that far).
            log.warning(
                "model version %d is no longer kept; assigning with version %d", v, self.engine.version
            )
            self.metrics.follower_unmerged_batches.inc()
            return self.engine
        self._versions[v] = engine
        return engine

    def _publish_merge_progress(self) -> None:
        """The learner, once the batch's writes and checkpoints landed: how far its merge got
        (every version built before that place is kept by then), and the kept versions no
        follower can need any more (built before the next was, before every other partition's
        written watermark: their next rows come after that)."""
        if not self._kept_loaded:  # after a restart: the versions an earlier run kept
            _, kept = self.store.merge_state()
            self._built_after = {v: decode_place(at) for v, at in kept.items()} | self._built_after
            self._kept_loaded = True
        at = self._merge_published = self._merged_to
        floor = min((self._remote_written.get(q, 0) for q in self.remote), default=0)
        versions = sorted(self._built_after)
        forget = [v for v, nxt in itertools.pairwise(versions) if self._built_after[nxt][0] < floor]
        forget += [v for v in versions[:-MAX_KEPT_VERSIONS] if v not in forget]
        for v in forget:
            del self._built_after[v]
        self._after_write(lambda: self.store.set_merged(encode_place(at), forget))

    def _take_chunk(
        self,
        prep: _Prepared,
        chunk: Chunk,
        raw: np.ndarray,
        live: dict[int, str],
        now: float,
        result: BatchResult,
    ) -> None:
        """A partition's rows of one chunk (assigned by one version): customers left in a retired
        segment, the hysteresis, and the re-scorings that fall among the rows."""
        batch, engine, p = prep.batch, self.engine, prep.batch.partition
        self._staged = prep.staged
        rows = batch.rows
        if chunk.hi > chunk.lo and self._checked_retired.get(p) != self._retired_key():
            self._checked_retired[p] = self._retired_key()
            first = rows[chunk.lo]
            prep.moved_out |= self._move_retired(
                batch, chunk.lo, first.at, first.offset, live, prep.deltas, result, prep.moved_out
            )
        # The chunk's rows up to each re-scoring row, the re-scoring, and on.
        lo = chunk.lo
        rescores = prep.rescores
        while rescores and rescores[0][0] < chunk.hi:
            k, bucket = rescores.pop(0)
            self._decide(batch, chunk, lo, k, raw, live, prep.deltas, now, result)
            if engine.warmed_up:
                prep.moved_out |= self._rescore(batch, k, bucket, live, prep.deltas, result, prep.moved_out)
            lo = k
        self._decide(batch, chunk, lo, chunk.hi, raw, live, prep.deltas, now, result)

    def _decide(
        self,
        batch: PartitionBatch,
        chunk: Chunk,
        lo: int,
        hi: int,
        raw: np.ndarray,
        live: dict[int, str],
        deltas: dict[int, int],
        now: float,
        result: BatchResult,
    ) -> None:
        """Hysteresis on rows ``lo:hi`` of ``chunk`` (assigned by its version); publish the moves."""
        if hi <= lo:
            return
        states = batch.states
        assignment = chunk.assignment.rows(lo - chunk.lo, hi - chunk.lo)
        rows = batch.rows[lo:hi]
        moves = self.engine.decide_moves(
            rows, assignment, states.segment, states.segment_since, states.seq, deltas, states.first_seen
        )
        if moves:
            self._publish_moves(batch.partition, lo, raw, assignment, rows, moves, live, now, result)

    def _rescore_rows(self, rows: list[Row], watermark: int) -> list[tuple[int, int]]:
        """The rows at which the partition's watermark passes a multiple of
        ``rescore_every_days`` (from ``watermark``, the partition's before the batch), each with
        the multiple's number: where the re-scoring runs. A function of the log, kept across
        restarts by the stored watermark; none while the watermark is 0 (no clock yet)."""
        every = self.engine.params.rescore_every_days * DAY
        if every <= 0:
            return []
        found: list[tuple[int, int]] = []
        previous = int(watermark // every) if watermark > 0 else None
        for k, r in enumerate(rows):
            if r.clock <= 0:
                continue
            bucket = int(r.clock // every)
            if previous is not None and bucket > previous:
                found.append((k, bucket))
            previous = bucket
        return found

    def _learn_entry(
        self,
        positions: np.ndarray,
        times: np.ndarray,
        learn: np.ndarray,
        raw: np.ndarray,
        keys: np.ndarray | None,
        snaps: np.ndarray,
    ) -> tuple[str, bytes]:
        """What the learner takes in from the partition's rows, for the learn log: every row's
        position and time, the learned rows' features, and the customer-sample rows it could
        take (before this batch: a superset of those it will take)."""
        if not len(positions):
            return "", b""
        columns = {"pos": positions, "t": times, "learn": learn, "raw": raw[learn]}
        population = self.engine.population
        if keys is not None and population is not None:
            # A follower's copy is the learner's of a version ago: a superset still (a full
            # sample's largest key only falls).
            candidate = population.could_take(keys)
            columns |= {"key": keys, "candidate": candidate, "snap": snaps[candidate]}
        return entry_name(int(positions[-1])), encode_rows(columns)

    def _learn_mask(self, rows: list[Row], states: StateBatch, start: int) -> np.ndarray:
        """What the model learns from (:func:`~models.segments.decide.learn_mask`), one entry
        per row from ``start`` on (the rows before it are not learned)."""
        if not self._logs_rows:
            return np.zeros(len(rows) - start, dtype=bool)  # the learner's versions come from the store
        return learn_mask(rows[start:], states.last_learned, self._learn_interval)


def _pause() -> bool:
    time.sleep(0.02)
    return True


def row_positions(rows: Sequence[Row], start: int) -> np.ndarray:
    """Each row's position from ``start`` on (stream.state.learnlog.position): its record's
    offset and its place among that record's rows."""
    out = np.empty(len(rows) - start, dtype=np.int64)
    last, k = -1, 0
    for j, r in enumerate(rows[start:]):
        k = k + 1 if r.offset == last else 0
        last = r.offset
        out[j] = position(r.offset, k)
    return out
