"""The seeded demo event generator: valid events, planted personas, scenarios, malformed records."""

from __future__ import annotations

import io
import json
import re
from collections import Counter, defaultdict
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from models.contracts import InteractionEvent
from models.sim import (
    DEFAULT_PERSONA_WEIGHTS,
    DEFAULT_START,
    MALFORMED_KINDS,
    PERSONAS,
    SCENARIOS,
    GeneratedLog,
    generate,
    ground_truth,
    iter_records,
    write_truth_csv,
)

DAYS = 60
T0 = DEFAULT_START.timestamp()
PERIOD = DAYS * 86400.0


@pytest.fixture(scope="module")
def log() -> GeneratedLog:
    return generate(customers=400, days=DAYS, seed=11)


_VALIDATED: dict[int, list[InteractionEvent]] = {}


def _events(log: GeneratedLog) -> list[InteractionEvent]:
    """Every record validated once (cached per log)."""
    if id(log) not in _VALIDATED:
        _VALIDATED[id(log)] = [InteractionEvent.model_validate_json(r.value) for r in log.records]
    return _VALIDATED[id(log)]


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def test_every_record_is_a_valid_event_sorted_by_time(log: GeneratedLog) -> None:
    assert len(log.records) > 10_000
    events = _events(log)
    ids = set()
    for rec, ev in zip(log.records, events, strict=True):
        assert not rec.malformed
        assert rec.key == rec.customer_id.encode() == ev.customer_id.encode()
        assert rec.ts == ev.ts_seconds
        assert T0 <= rec.ts < T0 + PERIOD
        assert rec.persona == log.truth[rec.customer_id]  # stationary: persona never changes
        assert re.fullmatch(r"c\d{6}", rec.customer_id)
        assert re.fullmatch(rb'.*"ts":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z".*', rec.value)
        ids.add(ev.event_id)
    assert len(ids) == len(events)  # event ids unique
    times = [r.ts for r in log.records]
    assert times == sorted(times)
    assert set(log.truth) == {r.customer_id for r in log.records}  # every customer shows up


def test_values_are_canonical_compact_json(log: GeneratedLog) -> None:
    for rec in log.records[::3]:
        assert rec.value == _dumps(json.loads(rec.value))


def test_event_mix_is_believable(log: GeneratedLog) -> None:
    events = _events(log)
    types = Counter(e.type.value for e in events)
    channels = Counter(e.channel.value for e in events)
    assert types["product_view"] > types["add_to_cart"] > types["purchase"] > types["refund"] > 0
    for t in (
        "email_open",
        "email_click",
        "app_open",
        "push_open",
        "social_engage",
        "search",
        "store_visit",
        "support_contact",
        "ad_click",
        "checkout",
        "page_view",
    ):
        assert types[t] > 0, t
    for c in ("web", "app", "email", "store", "push", "social", "ads", "call_center"):
        assert channels[c] > 0, c


def test_basket_sizes_and_promo_response_per_persona(log: GeneratedLog) -> None:
    purchases: dict[str, list[InteractionEvent]] = defaultdict(list)
    for rec, ev in zip(log.records, _events(log), strict=True):
        if ev.type == "purchase":
            purchases[rec.persona].append(ev)
    loyal = purchases["high_value_loyal"]
    promo = purchases["promo_driven_occasional"]
    assert 75 < sum(e.amount or 0 for e in loyal) / len(loyal) < 105
    assert 28 < sum(e.amount or 0 for e in promo) / len(promo) < 42
    assert sum(bool(e.discount) and e.campaign_id is not None for e in promo) / len(promo) > 0.7
    assert sum(bool(e.discount) for e in loyal) / len(loyal) < 0.2
    store = purchases["store_centric_omnichannel"]
    assert sum(e.channel == "store" for e in store) / len(store) > 0.6


