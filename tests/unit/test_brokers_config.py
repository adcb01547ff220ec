"""docker-compose.yml's `brokers` profile is in step with the script's three-node cluster
(config/kafka/brokers.properties, `scripts/stack.sh start --brokers 3`): nothing runs Docker here,
so the files are compared."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from stream import config

ROOT = Path(__file__).resolve().parents[2]
NODES = ("kafka-1", "kafka-2", "kafka-3")


def _properties() -> dict[str, str]:
    text = (ROOT / "config" / "kafka" / "brokers.properties").read_text()
    pairs = (line.split("=", 1) for line in text.splitlines() if line.strip() and not line.startswith("#"))
    return {k.strip(): v.strip() for k, v in pairs}


def _services() -> dict[str, dict]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]


def test_the_compose_nodes_have_the_scripts_cluster_settings() -> None:
    props = _properties()
    assert props["node.id"] == "@NODE_ID@" and props["controller.quorum.voters"] == "@VOTERS@"
    services = _services()
    for i, name in enumerate(NODES, start=1):
        node = services[name]
        assert node["profiles"] == ["brokers"], name
        env = {k: str(v) for k, v in node["environment"].items()}
        for key, value in props.items():
            if key in ("node.id", "controller.quorum.voters"):
                continue
            assert env.get("KAFKA_" + key.upper().replace(".", "_")) == value, (name, key)
        assert env["KAFKA_NODE_ID"] == str(i)
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        voters = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")
        assert voters == [f"{n}@kafka-{n}:9093" for n in (1, 2, 3)]
    # One cluster id for all three.
    assert len({services[name]["environment"]["CLUSTER_ID"] for name in NODES}) == 1


def test_the_services_topics_are_made_with_replication_3_and_min_isr_2_on_both() -> None:
    topics = _services()["topics-brokers"]
    assert topics["command"] == ["topics", "create"] and topics["profiles"] == ["brokers"]
    env = {k: str(v) for k, v in topics["environment"].items()}
    assert env["SEGSTREAM_KAFKA__BOOTSTRAP_SERVERS"] == "kafka-1:9092,kafka-2:9092,kafka-3:9092"
    # The values parse into the settings the service uses (as the container's env would).
    s = config.Settings(
        topics={
            "replication_factor": env["SEGSTREAM_TOPICS__REPLICATION_FACTOR"],
            "min_insync_replicas": env["SEGSTREAM_TOPICS__MIN_INSYNC_REPLICAS"],
        }
    )
    assert (s.topics.replication_factor, s.topics.min_insync_replicas) == (3, 2)
    script = (ROOT / "scripts" / "stack.sh").read_text()
    assert re.search(r"^export SEGSTREAM_TOPICS__REPLICATION_FACTOR=3$", script, re.M)
    assert re.search(r"^export SEGSTREAM_TOPICS__MIN_INSYNC_REPLICAS=2$", script, re.M)


def test_profiled_services_stay_out_of_a_plain_up() -> None:
    """`docker compose up` without the profile starts what it did before: no service of the
    default set depends on a node of the cluster."""
    services = _services()
    for name, svc in services.items():
        if "brokers" in svc.get("profiles", []):
            continue
        assert not set(svc.get("depends_on", {})) & {*NODES, "topics-brokers"}, name
