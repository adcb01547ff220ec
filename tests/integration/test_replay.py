"""Replay: the same log twice gives identical change streams and states; a what-if config differs.

Logs are replayed through ``segstream replay`` (stream.cli.main), into namespaces and output
topic suffixes of their own; the topics are read back in full and compared payload by payload.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from models.sim import generate
from stream.cli import main
from stream.io.logfiles import write_lines

from .harness import Stack, delete_topics, unique

CUSTOMERS, DAYS, SEED = 300, 60, 11
# Small model boundaries so that segments exist (and move) within a small log.
MODEL_ENV = {"SEGSTREAM_MODEL__WARMUP_VECTORS": "500", "SEGSTREAM_MODEL__UPDATE_EVERY": "500"}


@pytest.fixture(scope="module")
def event_log(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, int]:
    """(path, records, malformed records) of a seeded generated log with 2 % malformed records."""
    log = generate(CUSTOMERS, DAYS, SEED, malformed_fraction=0.02)
    path = tmp_path_factory.mktemp("replay") / "events.jsonl.gz"
    write_lines(path, (r.value for r in log.records))
    return path, len(log.records), len(log.malformed_kinds)


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, settings_env: dict[str, str]) -> dict[str, str]:
    env = {**settings_env, **MODEL_ENV}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str], cli_env: dict[str, str]) -> Run:
    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        rc = main(list(args))
        out, err = capsys.readouterr()
        return rc, out, err

    return run


@pytest.fixture
def shadow(
    redis_client: redis.Redis, kafka_admin: KafkaAdminClient, topic_names: dict[str, str]
) -> Iterator[Callable[[], str]]:
    """A factory of shadow namespaces; their keys and suffixed topics are removed afterwards."""
    made: list[str] = []

    def new() -> str:
        ns = unique("r")
        made.append(ns)
        return ns

    yield new
    for ns in made:
        keys = list(redis_client.scan_iter(match=f"{ns}:*", count=1000))
        for i in range(0, len(keys), 500):
            redis_client.delete(*keys[i : i + 500])
        delete_topics(kafka_admin, [f"{t}.{ns}" for k, t in topic_names.items() if k != "interactions"])


def read_topic(stack: Stack, topic: str) -> dict[int, list[tuple[dict, dict[str, bytes]]]]:
    """Every record of a topic: partition -> [(decoded payload, headers)] in offset order."""
    consumer = KafkaConsumer(bootstrap_servers=stack.bootstrap, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        assert tps, f"topic {topic} not found"
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        out: dict[int, list[tuple[dict, dict[str, bytes]]]] = {tp.partition: [] for tp in tps}
        deadline = time.monotonic() + 60
        while any(consumer.position(tp) < end[tp] for tp in tps):
            assert time.monotonic() < deadline, f"could not read {topic} to its end"
            for tp, msgs in consumer.poll(timeout_ms=500).items():
                out[tp.partition] += [(json.loads(m.value), dict(m.headers or [])) for m in msgs]
        return out
    finally:
        consumer.close()


def states(client: redis.Redis, ns: str) -> dict[bytes, bytes]:
    """(partition tag + customer id) -> packed state, for every customer of the namespace."""
    out: dict[bytes, bytes] = {}
    for key in client.scan_iter(match=f"{ns}:*:cb:*", count=1000):
        tag = key[len(ns) :].split(b":cb:")[0]
        for c, blob in client.hgetall(key).items():
            out[tag + b":" + c] = blob
    return dict(sorted(out.items()))


def _replay(run: Run, path: Path, ns: str, *extra: str) -> dict:
    rc, out, err = run("replay", str(path), "--namespace", ns, "--json", *extra)
    assert rc == 0, err
    return json.loads(out)


def _diff(run: Run, a: str, b: str) -> tuple[dict, str]:
    rc, out, err = run("diff", a, b, "--json")
    assert rc == 0, err
    rc, text, err = run("diff", a, b)
    assert rc == 0, err
    return json.loads(out), text


def test_replay_twice_is_identical_and_a_what_if_differs(
    stack: Stack,
    redis_client: redis.Redis,
    topic_names: dict[str, str],
    event_log: tuple[Path, int, int],
    run_cli: Run,
    shadow: Callable[[], str],
) -> None:
    path, n_records, n_malformed = event_log
    a, b, c = shadow(), shadow(), shadow()
    sa = _replay(run_cli, path, a, "--partitions", "4")
    sb = _replay(run_cli, path, b, "--partitions", "4", "--suffix", f".{b}")
    for s in (sa, sb):
        assert s["records"] == n_records
        assert s["dead_letters"] >= n_malformed
        assert s["applied"] + s["dead_letters"] <= n_records
        assert s["changes"] > 0
        assert s["model_version"] > 1
    assert {k: v for k, v in sa.items() if k not in ("namespace", "seconds", "rate", "output_topics")} == {
        k: v for k, v in sb.items() if k not in ("namespace", "seconds", "rate", "output_topics")
    }

    # The change streams, payload by payload (the emit time is a header, not in the payload).
    ca = read_topic(stack, f"{topic_names['changes']}.{a}")
    cb = read_topic(stack, f"{topic_names['changes']}.{b}")
    assert sum(len(v) for v in ca.values()) == sa["changes"]
    assert {p: [x for x, _ in v] for p, v in ca.items()} == {p: [x for x, _ in v] for p, v in cb.items()}
    assert all("emitted_at" in h for v in ca.values() for _, h in v)
    ids = [x["change_id"] for v in ca.values() for x, _ in v]
    assert len(ids) == len(set(ids))
    # The dead letters too, as a set: a record without a key (not JSON, no customer_id) goes to
    # a partition the producer picks at random.
    da = read_topic(stack, f"{topic_names['dlq']}.{a}")
    db = read_topic(stack, f"{topic_names['dlq']}.{b}")
    flat_a = sorted(json.dumps(x, sort_keys=True) for v in da.values() for x, _ in v)
    flat_b = sorted(json.dumps(x, sort_keys=True) for v in db.values() for x, _ in v)
    assert flat_a == flat_b
    assert len(flat_a) == sa["dead_letters"]

    # Every customer's packed state.
    st_a, st_b = states(redis_client, a), states(redis_client, b)
    assert len(st_a) == CUSTOMERS
    assert st_a == st_b

    report, text = _diff(run_cli, a, b)
    assert report["identical"] is True
    assert report["customers"] == {
        "in_both": CUSTOMERS,
        "only_a": 0,
        "only_b": 0,
        "changed_segment": 0,
        "changed_state": 0,
    }
    assert "no differences" in text

    # A what-if: half the segments.
    what_if = path.parent / "what-if.yaml"
    what_if.write_text("model:\n  n_segments: 4\n")
    sc = _replay(run_cli, path, c, "--partitions", "4", "--model-config", str(what_if))
    assert sc["records"] == n_records
    report, text = _diff(run_cli, a, c)
    assert report["identical"] is False
    assert report["customers"]["in_both"] == CUSTOMERS
    assert report["customers"]["changed_segment"] > 0
    assert report["model_differs"] is True
    # Moves count against the segments matched by members; raw-id differences are kept beside.
    matching = report["matching"]
    assert report["customers"]["changed_segment"] == CUSTOMERS - matching["agreed"]
    assert 0 < matching["agreement"] < 1
    off_diagonal = sum(row["customers"] for row in report["confusion"] if row["a_id"] != row["b_id"])
    assert off_diagonal == matching["changed_segment_id"]
    # Customers are in at most the what-if's 4 live segments (a few may still wait in a segment a
    # model update retired: a file replay does not go back to the partitions it has finished).
    live = {
        r["b_id"] for r in report["confusion"] if r["b_id"] >= 0 and not r["b_name"].endswith("(retired)")
    }
    assert 1 <= len(live) <= 4
    assert "no differences" not in text
    assert "customers by segment" in text


def test_replay_does_not_depend_on_batch_size(
    stack: Stack,
    redis_client: redis.Redis,
    topic_names: dict[str, str],
    event_log: tuple[Path, int, int],
    run_cli: Run,
    shadow: Callable[[], str],
) -> None:
    path, _, _ = event_log
    a, b = shadow(), shadow()
    _replay(run_cli, path, a, "--batch-size", "2000")
    _replay(run_cli, path, b, "--batch-size", "317")
    ca = read_topic(stack, f"{topic_names['changes']}.{a}")
    cb = read_topic(stack, f"{topic_names['changes']}.{b}")
    assert {p: [x for x, _ in v] for p, v in ca.items()} == {p: [x for x, _ in v] for p, v in cb.items()}
    assert states(redis_client, a) == states(redis_client, b)


def test_replay_from_kafka_matches_the_file(
    stack: Stack,
    redis_client: redis.Redis,
    topic_names: dict[str, str],
    event_log: tuple[Path, int, int],
    run_cli: Run,
    shadow: Callable[[], str],
) -> None:
    """A topic replayed from offset 0 equals the same log replayed from a file over 4 partitions.

    Without malformed records: Kafka's producer puts a record without a key (not JSON, no
    customer_id) on a random partition, which a file replay cannot reproduce.
    """
    log = generate(120, 30, SEED)
    path = event_log[0].parent / "clean.jsonl"
    write_lines(path, (r.value for r in log.records))
    n_records = len(log.records)
    rc, _, err = run_cli("produce", str(path))
    assert rc == 0, err
    a, b = shadow(), shadow()
    sa = _replay(run_cli, path, a, "--partitions", "4")
    rc, out, err = run_cli("replay", "--namespace", b, "--from-offset", "0", "--json")
    assert rc == 0, err
    sb = json.loads(out)
    assert sb["records"] == n_records
    assert sb["partitions"] == 4
    assert (sb["applied"], sb["dead_letters"], sb["changes"]) == (
        sa["applied"],
        sa["dead_letters"],
        sa["changes"],
    )
    assert states(redis_client, a) == states(redis_client, b)
    ca = read_topic(stack, f"{topic_names['changes']}.{a}")
    cb = read_topic(stack, f"{topic_names['changes']}.{b}")
    assert {p: [x for x, _ in v] for p, v in ca.items()} == {p: [x for x, _ in v] for p, v in cb.items()}
    # From a time after the whole log: nothing to replay, and that is not an error.
    c = shadow()
    rc, out, err = run_cli("replay", "--namespace", c, "--from-time", "2100-01-01T00:00:00Z", "--json")
    assert rc == 0, err
    assert json.loads(out)["records"] == 0
