"""Customers whose rows all came before the first model version get a segment once it exists,
without a row of their own, and the store's count of the unplaced follows them to zero."""

from __future__ import annotations

import json
from collections import Counter

from models.features import CustomerState
from models.sim import generate
from stream.config import load
from stream.io.kafka import SourceRecord
from stream.ops.evaluate import log_records
from tests.helpers import replay_in_memory

# Versions from 500 learned rows after 10 days: early-only customers are read well before one.
OVERRIDES = {
    "model": {"update_every": 500, "warmup_vectors": 500, "warmup_days": 10, "rescore_every_days": 0}
}


def early_only_log() -> tuple[list[SourceRecord], set[str]]:
    """A 60-day log and, beside it, copies of its first two days' events under new customer ids:
    customers seen only in those two days, long before the first version."""
    records = generate(300, 60, seed=9).records
    first = json.loads(records[0].value)["ts"][:10]
    pairs: list[tuple[bytes, bytes]] = []
    early: set[str] = set()
    for r in records:
        pairs.append((r.key, r.value))
        body = json.loads(r.value)
        if body["ts"][:10] <= first[:8] + f"{int(first[8:]) + 1:02d}":
            body["customer_id"] = cid = "early-" + body["customer_id"]
            body["event_id"] = "early-" + body["event_id"]
            early.add(cid)
            pairs.append((cid.encode(), json.dumps(body).encode()))
    return log_records("interactions", pairs), early


def test_customers_seen_only_before_the_first_version_get_a_segment() -> None:
    records, early = early_only_log()
    settings = load(overrides={"topics": {"partitions": 1}, **OVERRIDES})
    store, engine, sink = replay_in_memory(settings, records, 400)
    assert engine.version >= 2 and len(early) >= 20
    states = {c: CustomerState.unpack(b) for _, c, b in store.scan_customers(1)}
    assert early <= set(states)
    unplaced = [c for c, st in states.items() if st.segment < 0]
    assert unplaced == [], f"{len(unplaced)} customers without a segment, e.g. {unplaced[:3]}"
    assert store.unplaced(0) == 0
    # They were placed by the version, not by a row of their own (they have none after day 2).
    first: dict[str, object] = {}
    for c in sink.changes:
        if c.customer_id in early and c.kind == "segment":
            first.setdefault(c.customer_id, c)
    assert set(first) == early
    reasons = Counter(c.reason for c in first.values())  # type: ignore[attr-defined]
    assert all(c.previous is None for c in first.values())  # type: ignore[attr-defined]
    assert reasons["model_update"] >= len(early) // 2, reasons
    # The store's per-segment counts agree with the states.
    counts = Counter(st.segment for st in states.values())
    assert store.segment_counts(1) == dict(counts)


def test_placement_is_the_same_for_any_batch_size() -> None:
    records, early = early_only_log()
    settings = load(overrides={"topics": {"partitions": 1}, **OVERRIDES})
    runs = []
    for batch in (400, 977):
        _, _, sink = replay_in_memory(settings, records, batch)
        runs.append([c.model_dump_json() for c in sink.changes if c.customer_id in early])
    assert runs[0] == runs[1] and runs[0]
