"""Nothing is lost at the edges, through the real broker and Redis (issue #20).

Each test is one finding of a fault campaign: a quiet period of any length, a record far off in
time, a megabyte record, lax input. The service runs as a user runs it (``segstream run``); the
outcome is read from Redis and the topics and compared with a direct computation over the log.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from datetime import UTC, datetime
from pathlib import Path

import redis
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from models.features import DAY, CustomerState
from models.sim import GeneratedRecord, generate
from stream.ops.erase import partition_of
from stream.state import FeatureStore

from .harness import (
    Stack,
    applied_count,
    assert_features_equal,
    create_topics,
    customer_states,
    customers_of,
    delete_namespace,
    delete_topics,
    direct_states,
    error_line,
    event,
    exit_code,
    kill_all,
    produce,
    read_topic,
    run_cli,
    run_to_end,
    service_env,
    start_service,
    tail,
    unique,
    wait_until,
)
from .servers import private_redis

HOUR = 3600


def dead_letters(stack: Stack, topic: str) -> list[dict]:
    return [json.loads(v) for _, v in read_topic(stack, topic, partitions=1) if v is not None]


def quiet_log(start: float, seed: int = 5) -> list[GeneratedRecord]:
    """Daily shoppers and browsers in time order, with three quiet periods: 36 hours (a holiday),
    10 days (a shop closed for works) and 400 days (an old log and a new one, replayed together)."""
    rng = random.Random(seed)
    people = [f"q{i:04d}" for i in range(160)]
    spans = [(0, 20), (21.5, 40), (50, 70), (470, 490)]  # days with activity
    timed: list[tuple[float, str, str, float | None]] = []
    for lo, hi in spans:
        for c in people:
            for _ in range(rng.randint(1, 6)):
                t = start + rng.uniform(lo, hi) * DAY
                if rng.random() < 0.3:
                    timed.append((t, c, "purchase", round(rng.uniform(5, 120), 2)))
                else:
                    timed.append((t, c, rng.choice(["page_view", "product_view", "email_open"]), None))
    timed.sort()
    return [event(n, c, t, typ, amount) for n, (t, c, typ, amount) in enumerate(timed)]


def test_quiet_periods_of_any_length_cost_nothing(
    stack: Stack, redis_client: redis.Redis, settings_env: dict[str, str], tmp_path: Path
) -> None:
    """36 h, 10 days and 400 days without a record: every record is applied, no dead letter,
    and every customer's features equal a direct computation over its events."""
    start = datetime(2024, 1, 1, tzinfo=UTC).timestamp()
    log = quiet_log(start)
    produce(stack, settings_env["SEGSTREAM_TOPICS__INTERACTIONS"], log)
    run_to_end(service_env(settings_env), tmp_path / "run.log", until_idle=4)

    assert dead_letters(stack, settings_env["SEGSTREAM_TOPICS__DLQ"]) == []
    stored = customer_states(redis_client, settings_env["SEGSTREAM_REDIS__NAMESPACE"])
    assert sum(CustomerState.unpack(b).events for b in stored.values()) == len(log)
    assert_features_equal(stored, direct_states(log))


