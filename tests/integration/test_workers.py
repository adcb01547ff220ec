"""``segstream run --workers N`` against the real broker and Redis.

Every record is applied exactly once across the workers, every change (whichever worker made it)
is assigned by a version the one learner built, and a failing or killed process takes the rest
down with it instead of leaving a half-running set or orphans.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from models.features import CustomerState
from models.segments.engine import SegmentEngine
from models.sim import generate
from stream.config import OUTPUT_NAMES, load
from stream.runtime.engines import engine_params
from stream.runtime.service import Service
from stream.state import FeatureStore

from .harness import (
    ROOT,
    SEGSTREAM,
    Stack,
    alive,
    applied_offsets,
    assert_same_engine,
    children_of,
    cli_env,
    delete_namespace,
    delete_topics,
    end_offsets,
    run_cli,
    tail,
    unique,
    wait_until,
)
from .harness import produce_pairs as produce
from .harness import read_records as read_topic

FAST_MODEL = {"SEGSTREAM_MODEL__WARMUP_VECTORS": "300", "SEGSTREAM_MODEL__UPDATE_EVERY": "400"}


@pytest.fixture(scope="module")
def log():  # type: ignore[no-untyped-def]
    return generate(customers=300, days=60, seed=17, malformed_fraction=0.02)


def free_port_pair() -> int:
    while True:
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            if port >= 65535:
                continue
            with socket.socket() as b:
                try:
                    b.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
                return int(port)


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def test_two_workers_one_model(  # type: ignore[no-untyped-def]
    log, stack: Stack, settings_env, topic_names, redis_client: redis.Redis, kafka_admin
) -> None:
    env = {**settings_env, **FAST_MODEL, "SEGSTREAM_MODEL__LEARN_ALL_PARTITIONS": "true"}
    topic = topic_names["interactions"]
    pairs = [(r.key, r.value) for r in log.records]
    cut = len(pairs) * 3 // 5
    # Two runs, as a restart would: a follower can finish its share of the first run while the
    # learner is still warming up (no ids are published then); in the second, it has the model.
    ends_before = None
    for part in (pairs[:cut], pairs[cut:]):
        produce(stack.bootstrap, topic, part)
        res = run_cli(env, "run", "--workers", "2", "--until-idle", "4", "--metrics-port", "0")
        assert res.returncode == 0, res.stderr[-3000:]
        assert f"processed {len(part)} records with 2 workers" in res.stdout
        assert "learner of" in res.stderr and "follower of" in res.stderr
        ends = end_offsets(stack, topic)
        # Every record applied once: each partition's applied offset is its last offset.
        assert applied_offsets(redis_client, env["SEGSTREAM_REDIS__NAMESPACE"]) == [e - 1 for e in ends]
        ends_before = ends_before or ends

    # The states' event counts plus the dead letters add up to what was produced.
    dlq = read_topic(stack.bootstrap, topic_names["dlq"])
    store = FeatureStore(stack.redis_url, env["SEGSTREAM_REDIS__NAMESPACE"]).start()
    try:
        events = sum(CustomerState.unpack(b).events for _, _, b in store.scan_customers(4))
        saved = store.load_model()
    finally:
        store.close()
    assert events + len(dlq) == len(pairs)

    # One learner: versions 1..V over both runs, each built once; the checkpoint is the last.
    model_events = [json.loads(m.value) for m in read_topic(stack.bootstrap, topic_names["model_events"])]
    versions = [e for e in model_events if e["kind"] == "version"]
    numbers = [e["version"] for e in versions]
    assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) >= 2, numbers
    assert saved is not None and saved[0] == numbers[-1]
    ids_of = {e["version"]: set(e["related_ids"]) for e in versions}

    # Every change, whichever worker made it, has a version the learner built and one of that
    # version's segment ids; in the second run both workers' partitions made changes.
    changes = [json.loads(m.value) for m in read_topic(stack.bootstrap, topic_names["changes"])]
    for c in changes:
        if c["current"] is None:
            # A lifecycle stage change of a customer no version has placed yet.
            assert c["kind"] == "stage" and c["previous"] is None, c
            assert c["model_version"] == 0 or c["model_version"] in ids_of, c
            continue
        assert c["model_version"] in ids_of, c
        assert c["current"]["id"] in ids_of[c["model_version"]], c
    assert ends_before is not None
    second = {p for c in changes if c["source_offset"] >= ends_before[p := c["source_partition"]]}
    assert second == {0, 1, 2, 3}

    # The learner learned its follower's rows too, in the merge's order: the model one process
    # builds from the whole topic (a replay), whatever the number of workers and the restart.
    ns = unique("replay")
    try:
        res = run_cli(env, "replay", "--from-offset", "0", "--namespace", ns)
        assert res.returncode == 0, res.stderr[-3000:]
        alone = FeatureStore.from_client(redis_client, ns).load_model()
    finally:
        delete_namespace(redis_client, ns)
        delete_topics(kafka_admin, [topic_names[o] + f".{ns}" for o in OUTPUT_NAMES])
    assert alone is not None and alone[0] == saved[0]
    assert_same_engine(alone[1], saved[1])


def test_a_follower_swaps_to_the_newest_checkpoint(  # type: ignore[no-untyped-def]
    stack: Stack, settings_env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Idle, a follower loads the learner's newest version from Redis; never an older one. (Its
    batches take each row's version from the kept versions: unit/test_remote_rows.py.)"""
    env = {**settings_env, "SEGSTREAM_MODEL__ROLE": "follower"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    settings = load()
    service = Service(settings, partitions=[1])
    service.start(serve_http=False)
    try:
        assert service.processor is not None and service.store is not None
        assert not service.processor.learns and service.processor.engine.version == 0
        learner = SegmentEngine(engine_params(settings))
        learner.version = 3  # any snapshot the learner checkpointed
        service.store.save_model(learner.snapshot(), 3)
        service._follow_model(idle=True)
        assert service.processor.engine.version == 3
        assert service.processor.engine is not learner
        learner.version = 2  # an older checkpoint (never written by one learner) is not taken
        service.store.save_model(learner.snapshot(), 2)
        service._follow_model(idle=True)
        assert service.processor.engine.version == 3
    finally:
        service.close()
    # A follower never checkpoints its copy: the store still holds what the learner wrote.
    store = FeatureStore(stack.redis_url, env["SEGSTREAM_REDIS__NAMESPACE"]).start()
    try:
        saved = store.load_model()
    finally:
        store.close()
    assert saved is not None and saved[0] == 2


@contextlib.contextmanager
def supervisor(env: dict[str, str], port: int, log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``segstream run --workers 2`` (output appended to ``log_path``), killed if a test leaves it."""
    with log_path.open("ab") as out:
        sup = subprocess.Popen(
            [*SEGSTREAM, "run", "--workers", "2", "--metrics-port", str(port)],
            cwd=ROOT,
            env=cli_env(env),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield sup
    finally:
        if sup.poll() is None:
            sup.kill()
            sup.wait()


def _workers_of(sup: subprocess.Popen[bytes], port: int, log_path: Path) -> list[int]:
    wait_until(lambda: ready(port) and ready(port + 1), 90, f"both workers ready\n{tail(log_path)}", step=0.2)
    workers = [
        p for p in children_of(sup.pid) if "stream.runtime.workers" in Path(f"/proc/{p}/cmdline").read_text()
    ]
    assert len(workers) == 2, workers
    return sorted(workers, key=lambda p: Path(f"/proc/{p}/cmdline").read_text())


def test_a_dead_worker_stops_the_set(stack: Stack, settings_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    port = free_port_pair()
    log_path = tmp_path / "run.log"
    with supervisor(settings_env, port, log_path) as sup:
        w0, w1 = _workers_of(sup, port, log_path)
        publishers = children_of(w0) + children_of(w1)
        os.kill(w1, signal.SIGKILL)
        rc = sup.wait(timeout=90)
    assert rc == 1, tail(log_path)
    assert "worker 1 exited with code -9" in log_path.read_text(), tail(log_path)
    wait_until(lambda: not any(alive(p) for p in [w0, *publishers]), 30, "no process left")


def test_a_killed_supervisor_leaves_no_workers(stack: Stack, settings_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    port = free_port_pair()
    log_path = tmp_path / "run.log"
    workers: list[int] = []
    try:
        with supervisor(settings_env, port, log_path) as sup:
            workers = _workers_of(sup, port, log_path)
            publishers = [c for w in workers for c in children_of(w)]
            sup.kill()
            sup.wait()
        # Their stdin closes with the supervisor: each stops gracefully (and stops its publisher).
        gone = lambda: not any(alive(p) for p in workers + publishers)  # noqa: E731
        wait_until(gone, 60, f"workers gone\n{tail(log_path)}")
    finally:
        for p in workers:
            if alive(p):
                os.kill(p, signal.SIGKILL)


def test_more_workers_than_partitions_is_refused(stack: Stack, settings_env) -> None:  # type: ignore[no-untyped-def]
    res = run_cli(settings_env, "run", "--workers", "5", "--until-idle", "1", "--metrics-port", "0")
    assert res.returncode == 1
    assert "service.workers is 5 but topics.partitions is 4" in res.stderr


def test_a_stop_during_start_up_is_not_a_failure(stack: Stack, settings_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """SIGTERM while the workers still import: they die of it or stop gracefully; either way exit 0."""
    log_path = tmp_path / "run.log"
    with supervisor(settings_env, free_port_pair(), log_path) as sup:
        wait_until(lambda: len(children_of(sup.pid)) == 2, 30, "two workers started")
        workers = children_of(sup.pid)
        sup.send_signal(signal.SIGTERM)
        rc = sup.wait(timeout=90)
    assert rc == 0, tail(log_path)
    wait_until(lambda: not any(alive(p) for p in workers), 30, "no worker left")
