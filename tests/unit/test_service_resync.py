"""The loop's re-seek after a failed compare-and-set, when partitions changed owner meanwhile.

A zombie (frozen past its session timeout) wakes up, its pending write fails, and it re-seeks
to Redis's applied offsets: only partitions the consumer still owns may be sought (kafka-python
raises for the others), and a partition revoked by the IO thread during the re-seek is skipped.
tests/integration/test_rebalance.py drives the same path through a real group.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis
from kafka import TopicPartition

from models.segments.engine import EngineParams, SegmentEngine
from stream.config import load
from stream.errors import ModelConflict, StateConflict
from stream.runtime.service import Service

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

    def highwater(self, tp: TopicPartition) -> int | None:
        return None  # no fetch has told an end

    def end_offsets(
        self, tps: list[TopicPartition], timeout_ms: int | None = None
    ) -> dict[TopicPartition, int]:
        return {}

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
    learns = False  # a follower: no model checkpoint to line up with
    waits_for_merge = False  # not a follower of a learner's merge
    remote: frozenset[int] = frozenset()  # no other instances' partitions

    def __init__(self) -> None:
        self.outboxes: list[list[int]] = []

    def drain(self) -> None:
        pass

    def publish_outbox(self, partitions: set[int]) -> int:
        self.outboxes.append(sorted(partitions))
        return 0

    def drop_held(self, partitions: object = None) -> dict[int, int]:  # nothing is held: no merge
        return {}

    def held_records(self) -> int:
        return 0

    def held_until(self, p: int) -> None:
        return None


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
    # What was written before the conflict goes out again, for the partitions still owned.
    assert svc.processor.outboxes == [[2, 3]]  # type: ignore[union-attr]


def test_resync_skips_a_partition_revoked_during_the_re_seek() -> None:
    consumer = FakeConsumer(owned={0, 1}, revoke_on_seek=1)
    svc = service(consumer, assigned={0, 1})
    svc._resync(StateConflict("partition 0: applied offset moved"))
    assert consumer.sought == {0: 101}


def test_revoked_partitions_leave_the_owned_set_and_the_gauge() -> None:
    svc = service(FakeConsumer(owned={0, 1, 2, 3}), assigned={0, 1, 2, 3})
    svc._uncommitted = {TopicPartition(TOPIC, p): p * 10 for p in range(4)}  # type: ignore[misc]
    svc._durable.append((None, {TopicPartition(TOPIC, p): p * 10 for p in (0, 1)}))  # type: ignore[arg-type]
    svc.on_revoked([TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 2)])
    assert svc._assigned == {1, 3}
    assert svc.registry.get_sample_value("segstream_assigned_partitions") == 2
    # The new owner commits those partitions' offsets from now on.
    assert {tp.partition for tp in svc._uncommitted} == {1, 3}
    assert [{tp.partition for tp in offsets} for _, offsets in svc._durable] == [{1}]


class CheckpointStore(FakeStore):
    """A reachable Redis holding model checkpoint ``version`` (none if 0)."""

    def __init__(self, version: int) -> None:
        self.version = version
        self.client = self  # ping() below

    def ping(self) -> bool:
        return True

    def model_version(self) -> int:
        return self.version

    def load_model(self) -> tuple[int, bytes] | None:
        if not self.version:
            return None
        engine = SegmentEngine(EngineParams())
        engine.version = self.version
        return self.version, engine.snapshot()


class LearnerProcessor(FakeProcessor):
    def relearn(self, partitions: range) -> tuple[int, int]:
        self.relearned += 1  # the learn log is tested in tests/unit/test_relearn.py
        return 0, 0

    def forget_rows_ahead(self) -> None:
        self.forgot += 1

    def __init__(self, version: int, learns: bool = True) -> None:
        super().__init__()
        self.relearned = 0
        self.forgot = 0
        self.engine = SegmentEngine(EngineParams())
        self.engine.version = version
        self.learns = learns


@pytest.mark.parametrize(("stored", "built"), [(2, 3), (0, 1), (3, 3), (0, 0)])
def test_after_a_redis_outage_a_learner_resumes_from_the_stored_checkpoint(stored: int, built: int) -> None:
    """The connection dropped mid-batch, maybe while version ``built`` was being checkpointed.
    The learner goes back to what Redis holds, as a restart would: a version whose checkpoint
    did not land is rebuilt (its next one would fail the one-learner check otherwise), and the
    rows of the batches about to be redone do not count twice (0: no checkpoint yet, a new
    engine in warm-up)."""
    svc = service(FakeConsumer(owned={0}), assigned={0})
    svc.store = CheckpointStore(stored)  # type: ignore[assignment]
    processor = LearnerProcessor(built)
    before = processor.engine
    svc.processor = processor  # type: ignore[assignment]
    svc._recover_from_redis(redis.ConnectionError("Connection reset by peer"))
    assert processor.engine.version == stored
    assert processor.engine is not before
    # The learn log is learned again only after the partitions are verified (a Redis that came
    # back with less than it acknowledged stops the service first), before the next batch.
    assert svc._relearn_due and svc._unverified == {0} and processor.relearned == 0
    svc._relearn()
    assert not svc._relearn_due and processor.relearned == 1


def test_a_newer_stored_model_means_another_learner() -> None:
    svc = service(FakeConsumer(owned={0}), assigned={0})
    svc.store = CheckpointStore(5)  # type: ignore[assignment]
    svc.processor = LearnerProcessor(3)  # type: ignore[assignment]
    with pytest.raises(ModelConflict, match="another learner"):
        svc._resync(StateConflict("partition 0: applied offset moved"))


def test_a_follower_keeps_its_engine_after_a_redis_outage() -> None:
    svc = service(FakeConsumer(owned={0}), assigned={0})
    svc.store = CheckpointStore(2)  # type: ignore[assignment]
    processor = LearnerProcessor(1, learns=False)
    before = processor.engine
    svc.processor = processor  # type: ignore[assignment]
    svc._recover_from_redis(redis.ConnectionError("Connection reset by peer"))
    assert processor.engine is before  # it follows the checkpoint between batches


def test_a_state_conflict_also_brings_a_learner_back_to_the_stored_checkpoint() -> None:
    """A batch that built version 3 failed its compare-and-set before 3 was saved: redoing it
    from version 3 would make the next version 4 follow a stored 2 (a false 'another learner')."""
    svc = service(FakeConsumer(owned={0}), assigned={0})
    svc.store = CheckpointStore(2)  # type: ignore[assignment]
    processor = LearnerProcessor(3)
    svc.processor = processor  # type: ignore[assignment]
    svc._resync(StateConflict("partition 0: applied offset moved"))
    assert processor.engine.version == 2
    # Rows pulled or waiting ahead of the old engine are dropped with it: the relearn reads them
    # again (learned before it, on the stored version, their versions' saves raced the relearn's).
    assert processor.forgot == 1


class JoiningConsumer(FakeConsumer):
    """A subscribing consumer whose group has not assigned it anything yet: its polls come back
    empty (the join takes longer than the poll timeout); the loop stops after ``polls``."""

    def __init__(self, svc_stop: Callable[[], None], polls: int) -> None:
        super().__init__(owned=set())
        self.stop, self.polls = svc_stop, polls

    def poll(self, timeout_ms: int) -> dict[TopicPartition, list[object]]:
        self.polls -= 1
        if self.polls <= 0:
            self.stop()
        return {}


class IdleLearner(LearnerProcessor):
    def move_retired_idle(self, partitions: set[int]) -> None:
        pass


def test_a_start_learns_its_learn_log_again_only_once_partitions_are_assigned() -> None:
    """A learner's start subscribes; its first polls can come back before the group assigned it
    any partition. Nothing is verified then, and the learn log must wait: relearning there, with
    no partition known, built other versions than the uninterrupted run (test_relearn.py)."""
    svc = service(FakeConsumer(owned=set()), assigned=set())
    svc.consumer = JoiningConsumer(svc.request_stop, polls=3)  # type: ignore[assignment]
    processor = IdleLearner(0)
    svc.processor = processor  # type: ignore[assignment]
    svc._relearn_due = True  # as Service.start leaves a learner
    svc.run()
    assert processor.relearned == 0 and svc._relearn_due
    svc._assigned = {0, 1, 2, 3}  # assigned, and verified (_unverified empty)
    svc._stop.clear()
    svc.consumer = JoiningConsumer(svc.request_stop, polls=1)  # type: ignore[assignment]
    svc.run()
    assert processor.relearned == 1 and not svc._relearn_due


class HoldingProcessor(FakeProcessor):
    """A learner's merge that held records back: partition 2's from offset 7, 3's from 40."""

    def __init__(self) -> None:
        super().__init__()
        self.held = {2: 7, 3: 40}

    def drop_held(self, partitions: object = None) -> dict[int, int]:
        gone = set(self.held) if partitions is None else set(partitions)  # type: ignore[call-overload]
        out = {p: o for p, o in self.held.items() if p in gone}
        self.held = {p: o for p, o in self.held.items() if p not in gone}
        return out