def test_a_record_far_off_in_time_costs_no_other_customer(
    stack: Stack, redis_client: redis.Redis, settings_env: dict[str, str], tmp_path: Path
) -> None:
    """A partition whose first record is dated 2099, one whose first record is dated 2000, and a
    customer whose events walk 23 hours apart, months ahead of everybody else: the 2099 record is
    the one dead letter (FutureEvent, against the clock); every other record is applied and every
    customer's features equal a direct computation; nobody else is re-scored as months quiet."""
    start = datetime(2026, 3, 1, tzinfo=UTC).timestamp()
    rng = random.Random(11)
    regular = {p: customers_of(p, 40) for p in range(4)}
    n = 0
    first: list[GeneratedRecord] = [
        event(n := n + 1, "far-future", datetime(2099, 6, 1, tzinfo=UTC).timestamp()),
        event(n := n + 1, "far-past", datetime(2000, 1, 1, 0, 0, 1, tzinfo=UTC).timestamp()),
    ]
    assert partition_of("far-future", 4) != partition_of("far-past", 4)
    timed: list[tuple[float, str, str, float | None]] = []
    for cs in regular.values():
        for c in cs:
            for _ in range(rng.randint(4, 10)):
                t = start + rng.uniform(0, 20) * DAY
                bought = rng.random() < 0.3
                timed.append((t, c, "purchase" if bought else "page_view", 30.0 if bought else None))
    walker = customers_of(partition_of("far-past", 4), 1, prefix="walker")[0]
    for k in range(60):  # 60 events 23 h apart: 57 days, far past the others' 20
        timed.append((start + k * 23 * HOUR, walker, "page_view", None))
    timed.sort()
    rest = [event(n + 1 + k, c, t, typ, amount) for k, (t, c, typ, amount) in enumerate(timed)]
    topic = settings_env["SEGSTREAM_TOPICS__INTERACTIONS"]
    produce(stack, topic, first)  # the first records of their partitions
    produce(stack, topic, rest)
    run_to_end(service_env(settings_env), tmp_path / "run.log", until_idle=4)

    dlq = dead_letters(stack, settings_env["SEGSTREAM_TOPICS__DLQ"])
    assert [(d["key"], d["error_class"]) for d in dlq] == [("far-future", "FutureEvent")], dlq
    assert "ahead of this machine's clock" in dlq[0]["reason"]
    stored = customer_states(redis_client, settings_env["SEGSTREAM_REDIS__NAMESPACE"])
    assert_features_equal(stored, direct_states([first[1], *rest]))
    # The walker's clock is its own: no other customer of its partition is re-scored for a
    # silence longer than the log's 20 days (which they would be if it moved the watermark).
    changes = [json.loads(v) for _, v in read_topic(stack, settings_env["SEGSTREAM_TOPICS__CHANGES"]) if v]
    regular_ids = {c for cs in regular.values() for c in cs}
    quiet_too_long = [
        c
        for c in changes
        if c["reason"] == "inactivity"
        and c["customer_id"] in regular_ids
        and datetime.fromisoformat(c["event_time"]).timestamp() > start + 25 * DAY
    ]
    assert quiet_too_long == []


def test_megabyte_records_are_dead_lettered_and_the_service_goes_on(
    stack: Stack,
    kafka_admin: KafkaAdminClient,
    redis_client: redis.Redis,
    settings_env: dict[str, str],
    tmp_path: Path,
) -> None:
    """1 MB and 8 MB records (a topic that accepts them) become bounded dead letters (a prefix,
    the size and the hash of the whole), and the valid records around them are all applied."""
    topic = unique("big")
    limit = str(10 * 1024 * 1024)
    create_topics(kafka_admin, [NewTopic(topic, 4, 1, topic_configs={"max.message.bytes": limit})])
    try:
        start = datetime(2026, 5, 1, tzinfo=UTC).timestamp()
        valid = [event(k, f"m{k % 50:03d}", start + k * 60) for k in range(600)]
        one_mb = b'{"event_id":"big1","blob":"' + b"x" * (1 << 20) + b'"}'
        eight_mb = b"\x00\xff" * (4 << 20)  # not even JSON
        producer = KafkaProducer(bootstrap_servers=stack.bootstrap, max_request_size=int(limit), acks="all")
        for k, r in enumerate(valid):
            producer.send(topic, key=r.key, value=r.value)
            if k == 200:
                producer.send(topic, key=b"m001", value=one_mb)
            if k == 400:
                producer.send(topic, key=b"m002", value=eight_mb)
        producer.flush()
        producer.close()
        env = service_env(settings_env, SEGSTREAM_TOPICS__INTERACTIONS=topic)
        run_to_end(env, tmp_path / "run.log", until_idle=4)

        dlq = dead_letters(stack, settings_env["SEGSTREAM_TOPICS__DLQ"])
        assert sorted((d["error_class"], d["original_size"]) for d in dlq) == [
            ("RecordTooLarge", len(one_mb)),
            ("RecordTooLarge", len(eight_mb)),
        ]
        for d in dlq:
            whole = one_mb if d["original_size"] == len(one_mb) else eight_mb
            assert d["original_sha256"] == hashlib.sha256(whole).hexdigest()
            assert d["original_truncated"] and len(json.dumps(d)) < 16 * 1024
        stored = customer_states(redis_client, settings_env["SEGSTREAM_REDIS__NAMESPACE"])
        assert sum(CustomerState.unpack(b).events for b in stored.values()) == len(valid)
    finally:
        delete_topics(kafka_admin, [topic])


