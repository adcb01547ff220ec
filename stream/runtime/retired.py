"""Customers left in a segment a model version retired move to their nearest live segment.

A mixin of :class:`~stream.runtime.pipeline.BatchProcessor`: at the first row a partition reaches
after a retirement (and once after a start), and while the service is idle.
"""

from __future__ import annotations

import operator
import time
from collections.abc import Callable, Iterable

import numpy as np

from models.features import CustomerState, FeatureParams, evaluate_many, snapshot
from models.features.batch import StateBatch
from models.segments.decide import Move, record_move
from models.segments.engine import SegmentEngine
from stream.runtime.batch import BatchResult, PartitionBatch, Row
from stream.runtime.outputs import OutputsMixin
from stream.state import OrderedIO, PartitionWrite, StateStore

__all__ = ["RetiredMovesMixin"]


class RetiredMovesMixin(OutputsMixin):
    store: StateStore
    engine: SegmentEngine
    io: OrderedIO
    _ship: Callable[[], None]
    params: FeatureParams
    # Per partition, how many retired segment ids the engine had when the partition was last
    # checked for customers left in a retired segment.
    _checked_retired: dict[int, int]

    def move_retired_idle(self, partitions: Iterable[int]) -> int:
        """While no records come (the service is idle): the same move for these partitions, as of
        each one's watermark and applied offset, written at once (outputs flushed first). A
        follower that adopts a version retiring segments after its partitions' last records, or
        a learner whose last batch built one, would otherwise leave the members where they are
        until the partition's next record. Returns how many customers moved."""
        n_retired = self.engine.retired_count
        todo = [p for p in sorted(partitions) if self._checked_retired.get(p) != n_retired]
        if not todo or not self.engine.warmed_up:
            return 0
        live = self.engine.live_names()
        result = BatchResult()
        for p in todo:
            self._checked_retired[p] = n_retired
            applied = self.store.applied_offset(p)
            if applied < 0:
                continue  # nothing read yet, nobody in a segment
            wm = self.store.watermark(p)
            deltas: dict[int, int] = {}
            batch = PartitionBatch(p, [], {}, StateBatch([]), [], np.zeros((0, 0)), set())
            moved_out = self._move_retired(batch, 0, float(wm), applied, live, deltas, result)
            if moved_out:
                self._ship()
                self._flush_outputs()  # outputs first, state second, as for a batch
                self.store.commit(PartitionWrite(p, applied, applied, wm, moved_out, {}, deltas))
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
        p, rows, states = batch.partition, batch.rows, batch.states
        self.io.drain()  # every earlier batch written: the counts and states read next are current
        counts = self.store.segment_counts([p])
        for sid, d in deltas.items():
            counts[sid] = counts.get(sid, 0) + d
        retired = {sid for sid, n in counts.items() if n > 0 and sid not in live}
        if not retired:
            return {}
        last_row = {rows[k].index: k for k in range(lo)}  # each customer's last row before the chunk
        index = {c: i for i, c in enumerate(batch.ids)}
        # (customer, batch position, state from the store, snapshot, move time, stage at that row)
        found: list[tuple[str, int | None, CustomerState | None, np.ndarray, float, int]] = []
        for i, cid in enumerate(batch.ids):
            if states.segment[i] not in retired:
                continue
            if (k := last_row.get(i)) is not None:
                found.append((cid, i, None, batch.snaps[k], max(at, rows[k].at), rows[k].stage))
            else:  # no row before the chunk: as loaded (a customer in a segment has a state)
                loaded = CustomerState.unpack(batch.loaded[cid] or b"")
                found.append(
                    (cid, i, None, np.array(snapshot(loaded)), max(at, float(loaded.last_ts)), loaded.stage)
                )
        for cid, blob in self.store.partition_states(p):
            if cid not in index and (stored := CustomerState.unpack(blob)).segment in retired:
                moved_at = max(at, float(stored.last_ts))
                found.append((cid, None, stored, np.array(snapshot(stored)), moved_at, stored.stage))
        if not found:
            return {}
        found.sort(key=operator.itemgetter(0))
        times = np.array([f[4] for f in found])
        raw = evaluate_many(np.array([f[3] for f in found]), self.params, times)
        assignment = self.engine.assign(raw)
        moves: list[Move] = []
        moved_out: dict[str, bytes] = {}
        found_rows = [
            Row(cid, -1 if pos is None else pos, 0, moved_at, "model_update", offset, 0, stage)
            for cid, pos, _, _, moved_at, stage in found
        ]
        for j, (cid, pos, held, _, moved_at, stage) in enumerate(found):
            target = int(assignment.segment_ids[j])
            if target < 0:
                continue
            if pos is not None:
                current = int(states.segment[pos])
                states.segment[pos], states.segment_since[pos] = target, int(moved_at)
                states.seq[pos] += 1
                seq = int(states.seq[pos])
                batch.dirty.add(pos)
            else:
                assert held is not None
                current = held.segment
                held.segment, held.segment_since = target, int(moved_at)
                held.seq += 1
                seq = held.seq
                moved_out[cid] = held.pack()
            record_move(deltas, current, target)
            moves.append(Move(j, current, target, "model_update", seq, "segment", stage, stage))
        if moves:
            self._publish_moves(
                p, 0, raw, assignment, found_rows, moves, live, time.time(), result, retired_moves=True
            )
        return moved_out
