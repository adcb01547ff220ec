"""The learner learns every partition's rows, also those another instance reads: followers write
their rows to their partitions' learn logs and the learner takes them from there, in the merge's
order. The model then does not depend on how many instances share the partitions (issue #23
item 3; in process, on one store, as `--workers 2` runs through Redis)."""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from stream.config import Settings, load
from stream.io.kafka import SourceRecord
from stream.io.sinks.collect import CollectSink
from stream.runtime.engines import load_engine, restore
from stream.runtime.merge import version_at
from stream.runtime.metrics import Metrics
from stream.runtime.pipeline import BatchProcessor
from stream.state import MemoryFeatureStore, PartitionWrite
from tests.helpers import partitioned_log

SIZE = 300


@pytest.fixture(scope="module")
def log() -> list[SourceRecord]:
    return partitioned_log(300, seed=11)  # 45 days, 4 partitions


def settings(role: str = "learner") -> Settings:
    return load(
        overrides={
            "model": {
                "update_every": 400,
                "warmup_vectors": 400,
                "warmup_days": 7,
                "role": role,
                "learn_all_partitions": True,
            }
        }
    )


def processor(store: MemoryFeatureStore, role: str, owned: set[int]) -> BatchProcessor:
    s = settings(role)
    engine = load_engine(s, store)
    p = BatchProcessor(s, store, engine, CollectSink(engine), Metrics(CollectorRegistry()))
    p.owned = frozenset(owned)
    return p


@dataclass
class Run:
    snapshot: bytes
    version: int
    changes: list[dict[str, object]]  # every change published, per partition in order


def published(*processors: BatchProcessor) -> list[dict[str, object]]:
    """Every change the processors published, once per id (a restart publishes again what a
    crash kept from the sink: the same payload under the same id)."""
    by_id: dict[object, dict[str, object]] = {}
    for c in (c.model_dump() for p in processors for c in p.sink.changes):  # type: ignore[attr-defined]
        assert by_id.setdefault(c["change_id"], c) == c, c  # one change id, one payload
    return sorted(
        by_id.values(), key=lambda c: (c["source_partition"], c["source_offset"], c["customer_id"], c["seq"])
    )


def one_instance(records: list[SourceRecord]) -> Run:
    store = MemoryFeatureStore()
    learner = processor(store, "learner", {0, 1, 2, 3})
    for lo in range(0, len(records), SIZE):
        learner.process(records[lo : lo + SIZE])
    learner.drained = frozenset(range(4))
    learner.process([])
    learner.close()
    assert not learner.held_records()
    return Run(learner.engine.snapshot(), learner.engine.version, published(learner))


class CrashingStore(MemoryFeatureStore):
    """Fails the next follower write (partition 2 or 3) once ``crash`` is set: the follower dies
    after logging its rows, before (or between) its partitions' writes."""

    crash = False

    def commit(self, w: PartitionWrite) -> int | None:
        if self.crash and w.partition >= 2:
            self.crash = False
            raise RuntimeError("killed")
        return super().commit(w)