# ---------------------------------------------------------------- the state is the topic's


def small_log(seed: int, start: float, n: int = 400, first_id: int = 0) -> list[GeneratedRecord]:
    rng = random.Random(seed)
    out = []
    for k in range(n):
        c = f"s{rng.randrange(60):03d}"
        bought = rng.random() < 0.25
        ts = start + k * 600
        out.append(
            event(first_id + k, c, ts, "purchase" if bought else "page_view", 20.0 if bought else None)
        )
    return out


def recreate_topic(admin: KafkaAdminClient, name: str, partitions: int = 4) -> None:
    """Delete the topic and create it again under the same name (a new topic id)."""
    delete_topics(admin, [name])
    deadline = time.monotonic() + 60
    while True:
        try:
            create_topics(admin, [NewTopic(name, partitions, 1)])
            return
        except TopicAlreadyExistsError:  # the deletion is still going on
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def events_applied(client: redis.Redis, ns: str) -> int:
    return sum(CustomerState.unpack(b).events for b in customer_states(client, ns).values())


def test_a_recreated_input_topic_stops_the_service_until_adopted(
    stack: Stack, kafka_admin: KafkaAdminClient, redis_client: redis.Redis, settings_env: dict[str, str]
) -> None:
    """`docker compose down && up` with Redis on a volume and Kafka without: the topic comes back
    empty with a new id. The service stops with one line naming it and the way out, applies
    nothing; `recover --adopt-topic` keeps the features and reads the new topic from its start."""
    topic, ns = settings_env["SEGSTREAM_TOPICS__INTERACTIONS"], settings_env["SEGSTREAM_REDIS__NAMESPACE"]
    start = datetime(2026, 6, 1, tzinfo=UTC).timestamp()
    first, second = small_log(1, start), small_log(2, start + 3 * DAY, n=150, first_id=10_000)
    produce(stack, topic, first)
    assert run_cli(settings_env, "run", "--until-idle", "3", "--metrics-port", "0").returncode == 0
    assert events_applied(redis_client, ns) == len(first)

    recreate_topic(kafka_admin, topic)
    produce(stack, topic, second)
    res = run_cli(settings_env, "run", "--until-idle", "3", "--metrics-port", "0", timeout=120)
    assert res.returncode == 1
    line = error_line(res)
    assert "deleted and created again" in line and "segstream recover --adopt-topic" in line, line
    assert events_applied(redis_client, ns) == len(first)  # nothing of the new topic applied
    status = run_cli(settings_env, "status", "--json", "--metrics-url", "")
    notes = json.loads(status.stdout)["notes"]
    assert any("would stop" in n and "created again" in n for n in notes), notes

    fixed = run_cli(settings_env, "recover", "--adopt-topic")
    assert fixed.returncode == 0, fixed.stderr[-2000:]
    assert run_cli(settings_env, "run", "--until-idle", "3", "--metrics-port", "0").returncode == 0
    assert_features_equal(customer_states(redis_client, ns), direct_states([*first, *second]))


