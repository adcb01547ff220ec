"""The outbox encoding: what a batch wrote comes back byte for byte; anything else is refused."""

from __future__ import annotations

import random
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from models.segments.engine import SegmentEngine
from models.segments.params import EngineParams
from stream.config import load
from stream.io.sinks import OutputSink
from stream.io.sinks.collect import CollectSink
from stream.io.sinks.outbox import OutboxError, decode_outbox, encode_outbox
from stream.runtime.engines import engine_params
from stream.runtime.metrics import Metrics
from stream.runtime.pipeline import BatchProcessor
from stream.state import MemoryFeatureStore
from tests.helpers import partitioned_log


def test_outputs_come_back_as_they_went_in() -> None:
    items = [
        ("change", (b"c1", b'{"seq": 1}', False, 1_700_000_000_123)),
        ("dead_letter", (b"in/3", b'{"error_class": "InvalidJSON"}')),
        ("change", (b"c\xc3\xa9", b"", True, 0)),  # an erase's tombstone, a non-ASCII key
    ]
    assert decode_outbox(encode_outbox(items)) == items
    assert decode_outbox(encode_outbox([])) == []


def test_foreign_or_damaged_entries_are_refused_not_run() -> None:
    good = encode_outbox([("change", (b"c1", b"x" * 100, False, 5))])
    with pytest.raises(OutboxError, match="unknown format"):
        decode_outbox(b"\x80\x04\x95pickle")  # a pickle's first bytes: never unpickled
    with pytest.raises(OutboxError, match=r"truncated|damaged"):
        decode_outbox(good[:-1])
    with pytest.raises(OutboxError):
        decode_outbox(b"")
    rng = random.Random(7)
    for _ in range(2000):  # random damage: refused or decoded to bytes, never anything else
        blob = bytearray(good)
        for _ in range(rng.randint(1, 4)):
            blob[rng.randrange(len(blob))] = rng.randrange(256)
        try:
            for kind, args in decode_outbox(bytes(blob)):
                assert kind in ("change", "dead_letter") and all(isinstance(a, bytes) for a in args[:2])
        except OutboxError:
            pass


class RecordingSink(OutputSink):
    """An OutputSink that keeps what it is asked to publish; its flush fails while ``down``."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, tuple[Any, ...]]] = []
        self.down = False

    def _emit(self, kind: str, *args: Any) -> None:
        self.sent.append((kind, args))

    def flush(self, timeout: float = 60.0) -> None:
        if self.down:
            raise OSError("broker gone")

    def close(self) -> None:
        pass


def _processor(store: MemoryFeatureStore, sink: Any) -> BatchProcessor:
    settings = load()
    engine = SegmentEngine(engine_params(settings), feature_params=settings.features.params())
    return BatchProcessor(settings, store, engine, sink, Metrics(CollectorRegistry()))


def test_a_batch_whose_outputs_were_not_acknowledged_is_published_again_byte_for_byte() -> None:
    """The pipeline writes each partition's outputs with its state; a flush that fails leaves
    them in the outbox, and the next process publishes exactly those bytes before going on."""
    records = partitioned_log(120, seed=5)
    store = MemoryFeatureStore()
    sink = RecordingSink()
    first = _processor(store, sink)
    half = len(records) // 2
    first.process(records[:half])
    first.drain()
    assert all(store.outbox(p) == [] for p in range(4))  # acknowledged: nothing left
    published = len(sink.sent)
    assert published > 0
    sink.down = True
    first.process(records[half:])  # written with its outputs; their flush fails
    with pytest.raises(OSError, match="broker gone"):
        first.drain()
    left = [(p, blob) for p in range(4) for _, blob in store.outbox(p)]
    assert left and sum(len(decode_outbox(b)) for _, b in left) == len(sink.sent) - published
    assert {p: store.applied_offset(p) for p in range(4)} == {
        p: max(r.offset for r in records if r.partition == p) for p in range(4)
    }
    # "Restart": a new processor (as the service's start does) publishes what is left.
    again = RecordingSink()
    second = _processor(store, again)
    assert second.publish_outbox(range(4)) == len(again.sent) == len(sink.sent) - published
    assert again.sent == sink.sent[published:]  # the same bytes, emitted-at header included
    assert all(store.outbox(p) == [] for p in range(4))


def test_outputs_published_equal_those_of_an_in_memory_run() -> None:
    """Staging through the outbox changes nothing of what is published."""
    records = partitioned_log(120, seed=6)
    collected = CollectSink(SegmentEngine(EngineParams()))
    recording = RecordingSink()
    for sink in (collected, recording):
        processor = _processor(MemoryFeatureStore(), sink)
        for lo in range(0, len(records), 700):
            processor.process(records[lo : lo + 700])
        processor.close()
    payloads = [args[1] for kind, args in recording.sent if kind == "change"]
    assert payloads == [c.model_dump_json().encode() for c in collected.changes] and payloads


def test_a_foreign_outbox_entry_stops_with_one_line_naming_it() -> None:
    from dataclasses import replace

    from stream.errors import SegstreamError
    from stream.state.protocol import PartitionWrite

    store = MemoryFeatureStore()
    store.commit(replace(PartitionWrite(2, -1, 5, 0, {}, {}, {}), outbox=b"\x80\x04hostile"))
    with pytest.raises(SegstreamError, match="partition 2: outbox entry 1 cannot be read") as raised:
        _processor(store, RecordingSink()).publish_outbox(range(4))
    assert "\n" not in str(raised.value) and store.outbox(2)  # nothing skipped
