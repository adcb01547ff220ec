"""A learner reading several partitions learns in event-time order: its versions do not depend on
how the partitions' records interleave."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import redis
from kafka import TopicPartition
from prometheus_client import CollectorRegistry

from models.segments.alignment import SourceAligner
from models.segments.engine import SegmentEngine
from models.segments.population import customer_key
from stream.config import Settings, load
from stream.io.kafka import SourceRecord
from stream.io.sinks.collect import CollectSink
from stream.runtime.engines import load_engine, new_engine
from stream.runtime.metrics import Metrics
from stream.runtime.pipeline import BatchProcessor
from stream.runtime.service import Service
from stream.state import MemoryFeatureStore, PartitionView
from tests.helpers import partitioned_log

DAY = 86400.0


def source_rows(seed: int, n: int = 600, sources: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of a few sources, each in arrival order; times rise per source with some disorder
    (within a day, the lateness used below), and ties across sources."""
    rng = np.random.default_rng(seed)
    src = rng.integers(0, sources, n)
    t = np.empty(n)
    for s in range(sources):
        at = src == s
        t[at] = (
            np.floor(np.cumsum(rng.exponential(3600.0, int(at.sum()))))
            + rng.integers(0, 3, int(at.sum())) * 3600
        )
    return t, src, np.arange(n)


def arrivals(src: np.ndarray, seed: int) -> list[np.ndarray]:
    """Batches of row indices: each source's rows in their order, sources interleaved at random."""
    rng = np.random.default_rng(seed)
    queues = {int(s): list(np.flatnonzero(src == s)) for s in np.unique(src)}
    batches = []
    while any(queues.values()):
        batch: list[int] = []
        for q in queues.values():
            take = int(rng.integers(0, 40))
            batch += q[:take]
            del q[:take]
        if batch:
            batches.append(np.array(batch))
    return batches


def released_order(t: np.ndarray, src: np.ndarray, row: np.ndarray, seed: int) -> list[int]:
    aligner = SourceAligner(("rows",), lateness=DAY, max_skew=1e9, max_held=10**6)
    clock: dict[int, float] = {}
    out: list[int] = []
    for batch in arrivals(src, seed):
        for s in np.unique(src[batch]).tolist():
            clock[s] = max(clock.get(s, -np.inf), float(t[batch][src[batch] == s].max()))
        aligner.add(t[batch], src[batch], {"rows": {"row": row[batch]}})
        aligner.release(clock, {0, 1, 2})
        out += aligner.take("rows").get("row", np.zeros(0, dtype=int)).tolist()
    aligner.release(clock)  # every source read to its end
    return out + aligner.take("rows")["row"].tolist()


def test_released_rows_are_in_event_time_order_whatever_the_interleaving() -> None:
    t, src, row = source_rows(seed=1)
    orders = [released_order(t, src, row, seed) for seed in (1, 2, 3)]
    assert sorted(orders[0]) == row.tolist()  # every row once
    assert orders[0] == orders[1] == orders[2]
    # (event time, source, arrival within the source)
    keys = [(t[i], src[i], i) for i in orders[0]]
    assert keys == sorted(keys)


def test_only_sources_still_to_deliver_hold_rows_back_and_the_bounds_hold() -> None:
    aligner = SourceAligner(("rows",), lateness=0.0, max_skew=10.0, max_held=3)
    aligner.add(np.array([1.0, 2.0, 3.0]), np.array([0, 0, 0]), {"rows": {"x": np.array([1, 2, 3])}})
    aligner.release({0: 3.0}, {0, 1})  # source 1 has sent nothing yet, but is less than 10 behind
    assert aligner.ready_rows() == 0
    aligner.release({0: 3.0}, {0})  # source 1 read to its end: only source 0's clock counts
    assert aligner.take("rows")["x"].tolist() == [1, 2]  # below the clock; 3 may still have a tie
    aligner.add(np.array([20.0]), np.array([0]), {"rows": {"x": np.array([4])}})
    aligner.release({0: 20.0, 1: 5.0}, {0, 1})  # source 1 is 15 behind: it holds back to 20 - 10
    assert aligner.take("rows")["x"].tolist() == [3]
    aligner.add(np.array([21.0, 22.0, 23.0]), np.array([0, 0, 0]), {"rows": {"x": np.array([5, 6, 7])}})
    aligner.release({0: 23.0, 1: 20.0}, {0, 1})
    assert aligner.held_rows() == 3 and aligner.forced == 1  # at most 3 wait: the oldest went
    assert aligner.take("rows")["x"].tolist() == [4]


