"""Customers who go quiet are re-scored in event time: their lifecycle stage goes at risk and then
lapsed at their own rhythm's thresholds, and the inactivity thresholds re-score their segment.

All customers hash to one partition, so the active ones keep that partition's watermark moving
while a cohort stops. Once the watermark passes the quiet cohort's thresholds, each of them has
been re-scored: its due entry is gone (every threshold passed, and a lapsed customer has no
further stage), and its stage changes were published at the crossing times, with reason
``inactivity``.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import redis

from models.contracts import SegmentChange
from models.features import DAY, CustomerState
from models.segments.lifecycle import ACTIVE, AT_RISK, LAPSED, History, LifecycleParams, next_stage_crossing
from models.sim import GeneratedRecord
from stream.state import FeatureStore

from .harness import Stack, customers_of, produce, read_topic, run_to_end, service_env

START = 1_767_225_600  # 2026-01-01T00:00:00Z
DAYS = 220
QUIET_STOP_DAY = 60
THRESHOLDS = (14, 30, 60, 90)


def _event(rng: random.Random, n: int, customer: str, ts: int, style: str) -> GeneratedRecord:
    if style == "buyer":
        typ = rng.choice(["product_view", "product_view", "add_to_cart", "purchase", "email_open"])
        channel = rng.choice(["web", "app"])
    else:  # browser: views and searches on the web, rarely buys
        typ = rng.choice(
            ["page_view", "product_view", "search", "purchase"]
            if rng.random() < 0.1
            else ["page_view", "product_view", "search"]
        )
        channel = "web"
    body: dict[str, object] = {
        "event_id": f"e{n}",
        "customer_id": customer,
        "ts": datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z"),
        "channel": channel,
        "type": typ,
    }
    if typ == "purchase":
        body["amount"] = round(rng.lognormvariate(4.0, 0.4), 2)
        body["currency"] = "EUR"
    value = json.dumps(body, separators=(",", ":")).encode()
    return GeneratedRecord(customer.encode(), value, False, customer, style, float(ts))


def _log(seed: int = 9) -> tuple[list[GeneratedRecord], list[str], list[str]]:
    rng = random.Random(seed)
    buyers, browsers, quiet = (
        customers_of(0, 150, prefix="b"),
        customers_of(0, 150, prefix="w"),
        customers_of(0, 60, prefix="q"),
    )
    evs: list[tuple[int, str, str]] = []
    for group, style, stop_day, rate in (
        (buyers, "buyer", DAYS, 0.6),
        (browsers, "browser", DAYS, 0.6),
        (quiet, "buyer", QUIET_STOP_DAY, 0.8),
    ):
        for c in group:
            for day in range(stop_day):
                if rng.random() < rate:
                    evs.append((START + day * int(DAY) + rng.randrange(int(DAY)), c, style))
    evs.sort()
    records = [_event(rng, n, c, ts, style) for n, (ts, c, style) in enumerate(evs)]
    return records, quiet, buyers + browsers


def test_quiet_customers_are_rescored_and_move_with_reason_inactivity(
    stack: Stack,
    redis_client: redis.Redis,
    namespace: str,
    topic_names: dict[str, str],
    settings_env: dict[str, str],
    tmp_path: Path,
) -> None:
    records, quiet, active = _log()
    produce(stack, topic_names["interactions"], records)
    env = service_env(
        settings_env,
        SEGSTREAM_MODEL__WARMUP_VECTORS="500",
        SEGSTREAM_MODEL__UPDATE_EVERY="500",
        SEGSTREAM_MODEL__N_SEGMENTS="4",
        SEGSTREAM_KAFKA__MAX_POLL_RECORDS="500",
        SEGSTREAM_FEATURES__INACTIVITY_THRESHOLDS_DAYS=json.dumps(THRESHOLDS),
    )
    run_to_end(env, tmp_path / "service.log", until_idle=4)

    ns = namespace
    wm = int(redis_client.get(f"{ns}:{{0}}:wm") or 0)
    assert wm >= START + (DAYS - 2) * int(DAY)
    changes = [
        SegmentChange.model_validate_json(v)
        for _, v in read_topic(stack, topic_names["changes"])
        if v is not None
    ]
    reasons = Counter(c.reason for c in changes)
    inactivity = [c for c in changes if c.reason == "inactivity"]
    quiet_set = set(quiet)
    moved = {c.customer_id for c in inactivity if c.customer_id in quiet_set}

    # Re-scored: every quiet customer passed all segment thresholds (last event + 90 days <
    # watermark); a lapsed one has nothing left to schedule, an at-risk one (an irregular buyer,
    # whose lapse comes later) only its own lapse crossing.
    params = LifecycleParams()
    not_cleared = []
    store = FeatureStore.from_client(redis_client, ns)
    for c in quiet:
        blob = store.get_state(0, c)
        assert blob is not None
        s = CustomerState.unpack(blob)
        assert s.last_ts + 90 * DAY < wm
        h = History(s.purchase_days, s.last_purchase_ts, s.purchase_day_list, s.last_ts, s.active_day_list)
        left = next_stage_crossing(s.stage, s.stage_since, h, params)
        if s.next_due != left or store.due_of(0, c) != left:
            not_cleared.append((c, s.next_due, left))
    # A segment's inactivity re-scoring happens at a threshold crossing, in event time, or at a
    # change of stage (the same row).
    stage_times = {(ch.customer_id, ch.event_time) for ch in changes if ch.kind == "stage"}
    for ch in inactivity:
        if (ch.customer_id, ch.event_time) in stage_times:
            continue
        blob = store.get_state(0, ch.customer_id)
        if blob is None or ch.kind != "segment":
            continue
        last = CustomerState.unpack(blob).last_ts
        # (Earlier re-scorings of a quiet customer, during gaps before its last event, are fine.)
        if ch.customer_id in quiet_set and ch.event_time.timestamp() > last:
            assert int(ch.event_time.timestamp()) - last in {d * int(DAY) for d in THRESHOLDS}
    # Each quiet customer went at risk, then lapsed, at its own rhythm's crossing times (those
    # the watermark passed).
    wrong = []
    lapsed = 0
    for c in quiet:
        s = CustomerState.unpack(store.get_state(0, c) or b"")
        h = History(s.purchase_days, s.last_purchase_ts, s.purchase_day_list, s.last_ts, s.active_day_list)
        risk_at = next_stage_crossing(ACTIVE, 0, h, params)
        lapse_at = next_stage_crossing(AT_RISK, risk_at, h, params)
        path = [
            (ch.previous_stage, ch.stage, ch.reason, int(ch.event_time.timestamp()))
            for ch in changes
            if ch.customer_id == c and ch.kind == "stage"
        ]
        expected = [("active", "at_risk", "inactivity", risk_at)]
        if lapse_at <= wm:
            expected.append(("at_risk", "lapsed", "inactivity", lapse_at))
        if path[-len(expected) :] != expected or s.stage != (LAPSED if lapse_at <= wm else AT_RISK):
            wrong.append((c, path[-2:], expected))
        lapsed += s.stage == LAPSED
    final_stage = {ch.customer_id: ch.stage for ch in changes}
    # Steady buyers end active; browsers who bought twice long ago may be at risk (as buyers),
    # but no one still visiting is lapsed.
    buyers = [c for c in active if c.startswith("b")]
    steady_active = sum(final_stage.get(c) == "active" for c in buyers)
    lapsed_visitors = [c for c in active if final_stage.get(c) == "lapsed"]
    print(
        f"\ninactivity: {len(records)} events, change reasons {dict(reasons)}; "
        f"{len(moved)}/{len(quiet)} quiet customers changed with reason inactivity; "
        f"{steady_active}/{len(buyers)} steady buyers end active, {len(lapsed_visitors)} visitors lapsed; "
        f"{lapsed}/{len(quiet)} quiet customers lapsed; "
        f"due entries off their next crossing: {len(not_cleared)}"
    )
    assert not not_cleared, f"quiet customers scheduled off their next crossing: {not_cleared[:5]}"
    assert reasons["inactivity"] > 0, f"no inactivity change at all; reasons: {dict(reasons)}"
    assert not wrong, f"{len(wrong)} quiet customers off their stage crossings, e.g. {wrong[:3]}"
    assert lapsed >= 0.8 * len(quiet), f"only {lapsed} of {len(quiet)} quiet customers lapsed"
    assert steady_active >= 0.9 * len(buyers)
    assert not lapsed_visitors, lapsed_visitors
