"""A crash before the first model version must not start the warm-up over."""

from __future__ import annotations

from datetime import datetime

from prometheus_client import CollectorRegistry

from models.segments.engine import SegmentEngine
from stream.config import load
from stream.io.kafka import SourceRecord
from stream.io.sinks.collect import CollectSink
from stream.runtime.batch import WARMUP_CHECKPOINT_SECONDS
from stream.runtime.engines import load_engine
from stream.runtime.metrics import Metrics
from stream.runtime.pipeline import BatchProcessor
from stream.state import MemoryFeatureStore
from tests.helpers import partitioned_log

BATCH = 500


def first_version_at(sink: CollectSink) -> float:
    at = min(e["event_time"] for e in sink.model_events if e["kind"] == "version")
    return datetime.fromisoformat(at).timestamp()


def run(store: MemoryFeatureStore, recs: list[SourceRecord]) -> CollectSink:
    """A learner started the way the service starts one: from the namespace's checkpoint."""
    settings = load()
    engine = load_engine(settings, store)
    sink = CollectSink(engine)
    processor = BatchProcessor(settings, store, engine, sink, Metrics(CollectorRegistry()))
    for lo in range(0, len(recs), BATCH):
        processor.process(recs[lo : lo + BATCH])
    processor.drain()  # the state is in the store; the engine's unsaved rows die with it (a crash)
    return sink


def test_a_learner_that_crashes_during_warm_up_resumes_it_from_a_checkpoint() -> None:
    recs = partitioned_log(400, seed=4)  # 45 days; the default warm-up needs 21 days and 2,000 rows
    whole = run(MemoryFeatureStore(), recs)
    warmed_at = first_version_at(whole)

    store = MemoryFeatureStore()
    crash_at = len(recs) // 3  # ~15 days in: still warming up
    part = run(store, recs[:crash_at])
    assert not any(e["kind"] == "version" for e in part.model_events)
    saved = store.load_model()
    assert saved is not None and saved[0] == 0  # the warming engine, checkpointed
    warming = SegmentEngine.restore(saved[1])
    assert not warming.warmed_up and warming.population is not None and len(warming.population) > 0

    resumed = run(store, recs[crash_at:])
    # At most a day of event time (the checkpoint interval) is lost, not the 15 days seen so far.
    lag = first_version_at(resumed) - warmed_at
    assert 0 <= lag <= WARMUP_CHECKPOINT_SECONDS + 86_400, f"warm-up resumed {lag / 86_400:.1f} days late"
    assert store.model_version() >= 1
