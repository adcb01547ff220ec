"""`segstream run` as a subprocess: /readyz before and after assignment, /metrics checked by
promtool and against what was produced."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from models.sim import generate
from stream.state import MAX_UNWRITTEN_BATCHES

from .harness import ROOT, Stack

MODEL_ENV = {"SEGSTREAM_MODEL__WARMUP_VECTORS": "500", "SEGSTREAM_MODEL__UPDATE_EVERY": "500"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=3) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def samples(text: str) -> dict[str, float]:
    """Sample name -> value, labels folded by summing."""
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[s.name] = out.get(s.name, 0.0) + s.value
    return out


def labelled(text: str, name: str, label: str) -> dict[str, float]:
    return {
        s.labels[label]: s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if s.name == name
    }


@pytest.fixture
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool not found: install Debian's 'prometheus' package (scripts/bootstrap.sh does)",
            pytrace=False,
        )
    return path


@pytest.fixture
def produced(stack: Stack, topic_names: dict[str, str]) -> tuple[int, int]:
    """A generated log with 3 % malformed records, on the interactions topic before the run starts
    (an idle run stops itself): (records, malformed records)."""
    log = generate(150, 30, 5, malformed_fraction=0.03)
    producer = KafkaProducer(bootstrap_servers=stack.bootstrap, acks="all", linger_ms=10)
    for r in log.records:
        producer.send(topic_names["interactions"], key=r.key, value=r.value)
    producer.flush(timeout=60)
    producer.close()
    return len(log.records), len(log.malformed_kinds)


@pytest.fixture
def service(
    settings_env: dict[str, str], produced: tuple[int, int]
) -> Iterator[tuple[subprocess.Popen[str], int]]:
    port = free_port()
    env = {**os.environ, **settings_env, **MODEL_ENV}
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "segstream"),
            "run",
            "--metrics-port",
            str(port),
            "--until-idle",
            "8",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    yield proc, port
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_run_exposes_health_and_metrics(
    stack: Stack,
    topic_names: dict[str, str],
    produced: tuple[int, int],
    service: tuple[subprocess.Popen[str], int],
    promtool: str,
) -> None:
    n_produced, malformed = produced
    proc, port = service
    base = f"http://127.0.0.1:{port}"

    # Before the group assigned partitions: alive but not ready, with the reason.
    deadline = time.monotonic() + 60
    first_ready: tuple[int, dict] | None = None
    while time.monotonic() < deadline and first_ready is None:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        try:
            code, body = get(f"{base}/readyz")
            first_ready = (code, json.loads(body))
        except (urllib.error.URLError, ConnectionError, OSError):
            time.sleep(0.02)
    assert first_ready is not None, "the endpoint server never answered"
    code, doc = first_ready
    assert code == 503, doc
    assert doc["status"] == "not ready"
    assert doc["reasons"]  # e.g. {"partitions": "no partitions assigned yet"}
    assert get(f"{base}/healthz")[0] == 200

    # Scrape until everything was consumed (the run stops itself 8 s after going idle).
    text = ""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            code, body = get(f"{base}/metrics")
        except (urllib.error.URLError, OSError) as e:
            out, err = proc.communicate(timeout=60)
            pytest.fail(f"segstream run went away ({e}) after consuming {samples(text)}: {out}\n{err}")
        assert code == 200
        text = body.decode()
        now = samples(text)
        accounted = (
            now.get("segstream_events_applied_total", 0)
            + sum(labelled(text, "segstream_dead_letters_total", "reason").values())
            + now.get("segstream_duplicate_events_total", 0)
        )
        # Consumed counts a batch when it starts: wait for the last batch to be accounted for too
        # (a scrape in the middle of it saw every record consumed but not every dead letter).
        # The first version can come with the log's last batch (the learner waits for every
        # partition to pass its rows): then the first segment changes are the placement of the
        # customers it had not placed, when the service goes idle.
        changed = sum(labelled(text, "segstream_segment_changes_total", "reason").values())
        # The outputs' flush runs on its own thread once a batch's write landed: its first
        # observation can come a moment after the batch was counted.
        if (
            now.get("segstream_events_consumed_total", 0) >= n_produced
            and accounted >= n_produced
            and changed
            and now.get("segstream_output_flush_seconds_count", 0) >= 1
        ):
            break
        time.sleep(0.25)
    s = samples(text)
    assert s["segstream_events_consumed_total"] == n_produced
    ready_code, ready_body = get(f"{base}/readyz")  # assigned now: the run is still going

    check = subprocess.run(
        [promtool, "check", "metrics"], check=False, input=text, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr

    dead = labelled(text, "segstream_dead_letters_total", "reason")
    assert sum(dead.values()) == malformed, dead
    assert set(dead) <= {"InvalidJSON", "InvalidEvent", "RecordTooLarge", "EmptyRecord", "KeyMismatch"}
    assert (
        s["segstream_events_applied_total"]
        + sum(dead.values())
        + s.get("segstream_duplicate_events_total", 0)
        == n_produced
    )
    assert s["segstream_segment_changes_total"] > 0
    assert s["segstream_model_version"] >= 1
    assert s["segstream_rebalances_total"] >= 1
    assert s["segstream_assigned_partitions"] == 4
    assert s["segstream_batch_seconds_count"] >= 1
    assert s["segstream_output_flush_seconds_count"] >= 1  # every written batch flushed first
    assert 0 <= s["segstream_unwritten_batches"] <= MAX_UNWRITTEN_BATCHES
    assert s["segstream_event_to_change_seconds_count"] > 0
    assert set(labelled(text, "segstream_watermark_seconds", "partition")) == {"0", "1", "2", "3"}
    assert all(v >= 0 for v in labelled(text, "segstream_consumer_lag_messages", "partition").values())

    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert f"processed {n_produced} records" in out
    # The final line counts the dead letters by class, as the metrics do.
    by_class = ", ".join(f"{k} {int(v)}" for k, v in sorted(dead.items(), key=lambda kv: (-kv[1], kv[0])))
    assert f"{malformed} dead-lettered ({by_class})" in out, out

    # After the assignment the service must be ready.
    ready = json.loads(ready_body)
    assert "partitions" not in ready["reasons"], ready
    assert (ready_code, ready) == (200, {"status": "ready", "reasons": {}})