def test_rows_of_erased_customers_are_dropped_while_they_wait() -> None:
    aligner = SourceAligner(("sample",), lateness=0.0, max_skew=1e9, max_held=100)
    keys = np.array([7, 8, 7], dtype=np.uint64)
    aligner.add(np.array([1.0, 2.0, 3.0]), np.array([0, 1, 0]), {"sample": {"key": keys}})
    aligner.release({0: 3.0, 1: 2.5}, {0, 1})
    assert aligner.ready_rows() == 2 and aligner.held_rows() == 1
    assert aligner.drop("sample", "key", {7}) == 2
    assert aligner.take("sample")["key"].tolist() == [8] and aligner.held_rows() == 0


# ---- through the pipeline ----


def settings(**model: object) -> Settings:
    """The default model, with versions often enough for a small log."""
    s = load()
    return s.model_copy(update={"model": s.model.model_copy(update={"update_every": 400, **model})})


def interleaved(
    recs: list[SourceRecord], seed: int, batch: int = 500
) -> list[tuple[list[SourceRecord], frozenset[int]]]:
    """Polls of a 4-partition log: each partition in offset order, partitions mixed at random
    (seed 0: the log's own order, ``batch`` records a poll), with the partitions each poll has
    read to their end."""
    by_partition = [[r for r in recs if r.partition == p] for p in range(4)]
    if seed == 0:
        cuts = [recs[lo : lo + batch] for lo in range(0, len(recs), batch)]
    else:
        rng = np.random.default_rng(seed)
        pos, cuts = [0] * 4, []
        while any(pos[p] < len(by_partition[p]) for p in range(4)):
            poll = []
            for p in range(4):
                n = int(rng.integers(0, 600))
                poll += by_partition[p][pos[p] : pos[p] + n]
                pos[p] += n
            cuts.append(poll)
    polls, read = [], [0] * 4
    for poll in cuts:
        for r in poll:
            read[r.partition] += 1
        polls.append((poll, frozenset(p for p in range(4) if read[p] == len(by_partition[p]))))
    return polls


def learn(
    recs: list[SourceRecord], seed: int, s: Settings, batch: int = 500, legacy: bool = False
) -> SegmentEngine:
    return learner(recs, seed, s, batch, legacy).engine


def learner(
    recs: list[SourceRecord], seed: int, s: Settings, batch: int = 500, legacy: bool = False
) -> BatchProcessor:
    """``legacy``: the engine's own alignment instead of the merge (earlier releases)."""
    engine = new_engine(s)
    processor = BatchProcessor(
        s, MemoryFeatureStore(), engine, CollectSink(engine), Metrics(CollectorRegistry())
    )
    processor.owned = frozenset(range(4))
    processor._merge = not legacy and processor._merge
    for poll, drained in interleaved(recs, seed, batch):
        processor.drained = drained
        if poll:
            processor.process(poll)
    processor.drained = frozenset(range(4))
    processor.process([])  # what the merge still held back
    assert not processor.held_records()
    processor.close()
    return processor


def model_of(engine: SegmentEngine) -> tuple[int, float, list[list[float]], list[int]]:
    v = engine._current
    assert v is not None
    return engine.version, engine.t_max, v.centroids.round(12).tolist(), v.ids.tolist()


@pytest.fixture(scope="module")
def log() -> list[SourceRecord]:
    return partitioned_log(300, seed=6)  # 45 days, 4 partitions


def test_versions_do_not_depend_on_how_the_partitions_interleave(log: list[SourceRecord]) -> None:
    models = [model_of(learn(log, seed, settings())) for seed in (0, 1, 2)]
    assert models[0][0] >= 5  # several versions, all of them the same
    assert models[0] == models[1] == models[2]


