"""The vectorised batch path (StateBatch) against the one-event-at-a-time CustomerState path."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.features import CustomerState, Fact, FeatureParams, admit, apply_event, snapshot
from models.features.batch import MIN_ROUND, BatchEvents, StateBatch
from models.features.vector import RHYTHM_WIDTH

P = FeatureParams(monetary_half_life_days=45.0, channel_half_life_days=11.0)
T0 = 1_767_225_600  # 2026-01-01

fact_st = st.builds(
    Fact,
    ts=st.integers(T0, T0 + 120 * 86400),
    kind=st.sampled_from(["browse", "cart", "engage", "support", "purchase", "refund"]),
    channel=st.sampled_from(["web", "app", "email", "store", "social", "ads", "push", "sms", "kiosk"]),
    amount=st.floats(0, 5000, allow_nan=False),
    promo=st.booleans(),
    event_hash=st.integers(0, 40),  # small: duplicates happen, within and across batches
    is_add_to_cart=st.booleans(),
)
# (customer, fact, take a snapshot of another customer after this event)
stream_st = st.lists(st.tuples(st.integers(0, 4), fact_st, st.integers(-1, 4)), max_size=80)


def _pack_or_none(s: CustomerState) -> bytes | None:
    return s.pack() if s.events else None


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.lists(fact_st, max_size=12), min_size=5, max_size=5),
    stream_st,
    st.sampled_from([0, 3, MIN_ROUND]),
)
def test_batch_path_is_byte_identical_to_the_scalar_path(
    history: list[list[Fact]], stream: list[tuple[int, Fact, int]], min_round: int
) -> None:
    """Same duplicates, same snapshots at every row, same packed bytes: late, early and equal
    timestamps, new and existing customers, several events per customer in one batch; vectorised
    rounds (min_round 0), the event-by-event tail (MIN_ROUND here) and a mix of both."""
    scalar = [CustomerState.new() for _ in history]
    for s, facts in zip(scalar, history, strict=True):
        for f in facts:
            apply_event(s, P, f)
    batch = StateBatch([_pack_or_none(s) for s in scalar])
    events = BatchEvents()
    rows: list[tuple[int, int]] = []
    rhythms: list[list[int]] = []
    expected: list[list[float]] = []
    for i, f, other in stream:
        admitted = apply_event(scalar[i], P, f)
        assert admit(batch.recent(i), f.ts, f.event_hash) == admitted
        if admitted:
            events.add(i, f.ts, f.kind, f.channel, f.amount, f.promo, f.event_hash, f.is_add_to_cart)
            batch.note(i, f.ts, f.kind == "purchase")  # the rhythm, noted by the caller's loop
            rows.append((i, events.applied(i)))
            rhythms.append(batch.rhythm(i))
            expected.append(snapshot(scalar[i]))
            batch.last_ts[i] = max(batch.last_ts[i], f.ts)  # the caller's loop keeps it, as the pipeline
        if other >= 0:  # a row of a customer as it stands now (an inactivity re-score)
            rows.append((other, events.applied(other)))
            rhythms.append(batch.rhythm(other))
            expected.append(snapshot(scalar[other]))
    base = batch.apply(P, events, rows, min_round=min_round)
    got = np.hstack([base, np.array(rhythms, dtype=np.float64).reshape(len(rows), RHYTHM_WIDTH)])
    assert got.shape == (len(rows), len(snapshot(CustomerState.new())))
    assert np.array_equal(got, np.array(expected).reshape(got.shape))
    packed = batch.pack(range(len(scalar)))
    for i, s in enumerate(scalar):
        assert packed[i] == s.pack()
        assert batch.last_ts[i] == s.last_ts  # the pipeline's rule for the schedule's column


def test_bookkeeping_columns_are_written_back() -> None:
    s = CustomerState.new()
    apply_event(s, P, Fact(T0, "purchase", "web", 10.0, False, 1))
    batch = StateBatch([s.pack(), None])
    batch.segment[0], batch.segment_since[0], batch.seq[0] = 3, T0, 2
    batch.next_due[1], batch.last_learned[1] = T0 + 86400, T0
    a, b = (CustomerState.unpack(x) for x in batch.pack([0, 1]))
    assert (a.segment, a.segment_since, a.seq, a.purchases) == (3, T0, 2, 1)
    assert (b.segment, b.next_due, b.last_learned, b.events) == (-1, T0 + 86400, T0, 0)


@pytest.mark.parametrize("blob", [b"\x02" + bytes(182), b"\x01" + bytes(100), b"\x01" + bytes(186)])
def test_unknown_state_format_is_refused(blob: bytes) -> None:
    with pytest.raises(ValueError, match="unknown customer state format"):
        StateBatch([blob])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), fact_st), max_size=60))
def test_note_says_when_the_rhythm_columns_changed(stream: list[tuple[int, Fact]]) -> None:
    """The pipeline keeps each customer's rhythm row and lifecycle thresholds until note() says
    its rhythm changed: a False must mean the same rhythm columns."""
    batch = StateBatch([None, None, None])
    for i, f in stream:
        before = batch.rhythm(i)
        changed = batch.note(i, f.ts, f.kind == "purchase")
        assert changed or batch.rhythm(i) == before
