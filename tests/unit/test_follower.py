"""A follower (``model.role: follower``) assigns with the learner's version and never learns."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from models.features import CustomerState
from models.segments.engine import SegmentEngine
from stream.config import Settings, load
from stream.errors import ModelConflict
from stream.io.kafka import SourceRecord
from stream.io.sinks.collect import CollectSink
from stream.runtime.engines import engine_params, load_engine
from stream.runtime.metrics import Metrics
from stream.runtime.pipeline import BatchProcessor
from stream.runtime.workers import worker_partitions, worker_settings
from stream.state import MemoryFeatureStore
from tests.helpers import partitioned_log


def settings(role: str, all_partitions: bool = True) -> Settings:
    return load(
        overrides={
            "model": {
                "warmup_vectors": 300,
                "update_every": 300,
                "role": role,
                "learn_all_partitions": all_partitions,
            }
        }
    )


def learner(store: MemoryFeatureStore) -> BatchProcessor:
    s = settings("learner")
    engine = SegmentEngine(engine_params(s))
    return BatchProcessor(s, store, engine, CollectSink(engine), Metrics(CollectorRegistry()))


def run(processor: BatchProcessor, recs: list[SourceRecord]) -> None:
    for lo in range(0, len(recs), 500):
        processor.process(recs[lo : lo + 500])
    processor.close()


@pytest.mark.parametrize("all_partitions", [True, False])
def test_a_follower_uses_the_learners_version_and_never_learns(all_partitions: bool) -> None:
    taught = learner(MemoryFeatureStore())
    run(taught, partitioned_log(150, seed=3))
    assert taught.learns and taught.engine.version >= 2

    store = MemoryFeatureStore()
    engine = SegmentEngine.restore(taught.engine.snapshot())
    if all_partitions:
        # A follower of the learner's merge assigns each row with the version kept for its place
        # (here: built before every row, and the merge past them all).
        store.save_model(
            taught.engine.snapshot(), engine.version, kept=taught.engine.snapshot(), built_after="-1 0 0"
        )
        store.set_merged(f"{2**62} 0 0")
    sink = CollectSink(engine)
    before = (engine.version, engine.learned, engine._pending_n, len(engine._pending_raw))
    follower = BatchProcessor(
        settings("follower", all_partitions), store, engine, sink, Metrics(CollectorRegistry())
    )
    run(follower, partitioned_log(150, seed=4))

    assert not follower.learns
    engine = follower.engine
    assert (engine.version, engine.learned, engine._pending_n, len(engine._pending_raw)) == before
    assert sink.model_events == []  # no version built, so no model events and no snapshot
    assert sink.changes and {c.model_version for c in sink.changes} == {before[0]}
    states = [CustomerState.unpack(b) for _, _, b in store.scan_customers(4)]
    logged = sum(len(store.learn_entries(p)) for p in range(4))
    if all_partitions:
        # Its rows go to the learner through its partitions' learn logs, stamped as learned.
        assert logged and states and any(s.last_learned for s in states)
    else:
        # Nobody learns them: the stamps stay unset (a learner would learn from them at once).
        assert not logged and states and all(s.last_learned == 0 for s in states)


def test_a_follower_of_a_warm_up_checkpoint_never_builds_the_first_version() -> None:
    """The learner stores its warming engine (version 0, rows waiting for the warm-up span) once
    a day of event time; a follower that loaded it and whose rows passed the span built version
    1 itself (and checkpointed it as the namespace's model, or stopped on the learner's)."""
    store = MemoryFeatureStore()
    log = partitioned_log(300, seed=11)  # 45 days
    warm = {"warmup_vectors": 400, "update_every": 400, "warmup_days": 20}
    ls = load(overrides={"model": {**warm, "role": "learner"}})
    taught = BatchProcessor(
        ls, store, load_engine(ls, store), CollectSink(None), Metrics(CollectorRegistry())
    )
    taught.owned = frozenset({0, 1})
    for lo in range(0, 2400, 300):  # past the warm-up's rows, not its 20 days
        taught.process([r for r in log if r.partition < 2][lo : lo + 300])
        taught.drain()
    saved = store.load_model()
    assert saved is not None and saved[0] == 0
    # (A follower of a version it loaded: one of the learner's merge takes version 0 before the
    # first, and never loads this checkpoint.)
    fs = load(overrides={"model": {**warm, "role": "follower", "learn_all_partitions": False}})
    engine = load_engine(fs, store)
    assert not engine.warmed_up and engine._pending_n >= 400  # all it lacks is event time
    sink = CollectSink(engine)
    follower = BatchProcessor(fs, store, engine, sink, Metrics(CollectorRegistry()))
    follower.owned = frozenset({2, 3})
    run(follower, [r for r in log if r.partition >= 2])  # 45 days of its own rows
    assert follower.engine.version == 0 and store.model_version() == 0 and sink.model_events == []


def test_worker_partitions_and_settings() -> None:
    assert [worker_partitions(i, 3, 8) for i in range(3)] == [[0, 3, 6], [1, 4, 7], [2, 5]]
    base = load(overrides={"service": {"metrics_port": 9200, "workers": 3}})
    w0, w2 = worker_settings(base, 0), worker_settings(base, 2)
    assert (w0.model.role, w0.service.metrics_port, w0.service.workers) == ("learner", 9200, 1)
    assert (w2.model.role, w2.service.metrics_port) == ("follower", 9202)
    # The learner builds its versions as one process would, on its own rows.
    assert w0.model == base.model
    assert w2.model.n_segments == base.model.n_segments and w2.redis == base.redis
    assert worker_settings(load(overrides={"service": {"metrics_port": 0}}), 1).service.metrics_port == 0


def test_a_second_learner_fails_at_its_first_checkpoint() -> None:
    """Two instances with model.role learner on one namespace: the second one's first version
    finds the first one's checkpoint and stops with a clear error instead of overwriting it."""
    store = MemoryFeatureStore()
    first = learner(store)
    run(first, partitioned_log(150, seed=3))
    built = first.engine.version
    assert built >= 2 and store.load_model() is not None
    second = learner(store)
    with pytest.raises(ModelConflict, match=f"holds version {built}, not 0.*exactly one instance"):
        run(second, partitioned_log(150, seed=4, later=True))
    saved = store.load_model()
    assert saved is not None and saved[0] == built
    assert isinstance(second.sink, CollectSink)
    assert second.sink.model_events == []  # nothing of its own went out


def test_a_restored_model_takes_the_settings_version_cadence() -> None:
    """An operator may change update_every at any version: a restart takes the settings' value,
    not the one the checkpoint was built with (the checkpoint carries its own parameters)."""
    from stream.runtime.engines import load_engine

    store = MemoryFeatureStore()
    engine = SegmentEngine(engine_params(settings("learner")))
    store.save_model(engine.snapshot(), 0)
    halved = load(overrides={"model": {"update_every": 150}})
    restored = load_engine(halved, store)  # type: ignore[arg-type]
    assert restored.params.update_every == 150
    assert restored.params.n_segments == engine.params.n_segments
