"""The re-scoring (issue #22 item 4): customers a model version clearly moved a segment away from
move with reason model_update, at a bounded rate, whether or not they have events of their own,
and whatever the batch size."""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from datetime import datetime

import pytest

from models.contracts import SegmentChange
from models.features import CustomerState
from models.segments.changes import change_id
from models.segments.decide import DAY, Hysteresis, clearly_elsewhere
from models.segments.engine import SegmentEngine
from models.segments.params import EngineParams
from models.sim import generate
from stream.config import load
from stream.errors import ConfigError
from stream.io.kafka import SourceRecord
from stream.io.sinks.collect import CollectSink
from stream.ops.evaluate import log_records
from stream.state import MemoryFeatureStore
from tests.helpers import replay_in_memory

T = 60 * DAY  # every customer below has been in its segment 60 days unless said otherwise


def pick(d_current: list[float], d_best: list[float], limit: int = 100, **kw: float) -> list[int]:
    n = len(d_current)
    return clearly_elsewhere(
        [f"c{i:03d}" for i in range(n)],
        [1] * n,
        [float(kw.get("since", 0.0))] * n,
        [2] * n,
        d_current,
        d_best,
        [T] * n,
        margin=kw.get("margin", 0.7),
        min_dwell_days=kw.get("min_dwell_days", 21.0),
        limit=limit,
    )


# ---- the rule ----


def test_boundary_cases_stay_and_clearly_elsewhere_customers_move() -> None:
    # margin 0.7: the best segment must be at most 0.3 of the current one's distance (ratio 3.33)
    assert pick([1.2, 2.0, 3.0, 3.3], [1.0] * 4) == []
    assert pick([3.4, 5.0], [1.0, 1.0]) == [1, 0]  # the clearest first
    assert pick([2.0], [0.0]) == [0]  # on the best segment's centroid: clearest of all


def test_never_takes_a_customer_the_hysteresis_holds() -> None:
    """With the re-scoring's margin above the hysteresis', every customer it picks would be moved
    by the hysteresis too: a boundary case the hysteresis holds never moves."""
    rng = random.Random(3)
    for _ in range(2000):
        d_best = rng.uniform(0.0, 2.0)
        d_current = d_best * rng.uniform(1.0, 6.0)
        since = rng.choice([0.0, T - 10 * DAY])
        if pick([d_current], [d_best], since=since, margin=0.7):
            assert Hysteresis(margin=0.55, min_dwell_days=21).target(1, since, 2, d_best, d_current, T) == 2


def test_the_min_dwell_holds() -> None:
    assert pick([10.0], [1.0], since=T - 20 * DAY) == []
    assert pick([10.0], [1.0], since=T - 21 * DAY) == [0]


def test_only_customers_in_a_live_segment_for_another_one() -> None:
    args = dict(margin=0.7, min_dwell_days=21.0, limit=10)
    ids, since, t = ["a", "b", "c", "d"], [0.0] * 4, [T] * 4
    # a: already in its best; b: warming up (no best); c: its segment is not in the version
    # (a retired one: the retired moves' business); d: in a segment none yet (-1)
    got = clearly_elsewhere(
        ids, [2, 1, 1, -1], since, [2, -1, 2, 2], [9.0, 9.0, math.inf, 9.0], [1.0] * 4, t, **args
    )
    assert got == []


def test_the_cap_holds_and_takes_the_clearest_ties_by_customer_id() -> None:
    d_current = [4.0, 9.0, 5.0, 9.0, 20.0, 2.0]
    assert pick(d_current, [1.0] * 6, limit=3) == [4, 1, 3]  # 20, then the two 9s by id
    assert pick(d_current, [1.0] * 6, limit=0) == []


def test_same_input_same_output_whatever_the_order() -> None:
    rng = random.Random(7)
    n = 300
    customers = [f"c{i:04d}" for i in range(n)]
    d_best = [rng.choice([0.5, 1.0, 1.5]) for _ in range(n)]
    d_current = [b * rng.choice([1.0, 2.0, 3.0, 4.0, 6.0]) for b in d_best]  # many equal ratios
    args = ([1] * n, [0.0] * n, [2] * n, d_current, d_best, [T] * n)
    first = clearly_elsewhere(customers, *args, margin=0.7, min_dwell_days=21, limit=20)
    assert len(first) == 20 and first == clearly_elsewhere(
        customers, *args, margin=0.7, min_dwell_days=21, limit=20
    )
    order = list(range(n))
    rng.shuffle(order)
    shuffled = clearly_elsewhere(
        [customers[i] for i in order],
        *([col[i] for i in order] for col in args),
        margin=0.7,
        min_dwell_days=21,
        limit=20,
    )
    assert [customers[order[j]] for j in shuffled] == [customers[i] for i in first]


def test_the_margin_must_be_above_the_hysteresis_margin() -> None:
    with pytest.raises(ValueError, match="rescore_margin"):
        EngineParams(margin=0.55, rescore_margin=0.55)
    with pytest.raises(ConfigError, match="rescore_margin"):
        load(overrides={"model": {"margin": 0.6, "rescore_margin": 0.6}})
    assert load(overrides={"model": {"margin": 0.6, "rescore_margin": 0.8}}).model.rescore_margin == 0.8


