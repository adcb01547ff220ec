"""``segstream run --workers N`` against the real broker and Redis.

Every record is applied exactly once across the workers, every change (whichever worker made it)
is assigned by a version the one learner built, and a failing or killed process takes the rest
down with it instead of leaving a half-running set or orphans.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import urllib.request
from pathlib import Path

import pytest
import redis

from models.features import CustomerState
from models.generator import generate
from stream.feature_store import FeatureStore

from .conftest import ROOT, Stack
from .test_e2e_sigterm import SEGSTREAM, applied_offsets, end_offsets, tail, wait_until
from .util import cli_env, produce, read_topic, run_cli

FAST_MODEL = {"SEGSTREAM_MODEL__WARMUP_VECTORS": "300", "SEGSTREAM_MODEL__UPDATE_EVERY": "400"}


@pytest.fixture(scope="module")
def log():  # type: ignore[no-untyped-def]
    return generate(customers=300, days=60, seed=17, malformed_fraction=0.02)


def children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry))
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


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
    log, stack: Stack, settings_env, topic_names, redis_client: redis.Redis
) -> None:
    env = {**settings_env, **FAST_MODEL}
    produced = produce(stack.bootstrap, topic_names["interactions"], ((r.key, r.value) for r in log.records))
    res = run_cli(env, "run", "--workers", "2", "--until-idle", "4", "--metrics-port", "0")
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"processed {produced} records with 2 workers" in res.stdout
    assert "learner of" in res.stderr and "follower of" in res.stderr

    # Every record applied once: each partition's applied offset is its last offset, and the
    # states' event counts plus the dead letters add up to what was produced.
    ns = env["SEGSTREAM_REDIS__NAMESPACE"]
    ends = end_offsets(stack, topic_names["interactions"])
    assert applied_offsets(redis_client, ns) == [e - 1 for e in ends]
    dlq = read_topic(stack.bootstrap, topic_names["dlq"])
    store = FeatureStore(stack.redis_url, ns).start()
    try:
        events = sum(CustomerState.unpack(b).events for _, _, b in store.scan_customers(4))
        saved = store.load_model()
    finally:
        store.close()
    assert events + len(dlq) == produced

    # One learner: versions 1..V, each built once; the checkpoint is the last of them.
    model_events = [json.loads(m.value) for m in read_topic(stack.bootstrap, topic_names["model_events"])]
    versions = [e for e in model_events if e["kind"] == "version"]
    numbers = [e["version"] for e in versions]
    assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) >= 2, numbers
    assert saved is not None and saved[0] == numbers[-1]
    ids_of = {e["version"]: set(e["related_ids"]) for e in versions}

    # Both workers' partitions made changes, each with a version the learner built and one of
    # that version's segment ids.
    changes = [json.loads(m.value) for m in read_topic(stack.bootstrap, topic_names["changes"])]
    assert {c["source_partition"] for c in changes} == {0, 1, 2, 3}
    for c in changes:
        assert c["model_version"] in ids_of, c
        assert c["current"]["id"] in ids_of[c["model_version"]], c
    # The followers (partitions 1 and 3) moved to newer versions as the learner built them.
    follower_versions = {c["model_version"] for c in changes if c["source_partition"] % 2}
    assert len(follower_versions) >= 2, follower_versions


def _start(env: dict[str, str], port: int, log_path: Path) -> subprocess.Popen[bytes]:
    out = log_path.open("ab")
    try:
        return subprocess.Popen(
            [*SEGSTREAM, "run", "--workers", "2", "--metrics-port", str(port)],
            cwd=ROOT,
            env=cli_env(env),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    finally:
        out.close()


def _workers_of(sup: subprocess.Popen[bytes], port: int, log_path: Path) -> list[int]:
    wait_until(lambda: ready(port) and ready(port + 1), 90, f"both workers ready\n{tail(log_path)}", step=0.2)
    workers = [p for p in children(sup.pid) if "stream.workers" in Path(f"/proc/{p}/cmdline").read_text()]
    assert len(workers) == 2, workers
    return sorted(workers, key=lambda p: Path(f"/proc/{p}/cmdline").read_text())


def test_a_dead_worker_stops_the_set(stack: Stack, settings_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    port = free_port_pair()
    log_path = tmp_path / "run.log"
    sup = _start(settings_env, port, log_path)
    try:
        w0, w1 = _workers_of(sup, port, log_path)
        publishers = children(w0) + children(w1)
        os.kill(w1, signal.SIGKILL)
        rc = sup.wait(timeout=90)
    finally:
        if sup.poll() is None:
            sup.kill()
            sup.wait()
    assert rc == 1, tail(log_path)
    assert "worker 1 exited with code -9" in log_path.read_text(), tail(log_path)
    wait_until(lambda: not any(alive(p) for p in [w0, *publishers]), 30, "no process left")


def test_a_killed_supervisor_leaves_no_workers(stack: Stack, settings_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    port = free_port_pair()
    log_path = tmp_path / "run.log"
    sup = _start(settings_env, port, log_path)
    workers: list[int] = []
    try:
        workers = _workers_of(sup, port, log_path)
        publishers = [c for w in workers for c in children(w)]
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
