"""Small helpers for integration tests: produce, read a topic to its end, run the CLI as a user does."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

ROOT = Path(__file__).resolve().parents[2]
SEGSTREAM = [sys.executable, "-m", "stream"]


def produce(bootstrap: str, topic: str, records: Iterable[tuple[bytes | None, bytes]]) -> int:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, batch_size=256 * 1024)
    n = 0
    for key, value in records:
        producer.send(topic, key=key, value=value)
        n += 1
    producer.flush(timeout=120)
    producer.close()
    return n


def read_topic(bootstrap: str, topic: str, timeout_s: float = 30.0) -> list:
    """Every record of the topic up to its end offsets at call time, in partition then offset order."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=2000)
    parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    end = consumer.end_offsets(parts)
    out: dict[int, list] = {tp.partition: [] for tp in parts}
    remaining = {tp for tp in parts if end[tp] > 0}
    import time

    deadline = time.monotonic() + timeout_s
    while remaining and time.monotonic() < deadline:
        for tp, msgs in consumer.poll(timeout_ms=500).items():
            for m in msgs:
                if m.offset < end[tp]:
                    out[tp.partition].append(m)
            if consumer.position(tp) >= end[tp]:
                remaining.discard(tp)
    consumer.close()
    assert not remaining, f"could not read {topic} to its end"
    return [m for p in sorted(out) for m in out[p]]


def cli_env(settings_env: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(settings_env)
    env["PYTHONPATH"] = str(ROOT)
    return env


def run_cli(settings_env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*SEGSTREAM, *args],
        env=cli_env(settings_env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def children_of(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(entry))
    return kids


def alive(pid: int) -> bool:
    """Running (a zombie is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
