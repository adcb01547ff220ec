"""Outputs published by a Kafka producer of this process."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError

from stream.config import Settings
from stream.io.kafka import key_hash
from stream.io.sinks.base import OutputSink, PublisherError

log = logging.getLogger(__name__)

__all__ = ["KafkaSink"]


class KafkaSink(OutputSink):
    """Publishes outputs with a producer of this process; ``flush()`` returns once the broker
    acknowledged all of them."""

    def __init__(self, settings: Settings, producer: KafkaProducer) -> None:
        t = settings.topics
        self._producer = producer
        self.changes_topic = t.out("changes")
        self.current_topic = t.out("current")
        self.dlq_topic = t.out("dlq")
        self.model_topic = t.out("model")
        self.model_events_topic = t.out("model_events")
        self._futures: list[tuple[str, Any]] = []
        self._futures_lock = threading.Lock()
        self._partitions: dict[str, int] = {}  # topic -> partition count, read once
        self._publish: dict[str, Callable[..., None]] = {
            "change": self._change,
            "dead_letter": self._dead_letter,
            "model_event": self._model_event,
            "model_snapshot": self._model_snapshot,
        }

    def _emit(self, kind: str, *args: Any) -> None:
        self._publish[kind](*args)

    def _send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: list | None = None,
        partition: int | None = None,
    ) -> None:
        future = self._producer.send(topic, key=key, value=value, headers=headers, partition=partition)
        with self._futures_lock:  # flush() may run on the store's I/O thread
            self._futures.append((topic, future))

    def _partition_count(self, topic: str) -> int:
        n = self._partitions.get(topic)
        if n is None:
            n = self._partitions[topic] = len(self._producer.partitions_for(topic))
        return n

    def warm_up(self) -> None:
        """Fetch the output topics' metadata now rather than inside the first batch that publishes."""
        for topic in (self.changes_topic, self.current_topic, self.dlq_topic):
            self._partition_count(topic)

    def _change(self, key: bytes, payload: bytes, erased: bool, emitted_ms: int) -> None:
        headers = [("emitted_at", str(emitted_ms).encode())]
        # The Java client's default partitioning (murmur2 of the key), hashed once for both
        # topics: kafka-python's partitioner is pure Python and cost a third of every send.
        h = key_hash(key)
        for topic, value in (
            (self.changes_topic, payload),
            # The compacted topic holds the latest segment per customer; erase leaves a tombstone.
            (self.current_topic, None if erased else payload),
        ):
            self._send(topic, key, value, headers, h % self._partition_count(topic))

    def _dead_letter(self, key: bytes, value: bytes) -> None:
        self._send(self.dlq_topic, key, value)

    def _model_event(self, value: bytes) -> None:
        self._send(self.model_events_topic, b"model", value)

    def _model_snapshot(self, value: bytes) -> None:
        self._send(self.model_topic, b"model", value)

    def flush(self, timeout: float = 60.0) -> None:
        with self._futures_lock:
            futures, self._futures = self._futures, []
        self._flushing_since = time.monotonic()
        try:
            self._producer.flush(timeout=timeout)
            for _, f in futures:
                f.get(timeout=timeout)  # raises if the broker refused a record
        except KafkaError as e:
            pending = sorted({topic for topic, f in futures if not f.succeeded()})
            raise PublisherError(
                f"the broker did not acknowledge the outputs to topics {pending} within {timeout:g} s: "
                f"{e!r} (a topic deleted? `segstream status` names it)"
            ) from e
        finally:
            self._flushing_since = None

    def close(self) -> None:
        try:
            self._producer.close(timeout=10)
        except KafkaError as e:  # on the way out: what was not acknowledged is in the outbox
            log.warning("the producer did not close cleanly: %r", e)
