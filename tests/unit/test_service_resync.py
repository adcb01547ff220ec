"""The loop's re-seek after a failed compare-and-set, when partitions changed owner meanwhile.

A zombie (frozen past its session timeout) wakes up, its pending write fails, and it re-seeks
to Redis's applied offsets: only partitions the consumer still owns may be sought (kafka-python
raises for the others), and a partition revoked by the IO thread during the re-seek is skipped.
tests/integration/test_rebalance.py drives the same path through a real group.
"""

from __future__ import annotations

from kafka import TopicPartition

from stream.errors import StateConflict
from stream.service import Service
from stream.settings import load

TOPIC = "in"


class FakeConsumer:
    """The two consumer calls a re-seek makes; ``revoke_on_seek`` drops a partition just
    before its seek, as the rebalance listener on kafka-python's IO thread can."""

    def __init__(self, owned: set[int], revoke_on_seek: int | None = None) -> None:
        self.owned = {TopicPartition(TOPIC, p) for p in owned}
        self.revoke_on_seek = revoke_on_seek
        self.sought: dict[int, int] = {}

    def assignment(self) -> set[TopicPartition]:
        return set(self.owned)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        if tp.partition == self.revoke_on_seek:
            self.owned.discard(tp)
        if tp not in self.owned:
            raise ValueError("Unassigned partition")
        self.sought[tp.partition] = offset


class FakeStore:
    def applied_offset(self, p: int) -> int:
        return 100 * (p + 1)


class FakeProcessor:
    def drain(self) -> None:
        pass


def service(consumer: FakeConsumer, assigned: set[int]) -> Service:
    svc = Service(load(overrides={"topics": {"interactions": TOPIC}}))
    svc.consumer = consumer  # type: ignore[assignment]
    svc.store = FakeStore()  # type: ignore[assignment]
    svc.processor = FakeProcessor()  # type: ignore[assignment]
    svc._assigned = assigned
    return svc


def test_resync_seeks_only_the_partitions_still_owned() -> None:
    consumer = FakeConsumer(owned={2, 3})
    svc = service(consumer, assigned={0, 1, 2, 3})  # the loop has not heard of the loss yet
    svc._resync(StateConflict("partition 2: applied offset moved"))
    assert consumer.sought == {2: 301, 3: 401}


def test_resync_skips_a_partition_revoked_during_the_re_seek() -> None:
    consumer = FakeConsumer(owned={0, 1}, revoke_on_seek=1)
    svc = service(consumer, assigned={0, 1})
    svc._resync(StateConflict("partition 0: applied offset moved"))
    assert consumer.sought == {0: 101}


def test_revoked_partitions_leave_the_owned_set_and_the_gauge() -> None:
    svc = service(FakeConsumer(owned={0, 1, 2, 3}), assigned={0, 1, 2, 3})
    svc.on_revoked([TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 2)])
    assert svc._assigned == {1, 3}
    assert svc.registry.get_sample_value("segstream_assigned_partitions") == 2
