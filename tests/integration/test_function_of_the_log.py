"""Segments as a function of the log: live runs of one log with one, two and four worker processes,
and a replay of it, publish the same changes on every partition (issue #23 item 3; the learner's
merge, decision 0028, and followers that assign with the version in force at their rows' place
in it, decision 0032).

Each run reads the same input topic with its own consumer group into its own namespace and
suffixed output topics. How kafka-python's fetches mix the four partitions differs from run to
run (measured before the merge: 160-388 of 1,500 customers published in other segments), and so
does how far a follower is ahead of the learner; the published payloads (the wall-clock emit
time travels only as a header) must not.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import redis
from kafka import KafkaConsumer, TopicPartition

from models.sim import generate
from stream.config import OUTPUT_NAMES

from .harness import (
    Stack,
    applied_count,
    children_of,
    delete_namespace,
    delete_topics,
    produce,
    run_cli,
    run_to_end,
    service_env,
    start_service,
    tail,
    unique,
    wait_until,
)


def test_one_two_and_four_workers_and_a_replay_publish_the_same_changes(
    stack: Stack,
    redis_client: redis.Redis,
    kafka_admin: object,
    topic_names: dict[str, str],
    settings_env: dict[str, str],
    tmp_path: Path,
) -> None:
    log = generate(customers=600, days=60, seed=17, malformed_fraction=0.002)
    topic = topic_names["interactions"]
    produce(stack, topic, log.records)
    runs: list[tuple[str, str]] = []  # (namespace, output suffix)
    try:
        for k, workers in enumerate((1, 2, 4)):
            ns, suffix = unique("live"), f".live{k}"
            runs.append((ns, suffix))
            env = service_env(
                settings_env,
                SEGSTREAM_REDIS__NAMESPACE=ns,
                SEGSTREAM_KAFKA__GROUP_ID=unique("g"),
                SEGSTREAM_TOPICS__SUFFIX=suffix,
                SEGSTREAM_SERVICE__WORKERS=str(workers),
            )
            run_to_end(env, tmp_path / f"live{k}.log", until_idle=2)
        ns = unique("replay")
        runs.append((ns, f".{ns}"))
        res = run_cli(settings_env, "replay", "--from-offset", "0", "--namespace", ns)
        assert res.returncode == 0, res.stderr

        published = [by_partition(stack, topic_names["changes"] + suffix) for _, suffix in runs]
        total = sum(len(v) for v in published[0].values())
        assert total > 500, total
        for k, other in enumerate(published[1:], 1):
            for p in range(4):
                same = sum(a == b for a, b in zip(other[p], published[0][p], strict=False))
                assert other[p] == published[0][p], (
                    f"run {k} ({runs[k][1]}) partition {p}: {len(other[p])} changes against "
                    f"{len(published[0][p])}, the first {same} equal"
                )
    finally:
        for ns, suffix in runs:
            delete_namespace(redis_client, ns)
            delete_topics(kafka_admin, [topic_names[o] + suffix for o in OUTPUT_NAMES])  # type: ignore[arg-type]


def test_a_follower_killed_mid_log_and_a_rerun_publish_what_a_replay_publishes(
    stack: Stack,
    redis_client: redis.Redis,
    kafka_admin: object,
    topic_names: dict[str, str],
    settings_env: dict[str, str],
    tmp_path: Path,
) -> None:
    """SIGKILL of a `--workers 2` follower mid-log (it may die between its learn-log rows and its
    write: the supervisor stops the set), then the same command to the end: every change a
    replay publishes, once per id (a restart publishes again what a crash kept from the broker)."""
    log = generate(customers=400, days=60, seed=23, malformed_fraction=0.002)
    topic = topic_names["interactions"]
    produce(stack, topic, log.records)
    env = service_env(settings_env, SEGSTREAM_SERVICE__WORKERS="2", SEGSTREAM_KAFKA__MAX_POLL_RECORDS="200")
    ns = settings_env["SEGSTREAM_REDIS__NAMESPACE"]
    replay = unique("replay")
    try:
        sup = start_service(env, tmp_path / "workers.log", until_idle=2)
        try:
            wait_until(
                lambda: applied_count(redis_client, ns) >= len(log.records) // 3, 120, "a third applied"
            )
            follower = [
                p
                for p in children_of(sup.pid)
                if "workers 1 2" in Path(f"/proc/{p}/cmdline").read_text().replace("\0", " ")
            ]
            assert len(follower) == 1, tail(tmp_path / "workers.log")
            os.kill(follower[0], signal.SIGKILL)
            assert sup.wait(timeout=60) == 1, tail(tmp_path / "workers.log")
        finally:
            if sup.poll() is None:
                sup.kill()
                sup.wait()
        assert applied_count(redis_client, ns) < len(log.records), "the log ended before the kill"
        run_to_end(env, tmp_path / "workers.log", until_idle=2)
        res = run_cli(settings_env, "replay", "--from-offset", "0", "--namespace", replay)
        assert res.returncode == 0, res.stderr
        rerun = by_partition(stack, topic_names["changes"])
        alone = by_partition(stack, topic_names["changes"] + f".{replay}")
        assert sum(len(v) for v in alone.values()) > 300
        for p in range(4):
            assert once_per_id(rerun[p]) == alone[p], f"partition {p}"
    finally:
        delete_namespace(redis_client, replay)
        delete_topics(kafka_admin, [topic_names[o] + f".{replay}" for o in OUTPUT_NAMES])  # type: ignore[arg-type]


def once_per_id(values: list[bytes]) -> list[bytes]:
    """The changes in order, each id once; a second copy must be the same payload."""
    seen: dict[str, bytes] = {}
    out = []
    for v in values:
        cid = json.loads(v)["change_id"]
        if cid in seen:
            assert seen[cid] == v, f"change {cid} published with two payloads"
            continue
        seen[cid] = v
        out.append(v)
    return out


def by_partition(stack: Stack, topic: str) -> dict[int, list[bytes]]:
    """Every record value of a 4-partition topic, per partition in offset order."""
    consumer = KafkaConsumer(bootstrap_servers=stack.bootstrap, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in range(4)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        out: dict[int, list[bytes]] = {p: [] for p in range(4)}
        deadline = time.monotonic() + 60
        while any(consumer.position(tp) < end[tp] for tp in tps):
            assert time.monotonic() < deadline, f"could not read {topic} to its end"
            for tp, msgs in consumer.poll(timeout_ms=500).items():
                out[tp.partition] += [m.value for m in msgs]
        return out
    finally:
        consumer.close()