def test_published_changes_do_not_depend_on_how_the_partitions_interleave(log: list[SourceRecord]) -> None:
    # The learner's merge (stream.runtime.merge): every row is assigned by the version built
    # from exactly the rows before it in (clock, partition, place) order, whatever the polls.
    runs = [
        learner(log, seed, settings(), batch) for seed, batch in ((0, 500), (1, 500), (2, 500), (0, 1700))
    ]
    partition_of = {r.key.decode(): r.partition for r in log if r.key}

    def by_partition(processor: BatchProcessor) -> list[list[str]]:
        """Each partition's changes in the order published (what its topic partition holds)."""
        out: list[list[str]] = [[] for _ in range(4)]
        for c in processor.sink.changes:  # type: ignore[attr-defined]
            out[partition_of[c.customer_id]].append(c.model_dump_json())
        return out

    changes = [by_partition(r) for r in runs]
    assert sum(map(len, changes[0])) > 300
    assert all(c == changes[0] for c in changes[1:])
    assert all(model_of(r.engine) == model_of(runs[0].engine) for r in runs[1:])


def test_in_arrival_order_the_same_log_learns_different_versions(log: list[SourceRecord]) -> None:
    # What the alignment is for: without it the interleaving changes the model.
    unaligned = settings(align_partitions=False)
    models = [model_of(learn(log, seed, unaligned)) for seed in (0, 1, 2)]
    assert models[0] != models[1] or models[0] != models[2]


def test_rows_waiting_for_other_partitions_survive_a_checkpoint(log: list[SourceRecord]) -> None:
    s = settings()
    polls = interleaved(log, 1)
    half = len(polls) // 2
    whole = learn(log, 1, s, legacy=True)

    engine = new_engine(s)
    store = MemoryFeatureStore()
    processor = BatchProcessor(s, store, engine, CollectSink(engine), Metrics(CollectorRegistry()))
    processor.owned = frozenset(range(4))
    processor._merge = False  # the engine's own alignment, as earlier releases ran (their checkpoints load)
    for poll, drained in polls[:half]:
        processor.drained = drained
        processor.process(poll)
    assert engine._aligner is not None and len(engine._aligner) > 0  # rows are waiting
    # A version's snapshot names the waiting rows (by partition and position) without their
    # feature columns, which the service's learn log keeps.
    named = SegmentEngine.restore(engine.snapshot())._aligner
    assert named is not None and len(named) == len(engine._aligner) and named.stripped
    assert all("raw" not in part for part in named._held["learn"])
    processor.engine = SegmentEngine.restore(engine.snapshot(waiting=True))  # a graceful restart
    for poll, drained in polls[half:]:
        processor.drained = drained
        processor.process(poll)
    processor.close()
    assert model_of(processor.engine) == model_of(whole)


