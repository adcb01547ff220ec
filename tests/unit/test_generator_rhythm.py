"""The generator's ``rhythm`` scenario: purchase rhythms, repeats, closures, peak, pauses, lapses."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest

from models.contracts import InteractionEvent
from models.sim import (
    RHYTHM_PERSONAS,
    SCENARIOS,
    GeneratedLog,
    RhythmTruth,
    generate,
    ground_truth,
    iter_records,
    rhythm_truth,
)

CUSTOMERS, DAYS, SEED = 400, 365, 5
DAY = 86400.0
# persona -> the range its median gap between purchase days must fall in
MEDIAN_GAP = {"twice_weekly": (3, 4), "weekly": (6, 8), "fortnightly": (12, 16), "monthly": (26, 34)}


@pytest.fixture(scope="module")
def log() -> GeneratedLog:
    return generate(CUSTOMERS, DAYS, seed=SEED, scenario="rhythm")


@pytest.fixture(scope="module")
def truth() -> RhythmTruth:
    return rhythm_truth(CUSTOMERS, DAYS, seed=SEED)


@pytest.fixture(scope="module")
def events(log: GeneratedLog) -> list[dict[str, object]]:
    return [json.loads(r.value) for r in log.records]


@pytest.fixture(scope="module")
def purchases(log: GeneratedLog, events: list[dict[str, object]]) -> dict[str, list[float]]:
    """customer -> purchase times."""
    out: dict[str, list[float]] = defaultdict(list)
    for r, e in zip(log.records, events, strict=True):
        if e["type"] == "purchase":
            out[r.customer_id].append(r.ts)
    return out


def _day(truth: RhythmTruth, ts: float) -> int:
    return int((ts - truth.start_ts) // DAY)


def _gaps(truth: RhythmTruth, times: list[float]) -> np.ndarray:
    """Days between consecutive purchase days (a same-day repeat is one day)."""
    return np.diff(np.unique([_day(truth, t) for t in times]))


def _within(ts: float, spans: tuple[tuple[float, float], ...]) -> bool:
    return any(a <= ts < b for a, b in spans)


def test_same_arguments_same_bytes() -> None:
    args = dict(customers=120, days=200, seed=3, scenario="rhythm", malformed_fraction=0.02)
    a, b = generate(**args), generate(**args)  # type: ignore[arg-type]
    assert a.records == b.records and a.truth == b.truth and a.malformed_kinds == b.malformed_kinds
    assert list(iter_records(**args)) == a.records  # type: ignore[arg-type]
    assert rhythm_truth(120, 200, seed=3) == rhythm_truth(120, 200, seed=3)
    c = generate(**{**args, "seed": 4})  # type: ignore[arg-type]
    assert [r.value for r in c.records] != [r.value for r in a.records]


def test_truth_agrees_with_the_records(log: GeneratedLog, truth: RhythmTruth) -> None:
    assert "rhythm" in SCENARIOS
    assert ground_truth(CUSTOMERS, seed=SEED, scenario="rhythm") == log.truth
    assert {c: r.persona for c, r in truth.customers.items()} == log.truth
    assert set(log.truth.values()) == set(RHYTHM_PERSONAS)
    assert all(r.persona == log.truth[r.customer_id] for r in log.records)
    assert {r.customer_id for r in log.records} == set(log.truth)
    # the personas are drawn first: neither the length nor malformed records change them
    short = generate(60, 30, seed=SEED, scenario="rhythm", malformed_fraction=0.1)
    assert short.truth == ground_truth(60, seed=SEED, scenario="rhythm")
    assert short.truth == {c: r.persona for c, r in rhythm_truth(60, 30, seed=SEED).customers.items()}


def test_every_record_passes_the_input_contract(log: GeneratedLog, truth: RhythmTruth) -> None:
    ids = set()
    types: Counter[str] = Counter()
    channels: Counter[str] = Counter()
    discounted: Counter[str] = Counter()
    bought: Counter[str] = Counter()
    for rec in log.records:
        ev = InteractionEvent.model_validate_json(rec.value)
        assert not rec.malformed and rec.key == rec.customer_id.encode() == ev.customer_id.encode()
        assert rec.ts == ev.ts_seconds and truth.start_ts <= rec.ts < truth.end_ts
        assert rec.value == json.dumps(json.loads(rec.value), separators=(",", ":"), sort_keys=True).encode()
        ids.add(ev.event_id)
        types[ev.type.value] += 1
        if ev.type == "purchase":
            assert ev.currency == "EUR" and ev.amount is not None and ev.amount > 0
            channels[ev.channel.value] += 1
            bought[rec.persona] += 1
            discounted[rec.persona] += bool(ev.discount)
    assert len(ids) == len(log.records)
    times = [r.ts for r in log.records]
    assert times == sorted(times)
    # a purchase log: purchases are the most common event, mostly in store, some online
    assert types.most_common(1)[0][0] == "purchase"
    assert 0 < types["refund"] < 0.03 * types["purchase"]
    assert channels["store"] > 0.7 * types["purchase"] and channels["web"] > 0 and channels["app"] > 0
    # the loyalty card: a discount on most baskets of the frequent shoppers
    assert discounted["twice_weekly"] > 0.75 * bought["twice_weekly"]
    assert discounted["weekly"] > 0.75 * bought["weekly"]


def test_median_gaps_are_the_personas_periods(truth: RhythmTruth, purchases: dict[str, list[float]]) -> None:
    gaps: dict[str, list[int]] = defaultdict(list)
    spread: dict[str, list[float]] = defaultdict(list)
    for c, r in truth.customers.items():
        if r.kind == "steady":
            g = _gaps(truth, purchases[c])
            gaps[r.persona].extend(g.tolist())
            if len(g) >= 5:
                spread[r.persona].append(float(g.std() / g.mean()))
    for persona, (lo, hi) in MEDIAN_GAP.items():
        assert lo <= np.median(gaps[persona]) <= hi, persona
        # a habit with slack: neither clockwork (0) nor Poisson (1)
        assert 0.2 < np.median(spread[persona]) < 0.7, persona
    # weekly shoppers keep to their weekday: a week is the most common gap
    weekly = Counter(gaps["weekly"])
    assert weekly.most_common(1)[0][0] == 7 and weekly[7] > 0.4 * len(gaps["weekly"])


def test_same_day_repeat_baskets(
    log: GeneratedLog, events: list[dict[str, object]], truth: RhythmTruth
) -> None:
    per_day: dict[tuple[str, int], list[tuple[float, float]]] = defaultdict(list)
    for r, e in zip(log.records, events, strict=True):
        if e["type"] == "purchase":
            per_day[(r.customer_id, _day(truth, r.ts))].append((r.ts, float(e["amount"])))  # type: ignore[arg-type]
    repeats = [sorted(v) for v in per_day.values() if len(v) >= 2]
    assert 0.01 * len(per_day) < len(repeats) < 0.15 * len(per_day)
    later = [b[0] - a[0] for a, b in (v[:2] for v in repeats)]
    assert np.median(later) > 3600  # hours later, not a duplicate
    assert np.median([v[1][1] for v in repeats]) < np.median([v[0][1] for v in repeats])  # smaller


def test_no_store_activity_while_stores_are_closed(
    log: GeneratedLog, events: list[dict[str, object]], truth: RhythmTruth
) -> None:
    lengths = sorted(round((b - a) / DAY) for a, b in truth.closures)
    assert {1, 2, 3} <= set(lengths)  # New Year's Day; Easter, Christmas; the seeded one
    start = datetime.fromtimestamp(truth.start_ts, UTC)
    closed_days = {(start + timedelta(seconds=a - truth.start_ts)).date() for a, _ in truth.closures}
    assert {
        datetime(2026, 1, 1).date(),
        datetime(2026, 4, 5).date(),
        datetime(2026, 12, 25).date(),
    } <= closed_days
    online_on_closed_days = 0
    store_per_day: Counter[int] = Counter()
    for r, e in zip(log.records, events, strict=True):
        if _within(r.ts, truth.closures):
            assert e["channel"] != "store", e
            online_on_closed_days += e["type"] == "purchase"
        elif e["channel"] == "store" and e["type"] == "purchase":
            store_per_day[_day(truth, r.ts)] += 1
    assert online_on_closed_days > 0  # the web shop stays open
    # the trips move to the days around the closure: busier than a usual day
    typical = np.median(list(store_per_day.values()))
    around = [
        store_per_day[_day(truth, a) - 1] + store_per_day[_day(truth, b)] for a, b in truth.closures[1:]
    ]
    assert min(around) > 2 * typical


def test_december_peak(log: GeneratedLog, events: list[dict[str, object]], truth: RhythmTruth) -> None:
    (peak,) = truth.peaks
    assert datetime.fromtimestamp(peak[0], UTC).month == 12 and peak[1] == truth.end_ts
    steady = {c for c, r in truth.customers.items() if r.kind == "steady"}
    per_month: Counter[int] = Counter()
    baskets: dict[bool, list[float]] = defaultdict(list)
    for r, e in zip(log.records, events, strict=True):
        if e["type"] == "purchase" and r.customer_id in steady:
            month = datetime.fromtimestamp(r.ts, UTC).month
            per_month[month] += 1
            baskets[month == 12].append(float(e["amount"]))  # type: ignore[arg-type]
    per_day = {
        m: per_month[m] / (datetime(2026 + m // 12, m % 12 + 1, 1) - datetime(2026, m, 1)).days
        for m in per_month
    }
    assert per_day[12] > 1.2 * max(v for m, v in per_day.items() if m != 12)
    assert np.mean(baskets[True]) > 1.15 * np.mean(baskets[False])


def test_pausers_pause_and_come_back(truth: RhythmTruth, purchases: dict[str, list[float]]) -> None:
    pausers = {c: r for c, r in truth.customers.items() if r.kind == "pauser"}
    assert len(pausers) >= 0.1 * CUSTOMERS
    assert {len(r.pauses) for r in pausers.values()} == {1, 2}
    resumed_gaps: dict[str, list[int]] = defaultdict(list)
    for c, r in pausers.items():
        times = sorted(purchases[c])
        for a, b in r.pauses:
            assert 13 * DAY <= b - a <= 17 * DAY
            before = [t for t in times if t < a]
            after = [t for t in times if t >= b]
            assert before and after, c  # a rhythm before, and back after
            assert not [t for t in times if a <= t < b]
            assert after[0] - before[-1] >= 12 * DAY
        resumed_gaps[r.persona].extend(_gaps(truth, [t for t in times if t >= r.pauses[-1][1]]).tolist())
    # the same rhythm after the last pause (the rarer shoppers have too few gaps left to tell)
    for persona in ("twice_weekly", "weekly"):
        lo, hi = MEDIAN_GAP[persona]
        assert lo <= np.median(resumed_gaps[persona]) <= hi, persona


def test_lapsers_stop_for_good(
    log: GeneratedLog, events: list[dict[str, object]], truth: RhythmTruth, purchases: dict[str, list[float]]
) -> None:
    lapsers = {c: r for c, r in truth.customers.items() if r.kind == "lapser"}
    assert len(lapsers) >= 0.1 * CUSTOMERS
    assert all(r.stop_ts is None for r in truth.customers.values() if r.kind != "lapser")
    for r, e in zip(log.records, events, strict=True):
        stop = truth.customers[r.customer_id].stop_ts
        if stop is not None and r.ts >= stop:
            assert e["type"] in ("email_open", "email_click"), e  # only the newsletter still
    assert all(purchases[c] and max(purchases[c]) < r.stop_ts for c, r in lapsers.items() if r.stop_ts)
    # most of a year's lapsers are quiet for the last 90 days; enough of them bought 10+ times
    lapsed = truth.lapsed(90)
    assert len(lapsed) > 0.6 * len(lapsers)
    assert all(max(purchases[c]) <= truth.end_ts - 90 * DAY for c in lapsed)
    assert sum(len(purchases[c]) >= 10 for c in lapsed) > 0.5 * len(lapsed)
    # and every other customer still buys in the last 90 days
    others = [c for c, r in truth.customers.items() if r.kind != "lapser"]
    assert all(max(purchases[c]) > truth.end_ts - 90 * DAY for c in others)


def test_kinds_are_exact_shares_of_each_persona(truth: RhythmTruth) -> None:
    per = Counter((r.persona, r.kind) for r in truth.customers.values())
    for persona in RHYTHM_PERSONAS:
        total = sum(v for (p, _), v in per.items() if p == persona)
        assert abs(per[(persona, "lapser")] - 0.15 * total) <= 1
        assert abs(per[(persona, "pauser")] - 0.15 * total) <= 1


def test_short_logs_and_other_starts() -> None:
    # too short for a pause: pausers are steady; a start that is not midnight, another zone
    start = datetime(2025, 12, 20, 15, 30, tzinfo=timezone(timedelta(hours=1)))
    log = generate(80, 20, seed=2, start=start, scenario="rhythm")
    truth = rhythm_truth(80, 20, seed=2, start=start)
    assert {r.kind for r in truth.customers.values()} == {"steady", "lapser"}
    assert truth.start_ts == start.timestamp() and truth.end_ts == start.timestamp() + 20 * DAY
    assert all(truth.start_ts <= r.ts < truth.end_ts for r in log.records)
    christmas = [(a, b) for a, b in truth.closures if datetime.fromtimestamp(a, UTC).date().day == 25]
    assert christmas and truth.peaks == ((truth.start_ts, datetime(2026, 1, 1, tzinfo=UTC).timestamp()),)
    for r in log.records:
        InteractionEvent.model_validate_json(r.value)
        if _within(r.ts, tuple(christmas)):
            assert b'"channel":"store"' not in r.value
    assert generate(3, 1, seed=1, scenario="rhythm").truth  # a single day works


def test_persona_weights_name_rhythm_personas() -> None:
    truth = generate(40, 10, seed=1, scenario="rhythm", persona_weights={"weekly": 3, "monthly": 1}).truth
    assert Counter(truth.values()) == {"weekly": 30, "monthly": 10}
    with pytest.raises(ValueError, match="unknown personas"):
        generate(5, 5, seed=1, scenario="rhythm", persona_weights={"high_value_loyal": 1.0})
    with pytest.raises(ValueError, match="unknown personas"):
        generate(5, 5, seed=1, persona_weights={"weekly": 1.0})
