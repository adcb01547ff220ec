"""Fixtures for tests against the real local stack (Kafka 4.x KRaft broker + Redis), for
tests/integration and the Redis runs of tests/contract (they are requested lazily: a test that
does not ask for them never starts the stack).

The stack is started once per session by ``scripts/stack.sh start`` (idempotent: when a
developer already started it, the fixture costs one quick health check). Every test gets
its own Redis namespace, topic names and consumer group, so tests never see each other's
data and the shared broker needs no reset between tests.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest
import redis
from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from tests.integration.harness import ROOT, STACK_SH, Stack, create_topics, delete_topics, unique
from tests.integration.servers import PrivateRedisCluster, private_redis_cluster

# Per-test topics: key -> (suffix, partitions, topic configs). Mirrors the production layout:
# interactions and changes keyed by customer id over 4 partitions, the latest-state topics
# compacted, the dead letters and model events on a single partition (total order).
_COMPACT = {"cleanup.policy": "compact"}
TOPIC_LAYOUT: dict[str, tuple[str, int, dict[str, str]]] = {
    "interactions": ("interactions", 4, {}),
    "dlq": ("interactions.dlq", 1, {}),
    "changes": ("segments.changes", 4, {}),
    "current": ("segments.current", 4, _COMPACT),
    "model": ("segments.model", 1, _COMPACT),
    "model_events": ("segments.model-events", 1, {}),
}


@pytest.fixture(scope="session")
def stack() -> Stack:
    kafka_port = os.environ.get("KAFKA_PORT", "19092")
    redis_port = os.environ.get("REDIS_PORT", "16379")
    proc = subprocess.run(
        [str(STACK_SH), "start"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(
            f"scripts/stack.sh start failed ({proc.returncode}): {proc.stderr.strip()}", pytrace=False
        )
    return Stack(bootstrap=f"localhost:{kafka_port}", redis_url=f"redis://localhost:{redis_port}/0")


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedisCluster]:
    """A Redis Cluster of the session's own (never the shared stack's Redis): tests on it use
    namespaces of their own and leave their keys; the cluster goes with the session."""
    with private_redis_cluster(tmp_path_factory.mktemp("redis-cluster")) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def kafka_admin(stack: Stack) -> Iterator[KafkaAdminClient]:
    admin = KafkaAdminClient(bootstrap_servers=stack.bootstrap, client_id="tests-admin")
    yield admin
    admin.close()


@pytest.fixture
def redis_client(stack: Stack) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(stack.redis_url, decode_responses=False)
    yield client
    client.close()


@pytest.fixture
def namespace(redis_client: redis.Redis) -> Iterator[str]:
    ns = unique("t")
    yield ns
    # SCAN, not KEYS: never block the server that other tests are using.
    batch: list[bytes] = []
    for key in redis_client.scan_iter(match=f"{ns}*", count=1000):
        batch.append(key)
        if len(batch) >= 500:
            redis_client.delete(*batch)
            batch.clear()
    if batch:
        redis_client.delete(*batch)


@pytest.fixture
def topic_names(kafka_admin: KafkaAdminClient) -> Iterator[dict[str, str]]:
    prefix = unique("t")
    names = {key: f"{prefix}.{suffix}" for key, (suffix, _, _) in TOPIC_LAYOUT.items()}
    create_topics(
        kafka_admin,
        [
            NewTopic(names[key], num_partitions=parts, replication_factor=1, topic_configs=dict(configs))
            for key, (_, parts, configs) in TOPIC_LAYOUT.items()
        ],
    )
    yield names
    delete_topics(kafka_admin, list(names.values()))


@pytest.fixture
def settings_env(stack: Stack, namespace: str, topic_names: dict[str, str]) -> dict[str, str]:
    """Environment for running the service (in-process settings or a subprocess) on this test's
    namespace, topics and consumer group."""
    return {
        "SEGSTREAM_KAFKA__BOOTSTRAP_SERVERS": stack.bootstrap,
        "SEGSTREAM_KAFKA__GROUP_ID": unique("g"),
        "SEGSTREAM_REDIS__URL": stack.redis_url,
        "SEGSTREAM_REDIS__NAMESPACE": namespace,
        "SEGSTREAM_TOPICS__INTERACTIONS": topic_names["interactions"],
        "SEGSTREAM_TOPICS__DLQ": topic_names["dlq"],
        "SEGSTREAM_TOPICS__CHANGES": topic_names["changes"],
        "SEGSTREAM_TOPICS__CURRENT": topic_names["current"],
        "SEGSTREAM_TOPICS__MODEL": topic_names["model"],
        "SEGSTREAM_TOPICS__MODEL_EVENTS": topic_names["model_events"],
    }
