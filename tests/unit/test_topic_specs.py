"""The topics segstream creates carry the settings' replication factor and min ISR, and its
producers wait for every in-sync replica (acks=all) without writing retried records twice."""

from __future__ import annotations

from typing import Any

import pytest

from stream import config
from stream.errors import ConfigError
from stream.io import kafka as kafka_io


def test_single_node_defaults_are_one_replica_and_one_in_sync() -> None:
    specs = kafka_io.topic_specs(config.load())
    assert {s.replication_factor for s in specs} == {1}
    assert {s.topic_configs["min.insync.replicas"] for s in specs} == {"1"}


def test_a_cluster_gets_three_replicas_and_two_in_sync_on_every_topic() -> None:
    s = config.load(overrides={"topics": {"replication_factor": 3, "min_insync_replicas": 2}})
    specs = {spec.name: spec for spec in kafka_io.topic_specs(s)}
    assert len(specs) == 6
    for spec in specs.values():
        assert spec.replication_factor == 3, spec.name
        assert spec.topic_configs["min.insync.replicas"] == "2", spec.name
    # The other per-topic limits stay beside the durability settings.
    assert specs[s.topics.out("current")].topic_configs["cleanup.policy"] == "compact"
    model = specs[s.topics.out("model")].topic_configs
    assert model["cleanup.policy"] == "compact"
    assert model["max.message.bytes"] == str(kafka_io.MAX_OUTPUT_RECORD_BYTES)
    assert specs[s.topics.out("dlq")].topic_configs["max.message.bytes"] == str(
        kafka_io.DEAD_LETTER_TOPIC_BYTES
    )
    assert specs[s.topics.interactions].num_partitions == s.topics.partitions


def test_min_insync_above_the_replication_factor_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="min_insync_replicas \\(2\\) is above replication_factor \\(1\\)"):
        config.load(overrides={"topics": {"min_insync_replicas": 2}})
    monkeypatch.setenv("SEGSTREAM_TOPICS__REPLICATION_FACTOR", "3")
    monkeypatch.setenv("SEGSTREAM_TOPICS__MIN_INSYNC_REPLICAS", "2")
    topics = config.load().topics
    assert (topics.replication_factor, topics.min_insync_replicas) == (3, 2)


def test_the_producer_waits_for_all_in_sync_replicas_idempotently(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def connect(cls: type, settings: config.Settings, conf: dict[str, Any]) -> str:
        seen.update(conf, cls=cls)
        return "producer"

    monkeypatch.setattr(kafka_io, "_connect", connect)
    assert kafka_io.make_producer(config.load(), linger_ms=20) == "producer"
    assert seen["cls"] is kafka_io.KafkaProducer
    assert seen["acks"] == "all"
    assert seen["enable_idempotence"] is True
    assert seen["linger_ms"] == 20
