"""The publisher process (stream.io.sinks.process.ProcessSink) against the real broker.

It must publish exactly what the in-process KafkaSink publishes (topics, partitions, keys,
values, headers, order within a partition), make ``flush`` mean "acknowledged", fail loudly
when its process is gone, and never outlive a killed service.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kafka import KafkaAdminClient

from models.contracts import DeadLetter, RFMScore, SegmentChange, SegmentRef
from models.contracts.model import ModelHierarchy, ModelTransform, PublishedModel
from stream.config import OUTPUT_NAMES, KafkaSettings, Settings, TopicSettings
from stream.io.kafka import ensure_topics, make_producer
from stream.io.sinks import OutputSink
from stream.io.sinks.kafka import KafkaSink
from stream.io.sinks.process import ProcessSink, PublisherError

from .harness import (
    ROOT,
    SEGSTREAM,
    Stack,
    alive,
    children_of,
    delete_topics,
    start_service,
    tail,
    unique,
    wait_until,
)
from .harness import produce_pairs as produce
from .harness import read_records as read_topic


def settings_for(stack: Stack, suffix: str) -> Settings:
    return Settings(
        kafka=KafkaSettings(bootstrap_servers=stack.bootstrap),
        topics=TopicSettings(interactions=f"{suffix}.in", suffix=f".{suffix}"),
    )


MODEL = PublishedModel(
    version=1,
    event_time=datetime(2026, 1, 2, tzinfo=UTC),
    feature_names=["spend"],
    transform=ModelTransform(
        log1p=[True], clip_low=[0.0], clip_high=[None], mean=[1.0], std=[2.0], weight=[1.0]
    ),
    segments=[],
    hierarchy=ModelHierarchy(ids=[], linkage=[]),
    btyd=None,
)


def change(i: int, erased: bool = False) -> SegmentChange:
    return SegmentChange(
        change_id=f"id{i:04d}",
        customer_id=f"c{i % 37:05d}",
        seq=1 + i // 37,
        previous=SegmentRef(id=i % 3, name="Dormant") if i % 5 else None,
        current=None if erased else SegmentRef(id=3 + i % 2, name="High-value loyal"),
        membership={"3": 0.75, "4": 0.25},
        confidence=0.5,
        reason="erase" if erased else "event",
        explanation="spend rose",
        rfm=RFMScore(r=5, f=4, m=3, group="Loyal"),
        model_version=2,
        event_time=datetime(2026, 1, 2, tzinfo=UTC),
        source_topic="in",
        source_partition=i % 4,
        source_offset=i,
    )


def publish_sample(sink: OutputSink) -> None:
    for i in range(300):
        sink.change(change(i, erased=i % 97 == 0))
        if i % 50 == 0:
            key = None if i % 100 == 0 else f"c{i:05d}".encode()
            dl = DeadLetter.of("in", i % 4, i, key, b"{}", "ValidationError", "ts: missing")
            sink.dead_letter(dl)
        if i % 120 == 0:
            sink.model_event({"kind": "birth", "version": i, "segment_id": 3})
            sink.model_snapshot(MODEL, b"\x00snapshot" * 50)
        if i % 64 == 0 and isinstance(sink, ProcessSink):
            sink.ship()
    sink.flush()


def read_outputs(stack: Stack, s: Settings) -> dict[str, list[tuple]]:
    out = {}
    for name in OUTPUT_NAMES:
        out[name] = [
            (m.partition, m.key, m.value, [k for k, _ in m.headers or []])
            for m in read_topic(stack.bootstrap, s.topics.out(name))
        ]
    return out


@pytest.fixture
def two_topic_sets(stack: Stack, kafka_admin: KafkaAdminClient):
    base = unique("p")
    sets = [settings_for(stack, f"{base}a"), settings_for(stack, f"{base}b")]
    for s in sets:
        ensure_topics(s, only=[s.topics.out(n) for n in OUTPUT_NAMES])
    yield sets
    delete_topics(kafka_admin, [s.topics.out(n) for s in sets for n in OUTPUT_NAMES])


def test_process_sink_publishes_what_the_inline_sink_publishes(stack: Stack, two_topic_sets) -> None:
    inline_settings, process_settings = two_topic_sets
    inline = KafkaSink(inline_settings, make_producer(inline_settings))
    try:
        publish_sample(inline)
    finally:
        inline.close()
    child = ProcessSink(process_settings)
    try:
        publish_sample(child)
    finally:
        child.close()
    want = read_outputs(stack, inline_settings)
    got = read_outputs(stack, process_settings)
    assert len(want["changes"]) == 300 and len(want["dlq"]) == 6 and len(want["model"]) == 3
    assert sum(v is None for _, _, v, _ in want["current"]) == 4  # the erases' tombstones
    assert all(h == ["emitted_at"] for *_, h in want["changes"])
    assert got == want


def test_flush_raises_when_the_publisher_process_is_gone(stack: Stack, two_topic_sets) -> None:
    s = two_topic_sets[0]
    sink = ProcessSink(s)
    try:
        sink.change(change(1))
        sink.flush()
        os.kill(sink._proc.pid, signal.SIGKILL)
        sink._proc.wait(timeout=10)
        sink.change(change(2))
        with pytest.raises(PublisherError, match="publisher process is gone"):
            sink.flush()
    finally:
        sink.close()  # no hang and no error on an already dead child


def test_a_killed_service_leaves_no_publisher_behind(
    stack: Stack, settings_env: dict[str, str], topic_names: dict[str, str], tmp_path: Path
) -> None:
    env = {**os.environ, **settings_env, "SEGSTREAM_KAFKA__PUBLISHER": "process"}
    produce(stack.bootstrap, topic_names["interactions"], [(b"c1", b"not json")])
    log = tmp_path / "service.log"
    proc: subprocess.Popen[bytes] = start_service(env, log, until_idle=60)
    try:
        kids: list[int] = []

        def publisher_started() -> bool:
            kids[:] = children_of(proc.pid)
            return bool(kids) or proc.poll() is not None

        wait_until(publisher_started, timeout=60, what="the publisher process to start")
        assert proc.poll() is None, tail(log)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        wait_until(lambda: not any(alive(k) for k in kids), timeout=15, what="the publisher to exit")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_readyz_reports_a_dead_publisher(stack: Stack, settings_env: dict[str, str], tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, **settings_env}
    log = tmp_path / "service.log"
    proc = subprocess.Popen(
        [*SEGSTREAM, "run", "--until-idle", "120", "--metrics-port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    try:

        def readyz() -> tuple[int, dict]:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                    return r.status, json.loads(r.read())
            except urllib.error.HTTPError as e:
                return e.code, json.loads(e.read())
            except OSError:
                return 0, {}

        wait_until(lambda: readyz()[0] == 200 or proc.poll() is not None, timeout=60, what="ready")
        assert proc.poll() is None, tail(log)
        kids = children_of(proc.pid)
        assert len(kids) == 1, kids
        os.kill(kids[0], signal.SIGKILL)
        wait_until(lambda: readyz()[0] == 503, timeout=10, what="/readyz to notice")
        code, doc = readyz()
        assert code == 503 and doc["reasons"]["publisher"] == "publisher process exited (code -9)", doc
    finally:
        proc.terminate()
        proc.wait(timeout=60)
