"""Property tests of the pure feature math: batching, late events, replays, packing."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.features import (
    DAY,
    FEATURE_INDEX,
    FEATURE_NAMES,
    NEVER_PURCHASED_DAYS,
    CustomerState,
    Fact,
    FeatureParams,
    apply_event,
    evaluate,
    feature_differences,
    is_crossing,
    next_due,
    schedule_after_event,
)

P = FeatureParams()
T0 = 1_767_225_600  # 2026-01-01
LATENESS = 48 * 3600

fact_st = st.builds(
    Fact,
    ts=st.integers(T0, T0 + 200 * 86400),
    kind=st.sampled_from(["browse", "cart", "engage", "support", "purchase", "refund"]),
    channel=st.sampled_from(["web", "app", "email", "store", "social", "ads", "push", "sms"]),
    amount=st.floats(0, 5000, allow_nan=False),
    promo=st.booleans(),
    event_hash=st.integers(0, 2**32 - 1),
    is_add_to_cart=st.booleans(),
)


def _unique(facts: list[Fact]) -> list[Fact]:
    seen: set[int] = set()
    out = []
    for f in facts:
        if f.event_hash not in seen:
            seen.add(f.event_hash)
            out.append(f)
    return out


def _run(facts: list[Fact], state: CustomerState | None = None) -> CustomerState:
    s = state or CustomerState.new()
    for f in facts:
        apply_event(s, P, f)
    return s


def assert_states_close(a: CustomerState, b: CustomerState) -> None:
    assert feature_differences(a, b) == []


@settings(max_examples=200, deadline=None)
@given(st.lists(fact_st, max_size=60), st.integers(1, 10))
def test_batches_equal_one_at_a_time(facts: list[Fact], batch: int) -> None:
    """Applying through packed states between batches equals one uninterrupted pass."""
    facts = sorted(_unique(facts), key=lambda f: f.ts)
    whole = _run(facts)
    blob = CustomerState.new().pack()
    for i in range(0, len(facts), batch):
        s = CustomerState.unpack(blob)
        _run(facts[i : i + batch], s)
        blob = s.pack()
    assert CustomerState.unpack(blob) == whole  # bit-identical, not just close


@settings(max_examples=200, deadline=None)
@given(st.lists(fact_st, min_size=1, max_size=40), st.randoms(use_true_random=False))
def test_shuffle_within_lateness_gives_same_state(facts: list[Fact], rnd) -> None:  # type: ignore[no-untyped-def]
    facts = sorted(_unique(facts), key=lambda f: f.ts)
    # Bounded disorder: each event may arrive after later events up to LATENESS newer.
    keyed = [(f.ts + rnd.uniform(0, LATENESS), f) for f in facts]
    shuffled = [f for _, f in sorted(keyed, key=lambda kf: kf[0])]
    assert_states_close(_run(shuffled), _run(facts))
    at = facts[-1].ts + 3 * 86400
    np.testing.assert_allclose(
        evaluate(_run(shuffled), P, at), evaluate(_run(facts), P, at), rtol=1e-9, atol=1e-9
    )


@settings(max_examples=200, deadline=None)
@given(st.lists(fact_st, min_size=1, max_size=40), st.integers(0, 40))
def test_prefix_twice_equals_once(facts: list[Fact], cut: int) -> None:
    """Redelivered events (same event_id) are ignored within the dedupe window: the newest
    DEDUPE_WINDOW events by (event time, id hash)."""
    facts = sorted(_unique(facts), key=lambda f: (f.ts, f.event_hash))
    cut = min(cut, len(facts))
    once = _run(facts)
    s = _run(facts[:cut])
    redelivered = facts[max(0, cut - 6) : cut]  # an upstream retry of the last few events
    for f in redelivered:
        assert apply_event(s, P, f) is False
    _run(facts[cut:], s)
    assert s == once


def test_decay_and_recency_in_event_time() -> None:
    s = CustomerState.new()
    apply_event(s, P, Fact(T0, "purchase", "web", 100.0, True, 1))
    apply_event(s, P, Fact(T0 + 5 * 86400, "browse", "app", 0.0, False, 2))
    v = evaluate(s, P, T0 + 95 * 86400)
    assert v[FEATURE_INDEX["recency_purchase_days"]] == pytest.approx(95.0)
    assert v[FEATURE_INDEX["recency_days"]] == pytest.approx(90.0)
    assert v[FEATURE_INDEX["tenure_days"]] == pytest.approx(95.0)
    # Spend and purchase counts as of the last purchase: 95 days of silence lower neither
    assert v[FEATURE_INDEX["spend_decayed"]] == pytest.approx(100.0)
    assert v[FEATURE_INDEX["purchases_decayed"]] == pytest.approx(1.0)
    assert v[FEATURE_INDEX["spend"]] == 100.0
    assert v[FEATURE_INDEX["promo_share"]] == 1.0
    assert v[FEATURE_INDEX["share_web"]] + v[FEATURE_INDEX["share_app"]] == pytest.approx(1.0)
    assert len(v) == len(FEATURE_NAMES)


def test_value_and_rate_describe_the_buying_not_the_silence_after_it() -> None:
    """A customer's value and purchase rate stay still while it is quiet (the lifecycle stage
    reads the silence); they decay between its purchases, in event time."""
    s = CustomerState.new()
    apply_event(s, P, Fact(T0, "purchase", "web", 100.0, False, 1))
    apply_event(s, P, Fact(T0 + 45 * 86400, "purchase", "web", 50.0, False, 2))
    apply_event(s, P, Fact(T0 + 50 * 86400, "browse", "app", 0.0, False, 3))  # after the purchase
    at_purchase = evaluate(s, P, T0 + 45 * 86400)
    assert at_purchase[FEATURE_INDEX["spend_decayed"]] == pytest.approx(100 * 2 ** (-45 / 90) + 50)
    assert at_purchase[FEATURE_INDEX["purchases_decayed"]] == pytest.approx(2 ** (-45 / 90) + 1)
    assert at_purchase[FEATURE_INDEX["purchase_rate"]] == pytest.approx(2 / 45 * 30)
    for quiet in (5, 30, 400):  # days after the purchase; the browse 5 days after it is the newest event
        later = evaluate(s, P, T0 + (45 + quiet) * 86400)
        for name in ("spend_decayed", "purchases_decayed", "purchase_rate"):
            assert later[FEATURE_INDEX[name]] == pytest.approx(at_purchase[FEATURE_INDEX[name]]), name
        assert later[FEATURE_INDEX["recency_purchase_days"]] == pytest.approx(quiet)


def test_never_purchased_and_cart_abandonment() -> None:
    s = CustomerState.new()
    apply_event(s, P, Fact(T0, "cart", "web", 0.0, False, 1, is_add_to_cart=True))
    apply_event(s, P, Fact(T0 + 60, "cart", "web", 0.0, False, 2, is_add_to_cart=True))
    v = evaluate(s, P, T0 + 86400)
    assert v[FEATURE_INDEX["recency_purchase_days"]] == NEVER_PURCHASED_DAYS
    assert v[FEATURE_INDEX["cart_abandonment"]] == 1.0
    assert v[FEATURE_INDEX["aov"]] == 0.0


def test_refund_nets_spend() -> None:
    s = CustomerState.new()
    apply_event(s, P, Fact(T0, "purchase", "store", 80.0, False, 1))
    apply_event(s, P, Fact(T0 + 3600, "refund", "store", 30.0, False, 2))
    v = evaluate(s, P, T0 + 3600)
    assert v[FEATURE_INDEX["spend"]] == 50.0
    assert v[FEATURE_INDEX["refund_rate"]] == 1.0
    assert v[FEATURE_INDEX["aov"]] == 50.0


def test_engagement_trend_falls_when_a_customer_fades() -> None:
    s = CustomerState.new()
    for d in range(120):  # daily activity for four months
        apply_event(s, P, Fact(T0 + d * 86400, "browse", "web", 0.0, False, d + 1))
    steady = evaluate(s, P, T0 + 119 * 86400)[FEATURE_INDEX["engagement_trend"]]
    faded = evaluate(s, P, T0 + 140 * 86400)[FEATURE_INDEX["engagement_trend"]]
    assert 0.7 < steady < 1.3
    assert faded < 0.3 * steady


def test_next_due_walks_the_thresholds() -> None:
    s = CustomerState.new()
    apply_event(s, P, Fact(T0, "browse", "web", 0.0, False, 1))
    th = (14.0, 30.0, 60.0, 90.0)
    assert next_due(s, th, after_ts=T0) == T0 + 14 * DAY
    assert next_due(s, th, after_ts=T0 + 14 * DAY) == T0 + 30 * DAY
    assert next_due(s, th, after_ts=T0 + 90 * DAY) == 0


def _rescores(steps: list[tuple[bool, int]], th: tuple[float, ...], lazy: bool) -> list[int]:
    """Re-scoring times of one customer in a partition whose watermark moves by ``steps``
    ((own event?, seconds forward)), with the eager schedule (rewritten after every event) or the
    lazy one (the pipeline's)."""
    offsets = tuple(int(d * DAY) for d in sorted(th))
    s = CustomerState.new()
    wm = T0
    out: list[int] = []
    for k, (own, forward) in enumerate(steps):
        wm += forward
        if own:
            apply_event(s, P, Fact(wm, "browse", "web", 0.0, False, k))
            if lazy:
                schedule_after_event(s, offsets, wm)
            else:
                s.next_due = next_due(s, th, after_ts=wm)
        while s.next_due and s.next_due <= wm:
            due = s.next_due
            if not lazy or is_crossing(s, offsets, due):
                out.append(due)
            s.next_due = next_due(s, th, after_ts=due)
    return out


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.booleans(), st.integers(0, 40 * 86400)), min_size=1, max_size=60),
    st.sampled_from([(3.0, 7.0, 14.0, 30.0), (14.0, 30.0, 60.0, 90.0), (1.0,), (2.0, 45.0, 365.0)]),
)
def test_lazy_schedule_rescores_at_exactly_the_eager_crossings(
    steps: list[tuple[bool, int]], th: tuple[float, ...]
) -> None:
    assert _rescores(steps, th, lazy=True) == _rescores(steps, th, lazy=False)


