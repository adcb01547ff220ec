"""Stop the service mid-log with SIGTERM and restart it: it resumes where it committed.

Issue 2: the service finishes the batch in hand, commits, exits 0; the group's committed Kafka
offsets equal Redis's applied offset + 1 per partition; a restart runs to the end, and every
event is applied exactly once (the states equal those of an uninterrupted run).

The helpers at the top are shared by the other end-to-end tests of this folder.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import pytest
import redis
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from models.features import CustomerState, feature_differences
from models.sim import GeneratedRecord, generate
from stream.state import FeatureStore

from .conftest import ROOT, Stack, unique

# `python -m stream` from the repository root: the checkout under test, whatever is installed.
SEGSTREAM = [sys.executable, "-m", "stream"]
PARTITIONS = 4


# ---------------------------------------------------------------- shared helpers


def produce(stack: Stack, topic: str, records: Iterable[GeneratedRecord]) -> int:
    producer = KafkaProducer(
        bootstrap_servers=stack.bootstrap, acks="all", linger_ms=20, batch_size=256 * 1024
    )
    n = 0
    for r in records:
        producer.send(topic, key=r.key, value=r.value)
        n += 1
    producer.flush(timeout=120)
    producer.close()
    return n


def service_env(settings_env: dict[str, str], **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(settings_env)
    env.update(extra)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def start_service(env: dict[str, str], log_path: Path, until_idle: float = 8.0) -> subprocess.Popen[bytes]:
    """``segstream run`` as a subprocess, its output appended to ``log_path``."""
    out = log_path.open("ab")
    try:
        return subprocess.Popen(
            [*SEGSTREAM, "run", "--until-idle", str(until_idle), "--metrics-port", "0"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    finally:
        out.close()  # the child holds its own descriptor


def run_to_end(env: dict[str, str], log_path: Path, until_idle: float = 5.0, timeout: float = 300) -> None:
    proc = start_service(env, log_path, until_idle)
    try:
        rc = proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert rc == 0, f"segstream run exited {rc}: {tail(log_path)}"


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no output)"


def exit_code(proc: subprocess.Popen[bytes], timeout: float, out: Path, name: str = "segstream run") -> int:
    """The process's exit code; a process still running after ``timeout`` fails the test with the
    end of its log (a bare TimeoutExpired would hide why it did not stop)."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{name} still running after {timeout:.0f} s:\n{tail(out)}")


def applied_offsets(client: redis.Redis, ns: str, partitions: int = PARTITIONS) -> list[int]:
    raw = client.mget([f"{ns}:{{{p}}}:offset" for p in range(partitions)])
    return [int(v) if v is not None else -1 for v in raw]


def applied_count(client: redis.Redis, ns: str) -> int:
    """Records applied so far over every partition (from the applied offsets)."""
    return sum(o + 1 for o in applied_offsets(client, ns))


def end_offsets(stack: Stack, topic: str, partitions: int = PARTITIONS) -> list[int]:
    consumer = KafkaConsumer(bootstrap_servers=stack.bootstrap)
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        ends = consumer.end_offsets(tps)
        return [int(ends[tp]) for tp in tps]
    finally:
        consumer.close()


def committed_offsets(stack: Stack, topic: str, group: str, partitions: int = PARTITIONS) -> list[int]:
    consumer = KafkaConsumer(bootstrap_servers=stack.bootstrap, group_id=group, enable_auto_commit=False)
    try:
        out = []
        for p in range(partitions):
            c = consumer.committed(TopicPartition(topic, p))
            out.append(int(c) if c is not None else -1)
        return out
    finally:
        consumer.close(autocommit=False)


def customer_states(client: redis.Redis, ns: str, partitions: int = PARTITIONS) -> dict[str, bytes]:
    """customer id -> packed state, for every customer of the namespace."""
    return {c: blob for _, c, blob in FeatureStore.from_client(client, ns).scan_customers(partitions)}


def read_topic(
    stack: Stack, topic: str, partitions: int = PARTITIONS, idle_s: float = 3.0
) -> list[tuple[bytes | None, bytes | None]]:
    """Every (key, value) of a topic, from the beginning, until it has been quiet for ``idle_s``."""
    consumer = KafkaConsumer(bootstrap_servers=stack.bootstrap, enable_auto_commit=False)
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    ends = consumer.end_offsets(tps)
    got: list[tuple[bytes | None, bytes | None]] = []
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            for msgs in consumer.poll(timeout_ms=int(idle_s * 1000)).values():
                got.extend((m.key, m.value) for m in msgs)
            if all(consumer.position(tp) >= ends[tp] for tp in tps):
                break
    finally:
        consumer.close()
    return got