def test_a_topic_recreated_while_the_service_runs_stops_it(
    stack: Stack,
    kafka_admin: KafkaAdminClient,
    redis_client: redis.Redis,
    settings_env: dict[str, str],
    tmp_path: Path,
) -> None:
    """kafka-python keeps fetching a recreated topic at its old position; the service asks the
    broker for the topic's id after each poll (and every 5 s while idle: a deletion the consumer
    noticed leaves it with no partitions) and stops before applying any of its records."""
    topic, ns = settings_env["SEGSTREAM_TOPICS__INTERACTIONS"], settings_env["SEGSTREAM_REDIS__NAMESPACE"]
    start = datetime(2026, 6, 1, tzinfo=UTC).timestamp()
    first = small_log(3, start)
    # More records than the first topic had: the old positions are inside the new topic.
    second = small_log(4, start + 3 * DAY, n=800, first_id=10_000)
    produce(stack, topic, first)
    out = tmp_path / "run.log"
    proc = start_service(service_env(settings_env), out, until_idle=60)
    try:
        wait_until(lambda: events_applied(redis_client, ns) == len(first), 60, "the first log applied")
        recreate_topic(kafka_admin, topic)
        produce(stack, topic, second)
        assert exit_code(proc, 60, out) == 1
    finally:
        kill_all(proc)
    text = out.read_text()
    assert "Traceback" not in text, tail(out)
    assert "segstream: error: " in text and "deleted" in text and "recover --adopt-topic" in text, tail(out)
    assert events_applied(redis_client, ns) == len(first)


def test_a_flushed_namespace_stops_the_service_until_rebuilt(
    stack: Stack, redis_client: redis.Redis, settings_env: dict[str, str]
) -> None:
    """The namespace's keys are gone (a flush, an empty replica, another database) while the group
    says it read the topic: one line and exit 1, nothing applied; `recover --resume` rebuilds it
    from the log, to the features of a direct computation."""
    topic, ns = settings_env["SEGSTREAM_TOPICS__INTERACTIONS"], settings_env["SEGSTREAM_REDIS__NAMESPACE"]
    log = small_log(5, datetime(2026, 7, 1, tzinfo=UTC).timestamp())
    produce(stack, topic, log)
    assert run_cli(settings_env, "run", "--until-idle", "3", "--metrics-port", "0").returncode == 0
    delete_namespace(redis_client, ns)
    more = small_log(6, datetime(2026, 7, 5, tzinfo=UTC).timestamp(), n=100, first_id=10_000)
    produce(stack, topic, more)

    res = run_cli(settings_env, "run", "--until-idle", "3", "--metrics-port", "0", timeout=120)
    assert res.returncode == 1
    line = error_line(res)
    assert "has no state for partition" in line and "segstream recover --resume" in line, line
    assert customer_states(redis_client, ns) == {}

    fixed = run_cli(settings_env, "recover", "--resume")
    assert fixed.returncode == 0, fixed.stderr[-2000:]
    assert run_cli(settings_env, "run", "--until-idle", "3", "--metrics-port", "0").returncode == 0
    assert_features_equal(customer_states(redis_client, ns), direct_states([*log, *more]))


