"""End-to-end benchmark against the local stack (Kafka 4.1 + Redis from scripts/stack.sh; not a test).

1. A generated log (``--customers`` x ``--days``, ~180k events by default) is produced once to a
   fresh 4-partition interactions topic. Then, per repeat and in the same run:
   - raw: the topic consumed with the pipeline's own client (``make_consumer`` with the same
     settings, a fresh group), polling until every record is read, no processing;
   - full: ``Service`` (``serve_http=False``, ``run(until_idle=3)``) over the whole topic, with a
     fresh group, Redis namespace and output topics; the default model settings (cold model);
   - full with ``--workers`` processes (default 2 and 4): ``segstream run --workers N`` in a
     subprocess, timed from outside on Redis's applied offsets, from the first batch in Redis to
     the last (the first batch's records not counted); the goals are checked on the last count
     listed (default 4, one worker per partition: the deployment this 2-core machine should use,
     the fastest in scratch runs, because each worker's waits for Redis and Kafka leave the
     cores idle that the other workers then use);
   - naive: one record at a time over the first ``--naive-records`` records: validate, GET the
     packed state, ``apply_event``, ``evaluate``, ``engine.assign`` one row (the model the full
     run learned, restored), SET the state, produce a change (and flush it) when the segment
     changed, ``consumer.commit`` the offset.
   Rates are records/s from the return of the first poll that brought records to the last
   record read (raw) / the last commit (full, naive), counting the records after that first
   poll: the consumer-group join and the idle tail are not timed. Ratios full/raw (goal >= 0.3)
   and full/naive (goal >= 25) use the medians over ``--repeats``.
2. Latency at a fixed input rate: ``segstream run --workers N`` (``--latency-workers``, default
   1) in a subprocess (as in production) with a fresh namespace pre-warmed with the model
   snapshot of the full run (fresh customer states, so each customer's first event after the
   start is a change: previous = none).
   A thread hands generated events at ``--rate`` events/s for ``--seconds`` s to a load generator
   in its own process (``LineProducer.java``, the Java client: kafka-python in this process took
   most of a core the service needed), the ``ts`` of each event rewritten to the wall clock when
   handed over (everything else kept). A
   subscriber thread tails the changes topic. Per change: event-to-change latency =
   ``emitted_at`` header (ms) - the source event's ts, and event-to-visible = the time the
   subscriber received it - the event's ts. p50/p99 (goal p99 < 250 ms at 5k events/s), the
   achieved input rate, the consumer lag while sending and after the last send.
3. A summary table with medians over repeats and the goals. When a goal is missed (or with
   ``--profile``), one more full run under cProfile prints the top costs in microseconds per event.

``--redis-cluster``: ``--redis-url`` is a node of a Redis Cluster (``redis.cluster``, passed to the
in-process runs, the ``segstream run`` subprocesses and the clean-up, which scans every primary).
``--latency-workers 1,2,4`` runs the latency part once per count in each repeat and prints a table
of their medians.

Everything (topics, consumer groups, Redis namespaces) is named ``be2e<uuid>...`` and deleted
at the end.

    .venv/bin/python benchmarks/bench_e2e.py [--quick] [--repeats N] [--profile | --no-profile]
        [--redis-url redis://localhost:17001/0 --redis-cluster] [--workers 1,2,4] [--latency-workers 1,2,4]
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import logging
import math
import os
import pstats
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from kafka import KafkaConsumer, OffsetAndMetadata, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaError
from pydantic import ValidationError

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from models.contracts import InteractionEvent, SegmentChange, SegmentRef  # noqa: E402
from models.features import CustomerState, apply_event, evaluate, fact_of  # noqa: E402
from models.segments.engine import SegmentEngine  # noqa: E402
from models.sim import generate  # noqa: E402
from stream.config import Settings, load  # noqa: E402
from stream.io.kafka import ensure_topics, make_admin, make_consumer, make_producer  # noqa: E402
from stream.runtime.engines import tune_runtime  # noqa: E402
from stream.runtime.service import Service  # noqa: E402
from stream.state import FeatureStore  # noqa: E402
from stream.state.redis_store import connect  # noqa: E402

PARTITIONS = 4
GOAL_FULL_RAW = 0.3
GOAL_FULL_NAIVE = 25.0
STEADY_AFTER_S = 3  # the latency run's first seconds (most customers new) are reported apart
GOAL_P99_MS = 250.0


# ----------------------------------------------------------------------------- names and clean-up


@dataclass
class Resources:
    """Everything this run creates, deleted at the end."""

    run_id: str = field(default_factory=lambda: "be2e" + uuid.uuid4().hex[:8])
    topics: set[str] = field(default_factory=set)
    groups: set[str] = field(default_factory=set)
    namespaces: set[str] = field(default_factory=set)

    def group(self, tag: str) -> str:
        g = f"{self.run_id}-{tag}"
        self.groups.add(g)
        return g

    def namespace(self, tag: str) -> str:
        ns = f"{self.run_id}{tag}"[:32]
        self.namespaces.add(ns)
        return ns


def settings_for(
    bootstrap: str,
    redis_url: str,
    interactions: str,
    prefix: str,
    group: str,
    namespace: str,
    model: dict[str, Any] | None = None,
    cluster: bool = False,
) -> Settings:
    return load(
        overrides={
            "kafka": {"bootstrap_servers": bootstrap, "group_id": group},
            "redis": {"url": redis_url, "namespace": namespace, "cluster": cluster},
            "topics": {
                "interactions": interactions,
                "dlq": f"{prefix}.dlq",
                "changes": f"{prefix}.changes",
                "current": f"{prefix}.current",
                "model": f"{prefix}.model",
                "model_events": f"{prefix}.model-events",
                "partitions": PARTITIONS,
            },
            "service": {"metrics_port": 0},
            **({"model": model} if model else {}),
        }
    )


def output_topics(s: Settings) -> list[str]:
    t = s.topics
    return [t.out(n) for n in ("dlq", "changes", "current", "model", "model_events")]


def open_store(s: Settings) -> FeatureStore:
    """The run's store on the settings' Redis (a single server or a cluster, ``redis.cluster``)."""
    return FeatureStore(s.redis.url.get_secret_value(), s.redis.namespace, cluster=s.redis.cluster).start()


def cleanup(res: Resources, base: Settings) -> None:
    admin = make_admin(base)
    try:
        existing = set(admin.list_topics())
        mine = sorted(t for t in existing if t in res.topics or t.startswith(res.run_id))
        if mine:
            with contextlib.suppress(KafkaError):
                admin.delete_topics(mine)
        if res.groups:
            with contextlib.suppress(KafkaError):
                admin.delete_groups(sorted(res.groups))
    finally:
        admin.close()
    # On a cluster, scan_iter visits every primary and unlink splits the keys by slot.
    client = connect(base.redis.url.get_secret_value(), base.redis.cluster, 30, 5)
    deleted = 0
    for ns in res.namespaces:
        batch: list[bytes] = []
        for k in client.scan_iter(match=f"{ns}:*", count=5000):
            batch.append(k)
            if len(batch) >= 5000:
                deleted += client.unlink(*batch)
                batch = []
        if batch:
            deleted += client.unlink(*batch)
    client.close()
    print(
        f"cleaned up: {len(mine)} topics, {len(res.groups)} consumer groups, "
        f"{len(res.namespaces)} Redis namespaces ({deleted} keys)"
    )


def create_topic(base: Settings, name: str, partitions: int = PARTITIONS) -> None:
    admin = make_admin(base)
    try:
        admin.create_topics([NewTopic(name, partitions, 1)])
        deadline = time.monotonic() + 30
        while name not in set(admin.list_topics()) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        admin.close()


def produce_log(base: Settings, topic: str, records: list[tuple[bytes, bytes]]) -> float:
    producer = make_producer(base, linger_ms=20)
    t0 = time.perf_counter()
    for key, value in records:
        producer.send(topic, key=key, value=value)
    producer.flush(timeout=300)
    producer.close()
    return time.perf_counter() - t0


# ----------------------------------------------------------------------------- timing of polls


class PollClock:
    """Wraps ``consumer.poll``: when the first records arrived, and how many came with them."""

    def __init__(self, consumer: KafkaConsumer) -> None:
        self._poll = consumer.poll
        self.first_at: float | None = None
        self.first_n = 0
        self.busy = 0.0
        self._waited = 0.0  # inside polls since the last one that brought records

    def __call__(self, *args: Any, **kwargs: Any) -> dict:
        t = time.perf_counter()
        polled = self._poll(*args, **kwargs)
        if self.first_at is not None or polled:
            # Time inside poll once records flow, up to the last poll that brought records: the
            # empty polls of the idle tail (``until_idle``) are not the pipeline's cost.
            self._waited += time.perf_counter() - t
            if polled:
                self.busy += self._waited
                self._waited = 0.0
        if polled and self.first_at is None:
            self.first_at = time.perf_counter()
            self.first_n = sum(len(v) for v in polled.values())
        return polled


def rate(n: int, first_at: float | None, last_at: float | None) -> float:
    """``n`` records over the time from the first poll that brought records to ``last_at``."""
    if first_at is None or last_at is None or last_at <= first_at:
        return float("nan")
    return n / (last_at - first_at)


# ----------------------------------------------------------------------------- (a) raw consume


def run_raw(s: Settings, total: int) -> float:
    consumer = make_consumer(s)
    consumer.subscribe([s.topics.interactions])
    clock = PollClock(consumer)
    n = 0
    last = None
    deadline = time.monotonic() + 600
    while n < total and time.monotonic() < deadline:
        polled = clock(timeout_ms=s.kafka.poll_timeout_ms)
        if polled:
            n += sum(len(v) for v in polled.values())
            last = time.perf_counter()
    consumer.close(autocommit=False)
    if n < total:
        raise RuntimeError(f"raw consume read {n} of {total} records")
    return rate(n - clock.first_n, clock.first_at, last)  # the first poll's fetch is not timed


# ----------------------------------------------------------------------------- (b) full pipeline


@dataclass
class FullRun:
    rate: float
    records: int
    changes: int
    batches: int
    dead_letters: int
    seconds: float  # first records to last commit
    model_version: int
    poll_us: float  # per record: inside consumer.poll (fetch, decode, waiting for the client's IO thread)


def run_full(s: Settings, total: int, profile: cProfile.Profile | None = None) -> FullRun:
    svc = Service(s)
    svc.start(serve_http=False)
    assert svc.consumer is not None
    clock = PollClock(svc.consumer)
    svc.consumer.poll = clock
    process = svc._process
    last: list[float] = []

    def timed_process(records: Any, summary: Any) -> None:
        process(records, summary)  # ends with the Kafka commit
        last.append(time.perf_counter())

    svc._process = timed_process  # type: ignore[method-assign]
    try:
        if profile is not None:
            profile.enable()
        summary = svc.run(until_idle=3)
        if profile is not None:
            profile.disable()
        version = svc.processor.engine.version if svc.processor else -1
    finally:
        svc.close()
    if summary.records != total:
        raise RuntimeError(f"service processed {summary.records} of {total} records")
    end = last[-1] if last else None
    return FullRun(
        rate=rate(summary.records, clock.first_at, end),
        records=summary.records,
        changes=summary.changes,
        batches=summary.batches,
        dead_letters=summary.dead_letters,
        seconds=(end - clock.first_at) if end and clock.first_at else float("nan"),
        model_version=version,
        poll_us=clock.busy / max(summary.records, 1) * 1e6,
    )


def stop_service(proc: subprocess.Popen[str]) -> None:
    """SIGTERM (finish the batch, commit), then kill after a minute."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class WorkersRun:
    rate: float
    seconds: float  # first batch in Redis to the last
    workers: int


