"""OrderedIO: deferred writes, loads that see them, order of submission, failures surfaced."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest

from stream.errors import StateConflict
from stream.state import MAX_UNWRITTEN_BATCHES, MemoryFeatureStore, OrderedIO, PartitionView, PartitionWrite


def _write(
    p: int, expected: int, new: int, states: dict[str, bytes], due: dict[str, int] | None = None
) -> PartitionWrite:
    return PartitionWrite(p, expected, new, new * 10, states, due or {}, segment_deltas={})


class _ThreadedStore(MemoryFeatureStore):
    """The memory store run the way OrderedIO runs Redis: on its background thread."""

    blocking_io = True


class _SlowStore(_ThreadedStore):
    """Commits wait for a gate: a load submitted after a commit must still see it."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    def commit(self, w: PartitionWrite) -> None:
        assert self.gate.wait(5)
        super().commit(w)


STORES = [MemoryFeatureStore, _ThreadedStore]


@pytest.mark.parametrize("store_class", STORES)
def test_a_load_of_the_next_batch_sees_the_deferred_write_as_written(
    store_class: type[MemoryFeatureStore],
) -> None:
    """Views while a write is deferred equal the views after it is written: offset, watermark,
    changed and deleted states, schedule entries added, moved past ``due_until`` and removed."""
    first = _write(0, -1, 4, {"a": b"A1", "b": b"B1", "c": b"C1"}, {"a": 50, "b": 60, "c": 70})
    second = _write(0, 4, 9, {"a": b"A2", "b": b"", "d": b"D2"}, {"a": 500, "b": 0, "d": 55})
    sequential = MemoryFeatureStore()
    sequential.commit(first)
    sequential.commit(second)
    want = sequential.load(0, ["a", "b", "x"], due_until=100)

    io = OrderedIO(store_class())
    try:
        io.commit([first])
        io.view(io.load(0, ["a"], due_until=0))  # batch 2's load; releases nothing yet
        io.release()
        io.commit([second])  # deferred: the store has not seen it
        got = io.view(io.load(0, ["a", "b", "x"], due_until=100))
        assert io.store.load(0, [], 0).applied_offset == 4
        assert (got.applied_offset, got.watermark, got.due) == (want.applied_offset, want.watermark, want.due)
        assert got.due == [(55, "d"), (70, "c")]
        assert {c: got.states[c] for c in want.states} == want.states
        io.drain()
        assert io.store.load(0, ["a", "b", "x"], due_until=100) == want
    finally:
        io.close()


def test_a_load_submitted_after_a_released_write_waits_for_it() -> None:
    store = _SlowStore()
    io = OrderedIO(store)
    try:
        done = io.commit([_write(0, -1, 4, {"a": b"x"}), _write(1, -1, 9, {"b": b"y"})])
        io.release()
        loading = io.load(0, ["a"], due_until=0)
        assert [w.new_offset for w, _ in loading.pending] == [4] and not done.done()
        store.gate.set()
        view: PartitionView = io.view(loading)
        assert (view.applied_offset, view.states) == (4, {"a": b"x"})
        assert done.done() and done.exception() is None
    finally:
        io.close()


