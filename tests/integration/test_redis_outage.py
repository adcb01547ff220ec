"""Redis drops the service's connections mid-batch (a restart or failover, as clients see it).

The service must ride it out: the batch whose Redis step failed, and every batch behind it, is
redone from Redis's applied offsets once Redis answers again; a step whose reply alone was lost
is found applied there. At the end every event is applied exactly once and the features equal
an uninterrupted run's, and the service exits 0 (before, it died with a ConnectionError).
"""

from __future__ import annotations

import time
from pathlib import Path

import redis

from models.features import CustomerState
from models.generator import generate

from .conftest import Stack
from .test_e2e_sigterm import (
    applied_offsets,
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

RECOVERED = "Redis failed mid-batch"  # Service._recover_from_redis


def test_service_rides_out_dropped_redis_connections(
    stack: Stack,
    redis_client: redis.Redis,
    namespace: str,
    settings_env: dict[str, str],
    tmp_path: Path,
) -> None:
    log = generate(customers=1000, days=90, seed=4, malformed_fraction=0.002)
    records = log.records
    n = len(records)
    topic = settings_env["SEGSTREAM_TOPICS__INTERACTIONS"]
    produce(stack, topic, records)
    ends = end_offsets(stack, topic)
    out = tmp_path / "service.log"

    def progress() -> int:
        return sum(o + 1 for o in applied_offsets(redis_client, namespace))

    def recoveries() -> int:
        return out.read_text(errors="replace").count(RECOVERED) if out.exists() else 0

    env = service_env(settings_env, SEGSTREAM_KAFKA__MAX_POLL_RECORDS="200")
    proc = start_service(env, out, until_idle=8)
    kills = 0
    try:
        wait_until(lambda: progress() >= n // 10 or proc.poll() is not None, 120, "a tenth applied")
        # Drop every other client's connection until two of them were cut mid-command (an idle
        # pooled connection is reopened silently; only one in use fails).
        while recoveries() < 2 and progress() < n * 0.85 and proc.poll() is None:
            redis_client.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
            kills += 1
            time.sleep(0.02)
        assert proc.wait(timeout=300) == 0, f"segstream run exited {proc.returncode}: {tail(out)}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert recoveries() >= 1, f"none of {kills} connection kills landed mid-command: {tail(out)}"
    assert applied_offsets(redis_client, namespace) == [e - 1 for e in ends]
    got = customer_states(redis_client, namespace)
    events = sum(CustomerState.unpack(v).events for v in got.values())
    assert events == valid_count(records), f"{events} events applied, {valid_count(records)} valid records"
    ref_env, ref_ns = second_env(settings_env, stack)
    try:
        run_to_end(service_env(ref_env), tmp_path / "reference.log", until_idle=5)
        problems, _ = compare_states(got, customer_states(redis_client, ref_ns))
        assert not problems, f"{len(problems)} feature differences, first: {problems[:5]}"
    finally:
        delete_namespace(redis_client, ref_ns)
    print(f"\nredis outage: {n} records, {kills} connection kills, {recoveries()} recoveries; state exact")
