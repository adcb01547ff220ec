"""Segments as a function of the log: three clean live runs of one log, and a replay of it, publish
the same changes on every partition (issue #23 item 3; the learner's merge, decision 0028).

Each run reads the same input topic with its own consumer group into its own namespace and
suffixed output topics. How kafka-python's fetches mix the four partitions differs from run to
run (measured before the merge: 160-388 of 1,500 customers published in other segments); the
published payloads (the wall-clock emit time travels only as a header) must not.
"""

from __future__ import annotations

import time
from pathlib import Path

import redis
from kafka import KafkaConsumer, TopicPartition

from models.sim import generate
from stream.config import OUTPUT_NAMES

from .harness import (
    Stack,
    delete_namespace,
    delete_topics,
    produce,
    run_cli,
    run_to_end,
    service_env,
    unique,
)


def test_three_live_runs_and_a_replay_publish_the_same_changes(
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
        for k in range(3):
            ns, suffix = unique("live"), f".live{k}"
            runs.append((ns, suffix))
            env = service_env(
                settings_env,
                SEGSTREAM_REDIS__NAMESPACE=ns,
                SEGSTREAM_KAFKA__GROUP_ID=unique("g"),
                SEGSTREAM_TOPICS__SUFFIX=suffix,
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
                    f"run {k} partition {p}: {len(other[p])} changes against {len(published[0][p])}, "
                    f"the first {same} equal"
                )
    finally:
        for ns, suffix in runs:
            delete_namespace(redis_client, ns)
            delete_topics(kafka_admin, [topic_names[o] + suffix for o in OUTPUT_NAMES])  # type: ignore[arg-type]


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
