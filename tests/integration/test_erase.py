"""`segstream forget`: the customer's state is gone, an erase change and a tombstone are published."""

from __future__ import annotations

import subprocess
from pathlib import Path

import redis

from models.contracts import SegmentChange
from models.features import CustomerState
from models.sim import generate
from stream.ops.erase import partition_of
from stream.state import FeatureStore

from .harness import ROOT, SEGSTREAM, Stack, applied_offsets, produce, read_topic, run_to_end, service_env


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SEGSTREAM, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_forget_erases_state_and_publishes_erase_and_tombstone(
    stack: Stack,
    redis_client: redis.Redis,
    namespace: str,
    topic_names: dict[str, str],
    settings_env: dict[str, str],
    tmp_path: Path,
) -> None:
    log = generate(customers=150, days=60, seed=5)
    produce(stack, topic_names["interactions"], log.records)
    # A quickly warm model, so that customers have segments to leave.
    env = service_env(
        settings_env, SEGSTREAM_MODEL__WARMUP_VECTORS="300", SEGSTREAM_MODEL__UPDATE_EVERY="300"
    )
    run_to_end(env, tmp_path / "service.log", until_idle=3)

    # A customer with a segment (the last one in the log: surely active).
    ns = namespace
    store = FeatureStore.from_client(redis_client, ns)
    target = None
    for rec in reversed(log.records):
        p = partition_of(rec.customer_id, 4)
        blob = store.get_state(p, rec.customer_id)
        if blob is not None and CustomerState.unpack(blob).segment >= 0:
            target = rec.customer_id
            break
    assert target is not None, "no customer has a segment: the model did not warm up"
    p = partition_of(target, 4)
    blob = store.get_state(p, target)
    assert blob is not None
    state = CustomerState.unpack(blob)
    seg_before = int(redis_client.hget(f"{ns}:{{{p}}}:segcount", str(state.segment)) or 0)
    assert seg_before >= 1

    done = _cli(env, "forget", target)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.strip().splitlines()) == 1, done.stdout
    assert target in done.stdout and "erased" in done.stdout

    # Redis: no state, no due entry, one fewer in the segment.
    assert store.get_state(p, target) is None
    assert store.due_of(p, target) == 0
    assert int(redis_client.hget(f"{ns}:{{{p}}}:segcount", str(state.segment)) or 0) == seg_before - 1

    # segments.changes: the erase event, last for this customer.
    key = target.encode()
    changes = [
        SegmentChange.model_validate_json(v)
        for k, v in read_topic(stack, topic_names["changes"])
        if k == key and v is not None
    ]
    erase = changes[-1]
    assert erase.reason == "erase"
    assert erase.current is None
    assert erase.previous is not None and erase.previous.id == state.segment
    assert erase.seq == state.seq + 1
    assert erase.explanation == "erased on request"
    assert erase.source_topic == "erase" and erase.source_partition == p
    assert erase.source_offset == applied_offsets(redis_client, ns)[p]
    assert int(erase.event_time.timestamp()) == state.last_ts
    assert len({c.change_id for c in changes}) == len(changes)

    # segments.current: the latest record for the customer is a tombstone.
    current = [v for k, v in read_topic(stack, topic_names["current"]) if k == key]
    assert current and current[-1] is None
    assert current[:-1] and all(v is not None for v in current[:-1])

    # The customer is now unknown: to `customer` and to a second `forget`.
    look = _cli(env, "customer", target)
    assert look.returncode == 1
    assert "unknown customer" in look.stderr
    again = _cli(env, "forget", target)
    assert again.returncode == 1
    assert "unknown customer" in again.stderr and len(again.stderr.strip().splitlines()) == 1