def test_a_key_redis_lost_stops_the_service_before_its_customers_start_over(
    stack: Stack,
    kafka_admin: KafkaAdminClient,
    redis_client: redis.Redis,
    settings_env: dict[str, str],
    topic_names: dict[str, str],
    tmp_path: Path,
) -> None:
    """One state bucket is deleted under a running service (a DEL, an eviction, a failover to a
    replica that missed it). The next batch that reads it stops the service with one line naming
    the key and the way out, before anything is applied on top of it: without the partition's key
    census its customers would have started over as new ones, their seq from 1. A restart stops
    the same way; a replay of the topic into a fresh namespace rebuilds every customer exactly."""
    topic, ns = settings_env["SEGSTREAM_TOPICS__INTERACTIONS"], settings_env["SEGSTREAM_REDIS__NAMESPACE"]
    start = datetime(2026, 6, 1, tzinfo=UTC).timestamp()
    first, second = small_log(11, start), small_log(12, start + 3 * DAY, n=300, first_id=10_000)
    produce(stack, topic, first)
    out = tmp_path / "run.log"
    proc = start_service(service_env(settings_env), out, until_idle=60)
    try:
        wait_until(lambda: events_applied(redis_client, ns) == len(first), 60, "the first log applied")
        before = customer_states(redis_client, ns)
        store = FeatureStore.from_client(redis_client, ns)
        victim = second[0].customer_id
        p = partition_of(victim, 4)
        lost_key = store.customer_key(p, victim)
        assert redis_client.delete(lost_key) == 1
        produce(stack, topic, second)
        assert exit_code(proc, 60, out) == 1
    finally:
        kill_all(proc)
    text = out.read_text()
    assert "Traceback" not in text, tail(out)
    line = next(x for x in text.splitlines() if "segstream: error: " in x)
    assert "Redis lost" in line and lost_key in line and "segstream replay" in line, line
    # Nothing of the second log reached the partition that lost the key.
    after = customer_states(redis_client, ns)
    gone = {c for c in before if store.customer_key(partition_of(c, 4), c) == lost_key}
    assert gone and not gone & set(after)
    assert {c: b for c, b in after.items() if partition_of(c, 4) == p} == {
        c: b for c, b in before.items() if partition_of(c, 4) == p and c not in gone
    }

    res = run_cli(settings_env, "run", "--until-idle", "3", "--metrics-port", "0", timeout=120)
    assert res.returncode == 1 and lost_key in error_line(res), res.stderr[-2000:]
    status = run_cli(settings_env, "status")
    assert "would stop" in status.stdout and lost_key in status.stdout, status.stdout[-2000:]

    fresh = unique("r")
    try:
        rebuilt = run_cli(settings_env, "replay", "--from-offset", "0", "--namespace", fresh)
        assert rebuilt.returncode == 0, rebuilt.stderr[-2000:]
        assert_features_equal(customer_states(redis_client, fresh), direct_states([*first, *second]))
    finally:
        delete_namespace(redis_client, fresh)
        delete_topics(kafka_admin, [f"{t}.{fresh}" for k, t in topic_names.items() if k != "interactions"])


def newest_per_key(stack: Stack, topic: str, partitions: int = 4) -> dict[str, dict | None]:
    """A compacted topic as a consumer rebuilding its view sees it: each key's newest value."""
    records = read_topic(stack, topic, partitions=partitions)
    return {k.decode(): json.loads(v) if v is not None else None for k, v in records if k}


def assert_current_holds_every_customer(stack: Stack, client: redis.Redis, ns: str, topic: str) -> None:
    states = {c: CustomerState.unpack(b) for c, b in customer_states(client, ns).items()}
    seqs = {c: s.seq for c, s in states.items() if s.seq > 0}
    current = newest_per_key(stack, topic)
    assert seqs and {c: v["seq"] for c, v in current.items() if v} == seqs