# ---- the pipeline ----

# A small population with frequent, unsmoothed versions on a log whose behaviour shifts: versions
# move segments away from customers who stay quiet. 2% of the segmented customers per check (6
# of 300), so that the test sees enough moves.
OVERRIDES = {
    "model": {"update_every": 500, "warmup_vectors": 500, "population_step": 1.0, "rescore_max_share": 0.02}
}
CUSTOMERS = 450


def log() -> list[SourceRecord]:
    generated = generate(CUSTOMERS, 90, seed=3, scenario="sudden_shift")
    return log_records("interactions", ((r.key, r.value) for r in generated.records))


def replay(batch_size: int, **model: float) -> tuple[MemoryFeatureStore, SegmentEngine, CollectSink]:
    # A check a day (the shipped week is longer than this log's shift leaves quiet customers).
    model = {**OVERRIDES["model"], "rescore_every_days": 1.0, **model}
    settings = load(overrides={"topics": {"partitions": 1}, "model": model})
    return replay_in_memory(settings, log(), batch_size)


def rescore_bucket(c: SegmentChange, days: range) -> int | None:
    """The multiple of a day a change's id names if a re-scoring made it."""
    for b in days:
        if c.change_id == change_id("interactions", 0, f"rescore {b}", c.customer_id, c.seq):
            return b
    return None


@pytest.fixture(scope="module")
def replayed() -> tuple[MemoryFeatureStore, SegmentEngine, CollectSink]:
    return replay(2000)


@pytest.fixture(scope="module")
def rescored(
    replayed: tuple[MemoryFeatureStore, SegmentEngine, CollectSink],
) -> dict[str, tuple[int, SegmentChange]]:
    """change id -> (day multiple, change) of the re-scoring's changes."""
    _, _, sink = replayed
    first = int(min(c.event_time.timestamp() for c in sink.changes) // DAY)
    days = range(first, first + 100)
    found = {}
    for c in sink.changes:
        if c.reason == "model_update" and (b := rescore_bucket(c, days)) is not None:
            found[c.change_id] = (b, c)
    return found


def test_quiet_customers_move_to_where_the_version_puts_them(
    replayed: tuple[MemoryFeatureStore, SegmentEngine, CollectSink],
    rescored: dict[str, tuple[int, SegmentChange]],
) -> None:
    store, _, _ = replayed
    assert len(rescored) >= 5
    events: dict[str, list[float]] = {}
    for r in generate(CUSTOMERS, 90, seed=3, scenario="sudden_shift").records:
        events.setdefault(r.key.decode(), []).append(_event_time(r.value))
    quiet = 0
    for _, c in rescored.values():
        assert c.kind == "segment" and c.stage == c.previous_stage
        assert c.previous is not None and c.current is not None
        assert c.previous.id != c.current.id
        t = c.event_time.timestamp()
        # no event of its own that day: the move is the re-scoring's, not a row of the customer
        quiet += not any(t - DAY < e <= t for e in events[c.customer_id])
    assert quiet >= len(rescored) // 2
    # The store's per-segment counts (kept from the moves' deltas) agree with the states.
    segments = Counter(CustomerState.unpack(b).segment for _, _, b in store.scan_customers(1))
    assert store.segment_counts(1) == {s: n for s, n in segments.items() if s >= 0}


def test_each_check_moves_at_most_its_share(rescored: dict[str, tuple[int, SegmentChange]]) -> None:
    per_check = Counter(b for b, _ in rescored.values())
    assert max(per_check.values()) <= math.floor(0.02 * CUSTOMERS)
    assert len(per_check) >= 2  # several checks moved someone


def test_changes_stay_in_sequence(replayed: tuple[MemoryFeatureStore, SegmentEngine, CollectSink]) -> None:
    _, _, sink = replayed
    last: dict[str, tuple[int, int | None]] = {}
    for c in sink.changes:
        seq, segment = last.get(c.customer_id, (0, None))
        assert c.seq == seq + 1
        assert (c.previous.id if c.previous is not None else None) == segment
        last[c.customer_id] = (c.seq, c.current.id if c.current is not None else None)
    assert len({c.change_id for c in sink.changes}) == len(sink.changes)


def test_the_moves_do_not_depend_on_the_batch_size(
    replayed: tuple[MemoryFeatureStore, SegmentEngine, CollectSink],
) -> None:
    store, engine, sink = replayed
    other_store, other_engine, other_sink = replay(317)
    assert [c.model_dump() for c in other_sink.changes] == [c.model_dump() for c in sink.changes]
    assert list(other_store.scan_customers(1)) == list(store.scan_customers(1))
    assert (other_engine.version, other_engine.live_names()) == (engine.version, engine.live_names())


def test_off_moves_nobody() -> None:
    _, _, sink = replay(2000, rescore_every_days=0)
    first = int(min(c.event_time.timestamp() for c in sink.changes) // DAY)
    assert not any(rescore_bucket(c, range(first, first + 100)) for c in sink.changes)


def _event_time(value: bytes) -> float:
    return datetime.fromisoformat(json.loads(value)["ts"]).timestamp()