class EmptyFor2(FakeStore):
    def applied_offset(self, p: int) -> int:
        return -1 if p == 2 else super().applied_offset(p)


def test_a_rebalance_reads_again_what_the_merge_held_back() -> None:
    # Partition 2 kept through a rebalance with nothing applied (every record read was held):
    # the consumer may keep its position past those records, so it is sought back to them.
    consumer = FakeConsumer(owned={0, 2, 3})
    svc = service(consumer, assigned={0, 1, 2, 3})
    svc.store = EmptyFor2()  # type: ignore[assignment]
    processor = HoldingProcessor()
    svc.processor = processor  # type: ignore[assignment]
    svc.on_revoked([TopicPartition(TOPIC, 1), TopicPartition(TOPIC, 3)])
    assert processor.held == {2: 7}  # a revoked partition's held records go; the kept ones' stay
    svc.on_assigned([TopicPartition(TOPIC, p) for p in (0, 2)])
    assert consumer.sought == {0: 101, 2: 7} and processor.held == {}  # 0: past its applied 100
    # An eager rebalance revokes everything first, then assigns: the same seek.
    processor.held, consumer.sought = {2: 9}, {}
    svc.on_revoked([TopicPartition(TOPIC, p) for p in (0, 2)])
    svc.on_assigned([TopicPartition(TOPIC, p) for p in (0, 2)])
    assert consumer.sought == {0: 101, 2: 9}