def run_full_workers(s: Settings, total: int, workers: int) -> WorkersRun:
    """``segstream run --workers N`` as a user starts it, timed from outside: from the first batch
    whose state reached Redis to the moment every partition's applied offset is the topic's last
    (Redis's applied offsets, read every 20 ms). The first batch's records are not counted, as
    the raw run does not count the first poll's."""
    ensure_topics(s)
    probe = make_consumer(s, group_id=None)
    tps = [TopicPartition(s.topics.interactions, p) for p in range(s.topics.partitions)]
    last = {tp.partition: off - 1 for tp, off in probe.end_offsets(tps).items()}
    probe.close()
    env = {**os.environ, **settings_env(s), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "stream", "run", "--workers", str(workers), "--metrics-port", "0"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    store = open_store(s)
    first_at: float | None = None
    first_n = 0
    try:
        deadline = time.monotonic() + 600
        while True:
            if proc.poll() is not None:
                out = proc.stdout.read()[-2000:] if proc.stdout else ""
                raise RuntimeError(f"segstream run exited early: {out}")
            applied = {p: store.applied_offset(p) for p in last}
            now = time.perf_counter()
            done = sum(a + 1 for a in applied.values())
            if first_at is None and done:
                first_at, first_n = now, done
            if all(applied[p] >= last[p] for p in last):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{workers} workers applied {done} of {total} records in 600 s")
            time.sleep(0.02)
    finally:
        store.close()
        stop_service(proc)
    assert first_at is not None
    return WorkersRun(rate=rate(total - first_n, first_at, now), seconds=now - first_at, workers=workers)


# ----------------------------------------------------------------------------- (c) naive pipeline


def run_naive(s: Settings, engine: SegmentEngine, limit: int) -> tuple[float, int, dict[str, float]]:
    """One event at a time, one round trip per step; returns (records/s, changes, ms/record by step)."""
    store = open_store(s)
    client = store.client
    producer = make_producer(s)
    consumer = make_consumer(s)
    topic = s.topics.interactions
    changes_topic = s.topics.out("changes")
    consumer.subscribe([topic])
    clock = PollClock(consumer)
    params = s.features.params()
    names = {seg.id: seg.name for seg in engine.segments()}
    n = changes = 0
    last = None
    spent = {"redis": 0.0, "produce+flush": 0.0, "commit": 0.0}
    pc = time.perf_counter
    deadline = time.monotonic() + 900
    try:
        while n < limit and time.monotonic() < deadline:
            for tp, msgs in clock(timeout_ms=s.kafka.poll_timeout_ms).items():
                for m in msgs:
                    if n >= limit:
                        break
                    n += 1
                    try:
                        event = InteractionEvent.model_validate_json(m.value)
                    except ValidationError:
                        consumer.commit({tp: OffsetAndMetadata(m.offset + 1, "", -1)})
                        continue
                    key = f"{s.redis.namespace}:{{{tp.partition}}}:naive:{event.customer_id}"
                    t = pc()
                    blob = client.get(key)
                    spent["redis"] += pc() - t
                    state = CustomerState.unpack(blob) if blob else CustomerState.new()
                    fact = fact_of(event)
                    if apply_event(state, params, fact):
                        vector = evaluate(state, params, fact.ts)
                        a = engine.assign(vector[None, :])
                        best = int(a.segment_ids[0])
                        current = state.segment if state.segment >= 0 else None
                        if best >= 0 and best != current:
                            row = a.row(0)
                            state.segment = best
                            state.segment_since = fact.ts
                            state.seq += 1
                            change = SegmentChange(
                                change_id=uuid.uuid4().hex,
                                customer_id=event.customer_id,
                                seq=state.seq,
                                previous=None
                                if current is None
                                else SegmentRef(id=current, name=names.get(current, "")),
                                current=SegmentRef(id=best, name=names.get(best, "")),
                                membership={
                                    str(k): round(v, 4)
                                    for k, v in sorted(row.membership.items())
                                    if v >= 0.005
                                },
                                confidence=round(float(row.confidence), 4),
                                outlier=bool(row.outlier),
                                reason="event",
                                explanation=engine.explain(vector, current, best),
                                rfm=engine.rfm(vector),
                                model_version=row.version,
                                event_time=event.ts,
                                source_topic=topic,
                                source_partition=tp.partition,
                                source_offset=m.offset,
                            )
                            t = pc()
                            producer.send(
                                changes_topic,
                                key=event.customer_id.encode(),
                                value=change.model_dump_json().encode(),
                            )
                            producer.flush()  # the change is acknowledged before the offset moves
                            spent["produce+flush"] += pc() - t
                            changes += 1
                        t = pc()
                        client.set(key, state.pack())
                        spent["redis"] += pc() - t
                    t = pc()
                    consumer.commit({tp: OffsetAndMetadata(m.offset + 1, "", -1)})
                    last = pc()
                    spent["commit"] += last - t
    finally:
        consumer.close(autocommit=False)
        producer.close(timeout=10)
        store.close()
    if n < limit:
        raise RuntimeError(f"naive pipeline read {n} of {limit} records")
    r = rate(n, clock.first_at, last)
    per = {k: v / n * 1000 for k, v in spent.items()}
    per["python (validate, features, assign, change)"] = (
        1000 / r - sum(per.values()) if not math.isnan(r) else float("nan")
    )
    return r, changes, per


# ----------------------------------------------------------------------------- 2. latency


def free_ports(n: int) -> int:
    """A port p such that p .. p + n - 1 are free now."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port + n > 65536:
            continue
        try:
            for q in range(port, port + n):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", q))
        except OSError:
            continue
        return port


def is_ready(port: int) -> bool:
    with (
        contextlib.suppress(OSError),
        urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r,
    ):
        return bool(r.status == 200)
    return False


def settings_env(s: Settings) -> dict[str, str]:
    t = s.topics
    return {
        "SEGSTREAM_KAFKA__BOOTSTRAP_SERVERS": s.kafka.bootstrap_servers,
        "SEGSTREAM_KAFKA__GROUP_ID": s.kafka.group_id,
        "SEGSTREAM_REDIS__URL": s.redis.url.get_secret_value(),
        "SEGSTREAM_REDIS__NAMESPACE": s.redis.namespace,
        "SEGSTREAM_REDIS__CLUSTER": "true" if s.redis.cluster else "false",
        "SEGSTREAM_TOPICS__INTERACTIONS": t.interactions,
        "SEGSTREAM_TOPICS__DLQ": t.dlq,
        "SEGSTREAM_TOPICS__CHANGES": t.changes,
        "SEGSTREAM_TOPICS__CURRENT": t.current,
        "SEGSTREAM_TOPICS__MODEL": t.model,
        "SEGSTREAM_TOPICS__MODEL_EVENTS": t.model_events,
        "SEGSTREAM_TOPICS__PARTITIONS": str(t.partitions),
    }


_TS = b'"ts":"'


def with_now(value: bytes, now: float) -> bytes:
    """The event with its ts replaced by ``now`` (RFC 3339, milliseconds, Z): 24 characters."""
    i = value.index(_TS) + len(_TS)
    sec = int(now)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{int((now - sec) * 1000):03d}Z"
    return value[:i] + stamp.encode() + value[i + 24 :]


def parse_ts_ms(value: bytes) -> int:
    i = value.index(_TS) + len(_TS)
    stamp = value[i : i + 24].decode()
    dt = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    return round(dt.timestamp() * 1000)


WARMUP_RECORDS = 50_000  # sent by the load generator to a scratch topic before the timed run


def warmup_topic(s: Settings) -> str:
    return f"{s.topics.interactions}.warmup"


class Producer(threading.Thread):
    """Sends ``records`` at ``rate``/s (in 5 ms ticks), each stamped with the wall clock when it is
    handed to the load generator (``LineProducer.java``: the Java client in its own process,
    started, connected and warmed up on a scratch topic before the first record, so that it
    takes ~0.2 of a core rather than the ~0.4-0.6 that kafka-python's send path took)."""

    def __init__(self, s: Settings, records: list[tuple[bytes, bytes]], rate: float, seconds: float) -> None:
        super().__init__(daemon=True)
        self.records, self.rate, self.seconds = records, rate, seconds
        self.sent = 0
        self.started = self.ended = 0.0
        self.stop = threading.Event()
        self.error: str | None = None
        self.proc = subprocess.Popen(
            [
                "java",
                # C1 only and a small serial heap: C2's compiler threads took most of a core for
                # the first seconds of a run, competing with the service under test.
                "-XX:TieredStopAtLevel=1",
                "-XX:+UseSerialGC",
                "-Xmx256m",
                "-cp",
                str(ROOT / ".cache" / "kafka" / "libs" / "*"),
                str(ROOT / "benchmarks" / "LineProducer.java"),
                s.kafka.bootstrap_servers,
                s.topics.interactions,
                warmup_topic(s),
                str(WARMUP_RECORDS),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        ready = self.proc.stdout.readline()
        if ready.strip() != b"ready":
            self.proc.kill()
            raise RuntimeError(f"LineProducer.java did not start (it needs a JDK): {ready!r}")

    def run(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        total = min(len(self.records), int(self.rate * self.seconds))
        self.started = time.perf_counter()
        while self.sent < total and not self.stop.is_set():
            due = min(total, int((time.perf_counter() - self.started) * self.rate) + 1)
            now = time.time()
            lines = [
                key + b"\t" + with_now(value, now) + b"\n" for key, value in self.records[self.sent : due]
            ]
            self.proc.stdin.write(b"".join(lines))
            self.proc.stdin.flush()
            self.sent = due
            time.sleep(0.005)
        self.ended = time.perf_counter()
        self.proc.stdin.close()
        done = self.proc.stdout.readline()  # "sent N": every record acknowledged
        self.proc.wait(timeout=60)
        if done.strip() != f"sent {self.sent}".encode():
            self.error = f"LineProducer.java printed {done!r}, expected sent {self.sent}"

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Subscriber(threading.Thread):
    """Tails the changes topic from its beginning, noting when each record was received."""

    def __init__(self, s: Settings) -> None:
        super().__init__(daemon=True)
        self.consumer = make_consumer(s, group_id=None)
        parts = [TopicPartition(s.topics.out("changes"), p) for p in range(s.topics.partitions)]
        self.consumer.assign(parts)
        self.consumer.seek_to_beginning(*parts)
        self.stop = threading.Event()
        self.got: list[tuple[float, Any]] = []

    def run(self) -> None:
        while not self.stop.is_set():
            polled = self.consumer.poll(timeout_ms=50)
            now = time.time()
            for msgs in polled.values():
                for m in msgs:
                    self.got.append((now, m))
        self.consumer.close()


def group_lag(admin: Any, consumer: KafkaConsumer, s: Settings) -> int:
    parts = [TopicPartition(s.topics.interactions, p) for p in range(s.topics.partitions)]
    ends = consumer.end_offsets(parts)
    committed = admin.list_group_offsets({s.kafka.group_id: None}).get(s.kafka.group_id) or {}
    lag = 0
    for tp in parts:
        c = committed.get(tp)
        lag += ends[tp] - (c.offset if c is not None and c.offset >= 0 else 0)
    return lag


def read_all(s: Settings, topic: str) -> list[Any]:
    consumer = make_consumer(s, group_id=None)
    parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    end = consumer.end_offsets(parts)
    out: list[Any] = []
    pending = {tp for tp in parts if end[tp] > 0}
    deadline = time.monotonic() + 120
    while pending and time.monotonic() < deadline:
        for tp, msgs in consumer.poll(timeout_ms=500).items():
            out.extend(m for m in msgs if m.offset < end[tp])
        pending = {tp for tp in pending if consumer.position(tp) < end[tp]}
    consumer.close()
    return out


@dataclass
class LatencyRun:
    sent: int
    input_rate: float
    changes: int
    emit_p50: float
    emit_p99: float
    emit_max: float
    first_p99: float  # changes of events in the first STEADY_AFTER_S seconds
    first_changes: int
    steady_p99: float  # the rest
    visible_p50: float
    visible_p99: float
    lag_max: int
    lag_at_end: int
    drain_s: float
    service_rate: float  # records/s the service got through: sent / (send time + drain time)
    dead_letters: int
    batches: int  # from the service's own metrics, scraped before it stops
    batch_records: float  # mean records per batch
    busy: float  # segstream_batch_seconds over the send + drain time, mean of the workers: how loaded


def run_latency(
    s: Settings,
    base: Settings,
    model: tuple[int, bytes],
    records: list[tuple[bytes, bytes]],
    rate_target: float,
    seconds: float,
    workers: int = 1,
) -> LatencyRun:
    create_topic(base, s.topics.interactions)
    create_topic(base, warmup_topic(s))
    ensure_topics(s)
    store = open_store(s)
    store.save_model(model[1], model[0])  # pre-warmed model, fresh customer states
    store.close()
    port = free_ports(workers)  # worker i serves on port + i
    env = {**os.environ, **settings_env(s), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "stream", "run", "--metrics-port", str(port), "--workers", str(workers)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    prod: Producer | None = None
    sub: Subscriber | None = None
    batch_stats: dict[str, float] = {}
    try:
        deadline = time.monotonic() + 60
        while True:  # /readyz: partitions assigned and model loaded
            if proc.poll() is not None:
                raise RuntimeError(
                    f"segstream run exited early: {proc.stdout.read()[-2000:] if proc.stdout else ''}"
                )
            if all(is_ready(port + i) for i in range(workers)):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("segstream run did not become ready within 60 s")
            time.sleep(0.2)
        sub = Subscriber(s)
        sub.start()
        prod = Producer(s, records, rate_target, seconds)
        admin = make_admin(s)
        probe = make_consumer(s, group_id=None)
        lag_max = 0
        prod.start()
        while prod.is_alive():
            time.sleep(0.5)
            lag_max = max(lag_max, group_lag(admin, probe, s))
        prod.join()
        if prod.error:
            raise RuntimeError(prod.error)
        lag_end = group_lag(admin, probe, s)  # right after the last send was acknowledged
        t_end = time.perf_counter()
        drained = float("nan")
        while time.perf_counter() - t_end < 60:
            if group_lag(admin, probe, s) == 0:
                drained = time.perf_counter() - t_end
                break
            time.sleep(0.05)
        time.sleep(1.0)  # the subscriber reads the last changes
        for i in range(workers):
            for k, v in scrape_batch_stats(port + i).items():
                batch_stats[k] = batch_stats.get(k, 0.0) + v
        sub.stop.set()
        sub.join(timeout=10)
        admin.close()
        probe.close()
    finally:
        if prod is not None:
            prod.stop.set()
            if prod.is_alive():
                prod.join(timeout=60)
            prod.close()
        if sub is not None:
            sub.stop.set()
        stop_service(proc)
    # Event times of the sent events, by source position.
    ts_of = {(m.partition, m.offset): parse_ts_ms(m.value) for m in read_all(s, s.topics.interactions)}
    emit: list[float] = []
    visible: list[float] = []
    event_ts: list[int] = []
    for received, m in sub.got:
        body = json.loads(m.value)
        if body.get("reason") != "event":
            continue
        ev = ts_of.get((body["source_partition"], body["source_offset"]))
        if ev is None:
            continue
        headers = dict(m.headers or [])
        emitted = int(headers[b"emitted_at"] if b"emitted_at" in headers else headers["emitted_at"])
        emit.append(emitted - ev)
        visible.append(received * 1000 - ev)
        event_ts.append(ev)
    dlq = read_all(s, s.topics.out("dlq"))

    def pct(xs: list[float], q: float) -> float:
        return float(np.percentile(xs, q)) if xs else float("nan")

    # Where the p99 comes from: the first seconds, when most customers are new and most events
    # change segment, against the rest of the run.
    start = min(event_ts, default=0) + STEADY_AFTER_S * 1000
    first = [x for x, t in zip(emit, event_ts, strict=True) if t < start]
    steady = [x for x, t in zip(emit, event_ts, strict=True) if t >= start]

    return LatencyRun(
        sent=prod.sent,
        input_rate=prod.sent / (prod.ended - prod.started) if prod.ended > prod.started else float("nan"),
        changes=len(emit),
        emit_p50=pct(emit, 50),
        emit_p99=pct(emit, 99),
        first_p99=pct(first, 99),
        first_changes=len(first),
        steady_p99=pct(steady, 99),
        emit_max=max(emit) if emit else float("nan"),
        visible_p50=pct(visible, 50),
        visible_p99=pct(visible, 99),
        lag_max=lag_max,
        lag_at_end=lag_end,
        drain_s=drained,
        service_rate=prod.sent / (prod.ended - prod.started + drained)
        if not math.isnan(drained)
        else float("nan"),
        dead_letters=len(dlq),
        batches=int(batch_stats.get("segstream_batch_seconds_count", 0)),
        batch_records=batch_stats.get("segstream_batch_size_sum", 0.0)
        / max(batch_stats.get("segstream_batch_size_count", 0.0), 1.0),
        busy=batch_stats.get("segstream_batch_seconds_sum", float("nan"))
        / workers
        / (prod.ended - prod.started + (drained if not math.isnan(drained) else 0.0)),
    )


def scrape_batch_stats(port: int) -> dict[str, float]:
    """The service's batch histograms' sums and counts (its /metrics), for how busy it ran."""
    wanted = (
        "segstream_batch_seconds_sum",
        "segstream_batch_seconds_count",
        "segstream_batch_size_sum",
        "segstream_batch_size_count",
    )
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return {}
    return {
        name: float(value)
        for name, _, value in (line.partition(" ") for line in text.splitlines())
        if name in wanted
    }


# ----------------------------------------------------------------------------- profile


def print_profile(prof: cProfile.Profile, events: int, top: int) -> None:
    stats = pstats.Stats(prof)
    rows = []
    for (filename, line, func), (_cc, nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        short = filename.replace(str(ROOT) + "/", "")
        if "site-packages/" in short:
            short = short.split("site-packages/", 1)[1]
        rows.append((tt, ct, nc, f"{short}:{line}({func})"))
    total = sum(r[0] for r in rows)
    print(
        f"\ncProfile of one full run: {total / events * 1e6:.1f} us/event profiled in total "
        f"({events:,} events)"
    )
    print(f"  top {top} by own time (us/event own, us/event cumulative, calls/event):")
    for tt, ct, nc, name in sorted(rows, reverse=True)[:top]:
        print(f"  {tt / events * 1e6:8.2f} {ct / events * 1e6:8.2f} {nc / events:7.2f}  {name}")
    print(f"  top {top} by cumulative time:")
    for tt, ct, nc, name in sorted(rows, key=lambda r: -r[1])[:top]:
        print(f"  {tt / events * 1e6:8.2f} {ct / events * 1e6:8.2f} {nc / events:7.2f}  {name}")


# ----------------------------------------------------------------------------- main


def med(xs: list[float]) -> float:
    xs = [x for x in xs if not math.isnan(x)]
    return statistics.median(xs) if xs else float("nan")


def fmt_list(xs: list[float], digits: int = 0) -> str:
    return "[" + ", ".join(f"{x:,.{digits}f}" for x in xs) + "]"


def print_latency(i: int, workers: int, lat: LatencyRun, seconds: float) -> None:
    print(
        f"[{i}] latency ({workers} worker(s)) at {lat.input_rate:,.0f} events/s for {seconds:g}s: "
        f"{lat.changes:,} changes, "
        f"event->emitted p50 {lat.emit_p50:.0f} ms p99 {lat.emit_p99:.0f} ms "
        f"max {lat.emit_max:.0f} ms (first {STEADY_AFTER_S}s: {lat.first_changes:,} changes, "
        f"p99 {lat.first_p99:.0f} ms; after: p99 {lat.steady_p99:.0f} ms); "
        f"event->visible p50 {lat.visible_p50:.0f} ms "
        f"p99 {lat.visible_p99:.0f} ms; lag max {lat.lag_max:,}, at last send {lat.lag_at_end:,}, "
        f"drained in {lat.drain_s:.2f}s; service {lat.service_rate:,.0f} records/s; "
        f"{lat.batches} batches of {lat.batch_records:,.0f} records, busy {lat.busy:.0%}"
    )


def print_latency_table(lats_w: dict[int, list[LatencyRun]]) -> None:
    """Medians per worker count of the latency runs (one line each), when more than one was run."""
    print(
        f"  latency by workers (medians): {'workers':>7s} {'in/s':>7s} {'p50 ms':>7s} {'p99 ms':>7s} "
        f"{'p99 after ' + str(STEADY_AFTER_S) + 's':>13s} {'lag end':>8s} {'drain s':>8s} {'busy':>5s}"
    )
    for n, xs in lats_w.items():
        print(
            f"  {'':30s} {n:7d} {med([x.input_rate for x in xs]):7,.0f} "
            f"{med([x.emit_p50 for x in xs]):7.0f} {med([x.emit_p99 for x in xs]):7.0f} "
            f"{med([x.steady_p99 for x in xs]):13.0f} {med([float(x.lag_at_end) for x in xs]):8,.0f} "
            f"{med([x.drain_s for x in xs]):8.2f} {med([x.busy for x in xs]):5.0%}   "
            f"p99 per repeat {fmt_list([x.emit_p99 for x in xs])}"
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", default="localhost:19092")
    ap.add_argument("--redis-url", default="redis://localhost:16379/0")
    ap.add_argument(
        "--redis-cluster",
        action="store_true",
        help="--redis-url is a node of a Redis Cluster (redis.cluster; scripts/stack.sh start --cluster "
        "serves redis://localhost:17001/0)",
    )
    ap.add_argument("--quick", action="store_true", help="small run (~1 minute)")
    ap.add_argument("--repeats", type=int, default=None, help="default 3 (1 with --quick)")
    ap.add_argument("--customers", type=int, default=None, help="throughput log (default 1500, quick 400)")
    ap.add_argument("--days", type=int, default=None, help="throughput log (default 90, quick 60)")
    ap.add_argument("--naive-records", type=int, default=None, help="default 2000 (quick 1000)")
    ap.add_argument("--rate", type=float, default=5000.0, help="latency run input rate, events/s")
    ap.add_argument("--seconds", type=float, default=None, help="latency run length (default 20, quick 8)")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument(
        "--workers",
        default="2,4",
        help="processes of the scaled-out full runs, comma-separated (segstream run --workers); "
        "the goals are checked on the last",
    )
    ap.add_argument(
        "--latency-workers",
        default="1",
        help="processes of the latency runs, comma-separated (default 1: steadier than 2 at 5k "
        "events/s on 2 cores); the p99 goal is checked on the first",
    )
    prof_group = ap.add_mutually_exclusive_group()
    prof_group.add_argument("--profile", action="store_true", help="always profile one full run")
    prof_group.add_argument("--no-profile", action="store_true", help="never profile")
    args = ap.parse_args()
    quick = args.quick
    repeats = args.repeats or (1 if quick else 3)
    customers = args.customers or (400 if quick else 1500)
    days = args.days or (60 if quick else 90)
    naive_n = args.naive_records or (1000 if quick else 2000)
    seconds = args.seconds or (8.0 if quick else 20.0)
    logging.basicConfig(level=logging.WARNING)

    res = Resources()
    base = settings_for(
        args.bootstrap,
        args.redis_url,
        "unused",
        res.run_id,
        res.group("base"),
        res.namespace("b"),
        cluster=args.redis_cluster,
    )
    interactions = f"{res.run_id}.interactions"
    res.topics.add(interactions)
    print(
        f"run {res.run_id}: {repeats} repeat(s){' (quick)' if quick else ''}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f} (other work on the machine skews every figure); "
        f"Redis {'Cluster ' if args.redis_cluster else ''}{args.redis_url}"
    )

    # The log ends at today's midnight (UTC): the latency run's events (ts = now) follow it.
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    t0 = time.perf_counter()
    log = generate(customers, days, seed=args.seed, start=today - timedelta(days=days))
    records = [(r.key, r.value) for r in log.records]
    total = len(records)
    create_topic(base, interactions)
    took = produce_log(base, interactions, records)
    print(
        f"log: {customers:,} customers x {days} days = {total:,} events (generated+produced in "
        f"{time.perf_counter() - t0:.1f}s, produce {total / took:,.0f}/s) -> {interactions} "
        f"({PARTITIONS} partitions)"
    )
    lat_customers = max(2000, int(args.rate * seconds / 5))
    live = generate(lat_customers, 5, seed=args.seed + 1000)
    live_records = [(r.key, r.value) for r in live.records]
    # This process now holds millions of long-lived objects (the logs). Without this, the raw
    # consumer's first run paid the cyclic GC's full scans of them (~130k against ~190k records/s
    # in later repeats); the service tunes its own runtime the same way (tune_runtime).
    tune_runtime()
    if len(live_records) < args.rate * seconds:
        live_records = live_records * math.ceil(args.rate * seconds / len(live_records))

    def run_settings(prefix: str, group: str, namespace: str, topic: str = interactions) -> Settings:
        """Settings of one measured run: its own output topics, consumer group and namespace."""
        out, grp, ns = f"{res.run_id}.{prefix}", res.group(group), res.namespace(namespace)
        return settings_for(args.bootstrap, args.redis_url, topic, out, grp, ns, cluster=args.redis_cluster)

    raws: list[float] = []
    fulls: list[FullRun] = []
    worker_counts = [int(w) for w in args.workers.split(",")]
    fulls_w: dict[int, list[float]] = {w: [] for w in worker_counts}
    naives: list[float] = []
    naive_changes: list[int] = []
    lat_counts = [int(w) for w in args.latency_workers.split(",")]
    lats_w: dict[int, list[LatencyRun]] = {n: [] for n in lat_counts}
    exit_code = 0
    try:
        for i in range(1, repeats + 1):
            tag = f"r{i}"
            s_raw = run_settings(tag, f"{tag}-raw", f"{tag}raw")
            raws.append(run_raw(s_raw, total))
            print(f"[{i}] raw consume: {raws[-1]:,.0f} records/s")

            s_full = run_settings(tag, f"{tag}-full", f"{tag}full")
            f = run_full(s_full, total)
            fulls.append(f)
            print(
                f"[{i}] full pipeline: {f.rate:,.0f} records/s ({f.records:,} records, {f.batches} batches, "
                f"{f.changes:,} changes, model v{f.model_version}, {f.seconds:.1f}s; per record "
                f"{1e6 / f.rate:.0f} us, of which {f.poll_us:.0f} us in consumer.poll)"
            )
            for n in worker_counts:
                s_work = run_settings(f"{tag}w{n}", f"{tag}-workers{n}", f"{tag}workers{n}")
                w = run_full_workers(s_work, total, n)
                fulls_w[n].append(w.rate)
                print(
                    f"[{i}] full pipeline, segstream run --workers {w.workers}: {w.rate:,.0f} records/s "
                    f"({w.seconds:.1f}s from the first batch in Redis to the last)"
                )
            store = open_store(s_full)
            model = store.load_model()
            store.close()
            assert model is not None, "the full run saved no model"
            engine = SegmentEngine.restore(model[1])

            s_naive = run_settings(f"{tag}n", f"{tag}-naive", f"{tag}naive")
            ensure_topics(s_naive, only=[s_naive.topics.out("changes")])
            r, c, per = run_naive(s_naive, engine, naive_n)
            naives.append(r)
            naive_changes.append(c)
            steps = ", ".join(f"{k} {v:.2f}" for k, v in per.items())
            print(
                f"[{i}] naive one-at-a-time: {r:,.0f} records/s (first {naive_n:,} records, {c:,} changes; "
                f"ms/record: {steps})"
            )

            for n in lat_counts:
                lt = f"{tag}l{n}"
                s_lat = run_settings(lt, f"{tag}-lat{n}", f"{tag}lat{n}", f"{res.run_id}.{lt}.interactions")
                res.topics.update({s_lat.topics.interactions, warmup_topic(s_lat)})
                lat = run_latency(s_lat, base, model, live_records, args.rate, seconds, n)
                lats_w[n].append(lat)
                print_latency(i, n, lat, seconds)

        lats = lats_w[lat_counts[0]]  # the goal is checked on the first count listed
        raw_m = med(raws)
        full_m = med([f.rate for f in fulls])
        naive_m = med(naives)
        p50 = med([x.emit_p50 for x in lats])
        p99 = med([x.emit_p99 for x in lats])
        vp50 = med([x.visible_p50 for x in lats])
        vp99 = med([x.visible_p99 for x in lats])
        in_rate = med([x.input_rate for x in lats])
        lag_end = med([float(x.lag_at_end) for x in lats])
        lag_max = med([float(x.lag_max) for x in lats])
        drain = med([x.drain_s for x in lats])
        goal_workers = worker_counts[-1]
        work_m = med(fulls_w[goal_workers])
        # The goals are checked on the deployment this machine should run: N worker processes.
        ok_raw = work_m / raw_m >= GOAL_FULL_RAW
        ok_naive = work_m / naive_m >= GOAL_FULL_NAIVE
        ok_p99 = p99 < GOAL_P99_MS
        kept_up = lag_end <= args.rate * 1.0 and not math.isnan(drain) and drain <= 2.0

        def mark(ok: bool) -> str:
            return "ok" if ok else "MISSED"

        print(f"\nload average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        print(
            f"summary: medians over {repeats} repeat(s); log {total:,} events, "
            f"{customers:,} customers x {days} days"
        )
        print(f"  {'measure':42s} {'median':>14s}   per repeat / goal")
        print(f"  {'raw consume (records/s)':42s} {raw_m:14,.0f}   {fmt_list(raws)}")
        one = "full pipeline, 1 process (records/s)"
        print(f"  {one:42s} {full_m:14,.0f}   {fmt_list([f.rate for f in fulls])}")
        for n in worker_counts:
            nw = f"full pipeline, {n} workers (records/s)"
            print(f"  {nw:42s} {med(fulls_w[n]):14,.0f}   {fmt_list(fulls_w[n])}")
        print(f"  {'naive one-at-a-time (records/s)':42s} {naive_m:14,.0f}   {fmt_list(naives)}")
        print(f"  {'full, 1 process / raw':42s} {full_m / raw_m:14.2f}")
        for n in worker_counts[:-1]:
            print(f"  {f'full, {n} workers / raw':42s} {med(fulls_w[n]) / raw_m:14.2f}")
        print(
            f"  {f'full, {goal_workers} workers / raw':42s} {work_m / raw_m:14.2f}   "
            f"goal >= {GOAL_FULL_RAW}: {mark(ok_raw)}"
        )
        print(f"  {'full, 1 process / naive':42s} {full_m / naive_m:14.1f}")
        print(
            f"  {f'full, {goal_workers} workers / naive':42s} {work_m / naive_m:14.1f}   "
            f"goal >= {GOAL_FULL_NAIVE:g}: {mark(ok_naive)}"
        )
        print(
            f"  {'latency run: input rate (events/s)':42s} {in_rate:14,.0f}   "
            f"target {args.rate:,.0f} for {seconds:g}s"
        )
        print(f"  {'latency run: changes measured':42s} {med([float(x.changes) for x in lats]):14,.0f}")
        print(
            f"  {'event -> change emitted p50 (ms)':42s} {p50:14.0f}   {fmt_list([x.emit_p50 for x in lats])}"
        )
        print(
            f"  {'event -> change emitted p99 (ms)':42s} {p99:14.0f}   goal < {GOAL_P99_MS:g}: "
            f"{mark(ok_p99)} {fmt_list([x.emit_p99 for x in lats])}"
        )
        print(
            f"  {'  of which events in the first ' + str(STEADY_AFTER_S) + ' s, p99':42s} "
            f"{med([x.first_p99 for x in lats]):14.0f}   {fmt_list([x.first_p99 for x in lats])}"
        )
        print(
            f"  {'  of which events after that, p99':42s} {med([x.steady_p99 for x in lats]):14.0f}   "
            f"{fmt_list([x.steady_p99 for x in lats])}"
        )
        print(f"  {'event -> change visible to a consumer p50':42s} {vp50:14.0f}")
        print(f"  {'event -> change visible to a consumer p99':42s} {vp99:14.0f}")
        print(f"  {'consumer lag max while sending (records)':42s} {lag_max:14,.0f}")
        print(
            f"  {'consumer lag at the last send (records)':42s} {lag_end:14,.0f}   "
            f"drained in {drain:.2f}s: {'kept up' if kept_up else 'FELL BEHIND'}"
        )
        print(
            f"  latency run: segstream run --workers {lat_counts[0]} subprocess, model pre-warmed "
            "with the full run's snapshot, fresh states"
        )
        if len(lat_counts) > 1:
            print_latency_table(lats_w)

        if args.profile or (not args.no_profile and not (ok_raw and ok_naive and ok_p99 and kept_up)):
            s_prof = run_settings("prof", "prof", "prof")
            prof = cProfile.Profile()
            f = run_full(s_prof, total, profile=prof)
            print(f"\nprofiled full run: {f.rate:,.0f} records/s under cProfile")
            print_profile(prof, total, 25)
    except Exception as e:  # a benchmark reports and cleans up
        print(f"benchmark failed: {type(e).__name__}: {e}")
        exit_code = 1
    finally:
        cleanup(res, base)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
