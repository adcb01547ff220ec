"""OrderedIO: background loads and commits keep the order of submission and surface failures."""

from __future__ import annotations

import threading

import pytest

from stream.errors import StateConflict
from stream.feature_store import MemoryFeatureStore, OrderedIO, PartitionView, PartitionWrite


def _write(p: int, expected: int, new: int, states: dict[str, bytes]) -> PartitionWrite:
    return PartitionWrite(p, expected, new, watermark=new, states=states, due={}, segment_deltas={})


class _SlowStore(MemoryFeatureStore):
    """Commits wait for a gate: a load submitted after a commit must still see it."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    def commit(self, w: PartitionWrite) -> None:
        assert self.gate.wait(5)
        super().commit(w)


def test_a_load_sees_every_commit_submitted_before_it() -> None:
    store = _SlowStore()
    io = OrderedIO(store)
    try:
        done = io.commit([_write(0, -1, 4, {"a": b"x"}), _write(1, -1, 9, {"b": b"y"})])
        loading = io.load(0, ["a"], due_until=0)
        assert not done.done()
        store.gate.set()
        view: PartitionView = io.view(loading)
        assert (view.applied_offset, view.states) == (4, {"a": b"x"})
        assert done.done() and done.exception() is None
    finally:
        io.close()


def test_a_failed_commit_is_raised_before_the_next_view_and_stops_its_batch() -> None:
    store = MemoryFeatureStore()
    io = OrderedIO(store)
    try:
        failed = io.commit([_write(0, 7, 8, {"a": b"x"}), _write(1, -1, 3, {"b": b"y"})])  # 0 expects 7
        with pytest.raises(StateConflict, match="partition 0"):
            io.view(io.load(1, ["b"], due_until=0))
        assert isinstance(failed.exception(), StateConflict)
        assert store.load(1, ["b"], 0).applied_offset == -1  # the rest of that batch was not written
        io.drain()  # nothing left pending
    finally:
        io.close()


def test_drain_raises_a_pending_failure_once() -> None:
    io = OrderedIO(MemoryFeatureStore())
    io.commit([_write(2, 5, 6, {})])
    with pytest.raises(StateConflict):
        io.drain()
    io.drain()
    io.close()
