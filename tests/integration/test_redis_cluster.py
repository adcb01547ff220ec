"""A Redis Cluster master dies mid-run (SIGKILL) and its replica takes over: the store rides it out.

The loop below does what the service's loop does with its batches: load a partition, compute the
next batch from the applied offset Redis holds, write it with the compare-and-set script, and on
a transient Redis error (REDIS_DOWN: the dead master's refused connections, then CLUSTERDOWN
until the replica is promoted) wait and resume from the applied offsets again. After the
failover every partition's applied offset, customer states, segment counts, outbox and learn log
must be those of every batch applied exactly once. Redis Cluster replicates asynchronously: a
replica promoted before it received the master's last writes loses them; the loop then redoes them
from what Redis holds (the service stops with StateLost instead, and `recover --resume` reads them
again), and the test prints how many were lost.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
import redis

from models.features import CustomerState
from models.sim import generate
from stream.errors import ConfigError
from stream.state import REDIS_DOWN, FeatureStore, PartitionWrite

from .harness import (
    STACK_SH,
    Stack,
    assert_exact_state,
    assert_features_equal,
    direct_states,
    end_offsets,
    exit_code,
    kill_all,
    produce,
    run_cli,
    service_env,
    start_service,
    tail,
    unique,
    wait_until,
)
from .servers import PrivateRedisCluster, private_redis, private_redis_cluster

PARTITIONS = [0, 1, 2, 3]
BATCHES = 150  # per partition
KILL_AT = 40  # the victim's partition has applied this many batches when its master dies
CUSTOMERS = 10
T = TypeVar("T")


def customers_of(i: int) -> list[str]:
    """The two customers batch ``i`` touches (never the same one twice: 2i+1 is odd)."""
    return [f"c{i % CUSTOMERS}", f"c{(3 * i + 1) % CUSTOMERS}"]


def batch(p: int, i: int, states: dict[str, bytes | None]) -> PartitionWrite:
    """Batch ``i`` of partition ``p``: each of its customers' counter goes up by one."""
    new = {c: b"\x01%d" % (int(states[c][1:]) + 1 if states[c] else 1) for c in customers_of(i)}
    return PartitionWrite(
        partition=p,
        expected_offset=i - 1,
        new_offset=i,
        watermark=1000 + i,
        states=new,
        due={c: 5000 + i for c in new},
        segment_deltas={p: 1},
        topic_id="topic-1",
        outbox=b"p%db%d" % (p, i),
        learned=b"rows-%d" % i,
        learned_name=f"{i:08d}",
    )


def test_a_killed_master_is_failed_over_and_no_batch_is_lost_or_applied_twice(tmp_path: Path) -> None:
    with private_redis_cluster(tmp_path, node_timeout_ms=2000) as cluster:
        store = FeatureStore(cluster.url, "rc", cluster=True).start()
        try:
            victim_p = 0
            victim = cluster.owner(store.offset_key(victim_p))
            progress = dict.fromkeys(PARTITIONS, -1)  # applied offsets as the loop last saw them
            acknowledged = dict.fromkeys(PARTITIONS, -1)  # the newest commit Redis confirmed
            killed_at: list[float] = []

            def kill_when_due() -> None:
                deadline = time.monotonic() + 30
                while progress[victim_p] < KILL_AT and time.monotonic() < deadline:
                    time.sleep(0.001)
                victim.kill()  # SIGKILL, mid-run: the loop is sending commands all along
                killed_at.append(time.monotonic())

            killer = threading.Thread(target=kill_when_due, daemon=True)
            killer.start()
            errors: list[str] = []
            went_back: list[tuple[int, int, int]] = []  # (partition, acknowledged, found)
            back_at: float | None = None
            deadline = time.monotonic() + 40
            while min(progress.values()) < BATCHES - 1:
                assert time.monotonic() < deadline, f"stuck at {progress}; errors: {errors[-5:]}"
                for p in PARTITIONS:
                    if progress[p] >= BATCHES - 1:
                        continue
                    guess = progress[p] + 1
                    try:
                        view = store.load(p, customers_of(guess), due_until=0)
                        # Resume from what Redis holds, as the service does: a batch whose reply
                        # alone was lost is found applied here, not written twice.
                        if view.applied_offset < acknowledged[p]:
                            # Redis Cluster replicates asynchronously: a replica promoted before
                            # it had the master's last writes loses them (seen once here on a
                            # loaded machine: all of them). The service stops on it (StateLost,
                            # its verify step); here the loop redoes them from what Redis holds.
                            went_back.append((p, acknowledged[p], view.applied_offset))
                            acknowledged[p] = view.applied_offset
                        progress[p] = view.applied_offset
                        i = view.applied_offset + 1
                        if i >= BATCHES:
                            continue
                        if i != guess:
                            view = store.load(p, customers_of(i), due_until=0)
                        store.commit(batch(p, i, view.states))
                        acknowledged[p] = progress[p] = i
                        if killed_at and back_at is None and p == victim_p:
                            back_at = time.monotonic()
                    except REDIS_DOWN as e:
                        errors.append(type(e).__name__)
                        time.sleep(0.05)
            killer.join(5)
            assert killed_at, "the master was never killed"
            assert back_at is not None and errors, "the kill did not interrupt the run"

            # The victim's slot is now served by another node: its former replica.
            assert victim.proc is not None and victim.proc.poll() is not None
            assert cluster.owner(store.offset_key(victim_p)).port != victim.port

            # Every batch applied exactly once, none lost, on every partition.
            expected: dict[str, int] = {}
            for i in range(BATCHES):
                for c in customers_of(i):
                    expected[c] = expected.get(c, 0) + 1
            for p in PARTITIONS:
                assert store.applied_offset(p) == BATCHES - 1
                assert store.watermark(p) == 1000 + BATCHES - 1
                assert dict(store.partition_states(p)) == {c: b"\x01%d" % n for c, n in expected.items()}
                assert store.segment_counts([p]) == {p: BATCHES}
                assert store.outbox(p) == [(i + 1, b"p%db%d" % (p, i)) for i in range(BATCHES)]
                assert store.learn_entries(p) == [(f"{i:08d}", b"rows-%d" % i) for i in range(BATCHES)]
            print(
                f"failover: the victim's partition wrote again {back_at - killed_at[0]:.1f} s after "
                f"the kill; {len(errors)} transient errors: {sorted(set(errors))}; acknowledged writes "
                f"the failover lost (partition, acknowledged, found): {went_back}"
            )
        finally:
            store.close()


