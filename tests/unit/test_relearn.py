"""A learner that crashes learns again, from the learn log, what its checkpoint did not hold: the
model, and with it the published changes, end as an uninterrupted run's (in process, the same
batches: a crash drops the batch whose write had not landed, and the restart redoes it)."""

from __future__ import annotations

import random

import pytest
from prometheus_client import CollectorRegistry

from models.features import CustomerState
from stream.config import load
from stream.errors import StateConflict
from stream.io.kafka import SourceRecord
from stream.io.sinks.collect import CollectSink
from stream.runtime.engines import load_engine
from stream.runtime.metrics import Metrics
from stream.runtime.pipeline import BatchProcessor
from stream.state import MemoryFeatureStore
from stream.state.learnlog import LearnLogError, decode_rows, encode_rows
from stream.state.protocol import PartitionWrite
from tests.helpers import partitioned_log

BATCH = 600


class Died(Exception):
    """The learner's process ends between two partitions' writes of a batch."""


class DyingStore(MemoryFeatureStore):
    """A store whose writes stop after ``budget`` more partition writes (None: never)."""

    budget: int | None = None

    def commit(self, w: PartitionWrite) -> int | None:
        if self.budget is not None:
            if self.budget <= 0:
                raise Died(f"partition {w.partition}'s write never lands")
            self.budget -= 1
        return super().commit(w)


class FailoverStore(DyingStore):
    """A Redis Cluster whose master of the model key fails over at a crash (:meth:`fail_over`):
    its replica had not received the newest checkpoint, while the writes to the other masters
    (the learn logs, and their trims) are all kept."""

    writes_in_order = False

    def __init__(self) -> None:
        super().__init__()
        self.saved: list[tuple[int, bytes]] = []

    def save_model(
        self,
        snapshot: bytes,
        version: int,
        after: int | None = None,
        unpublished: bytes = b"",
        kept: bytes = b"",
        built_after: str = "",
    ) -> None:
        super().save_model(snapshot, version, after, unpublished, kept, built_after)
        self.saved.append((version, snapshot))

    def fail_over(self) -> None:
        if len(self.saved) >= 2:
            lost, _ = self.saved.pop()
            self._model = self.saved[-1]
            self._unpublished.pop(lost, None)


@pytest.fixture(scope="module")
def log() -> list[SourceRecord]:
    return partitioned_log(300, seed=11)  # 45 days, 4 partitions


def run(
    records: list[SourceRecord],
    crashes: list[int],
    size: int = BATCH,
    assigned_first: bool = True,
    legacy: bool = False,
    landed: dict[int, int] | None = None,
    store: DyingStore | None = None,
) -> tuple[MemoryFeatureStore, list[str], int, bytes]:
    """Process ``records`` in batches of ``size`` on one store; after each batch index in ``crashes`` the
    learner dies (its last batch never written, nothing closed) and a new one starts from the
    store, as the service does: restore the checkpoint, learn again from the learn log, go on.
    ``landed``: per crash, how many partitions' writes of its last batch land (default none).
    ``assigned_first`` False: the restarted learner learns again before it knows its partitions
    (``owned`` None), as a subscribing start whose first poll came back before the group
    assigned it any. ``legacy``: the engine's own alignment of earlier releases, not the merge.
    ``store``: the store to run on (a :class:`FailoverStore` fails over at each crash)."""
    settings = load(overrides={"model": {"update_every": 400, "warmup_vectors": 400, "warmup_days": 7}})
    store = DyingStore() if store is None else store
    batches = [records[lo : lo + size] for lo in range(0, len(records), size)]
    changes: list[str] = []
    i = 0
    for stop in [*crashes, len(batches)]:
        engine = load_engine(settings, store)
        sink = CollectSink(engine)
        processor = BatchProcessor(settings, store, engine, sink, Metrics(CollectorRegistry()))
        processor.owned = frozenset(range(4)) if assigned_first else None
        processor._merge = processor._merge and not legacy
        processor.relearn(range(4))
        processor.owned = frozenset(range(4))
        # Read again from what the store applied, as the service seeks: the batch that was in
        # flight and the records the merge held back.
        redo = [r for b in batches[:i] for r in b if r.offset > store.applied_offset(r.partition)]
        for batch in [redo, *batches[i:stop]] if redo else batches[i:stop]:
            processor.process(batch)
        if stop in (landed or {}):
            store.budget = (landed or {})[stop]
            with pytest.raises(Died):
                processor.drain()  # the writes of the last batch, some of them
            store.budget = None
        if isinstance(store, FailoverStore) and stop < len(batches):
            store.fail_over()
        if stop == len(batches):
            processor.drained = frozenset(range(4))  # the log's end: nothing holds rows back
            processor.process([])
            assert not processor.held_records()
            processor.close()
        changes += [c.model_dump_json() for c in sink.changes]
        i = stop
    engine = processor.engine
    return store, changes, engine.version, engine.snapshot()