class _GatedFlush:
    """A sink flush that waits for a gate: a publisher still sending a burst of changes."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1
        assert self.gate.wait(5)


def test_loads_do_not_wait_for_a_slow_flush_and_see_every_write() -> None:
    """Three batches are written and wait for their outputs to be acknowledged; the fourth
    batch's loads run at once and see all three, in order, as sequential code would (partition 0
    written by all of them, partition 1 by the first only)."""
    batches = [
        [_write(0, -1, 4, {"a": b"A1", "b": b"B1"}, {"a": 50}), _write(1, -1, 2, {"z": b"Z1"})],
        [_write(0, 4, 9, {"a": b"A2", "c": b"C2"}, {"a": 0, "c": 60})],
        [_write(0, 9, 12, {"b": b"", "d": b"D3"}, {"d": 40})],
    ]
    sequential = MemoryFeatureStore()
    for writes in batches:
        for w in writes:
            sequential.commit(w)
    flush = _GatedFlush()
    store = _ThreadedStore()
    io = OrderedIO(store, flush=flush)
    try:
        for writes in batches:
            io.commit(writes)
        io.release()
        for p, ids in ((0, ["a", "b", "c", "d", "x"]), (1, ["z"])):
            loading = io.load(p, ids, due_until=100)
            got = io.view(loading)  # returns while the flush still waits
            want = sequential.load(p, ids, due_until=100)
            assert (got.applied_offset, got.watermark, got.due) == (
                want.applied_offset,
                want.watermark,
                want.due,
            )
            assert got.states == want.states
        assert io.unwritten() == 3  # written, not yet acknowledged
        flush.gate.set()
        io.drain()
        assert io.unwritten() == 0
        assert store.load(0, ["a", "b", "c", "d"], due_until=100) == sequential.load(
            0, ["a", "b", "c", "d"], due_until=100
        )
    finally:
        flush.gate.set()
        io.close()


def test_commit_waits_when_too_many_batches_are_unwritten() -> None:
    flush = _GatedFlush()
    io = OrderedIO(_ThreadedStore(), flush=flush)
    finished = threading.Event()

    def produce() -> None:
        for n in range(MAX_UNWRITTEN_BATCHES + 2):
            io.commit([_write(0, n - 1 if n else -1, n, {"a": bytes([n])})])
        finished.set()

    worker = threading.Thread(target=produce)
    try:
        worker.start()
        assert not finished.wait(0.5)  # held back while no flush returns
        flush.gate.set()
        assert finished.wait(5)
        io.drain()
        assert io.store.load(0, [], 0).applied_offset == MAX_UNWRITTEN_BATCHES + 1
    finally:
        flush.gate.set()
        worker.join(5)
        io.close()


@pytest.mark.parametrize("store_class", STORES)
def test_a_failed_write_is_raised_and_stops_its_batch(store_class: type[MemoryFeatureStore]) -> None:
    store = store_class()
    io = OrderedIO(store)
    try:
        failed = io.commit([_write(0, 7, 8, {"a": b"x"}), _write(1, -1, 3, {"b": b"y"})])  # 0 expects 7
        with pytest.raises(StateConflict, match="offset is -1, the pending write expects 7"):
            io.view(io.load(0, ["a"], due_until=0))  # known before the write even runs
        io.release()
        with pytest.raises(StateConflict, match="partition 0"):
            io.view(io.load(1, ["b"], due_until=0))  # raised once it ran
        assert isinstance(failed.exception(), StateConflict)
        assert store.load(1, ["b"], 0).applied_offset == -1  # the rest of that batch was not written
        io.drain()  # nothing left pending
    finally:
        io.close()


@pytest.mark.parametrize("store_class", STORES)
def test_outputs_are_published_once_written_then_acknowledged_then_deleted(
    store_class: type[MemoryFeatureStore],
) -> None:
    """The outbox goes in with the state; ``publish`` sees the state written; the flush runs off
    the computing thread when there is an I/O thread; the entry is deleted after the flush."""
    store = store_class()
    seen: list[tuple[str, int, int]] = []

    def publish(w: PartitionWrite) -> None:
        seen.append(("publish", store.load(0, [], 0).applied_offset, len(store.outbox(0))))

    def flush() -> None:
        assert (threading.current_thread() is main) is not store.blocking_io
        seen.append(("flush", store.load(0, [], 0).applied_offset, len(store.outbox(0))))

    main = threading.current_thread()
    io = OrderedIO(store, publish=publish, flush=flush)
    done = io.commit([replace(_write(0, -1, 4, {"a": b"x"}), outbox=b"outputs")])
    assert seen == []  # deferred: nothing written or published yet
    io.release()
    done.result(timeout=5)
    io.close()
    assert seen == [("publish", 4, 1), ("flush", 4, 1)]
    assert store.outbox(0) == []  # acknowledged: deleted


def test_a_failed_flush_fails_the_batch_and_keeps_its_outbox() -> None:
    store = _ThreadedStore()

    def flush() -> None:
        raise OSError("broker gone")

    io = OrderedIO(store, flush=flush)
    done = io.commit([replace(_write(0, -1, 4, {"a": b"x"}), outbox=b"outputs")])
    io.release()
    with pytest.raises(OSError, match="broker gone"):
        done.result(timeout=5)
    # The state is written with its outputs; they wait in the outbox to be published again.
    assert store.load(0, [], 0).applied_offset == 4 and store.outbox(0) == [(1, b"outputs")]
    with pytest.raises(OSError, match="broker gone"):
        io.drain()
    io.close()


@pytest.mark.parametrize("store_class", STORES)
def test_drain_writes_what_is_deferred_and_raises_a_failure_once(
    store_class: type[MemoryFeatureStore],
) -> None:
    store = store_class()
    io = OrderedIO(store)
    ok = io.commit([_write(1, -1, 2, {"a": b"x"})])
    io.drain()
    assert ok.done() and store.load(1, [], 0).applied_offset == 2
    io.commit([_write(2, 5, 6, {})])
    with pytest.raises(StateConflict):
        io.drain()
    io.drain()
    io.close()


@pytest.mark.parametrize("store_class", STORES)
def test_drain_returns_when_a_failed_commit_is_followed_by_another(
    store_class: type[MemoryFeatureStore],
) -> None:
    """A failed commit with any commit after it (e.g. the batch deferred behind it, in the
    service's idle drain or its resync after a StateConflict): drain() waits for the rest, which
    fail at once without writing, raises the first failure, and the next batch writes again."""
    store = store_class()
    io = OrderedIO(store)
    io.commit([_write(0, 7, 8, {"a": b"x"})])  # fails: partition 0 has nothing applied
    io.commit([_write(1, -1, 3, {"b": b"y"})])  # a later batch, on another partition: succeeds
    raised: list[BaseException] = []

    def drain() -> None:
        try:
            io.drain()
        except StateConflict as e:
            raised.append(e)

    worker = threading.Thread(target=drain, daemon=True)
    worker.start()
    worker.join(1.0)
    hung = worker.is_alive()
    if hung:
        io._commits.clear()  # end the spinning loop, so the test does not leave a busy thread
        worker.join(5)
    try:
        assert not hung, "drain() never returned after a failed commit followed by another one"
        assert len(raised) == 1 and "partition 0" in str(raised[0])
        assert store.load(1, [], 0).applied_offset == -1  # queued behind the failure: not written
        io.commit([_write(1, -1, 3, {"b": b"y"})])  # redone after the resync
        io.drain()
        assert store.load(1, [], 0).applied_offset == 3
    finally:
        io.close()


def test_after_a_failed_flush_the_queued_batches_fail_without_flushing_or_writing() -> None:
    """A publisher that failed must not be asked again for every queued batch (each flush can
    wait its whole timeout), and no batch queued behind the failure may be written; a batch
    written before it keeps its outputs in the outbox."""
    calls: list[int] = []
    gate = threading.Event()

    def flush() -> None:
        calls.append(len(calls))
        assert gate.wait(5)
        if len(calls) == 1:
            raise OSError("broker gone")

    store = _ThreadedStore()
    io = OrderedIO(store, flush=flush)
    try:
        first = io.commit([replace(_write(0, -1, 4, {"a": b"x"}), outbox=b"one")])
        second = io.commit([replace(_write(0, 4, 9, {"a": b"y"}), outbox=b"two")])
        io.release()
        loading = io.load(0, ["a"], due_until=0)  # sees both pending writes
        gate.set()
        with pytest.raises(OSError, match="broker gone"):
            second.result(timeout=5)
        assert isinstance(first.exception(), OSError)
        with pytest.raises(OSError, match="broker gone"):
            io.view(loading)  # the caller resyncs before computing on
        assert calls == [0]  # not asked again
        applied = store.load(0, [], 0).applied_offset
        # Whatever was written (the second batch may have landed before the failure was known)
        # has its outputs in the outbox.
        assert [blob for _, blob in store.outbox(0)] == [b"one", b"two"][: 1 if applied == 4 else 2]
        third = io.commit([_write(0, applied, applied + 5, {"a": b"z"})])
        with pytest.raises(OSError, match="broker gone"):
            io.drain()
        assert isinstance(third.exception(), OSError) and store.load(0, [], 0).applied_offset == applied
        io.commit([_write(0, applied, applied + 5, {"a": b"z"})])  # after the resync: written again
        io.drain()
        assert calls == [0, 1] and store.load(0, [], 0).applied_offset == applied + 5
    finally:
        gate.set()
        io.close()
