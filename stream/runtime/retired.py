"""Model-driven moves (reason ``model_update``) of customers who have no row of their own.

- Customers left in a segment a model version retired move to their nearest live segment: at
  the first row a partition reaches after a retirement (and once after a start), and while the
  service is idle.
- The re-scoring: each time a partition's watermark passes a multiple of
  ``model.rescore_every_days``, its customers whose segment the version in force has clearly moved
  away from (:func:`~models.segments.decide.clearly_elsewhere`) move, at most
  ``model.rescore_max_share`` of them, the clearest first.

A mixin of :class:`~stream.runtime.pipeline.BatchProcessor`.
"""

from __future__ import annotations

import operator
import time
from collections.abc import Callable, Collection, Iterable
from typing import NamedTuple

import numpy as np

from models.features import CustomerState, FeatureParams, evaluate_many, snapshot
from models.features.batch import StateBatch
from models.segments.decide import Move, record_move
from models.segments.engine import Assignment, SegmentEngine
from stream.runtime.batch import BatchResult, PartitionBatch, Row
from stream.runtime.outputs import OutputsMixin
from stream.state import OrderedIO, PartitionWrite, StateStore

__all__ = ["UNPLACED", "RetiredMovesMixin"]

# The segment count key of customers without a segment (rows read before the first version).
UNPLACED = -1


class _Found(NamedTuple):
    """A customer found for a model-driven move, as it is at the row of the move."""

    customer: str
    pos: int | None  # its position in the batch (None: outside it)
    held: CustomerState | None  # its state read from the store (outside the batch)
    snap: np.ndarray  # its feature snapshot
    at: float  # when it moves: the row's event time, or its own last event if later
    stage: int  # its lifecycle stage at the row
    segment: int
    since: float  # in the segment since


