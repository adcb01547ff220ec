"""Time bounds that cannot stall or be poisoned (issue #20, item 1), on the pipeline in process.

A record is late only against its own customer's newest event, and from the future only against
the machine's clock; the watermark that re-scores quiet customers moves only when several
customers have reached a time. The integration tests (tests/integration/test_boundaries.py)
run the same findings through the real broker and Redis.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from models.contracts import DeadLetter
from models.features import DAY, CustomerState
from models.features.clock import PartitionClock
from models.segments.engine import SegmentEngine
from stream.config import load as load_settings
from stream.io.kafka import SourceRecord
from stream.io.sinks.collect import CollectSink
from stream.runtime.engines import engine_params
from stream.runtime.metrics import Metrics
from stream.runtime.pipeline import BatchProcessor
from stream.state import MemoryFeatureStore

HOUR = 3600
START = datetime(2026, 1, 5, tzinfo=UTC).timestamp()


@dataclass
class Sink(CollectSink):
    dead: list[DeadLetter] = field(default_factory=list)

    def dead_letter(self, dl: DeadLetter) -> None:
        self.dead.append(dl)


def record(
    offset: int, customer: str, ts: float, typ: str = "page_view", key: str | None = ""
) -> SourceRecord:
    body = {
        "event_id": f"e{offset}",
        "customer_id": customer,
        "ts": datetime.fromtimestamp(ts, UTC).isoformat(),
        "channel": "web",
        "type": typ,
    }
    k = customer if key == "" else key
    return SourceRecord(
        "interactions", 0, offset, k.encode() if k is not None else None, json.dumps(body).encode()
    )


def pipeline() -> tuple[BatchProcessor, MemoryFeatureStore, Sink]:
    settings = load_settings(overrides={"topics": {"partitions": 1}})
    store = MemoryFeatureStore()
    engine = SegmentEngine(engine_params(settings), feature_params=settings.features.params())
    sink = Sink(engine)
    return BatchProcessor(settings, store, engine, sink, Metrics(CollectorRegistry())), store, sink


def run(records: list[SourceRecord], batch: int = 7) -> tuple[MemoryFeatureStore, Sink]:
    processor, store, sink = pipeline()
    for lo in range(0, len(records), batch):
        processor.process(records[lo : lo + batch])
    processor.close()
    return store, sink


def events_of(store: MemoryFeatureStore, customer: str) -> int:
    blob = store.get_state(0, customer)
    return CustomerState.unpack(blob).events if blob else 0


def test_lateness_is_judged_against_the_customer_not_the_partition() -> None:
    """One customer ten days ahead of another does not make the other's records late; a record
    more than 48 h behind its own customer's newest is."""
    recs = [
        record(0, "ahead", START + 10 * DAY),
        record(1, "behind", START),
        record(2, "behind", START + HOUR),
    ]
    recs += [record(3, "behind", START + HOUR - 49 * HOUR), record(4, "behind", START + HOUR - 47 * HOUR)]
    store, sink = run(recs, batch=2)
    assert events_of(store, "behind") == 3 and events_of(store, "ahead") == 1
    assert [(d.source_offset, d.error_class) for d in sink.dead] == [(3, "LateEvent")]
    assert "behind this customer's newest event" in sink.dead[0].reason


def test_the_future_is_judged_against_the_clock_for_every_record() -> None:
    """A partition's very first record is checked too; a quiet day costs nothing."""
    now = time.time()
    recs = [record(0, "a", now + 25 * HOUR), record(1, "b", START), record(2, "b", START + 36 * HOUR)]
    recs += [record(3, "c", START - 400 * DAY), record(4, "d", now + 23 * HOUR)]
    store, sink = run(recs, batch=1)
    assert [(d.source_offset, d.error_class) for d in sink.dead] == [(0, "FutureEvent")]
    assert "ahead of this machine's clock" in sink.dead[0].reason
    assert [events_of(store, c) for c in "abcd"] == [0, 2, 1, 1]


def test_one_customer_cannot_move_the_watermark_alone() -> None:
    """A customer whose events walk far ahead of everybody else's re-scores nobody else; once a
    few customers get there, the quiet ones are re-scored."""
    quiet = [record(k, f"q{k}", START + k * 60) for k in range(5)]
    walker = [record(10 + k, "walker", START + k * 23 * HOUR) for k in range(60)]
    store, _ = run(quiet + walker)
    assert store.watermark(0) < START + DAY  # the walker alone: still where the others are
    assert all(CustomerState.unpack(store.get_state(0, f"q{k}") or b"").next_due for k in range(5))
    later = START + 58 * DAY
    store2, sink2 = run(quiet + walker + [record(100 + k, f"late{k}", later) for k in range(3)])
    assert store2.watermark(0) >= later - 1
    assert sink2.dead == []


def test_a_keyless_record_is_a_dead_letter() -> None:
    _, sink = run([record(0, "a", START, key=None), record(1, "a", START, key="someone-else")])
    assert [d.error_class for d in sink.dead] == ["MissingKey", "KeyMismatch"]
    assert "key must be the customer_id" in sink.dead[0].reason


def test_dead_letters_are_bounded_whatever_the_record() -> None:
    big = SourceRecord("interactions", 0, 0, b"k", b"x" * (3 << 20))
    _, sink = run([big])
    (dl,) = sink.dead
    assert dl.error_class == "RecordTooLarge" and dl.original_size == 3 << 20 and dl.original_truncated
    assert len(dl.model_dump_json()) < 8 * 1024


@given(
    st.integers(1, 4),
    st.lists(st.tuples(st.integers(0, 6), st.integers(0, 100)), min_size=1, max_size=60),
)
@settings(derandomize=True, max_examples=300, database=None)
def test_the_watermark_is_the_kth_newest_customer_time(k: int, events: list[tuple[int, int]]) -> None:
    """PartitionClock against a brute force: the k-th largest of the customers' newest times,
    never going back, none before k customers; and packing it loses nothing."""
    clock, newest, want = PartitionClock(k), {}, 0
    for who, ts in events:
        got = clock.observe(f"c{who}", ts)
        newest[who] = max(newest.get(who, -1), ts)
        ranked = sorted(newest.values(), reverse=True)
        if len(ranked) >= k:
            want = max(want, ranked[k - 1])
        assert got == want
        again = PartitionClock.unpack(clock.pack(), k, clock.value)
        assert (again.top, again.value) == (clock.top, clock.value)