def test_a_recreated_output_topic_stops_the_service_until_republished(
    stack: Stack,
    kafka_admin: KafkaAdminClient,
    redis_client: redis.Redis,
    settings_env: dict[str, str],
    topic_names: dict[str, str],
    tmp_path: Path,
) -> None:
    """The current-segments topic is deleted and created again under an idle service (an
    operator's mistake, a broker that lost its data): within seconds it stops with one line naming
    the topic and the way out, before anything else is published (onto a compacted topic that
    lost every other customer's newest segment). `recover --republish` rebuilds the
    topic from the changes topic; the run goes on and the topic holds every customer's newest
    change, as Redis does. The model topic deleted while the service is stopped: the start stops
    the same way, and `recover --republish` publishes the model again from Redis."""
    env = {
        **service_env(settings_env),
        "SEGSTREAM_MODEL__WARMUP_VECTORS": "300",
        "SEGSTREAM_MODEL__UPDATE_EVERY": "400",
    }
    ns = env["SEGSTREAM_REDIS__NAMESPACE"]
    records = [r for r in generate(customers=200, days=40, seed=21).records if not r.malformed]
    cut = records[0].ts + 30 * DAY
    first = [r for r in records if r.ts < cut]
    second = [r for r in records if r.ts >= cut]
    produce(stack, env["SEGSTREAM_TOPICS__INTERACTIONS"], first)
    out = tmp_path / "run.log"
    proc = start_service(env, out, until_idle=60)
    try:
        wait_until(lambda: events_applied(redis_client, ns) == len(first), 120, "the first part applied")
        current = topic_names["current"]
        delete_topics(kafka_admin, [current])
        assert run_cli(env, "topics", "create").returncode == 0
        assert exit_code(proc, 60, out) == 1  # idle: the service asks for its topics every 5 s
    finally:
        kill_all(proc)
    produce(stack, env["SEGSTREAM_TOPICS__INTERACTIONS"], second)
    text = out.read_text()
    assert "Traceback" not in text, tail(out)
    line = next(x for x in text.splitlines() if "segstream: error: " in x)
    assert f"output topic {current!r}" in line and "recover --republish" in line, line
    assert events_applied(redis_client, ns) == len(first)

    fixed = run_cli(env, "recover", "--republish")
    assert fixed.returncode == 0, fixed.stderr[-2000:]
    assert run_cli(env, "run", "--until-idle", "3", "--metrics-port", "0").returncode == 0
    assert events_applied(redis_client, ns) == len(first) + len(second)
    assert_current_holds_every_customer(stack, redis_client, ns, current)

    model = topic_names["model"]
    delete_topics(kafka_admin, [model])
    res = run_cli(env, "run", "--until-idle", "3", "--metrics-port", "0", timeout=120)
    assert res.returncode == 1 and f"output topic {model!r}" in error_line(res), res.stderr[-2000:]
    assert newest_per_key(stack, model, partitions=1) == {}
    status = run_cli(env, "status")
    assert "would stop" in status.stdout and f"output topic {model!r}" in status.stdout, status.stdout[-2000:]
    fixed = run_cli(env, "recover", "--republish")
    assert fixed.returncode == 0, fixed.stderr[-2000:]
    version = int(redis_client.hget(f"{ns}:model", "version"))
    assert version > 0 and newest_per_key(stack, model, partitions=1)["model"]["version"] == version
    assert run_cli(env, "run", "--until-idle", "3", "--metrics-port", "0").returncode == 0


def test_redis_losing_its_last_writes_stops_the_service_until_resumed(
    stack: Stack, settings_env: dict[str, str], tmp_path: Path
) -> None:
    """Redis comes back from a restart with less than it had acknowledged (its last writes were
    not on disk). The running service, and a restart of it, stop with one line saying so (not
    "another learner"); `recover --resume` re-reads what Redis lost, to exact features."""
    with private_redis(tmp_path) as server:
        env = service_env(
            settings_env, SEGSTREAM_REDIS__URL=server.url, SEGSTREAM_KAFKA__MAX_POLL_RECORDS="200"
        )
        ns = env["SEGSTREAM_REDIS__NAMESPACE"]
        records = generate(customers=600, days=45, seed=8).records
        produce(stack, env["SEGSTREAM_TOPICS__INTERACTIONS"], records)
        client = redis.Redis.from_url(server.url, socket_timeout=5)
        out = tmp_path / "run.log"
        proc = start_service(env, out, until_idle=30)
        try:
            wait_until(lambda: applied_count(client, ns) >= len(records) * 0.3, 120, "30% applied")
            client.save()  # what survives
            saved = applied_count(client, ns)
            wait_until(lambda: applied_count(client, ns) >= saved + len(records) * 0.2, 120, "20% more")
            server.restart()  # power loss: the writes since the snapshot are gone
            assert exit_code(proc, 60, out) == 1
        finally:
            kill_all(proc)
        text = out.read_text()
        assert "Traceback" not in text and "another learner" not in text, tail(out)
        assert "segstream: error: " in text and "Redis lost writes" in text, tail(out)

        res = run_cli(env, "run", "--until-idle", "3", "--metrics-port", "0", timeout=120)
        assert res.returncode == 1
        line = error_line(res)
        assert "Redis lost writes" in line and "segstream recover --resume" in line, line

        assert run_cli(env, "recover", "--resume").returncode == 0
        assert run_cli(env, "run", "--until-idle", "3", "--metrics-port", "0").returncode == 0
        valid = [r for r in records if not r.malformed]
        assert_features_equal(customer_states(client, ns), direct_states(valid))
        client.close()