def wait_until(cond: Callable[[], bool], timeout: float, what: str, step: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)


def compare_states(got: dict[str, bytes], want: dict[str, bytes]) -> tuple[list[str], dict[str, int]]:
    """(feature problems, segment agreement counts) between two namespaces' states."""
    problems: list[str] = []
    if set(got) != set(want):
        problems.append(
            f"customer sets differ: {len(set(got) - set(want))} extra, {len(set(want) - set(got))} missing"
        )
    seg = {"customers": 0, "segment": 0, "seq": 0, "segment_since": 0}
    for cid in sorted(set(got) & set(want)):
        a, b = CustomerState.unpack(got[cid]), CustomerState.unpack(want[cid])
        for m in feature_differences(a, b):
            problems.append(f"{cid}: {m}")
        seg["customers"] += 1
        seg["segment"] += a.segment == b.segment
        seg["seq"] += a.seq == b.seq
        seg["segment_since"] += a.segment_since == b.segment_since
    return problems, seg


def second_env(settings_env: dict[str, str], stack: Stack) -> tuple[dict[str, str], str]:
    """Settings for an uninterrupted reference run: same topics, its own namespace and group
    (the caller deletes the namespace's keys)."""
    ns = unique("ref")
    env = dict(settings_env)
    env["SEGSTREAM_REDIS__NAMESPACE"] = ns
    env["SEGSTREAM_KAFKA__GROUP_ID"] = unique("g")
    # Reference output goes to the same topics with a suffix-free name: harmless, the test
    # compares Redis state only.
    return env, ns


def delete_namespace(client: redis.Redis, ns: str) -> None:
    batch: list[bytes] = []
    for key in client.scan_iter(match=f"{ns}:*", count=1000):
        batch.append(key)
        if len(batch) >= 500:
            client.delete(*batch)
            batch.clear()
    if batch:
        client.delete(*batch)


def valid_count(records: Sequence[GeneratedRecord]) -> int:
    return sum(1 for r in records if not r.malformed)


def produce_generated(
    stack: Stack, settings_env: dict[str, str], customers: int, seed: int
) -> tuple[list[GeneratedRecord], list[int]]:
    """A generated 90-day log (0.2% malformed) in the test's interactions topic: its records and
    the topic's end offsets."""
    records = generate(customers=customers, days=90, seed=seed, malformed_fraction=0.002).records
    topic = settings_env["SEGSTREAM_TOPICS__INTERACTIONS"]
    produce(stack, topic, records)
    ends = end_offsets(stack, topic)
    assert sum(ends) == len(records)
    return records, ends


def kill_all(*procs: subprocess.Popen[bytes] | None) -> None:
    """At the end of a test, whatever still runs: woken (if it was stopped) and killed."""
    for proc in procs:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
            proc.wait()


def assert_exact_state(
    stack: Stack,
    client: redis.Redis,
    ns: str,
    settings_env: dict[str, str],
    records: Sequence[GeneratedRecord],
    ends: list[int],
    tmp_path: Path,
    until_idle: float = 5.0,
) -> dict[str, int]:
    """Effectively-once, checked: every offset applied, every valid event applied once, and every
    customer's features equal to those of an uninterrupted run of the same log (in a namespace
    of its own). Returns the segment agreement counts with that run (compare_states)."""
    assert applied_offsets(client, ns) == [e - 1 for e in ends]
    got = customer_states(client, ns)
    events = sum(CustomerState.unpack(v).events for v in got.values())
    assert events == valid_count(records), f"{events} events applied, {valid_count(records)} valid records"
    ref_env, ref_ns = second_env(settings_env, stack)
    try:
        run_to_end(service_env(ref_env), tmp_path / "reference.log", until_idle=until_idle)
        assert applied_offsets(client, ref_ns) == applied_offsets(client, ns)
        problems, seg = compare_states(got, customer_states(client, ref_ns))
        assert not problems, f"{len(problems)} feature differences, first: {problems[:5]}"
    finally:
        delete_namespace(client, ref_ns)
    return seg


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