def test_persona_proportions_follow_weights() -> None:
    truth = generate(
        customers=400, days=5, seed=1, persona_weights={"high_value_loyal": 3, "browser_no_purchase": 1}
    ).truth
    assert Counter(truth.values()) == {"high_value_loyal": 300, "browser_no_purchase": 100}
    default = Counter(ground_truth(customers=1000, seed=2).values())
    total = sum(DEFAULT_PERSONA_WEIGHTS.values())
    for name, w in DEFAULT_PERSONA_WEIGHTS.items():
        assert abs(default[name] - 1000 * w / total) <= 1


def test_browsers_never_buy(log: GeneratedLog) -> None:
    browser = [json.loads(r.value) for r in log.records if r.persona == "browser_no_purchase"]
    kinds = Counter(e["type"] for e in browser)
    assert kinds["purchase"] == kinds["refund"] == 0
    assert kinds["product_view"] > 0 and kinds["search"] > 0 and kinds["add_to_cart"] > 0


def test_declining_customers_fade_out(log: GeneratedLog) -> None:
    first = last = 0
    for r in log.records:
        if r.persona == "declining_engagement":
            frac = (r.ts - T0) / PERIOD
            first += frac < 1 / 3
            last += frac >= 2 / 3
    assert first > 1000
    assert last < 0.1 * first


def test_new_customers_start_late(log: GeneratedLog) -> None:
    first_seen: dict[str, float] = {}
    for r in log.records:
        first_seen.setdefault(r.customer_id, r.ts)
    new = [c for c, p in log.truth.items() if p == "new_customer"]
    assert new
    assert all(first_seen[c] >= T0 + 0.79 * PERIOD for c in new)
    others = [first_seen[c] for c, p in log.truth.items() if p != "new_customer"]
    assert sum(t < T0 + 0.3 * PERIOD for t in others) > 0.9 * len(others)


def test_deterministic_bytes() -> None:
    args = dict(customers=100, days=15, seed=5, malformed_fraction=0.05, scenario="sudden_shift")
    a, b = generate(**args), generate(**args)  # type: ignore[arg-type]
    assert a.records == b.records and a.truth == b.truth
    assert list(iter_records(**args)) == a.records  # type: ignore[arg-type]
    c = generate(**{**args, "seed": 6})  # type: ignore[arg-type]
    assert [r.value for r in c.records] != [r.value for r in a.records]


def test_ground_truth_matches_generate() -> None:
    for scenario in SCENARIOS:
        log = generate(customers=80, days=10, seed=3, scenario=scenario)
        assert ground_truth(customers=80, seed=3, scenario=scenario) == log.truth


def test_start_is_respected() -> None:
    start = datetime(2025, 6, 1, tzinfo=UTC)
    log = generate(customers=20, days=3, seed=1, start=start)
    assert all(start.timestamp() <= r.ts < start.timestamp() + 3 * 86400 for r in log.records)


def test_malformed_records_fail_validation() -> None:
    log = generate(customers=200, days=20, seed=9, malformed_fraction=0.1)
    bad = [r for r in log.records if r.malformed]
    assert len(bad) == round(0.1 * len(log.records))
    assert set(log.malformed_kinds.values()) == set(MALFORMED_KINDS)
    assert sorted(log.malformed_kinds) == [i for i, r in enumerate(log.records) if r.malformed]
    for i, rec in enumerate(log.records):
        if rec.malformed:
            with pytest.raises((ValidationError, ValueError)):
                InteractionEvent.model_validate_json(rec.value)
            if log.malformed_kinds[i] == "nan_amount":
                assert b"NaN" in rec.value
        else:
            InteractionEvent.model_validate_json(rec.value)
    # the malformed ones replace valid ones: same total as without
    assert len(generate(customers=200, days=20, seed=9).records) == len(log.records)


def _by_persona_and_half(log: GeneratedLog) -> Counter[tuple[str, bool]]:
    return Counter((r.persona, r.ts >= T0 + PERIOD / 2) for r in log.records)


