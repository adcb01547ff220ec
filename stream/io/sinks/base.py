"""The pipeline's outputs: the sink protocol and the base every sink serializes through.

A sink takes segment changes, dead letters, model events and model snapshots as they are made,
and ``flush()`` returns once they are published (acknowledged): the pipeline writes a batch's
state only after that. Sinks: :mod:`~stream.io.sinks.kafka` (a producer in this process),
:mod:`~stream.io.sinks.process` (a publisher child process), :mod:`~stream.io.sinks.collect`
(in memory, for evaluation and tests).
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any, Protocol

from models.contracts import DeadLetter, PublishedModel, SegmentChange
from stream.errors import ServiceUnavailable

__all__ = ["FLUSH_STALL_SECONDS", "OutputSink", "PublisherError", "Sink"]

FLUSH_STALL_SECONDS = 10.0  # a flush waiting longer makes /readyz say so (a normal one: ms)


class PublisherError(ServiceUnavailable):
    """The outputs were not published (the broker's error, as text) or the publisher process is
    gone: the batch's state is not written, and the service stops with this one-line reason."""


class Sink(Protocol):
    def change(self, change: SegmentChange) -> None: ...
    def dead_letter(self, dl: DeadLetter) -> None: ...
    def model_event(self, payload: dict) -> None: ...
    def model_snapshot(self, model: PublishedModel, snapshot: bytes) -> None: ...
    def flush(self, timeout: float = 60.0) -> None: ...


class OutputSink:
    """The pipeline's outputs as bytes: each method serializes, then hands over with :meth:`_emit`
    (published here by :class:`KafkaSink`, or by a child process: ``stream.io.sinks.process``)."""

    def change(self, change: SegmentChange) -> None:
        self.send([self.encode_change(change)])

    def dead_letter(self, dl: DeadLetter) -> None:
        self.send([self.encode_dead_letter(dl)])

    @staticmethod
    def encode_change(change: SegmentChange) -> tuple[str, tuple[Any, ...]]:
        """A change as :meth:`send` takes it (and the outbox stores it, stream.io.sinks.outbox)."""
        # The wall-clock emit time travels as a header (the payload is deterministic).
        emitted_ms = int(time.time() * 1000)
        payload = change.model_dump_json().encode()
        # Only an erase leaves a tombstone: a stage change before any segment has current=None
        # and is still the customer's latest record.
        return "change", (change.customer_id.encode(), payload, change.reason == "erase", emitted_ms)

    @staticmethod
    def encode_dead_letter(dl: DeadLetter) -> tuple[str, tuple[Any, ...]]:
        # Keyless records (unreadable ones) are keyed by their source partition, so that the
        # dead-letter topic's partitioning, and order within it, is the same on every replay.
        key = dl.key or f"{dl.source_topic}/{dl.source_partition}"
        return "dead_letter", (key.encode(), dl.model_dump_json().encode())

    def send(self, items: list[tuple[str, tuple[Any, ...]]]) -> None:
        """Publish encoded outputs (:meth:`encode_change`, :meth:`encode_dead_letter`), in order."""
        for kind, args in items:
            self._emit(kind, *args)

    def model_event(self, payload: dict[str, Any]) -> None:
        self._emit("model_event", json.dumps(payload, sort_keys=True).encode())

    def model_snapshot(self, model: PublishedModel, snapshot: bytes) -> None:
        # One record per version, the published model with the engine's checkpoint inside: the
        # compacted topic's newest record under its one key is a whole version, never a document
        # of one version beside the checkpoint of another (docs/model-format.md).
        body = model.model_copy(update={"checkpoint_b64": base64.b64encode(snapshot).decode()})
        self._emit("model_snapshot", body.model_dump_json().encode())

    def _emit(self, kind: str, *args: Any) -> None:
        raise NotImplementedError

    def ship(self) -> None:
        """Hand what was emitted to whoever sends it (a no-op where each call sends)."""

    # When the flush under way began (None: none is): a flush the broker does not answer (a
    # topic deleted, a partition without a leader) makes the service not ready.
    _flushing_since: float | None = None

    def problem(self) -> str | None:
        """Why the sink cannot publish now (for /readyz), or None."""
        since = self._flushing_since
        if since is not None and (waited := time.monotonic() - since) >= FLUSH_STALL_SECONDS:
            return f"the broker has not acknowledged outputs for {waited:.0f} s"
        return None

    def flush(self, timeout: float = 60.0) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError
