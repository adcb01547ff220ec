"""Stop the service mid-log with SIGTERM and restart it: it resumes where it committed.

Issue 2: the service finishes the batch in hand, commits, exits 0; the group's committed Kafka
offsets equal Redis's applied offset + 1 per partition; a restart runs to the end, and every
event is applied exactly once (the states equal those of an uninterrupted run).

The helpers it uses are in harness.py, shared by every integration test.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import redis

from models.features import CustomerState
from models.sim import generate

from .harness import (
    Stack,
    applied_count,
    applied_offsets,
    committed_offsets,
    compare_states,
    customer_states,
    delete_namespace,
    end_offsets,
    produce,
    run_to_end,
    second_env,
    service_env,
    start_service,
    tail,
    valid_count,
    wait_until,
)

# ---------------------------------------------------------------- the test


def test_sigterm_mid_log_then_restart_applies_every_event_once(
    stack: Stack,
    redis_client: redis.Redis,
    namespace: str,
    topic_names: dict[str, str],
    settings_env: dict[str, str],
    tmp_path: Path,
) -> None:
    log = generate(customers=500, days=60, seed=11, malformed_fraction=0.01)
    records = log.records
    topic = topic_names["interactions"]
    produce(stack, topic, records)
    ends = end_offsets(stack, topic)
    assert sum(ends) == len(records)
    env = service_env(settings_env)
    group = settings_env["SEGSTREAM_KAFKA__GROUP_ID"]
    out = tmp_path / "service.log"

    proc = start_service(env, out, until_idle=30)
    try:
        # Mid-log: something applied, the log not done (states are written per batch).
        wait_until(
            lambda: applied_count(redis_client, namespace) > len(records) // 5,
            timeout=120,
            what="the service to apply a fifth of the log",
            step=0.02,
        )
        proc.send_signal(signal.SIGTERM)
        stopped = time.monotonic()
        rc = proc.wait(timeout=30)
        took = time.monotonic() - stopped
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert rc == 0, f"exit code {rc} after SIGTERM: {tail(out)}"
    assert took < 15, f"the service took {took:.1f}s to stop after SIGTERM"
    applied = applied_offsets(redis_client, namespace)
    done = sum(o + 1 for o in applied)
    assert 0 < done < len(records), f"stopped at {done} of {len(records)}: not mid-log"
    committed = committed_offsets(stack, topic, group)
    assert committed == [o + 1 if o >= 0 else -1 for o in applied], (
        f"committed Kafka offsets {committed} != Redis applied offsets + 1 {applied}"
    )

    run_to_end(env, out)
    assert applied_offsets(redis_client, namespace) == [e - 1 for e in ends]
    states = customer_states(redis_client, namespace)
    total_events = sum(CustomerState.unpack(b).events for b in states.values())
    assert total_events == valid_count(records), (
        f"{total_events} events in Redis, {valid_count(records)} valid records in the log"
    )

    ref_env, ref_ns = second_env(settings_env, stack)
    try:
        run_to_end(service_env(ref_env), tmp_path / "reference.log")
        problems, seg = compare_states(states, customer_states(redis_client, ref_ns))
        assert not problems, f"{len(problems)} differences, first: {problems[:5]}"
        print(f"segment agreement after SIGTERM + restart vs uninterrupted: {seg}")
    finally:
        delete_namespace(redis_client, ref_ns)