def two_instances(records: list[SourceRecord], seed: int, waits: bool = True, crashes: int = 0) -> Run:
    """A learner reading partitions 0-1 and a follower reading 2-3, their batches interleaved
    at random; the follower waits for the learner's merge to pass its rows (here: it runs the
    learner's next step), as `--workers 2` runs through Redis. With ``crashes``, the follower
    dies that many times at random batches between its learn-log rows and its write, and a new
    one goes on from the applied offsets."""
    store = CrashingStore()
    learner = processor(store, "learner", {0, 1})
    learner.remote = frozenset({2, 3})
    follower = processor(store, "follower", {2, 3})
    dead: list[BatchProcessor] = []
    mine = [r for r in records if r.partition < 2]
    theirs = [r for r in records if r.partition >= 2]
    ends = {q: max(r.offset for r in theirs if r.partition == q) for q in (2, 3)}
    rng = random.Random(seed)
    at = {"learner": 0, "follower": 0}

    def step_learner() -> bool:
        # Remote partitions logged to their end bound nothing (the service asks the broker).
        logged = {q for q in ends if max(store.applied_offset(q), store.logged(q)[0]) >= ends[q]}
        learner.pull_remote(logged)
        batch = mine[at["learner"] : at["learner"] + SIZE]
        at["learner"] += len(batch)
        if not batch:
            learner.drained = frozenset({0, 1})
        learner.process(batch)
        learner.drain()
        return True

    follower.await_learner = step_learner
    if not waits:  # before decision 0032: the newest version between batches, no waiting
        follower.waits_for_merge = follower._merge = False
    crash_at = set(rng.sample(range(2, len(theirs) // SIZE - 1), crashes))  # follower batch numbers
    batch_number = 0
    while at["learner"] < len(mine) or at["follower"] < len(theirs):
        who = rng.choice([w for w, part in (("learner", mine), ("follower", theirs)) if at[w] < len(part)])
        if who == "learner":
            step_learner()
            continue
        batch = theirs[at["follower"] : at["follower"] + SIZE]
        at["follower"] += len(batch)
        if at["follower"] >= len(theirs):
            follower.drained = frozenset({2, 3})
        saved = store.load_model()
        if not waits and saved is not None and saved[0] > follower.engine.version:
            follower.engine = restore(settings("follower"), saved[1])
        batch_number += 1
        store.crash = batch_number in crash_at
        crash_at.discard(batch_number)
        try:
            follower.process(batch)
            follower.drain()
        except RuntimeError:
            # A new follower reads on from what its partitions applied (a redo logs only the
            # rows not logged yet) and publishes what the dead one's outbox kept.
            dead.append(follower)
            follower = processor(store, "follower", {2, 3})
            follower.await_learner = step_learner
            follower.publish_outbox({2, 3})
            theirs = [r for r in theirs if r.offset > store.applied_offset(r.partition)]
            at["follower"] = 0
    while follower.held_records():
        follower.process([])
        follower.drain()
    follower.close()
    # The end of the log: every partition read to its end.
    step_learner()
    learner.close()
    assert not learner.held_records()
    assert len(dead) == crashes
    return Run(learner.engine.snapshot(), learner.engine.version, published(learner, *dead, follower))


def normalized(snapshot: bytes) -> bytes:
    """The snapshot with the rows waiting for the next version as one block (how they came in
    blocks depends on the batches, not what they are)."""
    engine = restore(settings(), snapshot)
    if engine._pending_raw:
        engine._pending_raw = [np.concatenate(engine._pending_raw)]
        engine._pending_t = [np.concatenate(engine._pending_t)]
    return engine.snapshot()


def test_a_learner_and_a_follower_publish_what_one_instance_publishes(log: list[SourceRecord]) -> None:
    """The model, and every change: each row assigned by the version one instance reading every
    partition had at that row (issue #23 item 3)."""
    alone = one_instance(log)
    for seed in (0, 1, 2):
        shared = two_instances(log, seed)
        assert shared.version >= 5 and shared.version == alone.version
        assert normalized(shared.snapshot) == normalized(alone.snapshot), seed  # byte for byte
        assert len(shared.changes) == len(alone.changes) and shared.changes == alone.changes, seed


def test_a_follower_killed_between_its_rows_and_its_write_publishes_the_same(
    log: list[SourceRecord],
) -> None:
    alone = one_instance(log)
    for seed in (3, 4):
        shared = two_instances(log, seed, crashes=2)
        assert normalized(shared.snapshot) == normalized(alone.snapshot), seed
        assert shared.changes == alone.changes, seed


def test_a_follower_batch_of_dead_letters_only(log: list[SourceRecord]) -> None:
    """A batch whose records make no row (all dead letters) logs nothing, waits for nothing and
    keeps the follower's engine (seen live: an empty list of versions stopped the worker)."""
    store = MemoryFeatureStore()
    follower = processor(store, "follower", {2, 3})
    bad = [r._replace(value=b"{not json") for r in log if r.partition >= 2][:50]
    result = follower.process(bad)
    follower.drain()
    assert result.dead_letters == 50 and result.changes == 0
    assert follower.engine.version == 0 and store.learn_entries(2) == store.learn_entries(3) == []


def test_a_row_takes_the_newest_version_built_before_its_place() -> None:
    built = [((3, 0, 7), 1), ((5, 1, 0), 2), ((9, 0, 1), 3)]
    places = [(0, 2, 0), (3, 0, 7), (3, 0, 8), (5, 0, 99), (5, 1, 0), (5, 1, 1), (9, 2, 0)]
    assert [version_at(p, built) for p in places] == [0, 0, 1, 1, 1, 2, 3]


def test_a_follower_with_the_newest_version_publishes_other_changes(log: list[SourceRecord]) -> None:
    """What the test above guards against: a follower assigning with the newest version it
    found between its batches (before decision 0032): the same model, other changes."""
    alone = one_instance(log)
    runs = [two_instances(log, seed, waits=False) for seed in (0, 1, 2)]
    assert all(normalized(r.snapshot) == normalized(alone.snapshot) for r in runs)
    assert any(r.changes != alone.changes for r in runs)


def test_without_the_follower_rows_the_learner_learns_another_model(log: list[SourceRecord]) -> None:
    """What the test above guards against: a learner of its own partitions only (before)."""
    mine = [r for r in log if r.partition < 2]
    store = MemoryFeatureStore()
    learner = processor(store, "learner", {0, 1})
    for lo in range(0, len(mine), SIZE):
        learner.process(mine[lo : lo + SIZE])
    learner.drained = frozenset({0, 1})
    learner.process([])
    learner.close()
    assert normalized(learner.engine.snapshot()) != normalized(one_instance(log).snapshot)
