"""Customers in a segment a model update retired move to a live one at the next row their partition
reaches, whether or not they have events of their own, and whatever the batch size."""

from __future__ import annotations

from collections import Counter

import pytest
from prometheus_client import CollectorRegistry

from models.features import CustomerState
from models.segments.changes import change_id
from models.segments.engine import SegmentEngine
from models.sim import generate
from stream.config import load
from stream.io.kafka import SourceRecord
from stream.io.sinks.collect import CollectSink
from stream.ops.evaluate import log_records
from stream.runtime.metrics import Metrics
from stream.runtime.pipeline import BatchProcessor
from stream.state import MemoryFeatureStore
from tests.helpers import replay_in_memory

# A small population with frequent, unsmoothed versions: this log's model merges segments three
# times, and without the move 20 customers are still in a retired segment at the end.
# The periodic re-scoring is off: every model_update here is a move out of a retired segment
# (tests/unit/test_rescore.py has the re-scoring).
OVERRIDES = {
    "model": {"update_every": 500, "warmup_vectors": 500, "population_step": 1.0, "rescore_every_days": 0}
}


def log() -> list[SourceRecord]:
    generated = generate(200, 60, seed=2, scenario="persona_disappears")
    return log_records("interactions", ((r.key, r.value) for r in generated.records))


def replay(batch_size: int) -> tuple[MemoryFeatureStore, SegmentEngine, CollectSink]:
    settings = load(overrides={"topics": {"partitions": 1}, **OVERRIDES})
    return replay_in_memory(settings, log(), batch_size)


@pytest.fixture(scope="module")
def replayed() -> tuple[MemoryFeatureStore, SegmentEngine, CollectSink]:
    return replay(500)


def test_no_customer_is_left_in_a_retired_segment(
    replayed: tuple[MemoryFeatureStore, SegmentEngine, CollectSink],
) -> None:
    store, engine, sink = replayed
    merged = [e for e in sink.model_events if e["kind"] in ("merge", "death")]
    assert len(merged) >= 2  # the scenario this test is about: segments were retired
    live = set(engine.live_names())
    segments = Counter(CustomerState.unpack(b).segment for _, _, b in store.scan_customers(1))
    assert {s for s in segments if s >= 0} <= live
    # The store's per-segment counts (kept from the moves' deltas) agree with the states.
    assert store.segment_counts(1) == {s: n for s, n in segments.items() if s >= 0}


def test_each_move_leaves_a_retired_segment_for_a_live_one_in_sequence(
    replayed: tuple[MemoryFeatureStore, SegmentEngine, CollectSink],
) -> None:
    _, _, sink = replayed
    # Moves out of a retired segment (the others place customers no version had placed yet).
    moves = [c for c in sink.changes if c.reason == "model_update" and c.previous is not None]
    assert moves
    retired_at = {
        e["segment_id"] if e["kind"] == "death" else e["related_ids"][0]: e["version"]
        for e in sink.model_events
        if e["kind"] in ("merge", "death")
    }
    for c in moves:
        assert c.previous is not None and c.current is not None
        assert c.previous.id in retired_at and c.model_version >= retired_at[c.previous.id]
        assert c.previous.name.endswith("(retired)")
        assert c.current.id != c.previous.id
        assert retired_at.get(c.current.id, c.model_version + 1) > c.model_version  # live then
    # A customer's changes stay in sequence, one per seq, and each starts where the last ended:
    # a segment change from the segment held, a stage change in it (none before the first).
    last: dict[str, tuple[int, int | None]] = {}
    for c in sink.changes:
        seq, segment = last.get(c.customer_id, (0, None))
        assert c.seq == seq + 1
        held = c.previous.id if c.previous is not None else None
        assert held == segment
        if c.kind == "stage":
            assert c.current == c.previous and c.stage != c.previous_stage
        else:
            assert c.current is not None and c.stage == c.previous_stage
        last[c.customer_id] = (c.seq, c.current.id if c.current is not None else None)


def test_the_moves_do_not_depend_on_the_batch_size(
    replayed: tuple[MemoryFeatureStore, SegmentEngine, CollectSink],
) -> None:
    store, engine, sink = replayed
    other_store, other_engine, other_sink = replay(137)
    assert [c.model_dump() for c in other_sink.changes] == [c.model_dump() for c in sink.changes]
    assert list(other_store.scan_customers(1)) == list(store.scan_customers(1))
    assert (other_engine.version, other_engine.live_names()) == (engine.version, engine.live_names())


def test_a_move_at_another_row_keeps_itschange_id(
    replayed: tuple[MemoryFeatureStore, SegmentEngine, CollectSink],
) -> None:
    """Moves made by the check name the segment left, not the row: a batch redone after a crash
    may reach the retirement at another row, and must publish the same ids."""
    _, _, sink = replayed
    by_segment = 0
    for c in sink.changes:
        if c.reason != "model_update":
            continue
        at_row = change_id("interactions", 0, c.source_offset, c.customer_id, c.seq)
        named = "placed" if c.previous is None else f"retired {c.previous.id}"
        left = change_id("interactions", 0, named, c.customer_id, c.seq)
        assert c.change_id in (at_row, left)  # at_row: the customer's own row found it there
        by_segment += c.change_id == left
    assert by_segment > 0
    assert len({c.change_id for c in sink.changes}) == len(sink.changes)


def test_an_idle_follower_moves_them_when_it_takes_the_version(
    replayed: tuple[MemoryFeatureStore, SegmentEngine, CollectSink],
) -> None:
    """A follower assigned the whole log with a version from before the retirements; once idle it
    takes the learner's last version and moves its customers at once, without a record."""
    _, engine, sink = replayed
    first_retirement = min(e["version"] for e in sink.model_events if e["kind"] in ("merge", "death"))
    early = next(b for b in sink.snapshots if SegmentEngine.restore(b).version == first_retirement - 1)
    settings = load(
        overrides={
            "topics": {"partitions": 1},
            # The follower of a version it was given (not of a learner's merge: decision 0032).
            "model": {**OVERRIDES["model"], "role": "follower", "learn_all_partitions": False},
        }
    )
    store = MemoryFeatureStore()
    follower_engine = SegmentEngine.restore(early)
    follower_sink = CollectSink(follower_engine)
    follower = BatchProcessor(settings, store, follower_engine, follower_sink, Metrics(CollectorRegistry()))
    records = log()
    for lo in range(0, len(records), 500):
        follower.process(records[lo : lo + 500])
    follower.drain()
    applied, watermark = store.applied_offset(0), store.watermark(0)
    live = set(engine.live_names())
    before = Counter(CustomerState.unpack(b).segment for _, _, b in store.scan_customers(1))
    stranded = sum(n for s, n in before.items() if s >= 0 and s not in live)
    assert stranded > 0  # the old version's segments the learner later retired

    follower.engine = SegmentEngine.restore(engine.snapshot())  # what Service._follow_model does
    changes_before = len(follower_sink.changes)
    assert follower.move_retired_idle([0]) == stranded
    moves = follower_sink.changes[changes_before:]
    assert {c.reason for c in moves} == {"model_update"}
    assert all(c.source_offset == applied and c.event_time.timestamp() >= watermark for c in moves)
    after = Counter(CustomerState.unpack(b).segment for _, _, b in store.scan_customers(1))
    assert {s for s in after if s >= 0} <= live
    assert store.segment_counts(1) == {s: n for s, n in after.items() if s >= 0}
    assert (store.applied_offset(0), store.watermark(0)) == (applied, watermark)
    assert follower.move_retired_idle([0]) == 0  # done: nothing more until another retirement
    follower.close()
