"""Two instances in one consumer group: partitions move while both run, then one leaves.

README's Guarantees say the state stays effectively-once when partitions change owner: the new
owner seeks to Redis's applied offset + 1, and a batch the old owner computed on a state that
moved on fails its compare-and-set (the old owner then re-seeks). This drives a real group
rebalance twice on one log: instance A (the learner) starts alone; B (a follower, as docs/operating.md's
Scaling out asks of every instance but one) joins mid-log and takes some partitions; A then
stops with SIGTERM mid-log and B takes the rest and runs to the end. Every event must be applied
exactly once and every feature must equal an uninterrupted run's.
"""

from __future__ import annotations

import re
import signal
from pathlib import Path

import redis

from .harness import (
    FAST_REBALANCE,
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

_ASSIGNED = re.compile(r"partitions assigned: \[([0-9, ]*)\]")
_FENCED = "re-seeking to the applied offsets"  # Service._resync, after a failed compare-and-set


def assignments(log_path: Path) -> list[list[int]]:
    """Every assignment an instance logged, in order."""
    text = log_path.read_text(errors="replace") if log_path.exists() else ""
    return [[int(p) for p in m.group(1).split(",") if p.strip()] for m in _ASSIGNED.finditer(text)]


def test_partitions_move_between_two_instances_and_state_stays_exact(
    stack: Stack,
    redis_client: redis.Redis,
    namespace: str,
    settings_env: dict[str, str],
    tmp_path: Path,
) -> None:
    records, ends = produce_generated(stack, settings_env, customers=1200, seed=7)
    n = len(records)
    # Small polls: many batches, so both instances are mid-log while the group rebalances.
    env_a = service_env(settings_env, SEGSTREAM_KAFKA__MAX_POLL_RECORDS="200")
    env_b = dict(env_a, SEGSTREAM_MODEL__ROLE="follower")
    out_a, out_b = tmp_path / "a.log", tmp_path / "b.log"

    def progress() -> int:
        return applied_count(redis_client, namespace)

    a = start_service(env_a, out_a, until_idle=8)
    b = None
    try:
        wait_until(lambda: progress() >= n // 10 or a.poll() is not None, 120, "A to apply a tenth")
        assert a.poll() is None, f"A exited early: {tail(out_a)}"
        b = start_service(env_b, out_b, until_idle=8)
        # B is in once it logged a non-empty assignment and A logged its smaller one.
        wait_until(
            lambda: any(assignments(out_b)) or b.poll() is not None, 120, "B to be assigned partitions"
        )
        assert b.poll() is None, f"B exited early: {tail(out_b)}"
        owned_b = next(x for x in assignments(out_b) if x)
        wait_until(lambda: len(assignments(out_a)) >= 2, 60, "A to be reassigned")
        assert 0 < len(owned_b) < 4, assignments(out_b)
        # Both own partitions now; let B work a while, then A leaves mid-log.
        at_join = progress()
        wait_until(lambda: progress() >= at_join + n // 10, 120, "both to apply another tenth")
        assert progress() < n, "the log ended before A left: the test needs a longer log"
        a.send_signal(signal.SIGTERM)
        assert exit_code(a, 60, out_a, "A") == 0, f"A did not stop cleanly: {tail(out_a)}"
        assert exit_code(b, 300, out_b, "B") == 0, f"B exited {b.returncode}: {tail(out_b)}"
    finally:
        kill_all(a, b)
    assert sorted(assignments(out_b)[-1]) == [0, 1, 2, 3], assignments(out_b)
    seg = assert_exact_state(stack, redis_client, namespace, settings_env, records, ends, tmp_path)
    customers = seg["customers"]
    conflicts = sum(p.read_text(errors="replace").count(_FENCED) for p in (out_a, out_b))
    print(
        f"\nrebalance: {n} records; A {assignments(out_a)}, B {assignments(out_b)}; "
        f"{conflicts} state conflicts logged; {customers} customers' features equal"
    )


def test_a_paused_instance_that_wakes_up_as_a_zombie_leaves_the_state_exact(
    stack: Stack,
    redis_client: redis.Redis,
    namespace: str,
    settings_env: dict[str, str],
    tmp_path: Path,
) -> None:
    """A zombie: A is frozen (SIGSTOP) mid-batch past its session timeout, B takes all of A's
    partitions and moves on, then A wakes up with the batches it had in hand. Those writes fail
    the compare-and-set (docs/operating.md: "A failed step ... re-seeks"; A logs it, the count is printed:
    a freeze between two batches with nothing in hand would have nothing to fence) and the
    state stays exact."""
    records, ends = produce_generated(stack, settings_env, customers=1200, seed=8)
    n = len(records)
    env_a = service_env(settings_env, **FAST_REBALANCE)  # B takes over ~6 s in
    env_b = dict(env_a, SEGSTREAM_MODEL__ROLE="follower")
    out_a, out_b = tmp_path / "a.log", tmp_path / "b.log"

    def progress() -> int:
        return applied_count(redis_client, namespace)

    a = start_service(env_a, out_a, until_idle=8)
    b = start_service(env_b, out_b, until_idle=8)
    try:
        wait_until(
            lambda: (
                (any(assignments(out_a)) and any(assignments(out_b)) and progress() >= n // 5)
                or a.poll() is not None
                or b.poll() is not None
            ),
            120,
            "both instances to own partitions and a fifth of the log to be applied",
        )
        assert a.poll() is None and b.poll() is None, f"A: {tail(out_a)}\nB: {tail(out_b)}"
        a.send_signal(signal.SIGSTOP)
        frozen_at = progress()
        wait_until(lambda: sorted(assignments(out_b)[-1]) == [0, 1, 2, 3], 60, "B to take every partition")
        wait_until(lambda: progress() >= frozen_at + n // 10, 120, "B to move A's partitions on")
        assert progress() < n, "the log ended before A woke up: the test needs a longer log"
        a.send_signal(signal.SIGCONT)
        assert exit_code(b, 300, out_b, "B") == 0, f"B exited {b.returncode}: {tail(out_b)}"
        assert exit_code(a, 120, out_a, "A") == 0, f"A exited {a.returncode}: {tail(out_a)}"
    finally:
        kill_all(a, b)
    seg = assert_exact_state(stack, redis_client, namespace, settings_env, records, ends, tmp_path)
    customers = seg["customers"]
    fenced = out_a.read_text(errors="replace").count(_FENCED)
    print(
        f"\nzombie: {n} records; A {assignments(out_a)}, B {assignments(out_b)}; A fenced {fenced} "
        f"time(s); {customers} customers' features equal"
    )
