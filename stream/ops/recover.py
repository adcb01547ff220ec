"""``segstream recover``: the way out after the service stopped on a state it cannot trust.

The service refuses to resume when the namespace's state is not the state of its input topic
(:mod:`stream.runtime.integrity`). Two documented ways forward, both with the deployment stopped:

- ``--resume``: Redis lost state (flushed, a failover, its last writes). Each partition resumes
  from what Redis holds (its applied offset), the beginning of the topic where Redis holds
  nothing: the consumer group's offsets are set there, and the records Redis lost are read
  again (features end exact; their segment changes are published again, same dedupe keys where
  the state is the same). Needs those records to be still in the topic.
- ``--adopt-topic``: the input topic was deleted and created again (or truncated, or retention
  deleted records before they were read). Every customer's features are kept; each partition
  reads the topic from its current beginning, and the namespace records the topic's new id.

A replay into a fresh namespace (``segstream replay --from-offset 0 --namespace NEW``) is the
third way, when the log still holds everything.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

from kafka import TopicPartition
from kafka.errors import KafkaError, NoError
from kafka.structs import OffsetAndMetadata

from stream.config import Settings
from stream.errors import SegstreamError
from stream.io.kafka import make_admin, make_consumer
from stream.runtime.integrity import topic_id
from stream.state import FeatureStore

log = logging.getLogger(__name__)

Mode = Literal["resume", "adopt-topic"]


@dataclass
class PartitionPlan:
    partition: int
    applied: int  # Redis's applied offset before (-1: none)
    begin: int
    end: int
    start: int  # the next offset the service will read
    note: str


@dataclass
class RecoverReport:
    mode: Mode
    topic: str
    topic_id: str
    namespace: str
    group: str
    applied: bool  # False for a dry run
    partitions: list[PartitionPlan] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "topic": self.topic,
            "topic_id": self.topic_id,
            "namespace": self.namespace,
            "group": self.group,
            "applied": self.applied,
            "partitions": [vars(p) for p in self.partitions],
        }


def _active_members(admin: Any, group: str) -> int:
    described = admin.describe_groups([group])
    info = described.get(group, {}) if isinstance(described, dict) else {}
    return len(info.get("members") or [])


def refuse_active_group(admin: Any, group: str) -> None:
    """Recovery changes what running instances rely on: refuse while any is in the group."""
    if n := _active_members(admin, group):
        raise SegstreamError(
            f"consumer group {group!r} has {n} active member(s): stop every `segstream run` of "
            "this deployment first"
        )


def plan(mode: Mode, applied: int, stored_topic: str, current: str, begin: int, end: int) -> tuple[int, str]:
    """Where a partition resumes, and why (raises when ``--resume`` cannot be done)."""
    if mode == "adopt-topic":
        note = "kept its features; reads the topic from its beginning"
        if stored_topic and current and stored_topic != current:
            note = f"kept its features (topic id was {stored_topic}); reads the new topic from its beginning"
        return begin, note
    if stored_topic and current and stored_topic != current:
        raise SegstreamError(
            f"the topic was deleted and created again (id {current}, the state is of {stored_topic}): "
            "use `segstream recover --adopt-topic`"
        )
    if applied >= end:
        raise SegstreamError(
            f"the topic ends at {end} but the state applied it up to {applied}: it was truncated or "
            "created again; use `segstream recover --adopt-topic`"
        )
    if applied < 0:
        return begin, "no state: rebuilt from the topic's beginning"
    if applied + 1 < begin:
        raise SegstreamError(
            f"retention deleted the records after offset {applied} (the topic begins at {begin}): they "
            "cannot be read again; use `segstream recover --adopt-topic` to go on without them"
        )
    return applied + 1, "resumes after what Redis holds"


def recover(settings: Settings, mode: Mode, dry_run: bool = False) -> RecoverReport:
    s = settings
    topic, ns, group = s.topics.interactions, s.redis.namespace, s.kafka.group_id
    store = FeatureStore(s.redis.url.get_secret_value(), ns, cluster=s.redis.cluster).start()
    admin = make_admin(s)
    consumer = make_consumer(s, group_id=None)
    try:
        parts = sorted(consumer.partitions_for_topic(topic) or [])
        if not parts:
            raise SegstreamError(f"topic {topic!r} does not exist: nothing to recover from")
        if not dry_run:
            refuse_active_group(admin, group)
        current = topic_id(admin, topic)
        tps = [TopicPartition(topic, p) for p in parts]
        begin = consumer.beginning_offsets(tps)
        end = consumer.end_offsets(tps)
        report = RecoverReport(mode, topic, current, ns, group, applied=not dry_run)
        for p, tp in zip(parts, tps, strict=True):
            applied = store.applied_offset(p)
            try:
                start, note = plan(mode, applied, store.topic_id(p), current, begin[tp], end[tp])
            except SegstreamError as e:
                raise SegstreamError(f"partition {p} of {topic!r}: {e}") from e
            report.partitions.append(PartitionPlan(p, applied, begin[tp], end[tp], start, note))
        if dry_run:
            return report
        if mode == "adopt-topic":
            for plan_ in report.partitions:
                store.adopt_topic(plan_.partition, current, plan_.start - 1)
        offsets = {
            tp: OffsetAndMetadata(pl.start, "", -1) for tp, pl in zip(tps, report.partitions, strict=True)
        }
        try:
            errors = admin.alter_group_offsets(group, offsets)
        except KafkaError as e:
            raise SegstreamError(f"could not set consumer group {group!r}'s offsets: {e}") from e
        failed = {tp.partition: err.__name__ for tp, err in (errors or {}).items() if err is not NoError}
        if failed:
            raise SegstreamError(f"consumer group {group!r} refused offsets for partitions {failed}")
        log.info("recover --%s: %s", mode, [(pl.partition, pl.start) for pl in report.partitions])
        return report
    finally:
        consumer.close()
        admin.close()
        store.close()