def test_the_learn_log_is_data() -> None:
    import numpy as np

    columns = {"pos": np.arange(3, dtype=np.int64), "t": np.ones(3), "learn": np.array([True, False, True])}
    back = decode_rows(encode_rows(columns))
    assert {k: v.tolist() for k, v in back.items()} == {k: v.tolist() for k, v in columns.items()}
    for bad in (b"\x80\x04pickle", encode_rows(columns)[:-3], b"SSLEARN1\x00\x00\x00\x02[]x"):
        with pytest.raises(LearnLogError):
            decode_rows(bad)


def test_after_crashes_the_model_and_the_changes_are_an_uninterrupted_runs(log: list[SourceRecord]) -> None:
    store, changes, version, snapshot = run(log, [])
    assert version >= 5
    # Mid-model, during warm-up, twice in a row, and five seeded points.
    seeded = sorted(random.Random(23).sample(range(1, len(log) // BATCH), 5))
    for crashes in ([9], [4, 13, 14], seeded):
        c_store, c_changes, c_version, c_snapshot = run(log, crashes)
        assert c_version == version
        assert c_snapshot == snapshot  # the whole engine, byte for byte
        assert c_changes == changes
        states = {c: CustomerState.unpack(b) for _, c, b in c_store.scan_customers(4)}
        assert states == {c: CustomerState.unpack(b) for _, c, b in store.scan_customers(4)}


def test_a_failover_that_loses_the_newest_checkpoint_ends_in_the_uninterrupted_model(
    log: list[SourceRecord], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The learn log keeps the rows of the checkpoints of the last LEARN_LOG_GRACE_SECONDS on a
    # store that can lose them out of order: the learner goes back to the checkpoint before and
    # learns them again.
    _, _, version, snapshot = run(log, [])
    crashes = [9, 14]
    assert run(log, crashes, store=FailoverStore())[2:] == (version, snapshot)
    # What the grace is for: trimmed at once, the rows between the two checkpoints are gone.
    monkeypatch.setattr(FailoverStore, "writes_in_order", True)
    assert run(log, crashes, store=FailoverStore())[2:] != (version, snapshot)


def test_a_crash_between_two_partitions_writes_of_a_batch_changes_nothing(log: list[SourceRecord]) -> None:
    """The partitions written hold the batch's rows in their learn logs, the others read theirs
    again: some of the former come after some of the latter in the merge's order, and wait for
    their place there (measured before: 25-406 of 1,029 changes differed, and the model)."""
    _, changes, version, snapshot = run(log, [])
    rng = random.Random(5)
    for _ in range(3):
        crashes = sorted(rng.sample(range(1, len(log) // BATCH), 3))
        landed = {c: rng.randint(1, 3) for c in crashes}
        _, c_changes, c_version, c_snapshot = run(log, crashes, landed=landed)
        assert (c_version, c_snapshot) == (version, snapshot), landed
        assert c_changes == changes, landed


def test_a_restart_from_the_warm_up_checkpoint_of_a_catch_up_ends_in_the_uninterrupted_model(
    log: list[SourceRecord],
) -> None:
    """A catch-up read gets one partition's records at a time (the broker's fetches: tens of
    thousands of one partition's records, then the next's), so the warm-up checkpoints have
    taken in a single partition, and only its learn log holds rows after them; a restart that
    learns them again before it knows its partitions must still wait for the others, as the
    checkpointed learner did (measured through the broker: it learned the partition's waiting
    rows at once and built other versions, the first 24 minutes of event time late)."""
    by_partition = sorted(log, key=lambda r: r.partition)  # each partition's records in order
    # The merge holds the first partition's records until the others deliver; the engine's own
    # alignment (earlier releases, whose checkpoints still load) learned them as they came.
    for legacy in (False, True):
        _, changes, version, snapshot = run(by_partition, [], size=150, legacy=legacy)
        # Batch 5 is the first partition's, mid-warm-up, past a warm-up checkpoint: the batches of
        # less than a day of event time since then are in the learn log only.
        for assigned_first in (True, False):
            _, c_changes, c_version, c_snapshot = run(
                by_partition, [5], size=150, assigned_first=assigned_first, legacy=legacy
            )
            assert c_version == version
            assert c_snapshot == snapshot
            assert c_changes == changes


def test_the_learn_log_keeps_only_what_the_checkpoint_does_not_hold(log: list[SourceRecord]) -> None:
    store, _, _, _ = run(log, [])
    kept = sum(len(decode_rows(blob)["pos"]) for p in range(4) for _, blob in store.learn_entries(p))
    assert kept < len(log) / 4  # trimmed at each checkpoint: rows since the last one, and waiting


def test_a_foreign_learn_log_entry_stops_with_one_line_naming_it() -> None:
    from dataclasses import replace

    from stream.errors import SegstreamError
    from stream.state.protocol import PartitionWrite

    settings = load()
    store = MemoryFeatureStore()
    store.commit(replace(PartitionWrite(1, -1, 5, 0, {}, {}, {}), learned=b"junk", learned_name="x"))
    processor = BatchProcessor(
        settings,
        store,
        load_engine(settings, store),
        CollectSink(None),
        Metrics(CollectorRegistry()),  # type: ignore[arg-type]
    )
    with pytest.raises(SegstreamError, match="partition 1: the learner's learn log cannot be read"):
        processor.relearn(range(4))


def test_a_relearn_after_a_failed_batch_checkpoints_its_versions_at_once(
    log: list[SourceRecord], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch that fails after it started queueing checkpoints (a zombie's write conflict found
    while it merges) leaves no queue behind: the service goes back to the stored version and
    relearns outside any batch, and each version that relearn builds is checkpointed then. (It
    was appended to the failed batch's queue, which the next batch dropped: the stored version
    stayed behind the learner's, and its next checkpoint stopped it as "went back".)"""
    settings = load(overrides={"model": {"update_every": 400, "warmup_vectors": 400, "warmup_days": 7}})
    store = MemoryFeatureStore()
    processor = BatchProcessor(
        settings, store, load_engine(settings, store), CollectSink(None), Metrics(CollectorRegistry())
    )
    processor.owned = frozenset(range(4))
    batches = [log[lo : lo + BATCH] for lo in range(0, len(log), BATCH)]
    for batch in batches[:12]:
        processor.process(batch)
    assert processor.engine.version >= 1

    def conflict(*args: object) -> None:
        raise StateConflict("partition 2: applied offset is b'14599', batch expected -1")

    monkeypatch.setattr(processor, "_hold_back", conflict)
    with pytest.raises(StateConflict):
        processor.process(batches[12])
    monkeypatch.undo()
    ran: list[int] = []
    processor._after_write(lambda: ran.append(1))  # what a relearn's version queues
    assert ran == [1]
    processor.drain()
    processor.engine = load_engine(settings, store)  # the service's realignment
    processor.relearn(range(4))
    assert processor.engine.version >= 1 and store.model_version() == processor.engine.version
