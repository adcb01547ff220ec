"""Is the namespace's state the state of this topic? Checked before any record is applied.

Redis holds each partition's applied offset and the id of the input topic it was built from
(Kafka 4 topic ids, KIP-516); the consumer group holds the offsets committed after Redis wrote
them. Between them they tell the deployment's accidents apart, each of which would otherwise
lose or corrupt data silently:

- the topic was deleted and created again (``docker compose down && up``: Kafka lost its data,
  Redis kept its volume): another topic id, offsets starting over;
- the topic is shorter than what was applied (truncated, or recreated where ids are unknown);
- records after the applied offset were deleted by retention before they were read;
- Redis has nothing for a partition the group has read (a flush, a failover to an empty replica,
  another database), or less than the group committed (Redis lost its last writes).

Every one stops the service with one line naming the problem and the way out
(``segstream recover``, or a replay into a fresh namespace). Offsets commit to Kafka only after
Redis holds the batch, so in a healthy deployment the group is never ahead of Redis.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from stream.errors import ServiceUnavailable, StateLost, TopicChanged

log = logging.getLogger(__name__)

# Kafka's "no id" (a broker without topic ids answers with the zero UUID).
_NO_ID = {"", "00000000-0000-0000-0000-000000000000", "AAAAAAAAAAAAAAAAAAAAAA"}


def topic_id(admin: KafkaAdminClient, topic: str) -> str:
    """The topic's id ("" when the broker has none or the topic does not exist)."""
    return topic_ids(admin, [topic])[topic]


def topic_ids(admin: KafkaAdminClient, topics: list[str]) -> dict[str, str]:
    """Each topic's id, in one request ("" when the broker has none or the topic does not exist)."""
    try:
        described = admin.describe_topics(topics)
    except KafkaError as e:
        raise ServiceUnavailable(f"Kafka did not describe topics {topics}: {e}") from e
    found = dict.fromkeys(topics, "")
    for t in described:
        name = t.get("name", t.get("topic"))
        if name in found and not t.get("error_code"):
            tid = str(t.get("topic_id") or "")
            found[name] = "" if tid in _NO_ID else tid
    return found


REPUBLISH = (
    "with every instance stopped, `segstream recover --republish` publishes the model again from "
    "Redis, rebuilds the current-segments topic from the changes topic and records the topics"
)


def outputs_problem(recorded: dict[str, str], current: dict[str, str], namespace: str) -> TopicChanged | None:
    """An output topic deleted (and maybe created again) since the namespace recorded its id:
    what downstream read from it is gone, and the compacted ones (the newest segment of each
    customer, the model) are not written again by anything the service does next."""
    for name, was in sorted(recorded.items()):
        now = current.get(name, "")
        if was and now != was:
            what = (
                f"was deleted and created again (topic id {now} now"
                if now
                else "was deleted (no topic id now"
            )
            return TopicChanged(
                f"output topic {name!r} {what}, namespace {namespace!r} recorded {was}): downstream "
                f"lost what was on it; {REPUBLISH}"
            )
    return None


@dataclass(frozen=True)
class PartitionFacts:
    """What Redis, the group and the broker say about one input partition."""

    partition: int
    applied: int  # last offset applied to Redis (-1: none)
    stored_topic: str  # the topic id the state was built from ("": none recorded)
    topic: str  # the topic's id now ("": unknown)
    committed: int | None  # the group's committed offset (the next to read); None: none
    begin: int | None  # the partition's first offset now
    end: int | None  # the partition's end offset now


@dataclass(frozen=True)
class Where:
    topic: str
    namespace: str
    group: str


RECOVER_TOPIC = (
    "keep every customer's features and read the topic from its current beginning with "
    "`segstream recover --adopt-topic`, or rebuild into a fresh namespace with "
    "`segstream replay --from-offset 0 --namespace NEW`"
)
RECOVER_STATE = (
    "re-read from the log what Redis lost with `segstream recover --resume` (features end exact; "
    "the segment changes of re-read records are published again), or rebuild into a fresh "
    "namespace with `segstream replay --from-offset 0 --namespace NEW`"
)


def first_problem(facts: list[PartitionFacts], where: Where) -> TopicChanged | StateLost | None:
    """The problem to report for a set of partitions: a changed topic first; then a partition
    that holds less than was committed (some state survived: Redis lost writes) before one that
    holds nothing (which alone would look like a flush)."""
    found = [(p, f) for f in facts if (p := diagnose(f, where)) is not None]
    found.sort(key=lambda pf: (not isinstance(pf[0], TopicChanged), pf[1].applied < 0, pf[1].partition))
    return found[0][0] if found else None


def diagnose(f: PartitionFacts, where: Where) -> TopicChanged | StateLost | None:
    """The problem with resuming this partition from its applied offset, if any."""
    part = f"partition {f.partition} of {where.topic!r}"
    if f.stored_topic and f.topic and f.stored_topic != f.topic:
        return TopicChanged(
            f"{part} is not the topic namespace {where.namespace!r} was built from (topic id "
            f"{f.topic}, the state is of {f.stored_topic}, up to offset {f.applied}): the topic was "
            f"deleted and created again and its offsets started over; {RECOVER_TOPIC}"
        )
    if f.applied >= 0 and f.end is not None and f.applied >= f.end:
        return TopicChanged(
            f"{part} ends at offset {f.end} but namespace {where.namespace!r} applied it up to "
            f"{f.applied}: the topic was truncated or created again; {RECOVER_TOPIC}"
        )
    if f.applied >= 0 and f.begin is not None and f.applied + 1 < f.begin:
        return TopicChanged(
            f"{part} now begins at offset {f.begin} but namespace {where.namespace!r} applied it "
            f"only up to {f.applied}: retention deleted {f.begin - f.applied - 1} records before "
            f"they were read; {RECOVER_TOPIC}"
        )
    if f.committed is not None and f.committed > f.applied + 1:
        if f.applied < 0:
            return StateLost(
                f"namespace {where.namespace!r} has no state for {part}, but consumer group "
                f"{where.group!r} committed offset {f.committed}: the state was lost (a flush, a "
                f"failover to an empty replica, another database or namespace?); {RECOVER_STATE}"
            )
        return StateLost(
            f"namespace {where.namespace!r} holds {part} up to offset {f.applied}, but consumer "
            f"group {where.group!r} committed offset {f.committed}: Redis lost writes (a restart "
            f"without fsync, a failover to a lagging replica?); {RECOVER_STATE}"
        )
    return None
