"""What the pipeline publishes: dead letters, segment changes, model events and checkpoints.

A mixin of :class:`~stream.runtime.pipeline.BatchProcessor` (it reads the processor's engine,
sink, store, metrics and settings).
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from models.contracts import DeadLetter, PublishedModel, SegmentChange, SegmentRef
from models.segments.changes import segment_change
from models.segments.decide import Move
from models.segments.engine import Assignment, ModelEvent, SegmentEngine
from models.segments.lifecycle import stage_name
from models.segments.published import published_model
from stream.config import Settings
from stream.io.kafka import Record
from stream.io.sinks import OutputSink, Sink
from stream.io.sinks.outbox import OutboxError, decode_outbox, encode_outbox
from stream.runtime.batch import WARMUP_CHECKPOINT_SECONDS, BatchResult, Row
from stream.runtime.merge import Place, encode_place
from stream.runtime.metrics import Metrics
from stream.state import PartitionWrite, StateStore, model_conflict
from stream.state.learnlog import entry_name

__all__ = ["LEARN_LOG_GRACE_SECONDS", "OutputsMixin"]

# How long a checkpoint must have been stored before the learn-log rows it holds are forgotten,
# where a failover can lose the newest writes of one server and not another's: the replicas'
# lag is well under a second in normal operation; this leaves room for a slow replica.
LEARN_LOG_GRACE_SECONDS = 30.0


class OutputsMixin:
    settings: Settings
    store: StateStore
    engine: SegmentEngine
    sink: Sink
    metrics: Metrics
    _warmup_saved_at: float
    _staged: list[tuple[str, Any]]
    _encoded: bool
    _unacked_versions: deque[int]  # versions whose model events were emitted, not yet flushed
    _after_writes: list[Callable[[], None]] | None
    _queued_version: int
    _trims: deque[tuple[float, dict[int, int]]]  # checkpoints not trimmed yet: (saved at, needs)
    _ship: Callable[[], None]
    remote: frozenset[int]
    _built_after: dict[int, Place]  # versions kept for followers: the place each was built after

    def _flush_outputs(self) -> None:
        started = time.perf_counter()
        acked = len(self._unacked_versions)  # emitted before this flush: covered by it
        self.sink.flush()
        self.metrics.flush_seconds.observe(time.perf_counter() - started)
        for _ in range(acked):
            try:
                version = self._unacked_versions.popleft()
            except IndexError:  # another flush (a start's, an idle move's) took it
                break
            self.store.clear_unpublished(version)

    def _stage(self, kind: str, output: SegmentChange | DeadLetter) -> None:
        """Keep one of the partition's outputs for its write (published once it landed)."""
        if not self._encoded:
            self._staged.append((kind, output))
        elif kind == "change":
            self._staged.append(OutputSink.encode_change(output))  # type: ignore[arg-type]
        else:
            self._staged.append(OutputSink.encode_dead_letter(output))  # type: ignore[arg-type]

    def _take_staged(self) -> tuple[tuple[Any, ...], bytes]:
        """The partition's staged outputs, and their outbox bytes (none for an object sink)."""
        outputs, self._staged = tuple(self._staged), []
        return outputs, encode_outbox(outputs) if outputs and self._encoded else b""

    def _publish_written(self, w: PartitionWrite) -> None:
        """Hand a written partition's outputs to the sink (called by OrderedIO, in write order)."""
        if not w.outputs:
            return
        if self._encoded:
            self.sink.send(list(w.outputs))  # type: ignore[attr-defined]
            self._ship()
        else:
            for kind, output in w.outputs:
                getattr(self.sink, kind)(output)

    def publish_outbox(self, partitions: Iterable[int]) -> int:
        """Publish what the store's outboxes of these partitions still hold (written batches whose
        acknowledgement was not seen: a crash, a failed flush), wait for the broker, delete them.
        Run before a partition's records are processed after a start or a resync; the same bytes
        as the first time, so a subscriber sees at most a duplicate. Returns the outputs sent."""
        if not self._encoded:
            return 0
        entries: dict[int, list[int]] = {}
        sent = 0
        for p in sorted(partitions):
            for entry, blob in self.store.outbox(p):
                try:
                    items = decode_outbox(blob)
                except OutboxError as e:
                    raise OutboxError(
                        f"partition {p}: outbox entry {entry} cannot be read ({e}); it holds outputs of "
                        "written batches: rebuild with `segstream replay --from-offset 0 --namespace NEW`"
                    ) from None
                self.sink.send(items)  # type: ignore[attr-defined]
                self._ship()
                sent += len(items)
                entries.setdefault(p, []).append(entry)
        if entries:
            self._flush_outputs()
            self.store.clear_outbox(entries)
        return sent

    def _dead(self, rec: Record, error_class: str, reason: str, result: BatchResult) -> None:
        self._stage(
            "dead_letter",
            DeadLetter.of(rec.topic, rec.partition, rec.offset, rec.key, rec.value, error_class, reason),
        )
        self.metrics.dead_letters.labels(reason=error_class).inc()
        result.dead_letters += 1
        result.dead_letter_classes[error_class] = result.dead_letter_classes.get(error_class, 0) + 1

    def _publish_moves(
        self,
        p: int,
        lo: int,
        raw: np.ndarray,
        assignment: Assignment,
        rows: Sequence[Row],
        moves: list[Move],
        live: dict[int, str],
        now: float,
        result: BatchResult,
        position: Callable[[Move], str] | None = None,
    ) -> None:
        """Publish one chunk's segment changes (``moves`` of ``rows``, assigned by ``assignment``
        from ``raw[lo:]``); explanations are computed for all of them at once.
        ``position``: for model-driven moves (stream.runtime.retired), what their change ids name
        instead of the row's offset: the segment left (a move out of a retired segment, whose row
        depends on when the process saw the retirement: a batch redone after a crash must
        publish the same ids), or the re-scoring's multiple of event time."""
        engine = self.engine
        topic = self.settings.topics.interactions
        vectors = raw[[lo + m.row for m in moves]]
        # Segment moves are explained by the features; a stage change by its rule (Move.why).
        moved = [k for k, m in enumerate(moves) if m.kind == "segment"]
        explanations = [m.why for m in moves]
        for k, text in zip(
            moved,
            engine.explain_many(
                vectors[moved], [moves[k].previous for k in moved], [moves[k].segment for k in moved]
            ),
            strict=True,
        ):
            explanations[k] = text
        memberships = assignment.memberships([m.row for m in moves])
        values = engine.value_many(vectors)
        for m, vector, explanation, membership, value in zip(
            moves, vectors, explanations, memberships, values, strict=True
        ):
            row = rows[m.row]
            stage_change = m.kind == "stage"
            current = (
                SegmentRef(id=m.segment, name=live.get(m.segment, f"segment {m.segment}"))
                if m.segment >= 0
                else None
            )
            previous = (
                current
                if stage_change
                else SegmentRef(id=m.previous, name=engine.name_of(m.previous))
                if m.previous is not None
                else None
            )
            self._stage(
                "change",
                segment_change(
                    customer_id=row.customer_id,
                    seq=m.seq,
                    previous=previous,
                    current=current,
                    kind="stage" if stage_change else "segment",
                    stage=stage_name(m.stage),
                    previous_stage=stage_name(m.previous_stage),
                    membership=membership,
                    confidence=round(float(assignment.confidence[m.row]), 4),
                    outlier=bool(assignment.outlier[m.row]),
                    reason=m.reason,  # type: ignore[arg-type]
                    explanation=explanation,
                    rfm=engine.rfm(vector),
                    value=value,
                    model_version=int(assignment.versions[m.row]),
                    event_time=row.at,
                    source_topic=topic,
                    source_partition=p,
                    source_offset=row.offset,
                    position=None if position is None else position(m),
                ),
            )
            result.changes += 1
            if stage_change:
                self.metrics.stage_changes.labels(stage=stage_name(m.stage) or "none").inc()
            else:
                self.metrics.changes.labels(reason=m.reason).inc()
            if m.reason == "event":
                self.metrics.latency.observe(max(now - row.at, 0.0))

    def _publish_model_events(self, events: list[ModelEvent], built_after: Place | None = None) -> None:
        """Checkpoint and publish the version these events are of; ``built_after``: the place in
        the learner's merge of the row it was built after, for a version other instances read
        partitions beside (its followers assign with it from there: the version history)."""
        version = self.engine.version
        if events and (stored := self.store.model_version()) > self._queued_version:
            # One learner per namespace: a second one stops before publishing anything of its own
            # (the checkpoint checks again, atomically, for a race between the two).
            raise model_conflict(version, version - 1, stored)
        if not events:
            return
        payloads = [
            {
                "kind": ev.kind,
                "version": ev.version,
                "segment_id": ev.segment_id,
                "related_ids": list(ev.related_ids),
                "detail": ev.detail,
                "event_time": datetime.fromtimestamp(ev.event_time, UTC).isoformat(),
                # renamed: the names a consumer of the changes topic applies to the changes
                # of earlier versions (docs/decisions/0022-names-follow-their-claims.md)
                "name": ev.name,
                "previous_name": ev.previous_name,
            }
            for ev in events
        ]
        # Erased customers leave the customer sample before the checkpoint is written (the set is
        # emptied without a sample too: it holds only the erasures since the last version).
        erased = self.store.erased_keys(self.settings.topics.partitions)
        if erased:
            self.engine.forget_customers(set().union(*erased.values()))
        snapshot = self.engine.snapshot()
        # The published copy leaves the waiting rows out: a Kafka record has a size limit, and
        # none of its readers learns.
        published = snapshot if not self.engine.waiting_rows() else self.engine.snapshot(waiting=None)
        model = published_model(self.engine)
        keep = self._learn_log_needed()
        self._queued_version = version
        history = built_after is not None and bool(self.remote)
        if history:
            assert built_after is not None
            self._built_after[version] = built_after
        self.metrics.model_checkpoint_bytes.set(len(snapshot))
        self.metrics.model_version.set(version)
        self.metrics.model_updated.set(time.time())

        def checkpoint() -> None:
            # Once the batch's writes landed (the rows the checkpoint holds are in the store), the
            # checkpoint with the version's events, then the outputs: nothing is published of a
            # version Redis does not hold, and events a crash kept from the broker are published
            # by the next start (publish_unpublished). Each build is one version: the store must
            # still hold the previous one (one learner).
            self.store.save_model(
                snapshot,
                version,
                after=version - 1,
                unpublished=json.dumps(payloads, sort_keys=True).encode(),
                kept=published if history else b"",
                built_after=encode_place(built_after) if history and built_after else "",
            )
            self._publish_model(version, payloads, model, published)
            if erased:
                self.store.clear_erased(erased)
            self._trim_learn_log(keep)

        self._after_write(checkpoint)

    def _after_write(self, call: Callable[[], None]) -> None:
        """Run once the current batch's writes landed (at once outside a batch)."""
        if self._after_writes is None:
            call()
        else:
            self._after_writes.append(call)

    def _learn_log_needed(self) -> dict[int, int]:
        """Per partition, the first learn-log position a checkpoint taken now still needs: its
        oldest waiting row's, else the one after the last it took in."""
        engine = self.engine
        needed = {p: pos + 1 for p, pos in getattr(engine, "fed", {}).items()}
        for p, pos in engine.waiting_floor().items():
            needed[p] = min(needed.get(p, pos), pos)
        return needed

    def _trim_learn_log(self, needed: dict[int, int]) -> None:
        """After a checkpoint landed: forget the learn-log entries it holds. On a store whose
        writes may be lost out of order (a Redis Cluster: the checkpoint and the learn logs live
        on different masters, each replicated on its own), only those of the checkpoints saved
        :data:`LEARN_LOG_GRACE_SECONDS` ago or more: a master failover can lose the newest
        checkpoint and keep the trims that followed it on other masters, and the learner would go
        back to the checkpoint before without the rows between (tests/unit/test_relearn.py's
        FailoverStore)."""
        if getattr(self.store, "writes_in_order", True):
            due: dict[int, int] | None = needed
        else:
            now = time.monotonic()
            self._trims.append((now, needed))
            due = None
            while self._trims and now - self._trims[0][0] >= LEARN_LOG_GRACE_SECONDS:
                due = self._trims.popleft()[1]
        for p, pos in (due or {}).items():
            self.store.trim_learned(p, entry_name(pos))

    def _publish_model(
        self, version: int, payloads: list[dict[str, Any]], model: PublishedModel, snapshot: bytes
    ) -> None:
        for payload in payloads:
            self.sink.model_event(payload)
            self.metrics.model_events.labels(kind=payload["kind"]).inc()
        self.sink.model_snapshot(model, snapshot)
        self._unacked_versions.append(version)  # cleared by the flush that follows

    def publish_unpublished(self) -> int:
        """A learner's start: publish the model events a crash kept from the broker (saved with
        their version, :meth:`_publish_model_events`), and the version's model, then forget them.
        Returns how many versions were published again."""
        pending = self.store.unpublished_model_events()
        for version, blob in pending:
            payloads = json.loads(blob)
            snapshot = self.engine.snapshot(waiting=None) if version == self.engine.version else b""
            for payload in payloads:
                self.sink.model_event(payload)
            if snapshot:
                self.sink.model_snapshot(published_model(self.engine), snapshot)
        if pending:
            self._flush_outputs()
            for version, _ in pending:
                self.store.clear_unpublished(version)
        return len(pending)

    def _checkpoint_warmup(self, watermark: int) -> None:
        """Before its first version the model has no checkpoint, so a crash would throw the whole
        warm-up away (the rows learned and the event-time span seen) and start it over, weeks of
        event time later. Save the warming engine as version 0 once per day of event time."""
        if watermark - self._warmup_saved_at < WARMUP_CHECKPOINT_SECONDS:
            return
        self._warmup_saved_at = watermark
        snapshot, keep = self.engine.snapshot(), self._learn_log_needed()

        def checkpoint() -> None:
            self.store.save_model(snapshot, 0, after=0)  # fails if a version exists
            self._trim_learn_log(keep)

        self._after_write(checkpoint)
