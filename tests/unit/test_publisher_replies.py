"""ProcessSink's reply matching: a flush that timed out must not take the next flush's reply."""

from __future__ import annotations

from multiprocessing import Pipe
from multiprocessing.connection import Connection

import pytest

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
