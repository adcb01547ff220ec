"""Lifecycle stages: the rules against each customer's own rhythm, their crossings in event time,
and what the pipeline publishes (stage changes in sequence, whatever the batch size)."""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from models.segments.engine import SegmentEngine
from models.segments.lifecycle import (
    ACTIVE,
    AT_RISK,
    LAPSED,
    NEW,
    NO_STAGE,
    PROSPECT,
    STAGES,
    WON_BACK,
    History,
    LifecycleParams,
    advance,
    day_thresholds,
    next_stage_crossing,
    overdue_factor,
    silence_after,
    silence_times,
    stage_at,
    step,
    typical_gap_days,
)
from stream.config import load
from stream.io.kafka import SourceRecord
from stream.io.sinks.collect import CollectSink
from stream.ops.evaluate import log_records
from stream.runtime.engines import engine_params
from stream.runtime.metrics import Metrics
from stream.runtime.pipeline import BatchProcessor
from stream.state import MemoryFeatureStore

DAY = 86400
P = LifecycleParams()


def _buyer(days: list[int], last_active: int | None = None) -> History:
    """A customer who bought on ``days`` (and was active on no other day unless ``last_active``)."""
    last = days[-1] * DAY
    return History(len(days), last, days, last if last_active is None else last_active, days)


