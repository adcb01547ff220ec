"""The publishers' replies: a flush that timed out must not take the next flush's reply; a flush
the broker does not answer makes the service not ready and fails in one line."""

from __future__ import annotations

import threading
import time
from multiprocessing import Pipe
from multiprocessing.connection import Connection

import pytest
from kafka.errors import KafkaTimeoutError
from kafka.future import Future

from stream.config import load
from stream.io.sinks import base
from stream.io.sinks.kafka import KafkaSink
from stream.io.sinks.process import ProcessSink, PublisherError


def _sink_on_a_pipe() -> tuple[ProcessSink, Connection]:
    """A ProcessSink whose child end is in the test's hands (no publisher process)."""
    ours, theirs = Pipe()
    sink = ProcessSink.__new__(ProcessSink)
    sink._conn = ours
    return sink, theirs


def test_a_late_reply_to_an_earlier_flush_is_skipped() -> None:
    sink, child = _sink_on_a_pipe()
    child.send(("ok", None, 1))  # flush 1 answered after its caller gave up
    child.send(("error", "the broker refused a record", 2))
    with pytest.raises(PublisherError, match="refused a record"):
        sink._reply(5.0, "flush", 2)


def test_only_a_stale_reply_is_no_answer() -> None:
    sink, child = _sink_on_a_pipe()
    child.send(("ok", None, 1))
    with pytest.raises(PublisherError, match="did not answer flush within 0 s"):
        sink._reply(0.2, "flush", 2)


class _Unanswered:
    """A producer whose broker never acknowledges: flush waits until released, then times out."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def send(self, topic: str, **kw: object) -> Future:
        return Future()  # never completed

    def partitions_for(self, topic: str) -> set[int]:
        return {0}

    def flush(self, timeout: float | None = None) -> None:
        self.release.wait(10)
        raise KafkaTimeoutError("Timeout waiting for future")


def test_a_flush_the_broker_does_not_answer_makes_the_service_not_ready_and_names_the_topics(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A deleted output topic leaves a flush waiting: /readyz says so while it waits, and the
    failure is one line naming the topics not acknowledged (no traceback of the client's)."""
    monkeypatch.setattr(base, "FLUSH_STALL_SECONDS", 0.05)
    producer = _Unanswered()
    sink = KafkaSink(load(), producer)  # type: ignore[arg-type]
    sink._send("t.changes", b"k", b"v")
    failed: list[BaseException] = []

    def flush() -> None:
        try:
            sink.flush(timeout=5)
        except PublisherError as e:
            failed.append(e)

    assert sink.problem() is None
    waiting = threading.Thread(target=flush)
    waiting.start()
    deadline = time.monotonic() + 5
    while sink.problem() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert "has not acknowledged outputs" in (sink.problem() or "")
    producer.release.set()
    waiting.join(5)
    assert sink.problem() is None
    assert len(failed) == 1 and "['t.changes']" in str(failed[0]) and "\n" not in str(failed[0])