def test_lazy_schedule_writes_only_when_the_crossing_comes_sooner() -> None:
    offsets = (3 * int(DAY), 30 * int(DAY))
    s = CustomerState.new()
    apply_event(s, P, Fact(T0, "browse", "web", 0.0, False, 1))
    assert schedule_after_event(s, offsets, T0) and s.next_due == T0 + 3 * DAY
    # An active customer: each event moves the crossing later; the stored time stays.
    apply_event(s, P, Fact(T0 + int(DAY), "browse", "web", 0.0, False, 2))
    assert not schedule_after_event(s, offsets, T0 + int(DAY)) and s.next_due == T0 + 3 * DAY
    assert not is_crossing(s, offsets, s.next_due)  # an early look when it comes due
    assert is_crossing(s, offsets, T0 + int(DAY) + 3 * int(DAY))


def test_pack_is_compact_and_versioned() -> None:
    s = _run([Fact(T0 + i, "browse", "web", 0.0, False, i) for i in range(20)])
    blob = s.pack()
    assert len(blob) <= 276  # 228 bytes, and 8 per dedupe pair (at most 6)
    assert CustomerState.unpack(blob) == s
    with pytest.raises(ValueError, match="unknown customer state format"):
        CustomerState.unpack(b"\x09" + blob[1:])