def test_a_weekly_shopper_goes_at_risk_lapsed_won_back_and_active_at_its_own_thresholds() -> None:
    days = [20_000 + 7 * k for k in range(8)]
    h = _buyer(days)
    last = h.last_purchase
    gap = typical_gap_days(days, P)
    assert 10 < gap < 15  # shrunk toward the 30-day prior (three gaps' worth)
    assert stage_at(ACTIVE, 0, last + 20 * DAY, h, P) == ACTIVE
    risk_at = next_stage_crossing(ACTIVE, 0, h, P)
    assert risk_at - last == int(2.5 * gap * DAY)
    assert stage_at(ACTIVE, 0, risk_at - 1, h, P) == ACTIVE
    assert stage_at(ACTIVE, 0, risk_at, h, P) == AT_RISK
    lapse_at = next_stage_crossing(AT_RISK, risk_at, h, P)
    assert abs(lapse_at - last - 5 * gap * DAY) <= 1  # twice the at-risk silence
    assert stage_at(AT_RISK, risk_at, lapse_at, h, P) == LAPSED
    assert next_stage_crossing(LAPSED, lapse_at, h, P) == 0
    # It comes back: a purchase 100 days later.
    back = last + 100 * DAY
    days2 = [*days[1:], back // DAY]
    h2 = _buyer(days2)
    assert stage_at(LAPSED, lapse_at, back, h2, P) == WON_BACK
    # Won back for 30 days (the absence now counts in its typical gap, so it is not overdue
    # again before that), then active.
    end = next_stage_crossing(WON_BACK, back, h2, P)
    assert end == back + 30 * DAY
    assert typical_gap_days(days2, P) > 20
    assert stage_at(WON_BACK, back, end, h2, P) == ACTIVE
    again = back + 7 * DAY  # it buys again a week later: won back until day 30, then active
    h3 = _buyer([*days2[1:], again // DAY])
    assert stage_at(WON_BACK, back, again, h3, P) == WON_BACK
    assert next_stage_crossing(WON_BACK, back, h3, P) == back + 30 * DAY
    assert stage_at(WON_BACK, back, back + 30 * DAY, h3, P) == ACTIVE


def test_a_monthly_shopper_is_not_at_risk_when_a_weekly_one_would_be() -> None:
    monthly = _buyer([20_000 + 30 * k for k in range(8)])
    weekly = _buyer([20_000 + 7 * k for k in range(8)])
    assert stage_at(ACTIVE, 0, monthly.last_purchase + 40 * DAY, monthly, P) == ACTIVE
    assert stage_at(ACTIVE, 0, weekly.last_purchase + 40 * DAY, weekly, P) == AT_RISK


def test_a_buyer_still_visiting_is_at_risk_but_never_lapsed() -> None:
    days = [20_000 + 7 * k for k in range(8)]
    last = days[-1] * DAY
    visiting = _buyer(days, last_active=last + 200 * DAY)  # on the site until yesterday
    at = last + 201 * DAY
    assert stage_at(AT_RISK, 0, at, visiting, P) == AT_RISK
    assert next_stage_crossing(AT_RISK, 0, visiting, P) > at  # lapsed only once the visits stop too
    gone = _buyer(days)
    assert stage_at(AT_RISK, 0, at, gone, P) == LAPSED


def test_first_stages_and_the_floor_on_short_gaps() -> None:
    assert stage_at(NO_STAGE, 0, 100 * DAY, History(0, 0, [], 100 * DAY, [100]), P) == PROSPECT
    assert stage_at(NO_STAGE, 0, 100 * DAY, History(1, 100 * DAY, [100], 100 * DAY, [100]), P) == NEW
    daily = _buyer([100 + k for k in range(16)])
    last = daily.last_purchase
    # Purchases a day apart do not make anyone overdue in three days: the floor holds.
    assert stage_at(ACTIVE, 0, last + 20 * DAY, daily, P) == ACTIVE
    assert stage_at(ACTIVE, 0, last + 21 * DAY, daily, P) == AT_RISK
    # One purchase day: its activity decides, with the prior gap (30) and a Poisson buyer's
    # spread (1): mean + 3 standard deviations = 4 gaps, 120 days, capped at three months.
    once = History(1, last, [107], last, [107])
    assert next_stage_crossing(NEW, 0, once, P) - last == 90 * DAY


def test_three_months_without_a_purchase_is_a_risk_and_six_a_lapse_whatever_the_rhythm() -> None:
    erratic = _buyer([20_000, 20_002, 20_120, 20_121, 20_300, 20_302, 20_420])  # bursts months apart
    last = erratic.last_purchase
    assert stage_at(ACTIVE, 0, last + 89 * DAY, erratic, P) == ACTIVE
    assert stage_at(ACTIVE, 0, last + 90 * DAY, erratic, P) == AT_RISK
    assert stage_at(AT_RISK, 0, last + 180 * DAY, erratic, P) == LAPSED
    uncapped = LifecycleParams(at_risk_max_days=1000, lapsed_max_days=2000)
    assert stage_at(ACTIVE, 0, last + 90 * DAY, erratic, uncapped) == ACTIVE


def test_an_irregular_customer_is_overdue_later_than_a_regular_one_with_the_same_mean() -> None:
    regular = _buyer([20_000 + 10 * k for k in range(8)])
    irregular = _buyer([20_000, 20_001, 20_025, 20_027, 20_050, 20_052, 20_068, 20_070])
    assert typical_gap_days(regular.purchase_day_list, P) == typical_gap_days(irregular.purchase_day_list, P)
    assert overdue_factor(regular.purchase_day_list, P) == P.at_risk_ratio
    assert overdue_factor(irregular.purchase_day_list, P) > 3.5
    t = regular.last_purchase + 45 * DAY
    assert stage_at(ACTIVE, 0, t, regular, P) == AT_RISK
    assert stage_at(ACTIVE, 0, t, irregular, P) == ACTIVE


def test_a_late_row_never_undoes_a_stage() -> None:
    h = _buyer([20_000 + 7 * k for k in range(8)])
    risk_at = next_stage_crossing(ACTIVE, 0, h, P)
    # A row dated before the stage began (a late event that is not a purchase) sees it as of then.
    assert stage_at(AT_RISK, risk_at, risk_at - 3 * DAY, h, P) == AT_RISK


@settings(max_examples=300, deadline=None)
@given(
    gaps=st.lists(st.integers(1, 60), min_size=0, max_size=7),
    visit_lead=st.integers(0, 200),
    purchase_days=st.integers(0, 20),
    stage=st.sampled_from([NO_STAGE, PROSPECT, NEW, ACTIVE, AT_RISK, WON_BACK]),
    offset=st.integers(0, 40),
)
def test_the_next_crossing_is_where_the_stage_changes(
    gaps: list[int], visit_lead: int, purchase_days: int, stage: int, offset: int
) -> None:
    days = [20_000]
    for g in gaps:
        days.append(days[-1] + g)
    last = days[-1] * DAY
    h = History(purchase_days, last, days, last + visit_lead * DAY, days)
    now = h.last_active
    since = now + offset * DAY if stage == WON_BACK else 0
    # the stage as of the newest event (what the pipeline writes at that row)
    current = stage_at(stage, since, max(now, since), h, P)
    crossing = next_stage_crossing(current, since, h, P)
    if current == LAPSED:
        assert crossing == 0
        return
    assert crossing > max(now, since)
    assert stage_at(current, since, crossing - 1, h, P) == current
    assert stage_at(current, since, crossing, h, P) != current


@settings(max_examples=200, deadline=None)
@given(
    gaps=st.lists(st.integers(1, 60), max_size=7),
    visits=st.lists(st.integers(1, 30), max_size=7),
    purchase_days=st.integers(0, 9),
    stage=st.sampled_from(range(len(STAGES))),
    at_days=st.integers(-5, 400),
)
def test_kept_day_thresholds_give_what_silence_times_and_advance_compute(
    gaps: list[int], visits: list[int], purchase_days: int, stage: int, at_days: int
) -> None:
    # The pipeline keeps day_thresholds per customer while its days stay the same, and moves
    # its times on with each row's newest purchase and activity: the same result as from scratch.
    days, active = [20_000], [19_990]
    for g in gaps:
        days.append(days[-1] + g)
    for g in visits:
        active.append(active[-1] + g)
    kept = day_thresholds(History(purchase_days, 0, days, 0, active), P)
    for lead in (0, 3, 50):
        h = History(purchase_days, days[-1] * DAY, days, (active[-1] + lead) * DAY, active)
        times = silence_after(h, kept)
        assert times == silence_times(h, P)
        at = h.last_active + at_days * DAY
        assert advance(stage, 0, at, h, P, times) == advance(stage, 0, at, h, P)
        for since in (0, at - 10 * DAY, at + DAY):
            assert step(
                stage, since, at, purchase_days, h.last_purchase, h.last_active, kept, P.won_back_days * DAY
            ) == advance(stage, since, at, h, P)


# ---- through the pipeline ----


def _rhythm_log() -> list[SourceRecord]:
    """Weekly shoppers; a third stop after day 60 (they should go at risk, then lapse), and a
    few of those come back on day 150 (won back)."""
    rng = random.Random(5)
    start = 1_767_225_600
    rows: list[tuple[int, str]] = []
    for c in range(90):
        cid = f"w{c:03d}"
        stop = 60 if c % 3 == 0 else 200
        day = rng.randrange(7)
        while day < 200:
            if day < stop or (c % 9 == 0 and day >= 150):
                rows.append((start + day * DAY + rng.randrange(DAY), cid))
            day += rng.choice((6, 7, 7, 8))
    rows.sort()
    values = []
    for n, (ts, cid) in enumerate(rows):
        body = {
            "event_id": f"e{n}",
            "customer_id": cid,
            "ts": datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z"),
            "channel": "store",
            "type": "purchase",
            "amount": round(rng.uniform(20, 80), 2),
            "currency": "EUR",
        }
        values.append((cid.encode(), json.dumps(body).encode()))
    return log_records("interactions", values)


def _replay(batch_size: int) -> CollectSink:
    settings = load(
        overrides={"topics": {"partitions": 1}, "model": {"update_every": 300, "warmup_vectors": 300}}
    )
    records = _rhythm_log()
    engine = SegmentEngine(engine_params(settings), feature_params=settings.features.params())
    sink = CollectSink(engine)
    processor = BatchProcessor(settings, MemoryFeatureStore(), engine, sink, Metrics(CollectorRegistry()))
    for lo in range(0, len(records), batch_size):
        processor.process(records[lo : lo + batch_size])
    processor.close()
    return sink


def test_the_pipeline_publishes_stage_changes_in_event_time_whatever_the_batch_size() -> None:
    sink = _replay(400)
    stage_changes = [c for c in sink.changes if c.kind == "stage"]
    final = {c.customer_id: c.stage for c in sink.changes}
    counts = Counter(final.values())
    stoppers = {f"w{c:03d}" for c in range(0, 90, 3) if c % 9}
    returners = {f"w{c:03d}" for c in range(0, 90, 9)}
    steady = {f"w{c:03d}" for c in range(90)} - stoppers - returners
    print(f"\nfinal stages {dict(counts)}; {len(stage_changes)} stage changes")
    assert all(final[c] == "lapsed" for c in stoppers), {c: final[c] for c in stoppers}
    # Returners lapsed, were won back on day 150 and are active again 30 days later.
    assert all(final[c] == "active" for c in returners), {c: final[c] for c in returners}
    for c in returners:
        path = [(x.previous_stage, x.stage) for x in stage_changes if x.customer_id == c]
        assert path[-3:] == [("at_risk", "lapsed"), ("lapsed", "won_back"), ("won_back", "active")], path
    assert sum(final[c] == "active" for c in steady) >= 0.95 * len(steady)
    # Stoppers went at risk and then lapsed at quiet times (no event of theirs), in order.
    for c in sorted(stoppers)[:5]:
        path = [(x.previous_stage, x.stage, x.reason) for x in stage_changes if x.customer_id == c]
        assert path[-2:] == [("active", "at_risk", "inactivity"), ("at_risk", "lapsed", "inactivity")], path
    lapsed = [x for x in stage_changes if x.stage == "lapsed"]
    assert all("typical" in x.explanation for x in lapsed)
    # The same log in other batch sizes publishes the same changes.
    other = _replay(97)
    assert [c.model_dump() for c in other.changes] == [c.model_dump() for c in sink.changes]


def test_stage_names_are_the_contract() -> None:
    assert STAGES == ("prospect", "new", "active", "at_risk", "lapsed", "won_back")
