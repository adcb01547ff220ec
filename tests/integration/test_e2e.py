"""End to end against the real broker and Redis: generated events with 5% malformed records."""

from __future__ import annotations

import base64
import hashlib
import json
import random

import jsonschema
import numpy as np
import pytest
import redis

from models.contracts import DEAD_LETTER_ORIGINAL_BYTES, InteractionEvent, json_schemas
from models.features import CustomerState, FeatureParams, apply_event, evaluate, fact_of
from models.sim import generate
from stream.state import FeatureStore

from .harness import produce_pairs as produce
from .harness import read_records as read_topic
from .harness import run_cli

FAST_MODEL = {"SEGSTREAM_MODEL__WARMUP_VECTORS": "500", "SEGSTREAM_MODEL__UPDATE_EVERY": "1000"}


@pytest.fixture(scope="module")
def log():  # type: ignore[no-untyped-def]
    return generate(customers=300, days=60, seed=11, malformed_fraction=0.05)


def test_service_end_to_end(log, stack, settings_env, topic_names, redis_client: redis.Redis) -> None:  # type: ignore[no-untyped-def]
    env = {**settings_env, **FAST_MODEL}
    produced = produce(stack.bootstrap, topic_names["interactions"], ((r.key, r.value) for r in log.records))
    malformed = [r for r in log.records if r.malformed]
    assert produced == len(log.records) and malformed

    res = run_cli(env, "run", "--until-idle", "2", "--metrics-port", "0")
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"processed {produced} records" in res.stdout

    # Every malformed record is in the dead-letter topic: its bytes (a prefix of the large ones),
    # size and hash, and a reason.
    dlq = [json.loads(m.value) for m in read_topic(stack.bootstrap, topic_names["dlq"])]
    by_hash = {d["original_sha256"]: d for d in dlq}
    for r in malformed:
        d = by_hash[hashlib.sha256(r.value).hexdigest()]
        assert base64.b64decode(d["original"]) == r.value[:DEAD_LETTER_ORIGINAL_BYTES]
        assert d["original_size"] == len(r.value)
        assert d["original_truncated"] == (len(r.value) > DEAD_LETTER_ORIGINAL_BYTES)
    assert any(d["original_truncated"] for d in dlq), "the log's oversized records were not truncated"
    for d in dlq:
        assert d["reason"] and d["error_class"] and d["source_topic"] == topic_names["interactions"]
        jsonschema.validate(d, json_schemas()["dead_letter"])
    # Nothing valid was dead-lettered and nothing was lost: valid + dead-lettered = produced.
    valid = [r for r in log.records if not r.malformed]
    store = FeatureStore(stack.redis_url, env["SEGSTREAM_REDIS__NAMESPACE"]).start()
    states = {cid: CustomerState.unpack(b) for _, cid, b in store.scan_customers(4)}
    assert sum(s.events for s in states.values()) + len(dlq) == produced
    assert len(dlq) == len(malformed)

    # Every change event validates against the published schema.
    changes = [json.loads(m.value) for m in read_topic(stack.bootstrap, topic_names["changes"])]
    assert changes, "no segment changes were published"
    schema = json_schemas()["segment_change"]
    for c in changes:
        jsonschema.validate(c, schema)
    assert len({c["change_id"] for c in changes}) == len(changes)

    # The Redis features of a sample of customers equal a direct computation over their events.
    params = FeatureParams()
    by_customer: dict[str, list[InteractionEvent]] = {}
    for r in valid:
        e = InteractionEvent.model_validate_json(r.value)
        by_customer.setdefault(e.customer_id, []).append(e)
    for cid in random.Random(3).sample(sorted(by_customer), 25):
        direct = CustomerState.new()
        for e in by_customer[cid]:
            apply_event(direct, params, fact_of(e))
        stored = states[cid]
        at = direct.last_ts
        np.testing.assert_allclose(evaluate(stored, params, at), evaluate(direct, params, at), rtol=1e-9)
        assert (stored.events, stored.purchases, stored.first_ts, stored.last_ts) == (
            direct.events,
            direct.purchases,
            direct.first_ts,
            direct.last_ts,
        )

    # The compacted topic holds one latest segment per customer that changed.
    current = read_topic(stack.bootstrap, topic_names["current"])
    assert {m.key.decode() for m in current} == {c["customer_id"] for c in changes}
    # The CLI look-ups answer from the same state.
    seg = run_cli(env, "segments", "--json")
    assert seg.returncode == 0, seg.stderr
    table = json.loads(seg.stdout)
    in_segments = sum(s["customers"] for s in table["segments"]) + sum(table["retired"].values())
    assert in_segments == len({c["customer_id"] for c in changes if c["current"]})
    one = sorted(by_customer)[0]
    look = run_cli(env, "customer", one, "--json")
    assert look.returncode == 0, look.stderr
    assert json.loads(look.stdout)["events"] == len(by_customer[one])
    unknown = run_cli(env, "customer", "nobody-here")
    assert unknown.returncode == 1 and "unknown customer 'nobody-here'" in unknown.stderr
    store.close()