def test_with_role_auto_the_owner_of_partition_0_learns_and_a_zombie_follows() -> None:
    """`model.role: auto`: the role follows partition 0 at each assignment; an instance that
    finds a newer version than its own in Redis (another instance learned meanwhile) follows
    instead of stopping (tests/integration/test_learner_failover.py drives a real failover)."""
    svc = service(FakeConsumer(owned={0}), assigned={0})
    svc.settings = load(overrides={"topics": {"interactions": TOPIC}, "model": {"role": "auto"}})
    became: list[str] = []
    svc._become = became.append  # type: ignore[method-assign]
    svc.processor = LearnerProcessor(1, learns=False)  # type: ignore[assignment]
    svc._take_role()
    assert became == ["learner"] and svc._role() == "learner"
    svc.processor = LearnerProcessor(1)  # type: ignore[assignment]
    svc._assigned = {1, 2}
    svc._take_role()
    assert became == ["learner", "follower"]
    svc._assigned = {0}
    svc.store = CheckpointStore(5)  # type: ignore[assignment]
    svc.processor = LearnerProcessor(3)  # type: ignore[assignment]
    svc._realign_model()  # no ModelConflict: it follows
    assert became == ["learner", "follower", "follower"]
    # A fixed role is never switched.
    svc.settings = load(overrides={"topics": {"interactions": TOPIC}})
    svc._assigned = set()
    svc._take_role()
    assert len(became) == 3