class RetiredMovesMixin(OutputsMixin):
    store: StateStore
    engine: SegmentEngine
    io: OrderedIO
    _ship: Callable[[], None]
    params: FeatureParams
    # Per partition, the engine's retired segment count and warm-up when the partition was last
    # checked for customers left in a retired segment, or in none.
    _checked_retired: dict[int, tuple[int, bool]]

    def _retired_key(self) -> tuple[int, bool]:
        return self.engine.retired_count, self.engine.warmed_up

    def move_retired_idle(self, partitions: Iterable[int]) -> int:
        """While no records come (the service is idle): the same move for these partitions, as of
        each one's watermark and applied offset, written at once (published once written). A
        follower that adopts a version retiring segments after its partitions' last records, or
        a learner whose last batch built one, would otherwise leave the members where they are
        until the partition's next record. Returns how many customers moved."""
        key = self._retired_key()
        todo = [p for p in sorted(partitions) if self._checked_retired.get(p) != key]
        if not todo or not self.engine.warmed_up:
            return 0
        live = self.engine.live_names()
        result = BatchResult()
        for p in todo:
            self._checked_retired[p] = key
            applied = self.store.applied_offset(p)
            if applied < 0:
                continue  # nothing read yet, nobody in a segment
            wm = self.store.watermark(p)
            deltas: dict[int, int] = {}
            batch = PartitionBatch(p, [], {}, StateBatch([]), [], np.zeros((0, 0)), set())
            self._staged = []
            moved_out = self._move_retired(batch, 0, float(wm), applied, live, deltas, result)
            outputs, outbox = self._take_staged()
            if moved_out:
                # As for a batch: state and outputs in one step, published once it landed.
                w = PartitionWrite(
                    p,
                    applied,
                    applied,
                    wm,
                    moved_out,
                    {},
                    deltas,
                    outbox=outbox,
                    outputs=outputs,
                )
                entry = self.store.commit(w)
                self._publish_written(w)
                self._flush_outputs()
                if entry is not None:
                    self.store.clear_outbox({p: [entry]})
        return result.changes

    def _move_retired(
        self,
        batch: PartitionBatch,
        lo: int,
        at: float,
        offset: int,
        live: dict[int, str],
        deltas: dict[int, int],
        result: BatchResult,
        moved: dict[str, bytes] | None = None,
    ) -> dict[str, bytes]:
        """Move the partition's customers still in a segment no live version has (a model update
        retired it) to their nearest segment, as of the chunk's first row (event time ``at``,
        source ``offset``).

        Runs at the first row a partition reaches after a retirement (and once after a start), so
        a replay moves the same customers at the same row whatever its batch size: each customer
        is taken as it is at that row (its last row before it in the batch, else as loaded, else
        as stored) and moves at that row's event time, or at its own last event if later.
        Customers outside the batch are read from the store, which is first brought up to date
        (every earlier batch written); their new states go out with the batch's write. The model
        does not learn from these moves."""
        self.io.drain()  # every earlier batch written: the counts and states read next are current
        counts = self._segment_counts(batch.partition, deltas)
        retired = {sid for sid, n in counts.items() if n > 0 and sid not in live}
        # Customers no version had placed yet (their rows came before the first one, none since).
        # Whether there are any must not depend on where batches were cut: those of this batch
        # count, written or not.
        if self.engine.warmed_up and (
            self.store.unplaced(batch.partition) > 0 or any(seg < 0 for seg in batch.states.segment)
        ):
            retired.add(UNPLACED)
        if not retired:
            return {}
        found = self._find(batch, lo, at, retired, moved)
        if not found:
            return {}
        raw, assignment = self._score(found)
        picks = [j for j in range(len(found)) if int(assignment.segment_ids[j]) >= 0]
        return self._move(batch, found, picks, raw, assignment, offset, live, deltas, result, _left)

    def _rescore(
        self,
        batch: PartitionBatch,
        k: int,
        bucket: int,
        live: dict[int, str],
        deltas: dict[int, int],
        result: BatchResult,
        moved: dict[str, bytes] | None = None,
    ) -> dict[str, bytes]:
        """Re-score the partition's customers as of row ``k`` (the first whose watermark passed
        the ``bucket``-th multiple of ``rescore_every_days``), with the version in force, and move
        those it clearly puts elsewhere (reason ``model_update``), at most
        ``rescore_max_share`` of the partition's segmented customers, the clearest first.

        Customers are taken and moved as :meth:`_move_retired` takes them (at row ``k``), so the
        same log moves the same customers at the same row whatever the batch size; the row is
        where the partition's stored watermark (written with its state) passes the multiple, so a
        batch redone after a crash, or a restart, re-scores there too, and the change ids name the
        multiple (``"rescore <bucket>"``). Customers with rows of their own are decided by the
        hysteresis at those rows as usual; this only reaches the quiet ones (and the others up to
        their next row). The model does not learn from these moves."""
        row = batch.rows[k]
        self.io.drain()  # every earlier batch written: the counts and states read next are current
        counts = self._segment_counts(batch.partition, deltas)
        limit = self.engine.rescore_limit(sum(n for sid, n in counts.items() if sid >= 0 and n > 0))
        if limit < 1:
            return {}
        started = time.perf_counter()
        found = self._find(batch, k, row.at, set(live), moved)
        if not found:
            return {}
        raw, assignment = self._score(found)
        picks = self.engine.clearly_elsewhere(
            [f.customer for f in found],
            [f.segment for f in found],
            [f.since for f in found],
            assignment,
            [f.at for f in found],
            limit,
        )
        position = f"rescore {bucket}"  # the change ids name the multiple of event time
        moved_out = self._move(
            batch, found, sorted(picks), raw, assignment, row.offset, live, deltas, result, lambda _: position
        )
        self.metrics.rescore_seconds.observe(time.perf_counter() - started)
        return moved_out

    def _segment_counts(self, p: int, deltas: dict[int, int]) -> dict[int, int]:
        """The partition's customers per segment, with this batch's moves so far."""
        counts = self.store.segment_counts([p])
        for sid, d in deltas.items():
            if sid >= 0:
                counts[sid] = counts.get(sid, 0) + d
        return counts

    def _find(
        self,
        batch: PartitionBatch,
        lo: int,
        at: float,
        segments: Collection[int],
        moved: dict[str, bytes] | None = None,
    ) -> list[_Found]:
        """The partition's customers in one of ``segments`` as of row ``lo`` (event time ``at``),
        by customer id: each as it is at that row (its last row before it in the batch, else as
        loaded, else as moved earlier in the batch (``moved``, not yet written), else as
        stored), to be moved at ``at`` or at its own last event if later."""
        p, rows, states = batch.partition, batch.rows, batch.states
        last_row = {rows[k].index: k for k in range(lo)}  # each customer's last row before the chunk
        index = {c: i for i, c in enumerate(batch.ids)}
        found: list[_Found] = []
        for i, cid in enumerate(batch.ids):
            if (segment := int(states.segment[i])) not in segments:
                continue
            since = float(states.segment_since[i])
            if (k := last_row.get(i)) is not None:
                moved_at = max(at, rows[k].at)
                found.append(_Found(cid, i, None, batch.snaps[k], moved_at, rows[k].stage, segment, since))
            elif (blob := batch.loaded[cid]) is None:
                continue  # new in this batch, its rows all after the chunk's start: decided there
            else:  # no row before the chunk: as loaded
                loaded = CustomerState.unpack(blob)
                moved_at = max(at, float(loaded.last_ts))
                snap = np.array(snapshot(loaded))
                found.append(_Found(cid, i, None, snap, moved_at, loaded.stage, segment, since))
        moved = moved or {}
        for cid, stored_blob in self.store.partition_states(p):
            blob = moved.get(cid, stored_blob)
            if cid not in index and (stored := CustomerState.unpack(blob)).segment in segments:
                moved_at = max(at, float(stored.last_ts))
                since = float(stored.segment_since)
                snap = np.array(snapshot(stored))
                found.append(_Found(cid, None, stored, snap, moved_at, stored.stage, stored.segment, since))
        found.sort(key=operator.attrgetter("customer"))
        return found

    def _score(self, found: list[_Found]) -> tuple[np.ndarray, Assignment]:
        """The found customers' feature rows as of their move times, and their assignment."""
        times = np.array([f.at for f in found])
        raw = evaluate_many(np.array([f.snap for f in found]), self.params, times)
        return raw, self.engine.assign(raw)

    def _move(
        self,
        batch: PartitionBatch,
        found: list[_Found],
        picks: list[int],
        raw: np.ndarray,
        assignment: Assignment,
        offset: int,
        live: dict[int, str],
        deltas: dict[int, int],
        result: BatchResult,
        position: Callable[[Move], str],
    ) -> dict[str, bytes]:
        """Move the picked found customers to their best segment (reason ``model_update``) and
        publish the changes, their ids from ``position``; returns the new states of those
        outside the batch."""
        states = batch.states
        moves: list[Move] = []
        moved_out: dict[str, bytes] = {}
        found_rows = [
            Row(f.customer, -1 if f.pos is None else f.pos, 0, f.at, "model_update", offset, 0, f.stage)
            for f in found
        ]
        for j in picks:
            cid, pos, held, _, moved_at, stage, current, _ = found[j]
            target = int(assignment.segment_ids[j])
            if pos is not None:
                states.segment[pos], states.segment_since[pos] = target, int(moved_at)
                states.seq[pos] += 1
                seq = int(states.seq[pos])
                batch.dirty.add(pos)
            else:
                assert held is not None
                held.segment, held.segment_since = target, int(moved_at)
                held.seq += 1
                seq = held.seq
                moved_out[cid] = held.pack()
            previous = None if current < 0 else current
            record_move(deltas, previous, target)
            if previous is None and pos is None:  # an unplaced customer outside the batch
                deltas[UNPLACED] = deltas.get(UNPLACED, 0) - 1
            moves.append(Move(j, previous, target, "model_update", seq, "segment", stage, stage))
        if moves:
            self._publish_moves(
                batch.partition, 0, raw, assignment, found_rows, moves, live, time.time(), result, position
            )
        return moved_out


def _left(m: Move) -> str:
    """What a move's change id names: the retired segment left, or none (a first placement)."""
    return "placed" if m.previous is None else f"retired {m.previous}"
