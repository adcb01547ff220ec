"""Hostile input at the boundary, through the real service (issue #23, item 5): 10,000 hostile
records (models/sim/hostile.py, fixed seed) mixed into a valid generated log, some valid records
carrying headers too. The service does not stop, every hostile record is a dead letter of an
expected class with its reason, and the valid customers end exactly as in a run of the valid log
alone: the same Redis states and the same `segstream export`.

scripts/fuzz_boundary.py runs the same with any count and seed, and prints the classes.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import redis
from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from models.contracts import DeadLetter
from models.sim import generate
from models.sim.hostile import hostile_records, mix

from .harness import (
    Stack,
    applied_offsets,
    compare_states,
    create_topics,
    customer_states,
    delete_namespace,
    delete_topics,
    end_offsets,
    produce_records,
    read_records,
    run_cli,
    run_to_end,
    service_env,
    unique,
)

HOSTILE = 10_000
SEED = 23


def test_hostile_records_are_dead_letters_and_change_no_state(
    stack: Stack,
    kafka_admin: KafkaAdminClient,
    redis_client: redis.Redis,
    namespace: str,
    settings_env: dict[str, str],
    tmp_path: Path,
) -> None:
    began = time.monotonic()
    log = generate(customers=300, days=60, seed=SEED)
    hostile = hostile_records(HOSTILE, seed=SEED, customers=sorted(log.truth))
    mixed = mix(log.records, hostile, seed=SEED)
    topic = settings_env["SEGSTREAM_TOPICS__INTERACTIONS"]
    produce_records(stack.bootstrap, topic, ((r.key, r.value, r.headers) for r in mixed))
    assert sum(end_offsets(stack, topic)) == len(mixed)

    # The same valid log alone, in a topic of its own.
    clean_topic = unique("clean")
    create_topics(kafka_admin, [NewTopic(clean_topic, num_partitions=4, replication_factor=1)])
    replayed = {"hostile": unique("rh"), "clean": unique("rc")}
    try:
        produce_records(stack.bootstrap, clean_topic, ((r.key, r.value, ()) for r in log.records))
        run_to_end(service_env(settings_env), tmp_path / "hostile.log")
        took = time.monotonic() - began

        # Every record read: the hostile ones moved the applied offsets on like any other.
        ends = end_offsets(stack, topic)
        assert applied_offsets(redis_client, namespace) == [e - 1 for e in ends]

        # One dead letter per hostile record, of a class it may get, bounded, with a reason.
        dlq = read_records(stack.bootstrap, settings_env["SEGSTREAM_TOPICS__DLQ"])
        dead = [DeadLetter.model_validate_json(m.value) for m in dlq]
        expect: dict[str, set[str]] = {}
        for h in hostile:
            expect.setdefault(_sha(h.key, h.value), set()).update(h.expect)
        assert len(dead) == HOSTILE, Counter(d.error_class for d in dead)
        assert Counter(d.original_sha256 for d in dead) == Counter(_sha(h.key, h.value) for h in hostile)
        wrong = [(d.error_class, d.reason) for d in dead if d.error_class not in expect[d.original_sha256]]
        assert not wrong, f"{len(wrong)} of an unexpected class, first: {wrong[:3]}"
        assert all(d.reason and d.reason.isprintable() and len(d.model_dump_json()) < 16_384 for d in dead)
        classes = Counter(d.error_class for d in dead)
        assert set(classes) >= {"InvalidJSON", "InvalidEvent", "RecordTooLarge", "KeyMismatch", "MissingKey"}

        # Replays of both topics (a replay does not depend on batch cuts or interleaving, a live
        # run's segments do): the valid customers' states and exports are those of the valid log.
        for name, source in (("hostile", topic), ("clean", clean_topic)):
            res = run_cli(
                settings_env, "replay", "--topic", source, "--from-offset", "0", "--namespace", replayed[name]
            )
            assert res.returncode == 0, res.stderr[-2000:]
        want = customer_states(redis_client, replayed["clean"])
        assert set(want) == set(log.truth)
        assert customer_states(redis_client, replayed["hostile"]) == want
        # The live run: the same features (its segments depend on how polls interleaved).
        problems, _ = compare_states(customer_states(redis_client, namespace), want)
        assert not problems, f"{len(problems)} feature differences, first: {problems[:5]}"
        exports = {}
        for name, ns in replayed.items():
            out = tmp_path / f"{name}.jsonl"
            res = run_cli(settings_env, "--namespace", ns, "export", "--format", "jsonl", "--out", str(out))
            assert res.returncode == 0, res.stderr[-2000:]
            exports[name] = out.read_text()
        assert exports["hostile"] == exports["clean"] and len(exports["clean"].splitlines()) == len(want)
        print(
            f"\n{len(log.records):,} valid + {HOSTILE:,} hostile records; dead letters by class: "
            f"{dict(sorted(classes.items()))}; service run {took:.1f} s"
        )
    finally:
        for ns in replayed.values():
            delete_namespace(redis_client, ns)
        suffixes = tuple(f".{ns}" for ns in replayed.values())
        delete_topics(
            kafka_admin, [clean_topic, *(t for t in kafka_admin.list_topics() if t.endswith(suffixes))]
        )


def _sha(key: bytes | None, value: bytes | None) -> str:
    return DeadLetter.of("", 0, 0, key, value, "", "").original_sha256