def test_scenario_new_persona_appears_in_second_half_only() -> None:
    log = generate(customers=300, days=DAYS, seed=4, scenario="new_persona")
    halves = _by_persona_and_half(log)
    assert halves[("mobile_impulse", False)] == 0
    assert halves[("mobile_impulse", True)] > 100
    assert "mobile_impulse" in log.truth.values()
    assert "mobile_impulse" not in generate(customers=300, days=5, seed=4).truth.values()


def test_scenario_persona_disappears() -> None:
    log = generate(customers=300, days=DAYS, seed=4, scenario="persona_disappears")
    halves = _by_persona_and_half(log)
    assert halves[("browser_no_purchase", False)] > 100
    assert halves[("browser_no_purchase", True)] == 0
    assert "browser_no_purchase" in log.truth.values()


def test_scenario_sudden_shift() -> None:
    log = generate(customers=200, days=DAYS, seed=4, scenario="sudden_shift")
    promo = {c for c, p in log.truth.items() if p == "app_converted_promo"}
    assert promo and "promo_driven_occasional" not in log.truth.values()
    halves: dict[bool, list[dict[str, object]]] = defaultdict(list)
    for r in log.records:
        if r.customer_id in promo:
            late = r.ts >= T0 + PERIOD / 2
            assert r.persona == ("app_converted_promo" if late else "promo_driven_occasional")
            halves[late].append(json.loads(r.value))

    def app_share(evs: list[dict[str, object]]) -> float:
        return sum(e["channel"] == "app" for e in evs) / len(evs)

    def mean_basket(evs: list[dict[str, object]]) -> float:
        amounts = [float(e["amount"]) for e in evs if e["type"] == "purchase"]  # type: ignore[arg-type]
        return sum(amounts) / len(amounts)

    assert app_share(halves[True]) > 2 * app_share(halves[False])
    assert mean_basket(halves[True]) > 1.5 * mean_basket(halves[False])


def test_scenario_gradual_drift_loyal_decline() -> None:
    def loyal_thirds(scenario: str) -> tuple[list[float], list[float]]:
        log = generate(customers=200, days=DAYS, seed=8, scenario=scenario)
        first: list[float] = []
        last: list[float] = []
        for r in log.records:
            if r.persona == "high_value_loyal" and b'"type":"purchase"' in r.value:
                frac = (r.ts - T0) / PERIOD
                amount = float(json.loads(r.value)["amount"])
                if frac < 1 / 3:
                    first.append(amount)
                elif frac >= 2 / 3:
                    last.append(amount)
        return first, last

    first, last = loyal_thirds("gradual_drift")
    assert len(last) < 0.75 * len(first)  # fewer purchases
    assert sum(last) / len(last) < 0.8 * sum(first) / len(first)  # smaller baskets
    first, last = loyal_thirds("stationary")
    assert len(last) > 0.75 * len(first)


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="scenario"):
        generate(customers=5, days=5, seed=1, scenario="nope")
    with pytest.raises(ValueError, match="unknown personas"):
        generate(customers=5, days=5, seed=1, persona_weights={"vip": 1.0})
    with pytest.raises(ValueError):
        generate(customers=5, days=5, seed=1, malformed_fraction=1.5)
    with pytest.raises(ValueError):
        generate(customers=0, days=5, seed=1)
    with pytest.raises(ValueError):
        generate(customers=5, days=5, seed=1, start=datetime(2026, 1, 1))


def test_personas_are_frozen_and_complete() -> None:
    assert len(PERSONAS) >= 6
    assert set(DEFAULT_PERSONA_WEIGHTS) <= set(PERSONAS)
    p = PERSONAS["high_value_loyal"]
    with pytest.raises(AttributeError):
        p.session_rate = 1.0  # type: ignore[misc]


def test_write_truth_csv() -> None:
    buf = io.StringIO()
    write_truth_csv({"c000002": "new_customer", "c000001": "high_value_loyal"}, buf)
    assert buf.getvalue() == "customer_id,persona\nc000001,high_value_loyal\nc000002,new_customer\n"
