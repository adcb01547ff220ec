"""The broker restarts while the service is mid-log (a rolling restart, as the client sees it).

The service must wait for it and carry on: no event lost or applied twice, the features of an
uninterrupted run. With ``--until-idle`` it must not take the outage for the end of the log:
before, a quiet spell of that many seconds during the restart made it stop at exit 0 with most
of the log unread (found by a scratch probe: 46,200 of 176,972 records).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import redis

from .harness import (
    ROOT,
    STACK_SH,
    Stack,
    applied_count,
    assert_exact_state,
    exit_code,
    kill_all,
    produce_generated,
    reference_run,
    service_env,
    start_service,
    tail,
    wait_until,
)

BROKER_PID = ROOT / ".cache" / "stack" / "kafka" / "kafka.pid"


def restart_broker(down_s: float) -> None:
    """Stop the stack's broker (SIGTERM: a controlled shutdown), keep it down, start it again."""
    pid = int(BROKER_PID.read_text())
    os.kill(pid, signal.SIGTERM)

    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    wait_until(gone, 90, "the broker to stop", step=0.1)
    time.sleep(down_s)
    subprocess.run([str(STACK_SH), "start"], cwd=ROOT, check=True, timeout=300, capture_output=True)


def test_service_waits_out_a_broker_restart_and_finishes_the_log(
    stack: Stack,
    redis_client: redis.Redis,
    namespace: str,
    settings_env: dict[str, str],
    tmp_path: Path,
) -> None:
    # 600 customers (~72k records): the outage still falls mid-log (checked below), and what is
    # checked after it does not grow with the log.
    records, ends = produce_generated(stack, settings_env, customers=600, seed=6)
    n = len(records)
    out = tmp_path / "service.log"

    def progress() -> int:
        return applied_count(redis_client, namespace)

    # until_idle shorter than the outage: the quiet spell alone must not end the run.
    proc = start_service(
        service_env(settings_env, SEGSTREAM_KAFKA__MAX_POLL_RECORDS="200"), out, until_idle=3
    )
    with contextlib.ExitStack() as later:
        try:
            wait_until(lambda: progress() >= n // 4 or proc.poll() is not None, 120, "a quarter applied")
            assert proc.poll() is None, f"exited early: {tail(out)}"
            restart_broker(down_s=5)
            assert progress() < n, "the log was read to its end before the broker came back"
            # The broker is back: the uninterrupted run goes now, beside the rest of this one.
            reference = later.enter_context(reference_run(stack, redis_client, settings_env, tmp_path))
            assert exit_code(proc, 300, out) == 0, f"segstream run exited {proc.returncode}: {tail(out)}"
        finally:
            kill_all(proc)
        seg = assert_exact_state(
            stack, redis_client, namespace, settings_env, records, ends, tmp_path, reference=reference
        )
    customers = seg["customers"]
    print(f"\nbroker restart: {n} records, the log finished; {customers} customers' features equal")
