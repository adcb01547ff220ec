"""Helpers shared by test modules (test modules never import each other).

Integration tests have their own in tests/integration/harness.py (servers, topics, the CLI).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np

from models.segments.params import EngineParams
from models.sim import DEFAULT_START, generate
from stream.io.kafka import SourceRecord, partition_for_key

# The engine's knobs as unit tests of its mechanics need them: synthetic streams whose times are
# seconds, with no weeks of history, fitted on the rows themselves. The shipped defaults
# (EngineParams()) wait 21 days of event time for the first version, hold customers with a 55%
# margin for 21 days and fit versions on a customer sample the synthetic rows do not feed.
MECHANICS: dict[str, Any] = {
    "warmup_days": 0.0,
    "margin": 0.15,
    "min_dwell_days": 7.0,
    "half_life_days": 60.0,
    "population": 0,
    "align_lateness_days": None,
}


def mechanics_params(**kw: Any) -> EngineParams:
    """EngineParams for a unit test of the engine's mechanics: :data:`MECHANICS`, then ``kw``."""
    return EngineParams(**{**MECHANICS, **kw})


def partitioned_log(customers: int, seed: int, later: bool = False) -> list[SourceRecord]:
    """A generated log by partition; ``later``: the 45 days after the default log, at offsets past it."""
    offsets = [10**6 if later else 0] * 4
    start = DEFAULT_START + timedelta(days=45 if later else 0)
    out = []
    for r in generate(customers=customers, days=45, seed=seed, start=start).records:
        p = partition_for_key(r.key, 4)
        out.append(SourceRecord("in", p, offsets[p], r.key, r.value))
        offsets[p] += 1
    return out


def rhythm_columns(who: np.ndarray, t: np.ndarray, purchases: np.ndarray) -> np.ndarray:
    """Synthetic rhythm columns of snapshots (models.features.vector.RHYTHM_WIDTH): customer ``c``
    buys every ``3 + 7 * (c % 4)`` days, up to its ``purchases`` newest purchase days before ``t``, and
    is active on the same days."""
    from models.features.state import DAY_SLOTS
    from models.features.vector import RHYTHM_WIDTH

    out = np.zeros((len(who), RHYTHM_WIDTH))
    gap = 3 + 7 * (who % 4)  # four rhythms, as the synthetic streams have four kinds of customer
    today = (t // 86400).astype(np.int64)
    k = np.minimum(purchases.astype(np.int64), DAY_SLOTS)
    for j in range(DAY_SLOTS):  # slot j holds the (DAY_SLOTS - j)-th newest day, or 0
        back = DAY_SLOTS - 1 - j
        day = np.where(back < k, today - back * gap, 0)
        out[:, 3 + j] = day
        out[:, 3 + DAY_SLOTS + j] = day
    out[:, 0] = np.where(purchases > 0, (today - (k - 1) * gap) * 86400, 0)  # first purchase
    out[:, 1] = purchases
    out[:, 2] = purchases
    return out


def replay_in_memory(
    settings: Any, records: list[SourceRecord], batch_size: int, engine: Any = None
) -> tuple[Any, Any, Any]:
    """The service's BatchProcessor over ``records`` in batches of ``batch_size`` on the in-memory
    store, then closed: (store, engine, CollectSink). ``engine``: a fresh one from ``settings``
    unless given."""
    from prometheus_client import CollectorRegistry

    from models.segments.engine import SegmentEngine
    from stream.io.sinks.collect import CollectSink
    from stream.runtime.engines import engine_params
    from stream.runtime.metrics import Metrics
    from stream.runtime.pipeline import BatchProcessor
    from stream.state import MemoryFeatureStore

    store = MemoryFeatureStore()
    if engine is None:
        engine = SegmentEngine(engine_params(settings), feature_params=settings.features.params())
    sink = CollectSink(engine)
    processor = BatchProcessor(settings, store, engine, sink, Metrics(CollectorRegistry()))
    for lo in range(0, len(records), batch_size):
        processor.process(records[lo : lo + batch_size])
    processor.close()
    return store, engine, sink


def taught_learner() -> tuple[Any, Any]:
    """A learner run the way the service runs one (customer sample, BTYD fits, names) over a
    400-customer log, a few versions in: (its engine, its CollectSink)."""
    from prometheus_client import CollectorRegistry

    from stream.config import load
    from stream.io.sinks.collect import CollectSink
    from stream.runtime.engines import load_engine
    from stream.runtime.metrics import Metrics
    from stream.runtime.pipeline import BatchProcessor
    from stream.state import MemoryFeatureStore

    settings = load()
    store = MemoryFeatureStore()
    engine = load_engine(settings, store)
    sink = CollectSink(engine)
    processor = BatchProcessor(settings, store, engine, sink, Metrics(CollectorRegistry()))
    recs = partitioned_log(400, seed=4)
    for lo in range(0, len(recs), 500):
        processor.process(recs[lo : lo + 500])
    processor.drain()
    assert engine.version >= 2 and engine.population is not None and engine.value_model.bgnbd is not None
    return engine, sink


def rows_near_segments(engine: Any, n: int = 400, seed: int = 1) -> np.ndarray:
    """Feature rows scattered around an engine's segments' profiles (original units)."""
    centres = np.array([list(p.centroid.values()) for p in engine.segments()])
    rng = np.random.default_rng(seed)
    picked = centres[rng.integers(0, len(centres), n)]
    return np.maximum(picked * rng.lognormal(0.0, 0.6, picked.shape), 0.0)