def test_an_erased_customers_waiting_rows_leave_with_it(log: list[SourceRecord]) -> None:
    s = settings()
    engine = new_engine(s)
    processor = BatchProcessor(
        s, MemoryFeatureStore(), engine, CollectSink(engine), Metrics(CollectorRegistry())
    )
    processor.owned = frozenset(range(4))
    processor._merge = False  # the engine's own alignment, as earlier releases ran (their checkpoints load)
    polls = interleaved(log, 2)
    for poll, drained in polls[: len(polls) // 3]:
        processor.drained = drained
        processor.process(poll)
    aligner = engine._aligner
    assert aligner is not None
    waiting = {int(k) for part in aligner._held["sample"] for k in part["key"].tolist()}
    victim = next(iter(waiting))
    engine.forget_customers({victim})
    left = {int(k) for part in aligner._held["sample"] for k in part["key"].tolist()}
    ready = aligner.ready["sample"]
    assert victim not in left and (not ready or victim not in set(ready["key"].tolist()))
    assert customer_key("no such customer") not in left


# ---- which partitions the service calls read to their end ----


class EndsConsumer:
    """The consumer calls Service._drained makes: the fetcher's highwater, the broker's ends."""

    def __init__(self, highwater: dict[int, int | None], ends: dict[int, int]) -> None:
        self.highwater_of = highwater
        self.ends = ends
        self.asked: list[list[int]] = []

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.highwater_of[tp.partition]

    def end_offsets(self, tps: list[TopicPartition], timeout_ms: int) -> dict[TopicPartition, int]:
        self.asked.append([tp.partition for tp in tps])
        return {tp: self.ends[tp.partition] for tp in tps}


def test_the_service_tells_which_partitions_a_poll_read_to_their_end() -> None:
    svc = Service(load(overrides={"topics": {"interactions": "in"}}))
    consumer = EndsConsumer({0: 10, 1: 10, 2: None, 3: 0}, ends={2: 7})
    svc.consumer = consumer  # type: ignore[assignment]
    svc._assigned = {0, 1, 2, 3}
    svc._next_offset = {1: 4, 2: 7}  # 1 and 2 were read before (or restored from Redis)
    polled = [SourceRecord("in", 0, o, b"c", b"{}") for o in (7, 8, 9)]
    # 0: this poll reaches its end; 1: behind; 2: the fetcher has no end, the broker says 7;
    # 3: empty.
    assert svc._drained(polled) == {0, 2, 3}
    assert consumer.asked == [[2]]
    polled[-1] = SourceRecord("in", 0, 8, b"c", b"{}")
    assert svc._drained(polled) == {2, 3}  # 0 is one short now; the broker is not asked again
    assert consumer.asked == [[2]]
    svc._assigned = {0}
    assert svc._drained(polled) == frozenset()  # one partition: nothing to align


def test_a_follower_never_learns_the_rows_a_learners_shutdown_kept(log: list[SourceRecord]) -> None:
    # A graceful shutdown saves the rows waiting for other partitions; a follower that loads
    # that checkpoint assigns with it and must not learn them (nor build a version).
    polls = interleaved(log, 1)
    s = settings()
    teacher = new_engine(s)
    taught = BatchProcessor(
        s, MemoryFeatureStore(), teacher, CollectSink(teacher), Metrics(CollectorRegistry())
    )
    taught.owned = frozenset(range(4))
    taught._merge = False  # the engine's own alignment, as earlier releases ran (their checkpoints load)
    for poll, drained in polls[: len(polls) // 2]:
        taught.drained = drained
        taught.process(poll)
    blob = taught.engine.snapshot(waiting=True)
    engine = SegmentEngine.restore(blob)
    assert engine.waiting_rows() > 0
    follower_settings = settings(role="follower", learn_all_partitions=False)  # assigns with its own
    before = (engine.version, engine.learned, engine.waiting_rows())
    follower = BatchProcessor(
        follower_settings, MemoryFeatureStore(), engine, CollectSink(engine), Metrics(CollectorRegistry())
    )
    for poll, _ in polls[len(polls) // 2 :]:
        follower.process(poll)
    follower.close()
    assert (engine.version, engine.learned, engine.waiting_rows()) == before
    assert follower.sink.model_events == []  # type: ignore[attr-defined]


class DroppingStore(MemoryFeatureStore):
    """A store whose ``fail_at``-th load fails, as Redis dropping the connection mid-batch."""

    fail_at = 0
    loads = 0

    def load(self, p: int, customer_ids: list[str], due_until: int) -> PartitionView:
        self.loads += 1
        if self.loads == self.fail_at:
            raise redis.ConnectionError("connection dropped mid-batch")
        return super().load(p, customer_ids, due_until)


def test_a_batch_redone_after_a_redis_failure_learns_in_the_merges_order(log: list[SourceRecord]) -> None:
    # What the service does when Redis fails mid-batch (_recover_from_redis): back to the stored
    # checkpoint, learn the learn log again, forget the held records and read again from the
    # applied offsets. The model must be the uninterrupted run's.
    s = settings()
    whole = learn(log, 1, s)
    for fail_at in (6, 18, 30, 42, 54):
        store = DroppingStore()
        store.fail_at = fail_at
        processor = BatchProcessor(s, store, new_engine(s), CollectSink(None), Metrics(CollectorRegistry()))
        processor.owned = frozenset(range(4))
        polls = interleaved(log, 1)
        failed = False
        for poll, drained in polls:
            processor.drained = drained
            try:
                processor.process(poll)
            except redis.ConnectionError:
                failed = True
                with contextlib.suppress(redis.ConnectionError):
                    processor.drain()
                processor.engine = load_engine(s, store)
                processor.relearn(range(4))
                processor.drop_held()
                rest = [r for r in log if r.offset > store.applied_offset(r.partition)]
                for poll2, drained2 in interleaved(rest, 2):
                    processor.drained = drained2
                    processor.process(poll2)
                break
        assert failed and store.loads > fail_at
        processor.drained = frozenset(range(4))
        processor.process([])
        processor.close()
        assert model_of(processor.engine) == model_of(whole), fail_at
