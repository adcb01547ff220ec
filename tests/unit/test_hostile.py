"""Hostile records at the boundary, in process: every one becomes a dead letter of an expected
class, and the valid customers' states are exactly those of the valid log alone (the service,
Kafka and Redis do the same in tests/integration/test_hostile_input.py)."""

from __future__ import annotations

from collections import Counter

from prometheus_client import CollectorRegistry

from models.contracts import DeadLetter
from models.segments.engine import SegmentEngine
from models.sim import generate
from models.sim.hostile import HOSTILE_KINDS, hostile_records, mix
from stream.config import load
from stream.io.kafka import SourceRecord, partition_for_key
from stream.io.sinks.collect import CollectSink
from stream.runtime.engines import engine_params
from stream.runtime.metrics import Metrics
from stream.runtime.pipeline import BatchProcessor
from stream.state import MemoryFeatureStore

PARTITIONS = 4


class _Sink(CollectSink):
    def __init__(self, engine: SegmentEngine) -> None:
        super().__init__(engine)
        self.dead: list[DeadLetter] = []

    def dead_letter(self, dl: DeadLetter) -> None:
        self.dead.append(dl)


def _run(records: list[tuple[bytes | None, bytes | None]]) -> tuple[MemoryFeatureStore, list[DeadLetter]]:
    s = load()
    engine = SegmentEngine(engine_params(s))
    sink = _Sink(engine)
    store = MemoryFeatureStore()
    processor = BatchProcessor(s, store, engine, sink, Metrics(CollectorRegistry()))
    offsets = [0] * PARTITIONS
    batch: list[SourceRecord] = []
    for key, value in records:
        p = partition_for_key(key, PARTITIONS)
        batch.append(SourceRecord("in", p, offsets[p], key, value))
        offsets[p] += 1
        if len(batch) == 500:
            processor.process(batch)
            batch = []
    processor.process(batch)
    processor.drain()
    processor.close()
    return store, sink.dead


def test_generator_is_seeded_and_covers_every_kind() -> None:
    a = hostile_records(2000, seed=5, customers=["c000001"])
    assert a == hostile_records(2000, seed=5, customers=["c000001"])
    assert a != hostile_records(2000, seed=6, customers=["c000001"])
    assert set(Counter(r.kind for r in a)) == set(HOSTILE_KINDS)


def test_every_hostile_record_is_a_dead_letter_and_valid_state_is_unchanged() -> None:
    log = generate(customers=60, days=30, seed=3)
    hostile = hostile_records(
        1500,
        seed=9,
        customers=sorted(log.truth),
        kinds=[
            k
            for k in HOSTILE_KINDS
            if k != "megabyte_string"  # those are the integration test's
        ],
    )
    mixed = mix(log.records, hostile, seed=9)
    clean_store, clean_dead = _run([(r.key, r.value) for r in log.records])
    store, dead = _run([(r.key, r.value) for r in mixed])
    assert clean_dead == []
    # Each record's dead letter, matched by hash: one per hostile record, of an expected class.
    want = Counter(dl.original_sha256 for dl in dead)
    assert len(dead) == len(hostile)
    by_hash: dict[str, set[str]] = {}
    for h in hostile:
        by_hash.setdefault(DeadLetter.of("in", 0, 0, h.key, h.value, "x", "").original_sha256, set()).update(
            h.expect
        )
    wrong = [
        (dl.error_class, dl.reason, dl.original[:80])
        for dl in dead
        if dl.error_class not in by_hash.get(dl.original_sha256, set())
    ]
    assert not wrong, f"{len(wrong)} dead letters of an unexpected class, first: {wrong[:5]}"
    assert sum(want.values()) == len(hostile)
    assert all(dl.reason and dl.reason.isprintable() for dl in dead)
    got = {c: blob for _, c, blob in store.scan_customers(PARTITIONS)}
    assert got == {c: blob for _, c, blob in clean_store.scan_customers(PARTITIONS)}