def retried(read: Callable[[], T], timeout: float = 10.0) -> T:
    """``read()``, again while it fails with a transient error, as the service's loop does."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return read()
        except REDIS_DOWN:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_the_service_rides_out_a_master_failover(
    stack: Stack, settings_env: dict[str, str], tmp_path: Path
) -> None:
    """``segstream run`` on a Redis Cluster (redis.cluster): a master is SIGKILLed mid-run; the
    service waits through the refused connections and CLUSTERDOWN (its REDIS_DOWN handling),
    resumes from the applied offsets on the promoted replica and exits 0 at the end of the log,
    every record applied once and every customer's features those of its events."""
    records = generate(customers=120, days=90, seed=11, malformed_fraction=0.0).records
    topic = settings_env["SEGSTREAM_TOPICS__INTERACTIONS"]
    produce(stack, topic, records)
    ends = end_offsets(stack, topic)
    n = len(records)
    with private_redis_cluster(tmp_path, node_timeout_ms=2000) as cluster:
        env = service_env(
            settings_env,
            SEGSTREAM_REDIS__URL=cluster.url,
            SEGSTREAM_REDIS__CLUSTER="true",
            SEGSTREAM_KAFKA__MAX_POLL_RECORDS="100",
            SEGSTREAM_LOG_LEVEL="DEBUG",
        )
        ns = settings_env["SEGSTREAM_REDIS__NAMESPACE"]
        store = FeatureStore(cluster.url, ns, cluster=True).start()
        seen = [-1] * len(ends)

        def applied() -> int:
            for p in range(len(ends)):
                with contextlib.suppress(*REDIS_DOWN):  # the test's own client meets the failover too
                    seen[p] = store.applied_offset(p)
            return sum(o + 1 for o in seen)

        out = tmp_path / "service.log"
        proc = start_service(env, out, until_idle=3)
        try:
            wait_until(lambda: applied() >= n // 5 or proc.poll() is not None, 120, "a fifth applied")
            victim = cluster.owner(store.offset_key(0))
            victim.kill()
            at_kill = applied()
            assert proc.poll() is None and at_kill < n, f"the run was over before the kill: {tail(out)}"
            assert exit_code(proc, 120, out) == 0, f"segstream run exited {proc.returncode}: {tail(out)}"
        finally:
            kill_all(proc)
        log = out.read_text(errors="replace")
        assert "Redis failed mid-batch" in log, tail(out)
        assert cluster.owner(store.offset_key(0)).port != victim.port
        # The test's client too: its first command to the dead master fails, and asks for the
        # refresh of the slot map that the next one runs.
        offsets = retried(lambda: [store.applied_offset(p) for p in range(len(ends))])
        assert offsets == [e - 1 for e in ends]
        stored = retried(lambda: {c: blob for _, c, blob in store.scan_customers(len(ends))})
        assert_features_equal(stored, direct_states(records))
        # Features, every customer's segment and the model those of an undisturbed run (on the
        # single Redis).
        client = redis.Redis.from_url(stack.redis_url)
        try:
            seg = assert_exact_state(
                stack, client, ns, settings_env, records, ends, tmp_path, same_model=True, store=store
            )
            # Every command that reads or writes a namespace, on the cluster (issue #24 item 1),
            # a replay of the topic into a shadow namespace included: the same segments.
            cli = {k: v for k, v in env.items() if k != "SEGSTREAM_LOG_LEVEL"}
            shadow, customer = unique("shadow"), sorted(stored)[0]
            done = {}
            for args in (
                ("status", "--json", "--metrics-url", ""),
                ("segments", "--json"),
                ("customer", customer, "--json"),
                ("changes", "-n", "5"),
                ("export", "--out", str(tmp_path / "export.jsonl")),
                ("recover", "--resume", "--dry-run"),
                ("replay", "--from-offset", "0", "--namespace", shadow, "--json"),
                ("diff", ns, shadow, "--json"),
                ("forget", customer),
            ):
                res = run_cli(cli, *args, timeout=120)
                assert res.returncode == 0, f"segstream {' '.join(args)} on a cluster: {res.stderr[-2000:]}"
                done[args[0]] = res.stdout
            assert len((tmp_path / "export.jsonl").read_text().splitlines()) == len(stored)
            diff = json.loads(done["diff"])["customers"]
            assert diff["only_a"] == diff["only_b"] == diff["changed_segment"] == 0, diff
            after = retried(lambda: {c for _, c, _ in store.scan_customers(len(ends))})
            assert after == set(stored) - {customer}
        finally:
            client.close()
            store.close()
    assert sum(CustomerState.unpack(b).events for b in stored.values()) == n
    assert seg["segment"] == seg["seq"] == seg["segment_since"] == seg["customers"], seg["differ"]
    assert seg["same_segments"] == 1 and seg["model_version"] == seg["reference_version"], seg
    print(
        f"\nservice on a cluster: {n} records, master killed at {at_kill} applied; all applied once; "
        f"model version {seg.get('model_version')}, the model and every customer's segment as undisturbed"
    )


def free_cluster_ports() -> int:
    """A first port such that it and the next five are free, and their cluster bus ports
    (port + 10000) too."""
    for base in range(20100, 22000, 10):
        ports = [*range(base, base + 6), *range(base + 10000, base + 10006)]
        try:
            with contextlib.ExitStack() as held:
                for port in ports:
                    s = held.enter_context(socket.socket())
                    s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise AssertionError("no six free ports with free bus ports in 20100-22000")


def test_the_cluster_stack_starts_once_comes_back_and_stops_clean(tmp_path: Path) -> None:
    """``scripts/stack.sh start --cluster`` (on ports and in a directory of the test's own, never
    the shared stack's): three masters and three replicas, a second start is a no-op, a stop
    leaves no process, and a start after it brings the same cluster and data back."""
    env = {**os.environ, "STACK_DIR": str(tmp_path / "stack"), "CLUSTER_PORT": str(free_cluster_ports())}
    port = int(env["CLUSTER_PORT"])

    def stack(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [str(STACK_SH), *args, "--cluster"]
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=False)

    def processes() -> list[str]:
        cmd = ["pgrep", "-f", str(tmp_path / "stack")]
        found = subprocess.run(cmd, capture_output=True, text=True, check=False)
        return found.stdout.split()

    try:
        started = stack("start")
        assert started.returncode == 0, started.stderr
        status = stack("status")
        assert status.returncode == 0, status.stdout + status.stderr
        assert status.stdout.count(", master, cluster_state ok") == 3, status.stdout
        assert status.stdout.count(", slave, cluster_state ok") == 3, status.stdout
        pids = sorted(processes())
        assert len(pids) == 6
        again = stack("start")
        assert again.returncode == 0 and sorted(processes()) == pids, again.stderr
        settings = (tmp_path / "stack" / "segstream.env").read_text()
        assert f"SEGSTREAM_REDIS__URL=redis://localhost:{port}/0" in settings
        assert "SEGSTREAM_REDIS__CLUSTER=true" in settings

        store = FeatureStore(f"redis://localhost:{port}/0", "st", cluster=True).start()
        store.commit(batch(2, 0, {c: None for c in customers_of(0)}))
        store.close()
        stopped = stack("stop")
        assert stopped.returncode == 0 and processes() == [], stopped.stderr
        assert stack("status").returncode == 3

        restarted = stack("start")
        assert restarted.returncode == 0, restarted.stderr
        store = FeatureStore(f"redis://localhost:{port}/0", "st", cluster=True).start()
        assert retried(lambda: store.applied_offset(2)) == 0
        assert dict(store.partition_states(2)) == dict.fromkeys(customers_of(0), b"\x011")
        store.close()
    finally:
        stack("stop")
    assert processes() == []


def test_the_cluster_setting_must_match_the_server(
    redis_cluster: PrivateRedisCluster, tmp_path: Path
) -> None:
    """A cluster node taken for a single Redis (its batches of other slots would fail with
    MOVED) and a single Redis taken for a cluster both stop the start with the setting to change."""
    with pytest.raises(ConfigError, match=r"is a node of a Redis Cluster but redis.cluster is false"):
        FeatureStore(redis_cluster.url, unique("t")).start()
    with private_redis(tmp_path) as single:
        with pytest.raises(ConfigError, match=r"is not a Redis Cluster node but redis.cluster is true"):
            FeatureStore(single.url, unique("t"), cluster=True).start()
        FeatureStore(single.url, unique("t")).start().close()  # as before
