"""The learner learns every partition's rows, also those another instance reads: followers write
their rows to their partitions' learn logs and the learner takes them from there, in the merge's
order. The model then does not depend on how many instances share the partitions (issue #23
item 3; in process, on one store, as `--workers 2` runs through Redis)."""

from __future__ import annotations

import random

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from stream.config import Settings, load
from stream.io.kafka import SourceRecord
from stream.io.sinks.collect import CollectSink
from stream.runtime.engines import load_engine, restore
from stream.runtime.metrics import Metrics
from stream.runtime.pipeline import BatchProcessor
from stream.state import MemoryFeatureStore
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


def one_instance(records: list[SourceRecord]) -> bytes:
    store = MemoryFeatureStore()
    learner = processor(store, "learner", {0, 1, 2, 3})
    for lo in range(0, len(records), SIZE):
        learner.process(records[lo : lo + SIZE])
    learner.drained = frozenset(range(4))
    learner.process([])
    learner.close()
    assert not learner.held_records()
    return learner.engine.snapshot()


def two_instances(records: list[SourceRecord], seed: int) -> tuple[bytes, int]:
    """A learner reading partitions 0-1 and a follower reading 2-3, their batches interleaved
    at random; the follower takes each checkpointed version between its batches."""
    store = MemoryFeatureStore()
    learner = processor(store, "learner", {0, 1})
    learner.remote = frozenset({2, 3})
    follower = processor(store, "follower", {2, 3})
    mine = [r for r in records if r.partition < 2]
    theirs = [r for r in records if r.partition >= 2]
    rng = random.Random(seed)
    at = {"learner": 0, "follower": 0}
    versions = 0
    while at["learner"] < len(mine) or at["follower"] < len(theirs):
        who = rng.choice([w for w, part in (("learner", mine), ("follower", theirs)) if at[w] < len(part)])
        part = mine if who == "learner" else theirs
        batch = part[at[who] : at[who] + SIZE]
        at[who] += len(batch)
        if who == "follower":
            saved = store.load_model()
            if saved is not None and saved[0] > follower.engine.version:
                follower.engine = restore(settings("follower"), saved[1])
            follower.process(batch)
            follower.drain()
        else:
            learner.pull_remote(())
            learner.process(batch)
            learner.drain()
        versions = max(versions, learner.engine.version)
    follower.close()
    # The end of the log: every partition read to its end.
    learner.pull_remote({2, 3})
    learner.drained = frozenset({0, 1})
    learner.process([])
    learner.close()
    assert not learner.held_records()
    return learner.engine.snapshot(), learner.engine.version


def normalized(snapshot: bytes) -> bytes:
    """The snapshot with the rows waiting for the next version as one block (how they came in
    blocks depends on the batches, not what they are)."""
    engine = restore(settings(), snapshot)
    if engine._pending_raw:
        engine._pending_raw = [np.concatenate(engine._pending_raw)]
        engine._pending_t = [np.concatenate(engine._pending_t)]
    return engine.snapshot()


def test_a_learner_and_a_follower_learn_the_model_one_instance_learns(log: list[SourceRecord]) -> None:
    alone = normalized(one_instance(log))
    for seed in (0, 1, 2):
        shared, version = two_instances(log, seed)
        assert version >= 5
        assert normalized(shared) == alone, seed  # the whole engine, byte for byte


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
    assert normalized(learner.engine.snapshot()) != normalized(one_instance(log))
