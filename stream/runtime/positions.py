"""Where the service's consumer stands: against the partitions' ends, seeks, lag metrics.

A mixin of :class:`~stream.runtime.service.Service`.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from stream.config import Settings
from stream.io.kafka import Record
from stream.runtime.metrics import Metrics
from stream.state import FeatureStore

if TYPE_CHECKING:
    from stream.runtime.pipeline import BatchProcessor

log = logging.getLogger(__name__)

__all__ = ["PositionsMixin"]


class PositionsMixin:
    settings: Settings
    consumer: KafkaConsumer | None
    store: FeatureStore | None
    metrics: Metrics
    processor: BatchProcessor | None
    _assigned: set[int]
    _next_offset: dict[int, int]
    _asked: dict[int, int]
    _ends_asked_at: float
    _behind_logged: float
    _sizes_at: float
    _sized: set[int]

    def _caught_up(self) -> bool:
        """Every owned partition read up to its end as the broker last reported it. Quiet polls
        alone are not enough for --until-idle: a broker restart or a rebalance is quiet too, and
        a replay must not stop half way (with exit 0) because Kafka was away for a while."""
        assert self.consumer is not None
        if not self._assigned:
            return False
        p = self.processor
        if p is not None and (p.held_records() or p.remote - p._remote_drained):
            return False  # a learner waits for the other instances' rows too
        topic = self.settings.topics.interactions
        ends = self._ends(sorted(self._assigned), max_age=0.0)
        if any(end is None for end in ends.values()):
            return False
        try:
            behind = {
                p: (position, end)
                for p, end in ends.items()
                if (position := self.consumer.position(TopicPartition(topic, p), timeout_ms=1000)) is None
                or position < end
            }
        except (KafkaError, TypeError):  # revoked meanwhile, or the position is unknown
            return False
        if behind and time.monotonic() - self._behind_logged > 30:
            self._behind_logged = time.monotonic()
            log.info("idle but not at the end yet (partition: (position, end)): %s", behind)
        return not behind

    def _drained(self, records: list[Record]) -> frozenset[int]:
        """Owned partitions this batch reads up to the end the broker last reported: the
        learner need not wait for them to pass a row (SegmentEngine.align_sources). In a replay
        of a finished log such a partition has nothing more to deliver; at the head of a live
        topic every partition is drained between polls, and rows are learned as they come."""
        if len(self._assigned) < 2 and not (self.processor is not None and self.processor.remote):
            return frozenset()
        return self._read_to_end(records)

    def _read_to_end(self, records: list[Record]) -> frozenset[int]:
        """Owned partitions read (with ``records``) up to the end the broker last reported."""
        assert self.consumer is not None
        if not self._assigned:
            return frozenset()
        last: dict[int, int] = {}
        for r in records:
            last[r.partition] = max(last.get(r.partition, -1), r.offset)
        drained = set()
        for p, end in self._ends(sorted(self._assigned), max_age=5.0).items():
            held = self.processor.held_until(p) if self.processor is not None else None
            nxt = last[p] + 1 if p in last else held if held is not None else self._next_offset.get(p)
            if end is not None and (end == 0 or (nxt is not None and nxt >= end)):
                drained.add(p)
        return frozenset(drained)

    def _ends(self, partitions: list[int], max_age: float) -> dict[int, int | None]:
        """Each partition's end offset: the fetcher's highwater, else the broker's answer, asked
        at most every ``max_age`` seconds (None while unknown). The fetcher learns an end only
        from a fetch response that lists the partition, and an incremental fetch session leaves
        out partitions with nothing new: one whose first response was dropped (a seek after a
        rebalance) never reports it."""
        assert self.consumer is not None
        topic = self.settings.topics.interactions
        ends = {p: self.consumer.highwater(TopicPartition(topic, p)) for p in partitions}
        unknown = [p for p, end in ends.items() if end is None]
        now = time.monotonic()
        if unknown and now - self._ends_asked_at >= max_age:
            self._ends_asked_at = now
            try:
                got = self.consumer.end_offsets([TopicPartition(topic, p) for p in unknown], timeout_ms=2000)
                self._asked.update({tp.partition: end for tp, end in got.items()})
                log.debug("no fetched end offset for partitions %s: asked the broker", unknown)
            except (KafkaError, TypeError) as e:  # TypeError: revoked meanwhile
                log.debug("end offsets not available: %s", e)
                return ends
        return {p: self._asked.get(p) if end is None else end for p, end in ends.items()}

    def _rewind(self) -> None:
        """Seek every owned partition back to the first record the loop has not processed."""
        assert self.consumer is not None and self.store is not None
        topic = self.settings.topics.interactions
        owned = self.consumer.assignment()
        if self.processor is not None:
            self.processor.drop_held()  # read again from the first record not processed
        for p in sorted(self._assigned):
            tp = TopicPartition(topic, p)
            if tp in owned:
                nxt = self._next_offset.get(p)
                self.consumer.seek(tp, nxt if nxt is not None else self.store.applied_offset(p) + 1)

    def _reseek(self) -> None:
        assert self.consumer is not None and self.store is not None
        # Only partitions the consumer still owns: a zombie woken after its session expired has
        # lost them, whatever this loop last heard. A partition assigned again later is sought to
        # Redis's applied offset by on_assigned. (The rebalance listener runs on kafka-python's
        # IO thread but only while this thread waits in poll() or close(); the ValueError guard
        # is insurance against a kafka-python version that does otherwise.)
        topic = self.settings.topics.interactions
        owned = self.consumer.assignment()
        if self.processor is not None:
            self.processor.drop_held()  # read again from what Redis applied
        for p in sorted(self._assigned):
            tp = TopicPartition(topic, p)
            if tp not in owned:
                continue
            try:
                self.consumer.seek(tp, self.store.applied_offset(p) + 1)
            except ValueError:  # kafka-python: "Unassigned partition"
                log.info("partition %d was revoked during the re-seek", p)

    def _update_lag(self, offsets: dict[int, int], watermarks: dict[int, int]) -> None:
        assert self.consumer is not None and self.store is not None
        topic = self.settings.topics.interactions
        now = time.time()
        for p, pos in offsets.items():
            end = self.consumer.highwater(TopicPartition(topic, p))
            if end is not None:
                self.metrics.lag_messages.labels(partition=str(p)).set(max(end - pos, 0))
            # Lag in seconds: how far the event time this partition has reached trails the clock.
            # The batch wrote it (no Redis round trip); a batch that skipped the partition did not.
            wm = watermarks.get(p)
            if wm is None:
                wm = self.store.watermark(p)
            if wm:
                self.metrics.lag_seconds.labels(partition=str(p)).set(max(now - wm, 0.0))
        if now - self._sizes_at >= 5.0:  # segment sizes: one small Redis read every few seconds
            self._sizes_at = now
            # This instance's partitions only: the dashboard sums the gauge over instances.
            counts = self.store.segment_counts(sorted(self._assigned))
            for seg in self._sized - counts.keys():  # emptied (or retired) since: 0, not stale
                self.metrics.segment_size.labels(segment=str(seg)).set(0)
            for seg, n in counts.items():
                self.metrics.segment_size.labels(segment=str(seg)).set(n)
            self._sized = set(counts)
