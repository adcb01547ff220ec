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

from .harness import (
    Stack,
    applied_count,
    assert_exact_state,
    exit_code,
    kill_all,
    produce_generated,
    service_env,
    start_service,
    tail,
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
    records, ends = produce_generated(stack, settings_env, customers=1000, seed=4)
    n = len(records)
    out = tmp_path / "service.log"

    def progress() -> int:
        return applied_count(redis_client, namespace)

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
        assert exit_code(proc, 300, out) == 0, f"segstream run exited {proc.returncode}: {tail(out)}"
    finally:
        kill_all(proc)
    assert recoveries() >= 1, f"none of {kills} connection kills landed mid-command: {tail(out)}"
    seg = assert_exact_state(
        stack, redis_client, namespace, settings_env, records, ends, tmp_path, same_model=True
    )
    customers = seg["customers"]
    print(
        f"\nredis outage: {n} records, {kills} connection kills, {recoveries()} recoveries; "
        f"{customers} customers' features equal"
    )