def test_a_redis_that_evicts_keys_is_refused(settings_env: dict[str, str], tmp_path: Path) -> None:
    """`maxmemory-policy allkeys-lru` would drop customers' states silently under memory pressure."""
    with private_redis(tmp_path, "--maxmemory-policy", "allkeys-lru") as server:
        res = run_cli({**settings_env, "SEGSTREAM_REDIS__URL": server.url}, "segments")
        assert res.returncode == 1
        assert "evicts keys" in error_line(res) and "noeviction" in error_line(res)


def test_each_lax_input_is_a_dead_letter_with_its_reason(
    stack: Stack, redis_client: redis.Redis, settings_env: dict[str, str], tmp_path: Path
) -> None:
    """What a lax contract took for an event (a boolean or a string amount, a currency on a page
    view, an epoch or digit-string time, no key) is dead-lettered with a reason naming it; the
    valid records around them are applied."""
    ts = "2026-08-01T10:00:00Z"
    base = {"customer_id": "lax-1", "ts": ts, "channel": "web"}
    buy = {**base, "type": "purchase", "currency": "EUR"}
    lax: list[tuple[bytes | None, dict, str, str]] = [
        (b"lax-1", {**buy, "event_id": "b1", "amount": True}, "InvalidEvent", "amount"),
        (b"lax-1", {**buy, "event_id": "b2", "amount": "12.5"}, "InvalidEvent", "amount"),
        (
            b"lax-1",
            {**base, "event_id": "b3", "type": "page_view", "currency": "EUR"},
            "InvalidEvent",
            "currency",
        ),
        (b"lax-1", {**base, "event_id": "b4", "type": "page_view", "ts": 1785578400}, "InvalidEvent", "ts"),
        (b"lax-1", {**base, "event_id": "b5", "type": "page_view", "ts": "1785578400"}, "InvalidEvent", "ts"),
        (None, {**base, "event_id": "b6", "type": "page_view"}, "MissingKey", "no key"),
    ]
    good = [event(k, "lax-1", datetime(2026, 8, 1, 9, tzinfo=UTC).timestamp() + k) for k in range(5)]
    producer = KafkaProducer(bootstrap_servers=stack.bootstrap, acks="all")
    topic = settings_env["SEGSTREAM_TOPICS__INTERACTIONS"]
    for r in good[:2]:
        producer.send(topic, key=r.key, value=r.value, partition=0)
    for key, body, _, _ in lax:
        producer.send(topic, key=key, value=json.dumps(body).encode(), partition=0)
    for r in good[2:]:
        producer.send(topic, key=r.key, value=r.value, partition=0)
    producer.flush()
    producer.close()
    run_to_end(service_env(settings_env), tmp_path / "run.log", until_idle=3)

    dlq = dead_letters(stack, settings_env["SEGSTREAM_TOPICS__DLQ"])
    assert [d["original_sha256"] for d in dlq] == [
        hashlib.sha256(json.dumps(body).encode()).hexdigest() for _, body, _, _ in lax
    ]
    for d, (_, _, error_class, words) in zip(dlq, lax, strict=True):
        assert d["error_class"] == error_class and words in d["reason"], d
    assert events_applied(redis_client, settings_env["SEGSTREAM_REDIS__NAMESPACE"]) == len(good)
