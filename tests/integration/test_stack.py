"""The local stack itself: the broker and Redis answer and behave as the service expects.

stop is not tested here: every other integration test shares the running stack.
"""

from __future__ import annotations

import subprocess
import time

import redis
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic

from .harness import ROOT, STACK_SH, Stack, create_topics, delete_topics, unique


def test_broker_answers(kafka_admin: KafkaAdminClient) -> None:
    cluster = kafka_admin.describe_cluster()
    assert len(cluster["brokers"]) == 1
    assert isinstance(kafka_admin.list_topics(), list)


def test_produce_consume_round_trip(stack: Stack, kafka_admin: KafkaAdminClient) -> None:
    topic = unique("rt")
    create_topics(kafka_admin, [NewTopic(topic, num_partitions=2, replication_factor=1)])
    try:
        sent = [(f"c{i % 5}".encode(), f'{{"n": {i}}}'.encode()) for i in range(50)]
        producer = KafkaProducer(bootstrap_servers=stack.bootstrap, acks="all", linger_ms=5)
        for key, value in sent:
            producer.send(topic, key=key, value=value)
        producer.flush(timeout=30)
        producer.close()

        consumer = KafkaConsumer(
            topic,
            bootstrap_servers=stack.bootstrap,
            group_id=unique("g"),
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        got: list[tuple[bytes, bytes]] = []
        deadline = time.monotonic() + 30
        while len(got) < len(sent) and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                got.extend((r.key, r.value) for r in records)
        consumer.close()
        # Order holds per key (same key, same partition), not across partitions.
        assert sorted(got) == sorted(sent)
        for key in {k for k, _ in sent}:
            assert [v for k, v in got if k == key] == [v for k, v in sent if k == key]
    finally:
        delete_topics(kafka_admin, [topic])


def topic_config(admin: KafkaAdminClient, topic: str, key: str) -> str | None:
    """One config value of a topic. kafka-python 3.x returns nested dicts, 2.x raw responses."""
    result = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    if isinstance(result, dict):
        return result.get("topic", {}).get(topic, {}).get(key, {}).get("value")
    for response in result:
        for resource in response.resources:
            for entry in resource[4]:
                if entry[0] == key:
                    return str(entry[1])
    return None


def test_topic_names_fixture_layout(
    stack: Stack, kafka_admin: KafkaAdminClient, topic_names: dict[str, str]
) -> None:
    assert set(topic_names) == {"interactions", "dlq", "changes", "current", "model", "model_events"}
    consumer = KafkaConsumer(bootstrap_servers=stack.bootstrap)
    try:
        assert len(consumer.partitions_for_topic(topic_names["interactions"]) or ()) == 4
    finally:
        consumer.close()
    assert topic_config(kafka_admin, topic_names["current"], "cleanup.policy") == "compact"
    assert topic_config(kafka_admin, topic_names["model"], "cleanup.policy") == "compact"
    # Not overridden: describe_configs lists only modified entries by default.
    assert topic_config(kafka_admin, topic_names["changes"], "cleanup.policy") in (None, "delete")


def test_redis_answers_with_aof(redis_client: redis.Redis, namespace: str) -> None:
    assert redis_client.ping() is True
    assert redis_client.config_get("appendonly") == {"appendonly": "yes"}
    assert redis_client.config_get("appendfsync") == {"appendfsync": "everysec"}
    redis_client.set(f"{namespace}:probe", b"\x00\xff")
    assert redis_client.get(f"{namespace}:probe") == b"\x00\xff"


def test_settings_env(settings_env: dict[str, str], namespace: str, topic_names: dict[str, str]) -> None:
    assert settings_env["SEGSTREAM_REDIS__NAMESPACE"] == namespace
    assert settings_env["SEGSTREAM_TOPICS__MODEL_EVENTS"] == topic_names["model_events"]
    assert settings_env["SEGSTREAM_KAFKA__BOOTSTRAP_SERVERS"].startswith("localhost:")


def test_start_twice_is_a_noop(stack: Stack) -> None:
    pid_file = ROOT / ".cache" / "stack" / "kafka" / "kafka.pid"
    before = pid_file.read_text().strip()
    for _ in range(2):
        proc = subprocess.run(
            [str(STACK_SH), "start"], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
        )
        assert proc.returncode == 0, proc.stderr
    assert pid_file.read_text().strip() == before
    status = subprocess.run(
        [str(STACK_SH), "status"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert status.returncode == 0
    assert "kafka: running" in status.stdout
    assert "redis: running" in status.stdout
