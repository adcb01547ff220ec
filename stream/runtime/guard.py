"""The service's checks before records are applied: the topic is the one the state was built from,
and Redis holds what the group says it does (:mod:`stream.runtime.integrity` diagnoses).

A mixin of :class:`~stream.runtime.service.Service`.
"""

from __future__ import annotations

import logging

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from stream.config import Settings
from stream.errors import SegstreamError, ServiceUnavailable, TopicChanged
from stream.runtime.integrity import (
    PartitionFacts,
    Where,
    first_problem,
    outputs_problem,
    topic_id,
    topic_ids,
)
from stream.runtime.pipeline import BatchProcessor
from stream.state import FeatureStore

log = logging.getLogger(__name__)

__all__ = ["IntegrityMixin"]


class KafkaUnavailable(SegstreamError):
    """A check before processing could not ask the broker: the loop retries."""


class IntegrityMixin:
    """The service's checks before records are applied (a mixin of
    :class:`~stream.runtime.service.Service`)."""

    settings: Settings
    consumer: KafkaConsumer | None
    store: FeatureStore | None
    processor: BatchProcessor | None
    _admin: KafkaAdminClient | None
    _assigned: set[int]
    _unverified: set[int]
    _written: dict[int, int]
    _outputs: dict[str, str]  # output topic -> the id the namespace recorded for it

    def _verify(self) -> None:
        """Before the first record of newly assigned partitions (or after Redis came back): stop
        with one line if the namespace's state is not the state of this topic (recreated,
        truncated, trimmed by retention) or holds less than the group committed (lost)."""
        assert self.consumer is not None and self.store is not None and self.processor is not None
        assert self._admin is not None
        parts = sorted(self._unverified & self._assigned)
        if not parts:
            self._unverified.clear()
            return
        s = self.settings
        topic = s.topics.interactions
        tps = [TopicPartition(topic, p) for p in parts]
        try:
            current = topic_id(self._admin, topic)
            begin = self.consumer.beginning_offsets(tps, timeout_ms=10_000)
            end = self.consumer.end_offsets(tps, timeout_ms=10_000)
            group = self._admin.list_group_offsets({s.kafka.group_id: tps}).get(s.kafka.group_id, {})
            committed = {tp.partition: o.offset for tp, o in group.items() if o is not None and o.offset >= 0}
        except (KafkaError, ServiceUnavailable) as e:
            raise KafkaUnavailable(f"could not read the input partitions' offsets: {e}") from e
        where = Where(topic, s.redis.namespace, s.kafka.group_id)
        facts = []
        for tp in tps:
            p = tp.partition
            # What this process itself saw Redis confirm counts as committed too (commits are async).
            known = [o for o in (committed.get(p), self._written.get(p)) if o is not None]
            facts.append(
                PartitionFacts(
                    partition=p,
                    applied=self.store.applied_offset(p),
                    stored_topic=self.store.topic_id(p),
                    topic=current,
                    committed=max(known) if known else None,
                    begin=begin.get(tp),
                    end=end.get(tp),
                )
            )
        problem = first_problem(facts, where)
        if problem is not None:
            raise problem
        if current and current != self.processor.topic_id:
            log.info("input topic %s has id %s", topic, current)
            self.processor.topic_id = current
        # Written batches whose acknowledgement this process did not see (a crash, a failed
        # flush, an earlier owner): their outputs go out before any new record is processed.
        if sent := self.processor.publish_outbox(parts):
            log.info("published %d outputs left in the outbox of partitions %s", sent, parts)
        self._unverified.difference_update(parts)

    def _adopt_outputs(self) -> None:
        """At the start: the output topics must be those the namespace published to (a deleted or
        recreated one stops the service: what downstream read from it is gone, and nothing the
        service does next writes the compacted ones again). A namespace's first start, and topics
        it had not published to (other names in the settings), are recorded."""
        assert self.store is not None and self._admin is not None
        current = topic_ids(self._admin, list(self.settings.topics.outputs().values()))
        recorded = {n: tid for n, tid in self.store.output_topics().items() if n in current}
        if (problem := outputs_problem(recorded, current, self.settings.redis.namespace)) is not None:
            raise problem
        if recorded != current:
            self.store.record_output_topics(current)
        self._outputs = current

    def _check_topic(self) -> None:
        """After a poll that returned records, before they are processed: the input topic is
        still the one the partitions' state was built from, and the output topics are still those
        the namespace published to. kafka-python (3.0) keeps fetching a deleted and recreated
        topic at its old position without noticing, so the broker is asked each time (~5 ms here,
        one request for every topic): records fetched after a recreation are never applied."""
        assert self.processor is not None and self._admin is not None
        topic = self.settings.topics.interactions
        ids = topic_ids(self._admin, [topic, *self._outputs])
        if (problem := outputs_problem(self._outputs, ids, self.settings.redis.namespace)) is not None:
            raise problem
        known = self.processor.topic_id
        if not known:
            return  # a broker without topic ids
        current = ids[topic]
        if current != known:
            raise TopicChanged(
                f"input topic {topic!r} was deleted while the service ran "
                f"(topic id {current or 'none'} now, {known} before): its offsets started over and no "
                "record of it was applied; keep every customer's features and read it from its "
                "beginning with `segstream recover --adopt-topic`, or rebuild into a fresh namespace "
                "with `segstream replay --from-offset 0 --namespace NEW`"
            )
