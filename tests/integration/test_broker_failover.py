"""A broker of a three-node cluster dies (SIGKILL) while the service is mid-log, and it is the
leader of input and output partitions (issue #24).

The topics are made by ``segstream topics create`` with replication factor 3 and min ISR 2, the
producers use acks=all: the other two brokers take over the dead one's partitions, and the
service must carry on through the leader change without a restart. What it must show: no input
record skipped (every offset applied, each valid event once, every customer's features those of
an uninterrupted run, every malformed record dead-lettered), no segment change lost (each
customer's changes numbered 1..seq without a gap, the newest one its state), and a change
published twice (a retried send, a replayed outbox) only ever with the same ``change_id`` and
payload.

The cluster and Redis are the test's own (servers.py): the shared stack is never touched.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import redis
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType

from .harness import (
    Stack,
    applied_count,
    assert_exact_state,
    assert_topics_hold_the_state,
    customer_states,
    end_offsets,
    exit_code,
    kill_all,
    produce_generated,
    read_topic,
    run_cli,
    service_env,
    start_service,
    tail,
    unique,
    wait_until,
)
from .servers import private_cluster, private_redis

TOPICS = {
    "interactions": "interactions",
    "dlq": "interactions.dlq",
    "changes": "segments.changes",
    "current": "segments.current",
    "model": "segments.model",
    "model_events": "segments.model-events",
}


def describe(bootstrap: str, topics: list[str]) -> dict[str, list[dict]]:
    """topic -> its partitions (leader_id, replica_nodes, isr_nodes), by partition index."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="test-describe")
    try:
        return {
            t["name"]: sorted(t["partitions"], key=lambda p: p["partition_index"])
            for t in admin.describe_topics(topics)
        }
    finally:
        admin.close()


def min_insync(bootstrap: str, topic: str) -> str:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="test-describe")
    try:
        cfg = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        return str(cfg["topic"][topic]["min.insync.replicas"]["value"])
    finally:
        admin.close()


def test_service_rides_out_the_death_of_a_partition_leader(tmp_path: Path) -> None:
    began = time.monotonic()
    with private_cluster(tmp_path) as cluster, private_redis(tmp_path) as rds:
        stack = Stack(bootstrap=cluster.bootstrap, redis_url=rds.url)
        ns = unique("fo")
        env = {
            "SEGSTREAM_KAFKA__BOOTSTRAP_SERVERS": cluster.bootstrap,
            "SEGSTREAM_KAFKA__GROUP_ID": unique("g"),
            "SEGSTREAM_REDIS__URL": rds.url,
            "SEGSTREAM_REDIS__NAMESPACE": ns,
            "SEGSTREAM_TOPICS__REPLICATION_FACTOR": "3",
            "SEGSTREAM_TOPICS__MIN_INSYNC_REPLICAS": "2",
            **{f"SEGSTREAM_TOPICS__{k.upper()}": v for k, v in TOPICS.items()},
        }
        started = time.monotonic() - began
        res = run_cli(env, "topics", "create", timeout=120)
        assert res.returncode == 0, res.stderr[-2000:]
        layout = describe(cluster.bootstrap, list(TOPICS.values()))
        for topic, parts in layout.items():
            assert all(len(p["replica_nodes"]) == 3 for p in parts), (topic, parts)
            assert min_insync(cluster.bootstrap, topic) == "2", topic

        # 400 customers (~49k records): the kill still lands mid-log with changes flowing (both
        # checked below), and the run cannot end before the dead leader's partitions move.
        records, ends = produce_generated(stack, env, customers=400, seed=11)
        n = len(records)
        client = redis.Redis.from_url(rds.url)
        out = tmp_path / "service.log"
        proc = start_service(service_env(env, SEGSTREAM_KAFKA__MAX_POLL_RECORDS="200"), out, until_idle=3)
        try:
            # Mid-run, with segment changes flowing (the model's first version is out).
            def mid_run() -> bool:
                return proc.poll() is not None or (
                    applied_count(client, ns) >= n // 4 and sum(end_offsets(stack, TOPICS["changes"])) > 0
                )

            wait_until(mid_run, 180, "a quarter of the log applied and changes published", step=0.2)
            assert proc.poll() is None, f"exited early: {tail(out)}"
            # The broker that leads the most input and change partitions right now.
            leaders = describe(cluster.bootstrap, [TOPICS["interactions"], TOPICS["changes"]])
            led = {
                node: {
                    t: [p["partition_index"] for p in parts if p["leader_id"] == node]
                    for t, parts in leaders.items()
                }
                for node in cluster.nodes
            }
            victim = max(cluster.nodes, key=lambda node: sum(len(ps) for ps in led[node].values()))
            assert all(led[victim].values()), f"node {victim} leads no input or no change partition: {led}"
            applied_at_kill = applied_count(client, ns)
            changes_at_kill = sum(end_offsets(stack, TOPICS["changes"]))
            assert applied_at_kill < n * 0.8, (
                f"the log was nearly done ({applied_at_kill} of {n}) before the kill"
            )
            cluster.kill(victim)
            killed_at = time.monotonic()
            assert exit_code(proc, 300, out) == 0, f"segstream run exited {proc.returncode}: {tail(out)}"
            finished = time.monotonic() - killed_at
        finally:
            kill_all(proc)

        # The dead broker's partitions moved to the other two, which hold every one in sync.
        survivors = set(cluster.nodes) - {victim}
        after = describe(cluster.bootstrap, list(TOPICS.values()))
        for topic, parts in after.items():
            for p in parts:
                assert p["leader_id"] in survivors, (topic, p)
                assert set(p["isr_nodes"]) == survivors, (topic, p)
        assert end_offsets(stack, TOPICS["interactions"]) == ends, "the input lost acknowledged records"

        # No change lost, duplicates only as copies: assert_topics_hold_the_state checks one
        # payload per change_id, one change per (customer, seq), and that every customer's newest
        # change (and its compacted record) is its state. Over that: no seq is missing.
        counts = assert_topics_hold_the_state(stack, client, ns, TOPICS)
        assert counts["changes"] > changes_at_kill, "no change was published after the kill"
        seqs: dict[str, set[int]] = {}
        for _, value in read_topic(stack, TOPICS["changes"]):
            if value is not None:
                change = json.loads(value)
                seqs.setdefault(change["customer_id"], set()).add(change["seq"])
        states = customer_states(client, ns)
        from models.features import CustomerState

        for cid, blob in states.items():
            seq = CustomerState.unpack(blob).seq
            assert seqs.get(cid, set()) == set(range(1, seq + 1)), (
                f"{cid}: state at seq {seq}, published {seqs.get(cid)}"
            )
        assert set(seqs) <= set(states), "changes of customers without a state"

        # Every malformed record dead-lettered (once, or again as the same record).
        malformed = sum(r.malformed for r in records)
        letters = [json.loads(v) for _, v in read_topic(stack, TOPICS["dlq"], partitions=4) if v is not None]
        sources = Counter((d["source_partition"], d["source_offset"]) for d in letters)
        assert len(sources) == malformed, f"{len(sources)} records dead-lettered, {malformed} malformed"

        # Every input offset applied, each valid event once, features and model equal an
        # uninterrupted run's (in its own namespace, on the same two-broker cluster; it writes to
        # the same output topics, which were checked above).
        seg = assert_exact_state(stack, client, ns, env, records, ends, tmp_path, same_model=True)
        client.close()
    print(
        f"\nbroker failover: cluster up in {started:.0f} s; {n} records, node {victim} killed at "
        f"{applied_at_kill} applied ({changes_at_kill} changes out), leading {led[victim]}; run finished "
        f"{finished:.0f} s later; {counts['changes']} changes, {counts['duplicates']} duplicate copies, "
        f"{len(letters)} dead letters for {malformed} malformed; {seg['customers']} customers' features "
        f"equal; {time.monotonic() - began:.0f} s in all"
    )
