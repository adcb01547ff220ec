"""Kafka outputs sent by a child process, so that kafka-python's send path runs on another core.

Why: a segment change is two records (``segments.changes`` and ``segments.current``), and
kafka-python spends ~100 us of Python per record between ``send``, its accumulator and its
sender thread, all under the service's GIL. At 5k events/s with 15% of them changing segment
that was a third of the service's time, and it decided the event-to-change latency.

:class:`ProcessSink` has the sink interface of :class:`~stream.io.kafka.KafkaSink`. It serializes
every output in the service (the same bytes, the ``emitted_at`` header taken when the change is
made), queues them, and ships the queue to the child at the end of each partition's work
(:meth:`ProcessSink.ship`), in one message over a socket pair. The child, a fresh interpreter
(``python -m stream.io.sinks.process``; not a fork: the service has threads, a fork could copy a held
lock), publishes them in order with its own ``KafkaSink``. :meth:`ProcessSink.flush` returns
once the child has flushed its producer: every output shipped before the call is acknowledged by
the broker, or the call raises.

The child ignores SIGINT and SIGTERM (the service stops it after a last flush) and exits when
the socket closes, so a killed service leaves no publisher behind. Outputs shipped but not yet
flushed when the service dies may or may not be published; their batch's outbox in Redis still
holds them, and the next start publishes them again, the same bytes (stream.io.sinks.outbox).
"""

from __future__ import annotations

import logging
import os
import pickle
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

from stream.config import Settings
from stream.errors import ServiceUnavailable
from stream.io.kafka import make_producer
from stream.io.sinks.base import OutputSink, PublisherError
from stream.io.sinks.kafka import KafkaSink

log = logging.getLogger(__name__)

__all__ = ["ProcessSink", "PublisherError"]

START_TIMEOUT = 60.0
_UNNUMBERED = 0  # the reply number of start and close (flushes count from 1)


class ProcessSink(OutputSink):
    def __init__(self, settings: Settings) -> None:
        ours, theirs = socket.socketpair()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "stream.io.sinks.process", str(theirs.fileno())],
            pass_fds=[theirs.fileno()],
            stdin=subprocess.DEVNULL,
        )
        theirs.close()
        self._conn = Connection(ours.detach())
        self._queue: list[tuple[str, tuple[Any, ...]]] = []
        # The pipeline emits and ships on its thread and flushes on the store's I/O thread.
        self._queue_lock = threading.Lock()  # the queue
        self._write_lock = threading.Lock()  # the socket, and queue order into it
        self._flush_lock = threading.Lock()  # one request-and-reply at a time
        self._closed = False
        # Flush requests are numbered and the child's replies carry the number: the late reply
        # to a flush that timed out must not pass for the next one's.
        self._flushes = 0
        self._send(("start", settings))
        self._reply(START_TIMEOUT, "start")

    def problem(self) -> str | None:
        """Why the publisher cannot publish (for /readyz), or None while its process runs."""
        code = self._proc.poll()
        return super().problem() if code is None else f"publisher process exited (code {code})"

    def _emit(self, kind: str, *args: Any) -> None:
        with self._queue_lock:
            self._queue.append((kind, args))

    def ship(self) -> None:
        """Hand the queued outputs to the publisher now (it sends them while the service goes on)."""
        with self._write_lock:  # taken first: two shippers cannot swap their queues' order
            with self._queue_lock:
                queue, self._queue = self._queue, []
            if queue:
                self._send(("publish", queue))

    def flush(self, timeout: float = 60.0) -> None:
        """Return once every output emitted before the call is acknowledged by the broker."""
        with self._flush_lock:
            self.ship()
            self._flushes += 1
            self._flushing_since = time.monotonic()
            try:
                with self._write_lock:
                    self._send(("flush", (self._flushes, timeout)))
                self._reply(timeout + 5.0, "flush", self._flushes)
            finally:
                self._flushing_since = None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            with self._flush_lock:
                if self._proc.poll() is None:
                    self.ship()
                    with self._write_lock:
                        self._send(("close", None))
                    self._reply(30.0, "close")
        except PublisherError as e:
            log.warning("publisher did not close cleanly: %s", e)
        finally:
            self._conn.close()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    def _send(self, message: tuple[str, Any]) -> None:
        try:
            self._conn.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))
        except (OSError, EOFError) as e:
            raise PublisherError(f"publisher process is gone (exit code {self._proc.poll()}): {e}") from e

    def _reply(self, timeout: float, what: str, number: int = _UNNUMBERED) -> None:
        deadline = time.monotonic() + timeout
        try:
            while True:
                if not self._conn.poll(max(deadline - time.monotonic(), 0.0)):
                    raise PublisherError(f"publisher process did not answer {what} within {timeout:.0f} s")
                status, detail, answered = self._conn.recv()
                if answered == number:
                    break  # else the late reply to an earlier flush that timed out
        except (OSError, EOFError) as e:
            raise PublisherError(f"publisher process is gone (exit code {self._proc.poll()}): {e}") from e
        if status == "unavailable":
            raise ServiceUnavailable(detail)
        if status != "ok":
            raise PublisherError(detail)


def _receive(conn: Connection, inbox: queue.SimpleQueue[bytes | None]) -> None:
    try:
        while True:
            inbox.put(conn.recv_bytes())
    except (EOFError, OSError):
        inbox.put(None)


def _serve(conn: Connection) -> None:
    """The publisher process: publish what arrives, in order; answer flush and close."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the service stops it, after a last flush
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        kind, settings = pickle.loads(conn.recv_bytes())
        assert kind == "start"
    except (EOFError, OSError):
        return
    try:
        sink = KafkaSink(settings, make_producer(settings))
        sink.warm_up()
    except ServiceUnavailable as e:
        conn.send(("unavailable", str(e), _UNNUMBERED))
        return
    except Exception as e:
        conn.send(("error", f"publisher could not start: {e!r}", _UNNUMBERED))
        return
    conn.send(("ok", None, _UNNUMBERED))
    # A thread empties the socket as messages come, so that the service's ship() never blocks
    # on a full socket buffer while this process is busy sending a burst of changes (the service
    # bounds what it ships ahead: it waits for a flush every few batches, OrderedIO).
    inbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
    threading.Thread(target=_receive, args=(conn, inbox), name="publisher-inbox", daemon=True).start()
    failed: str | None = None  # the first failed send, reported by the next flush
    while True:
        message = inbox.get()
        if message is None:
            break  # the service is gone: nothing will ask for a flush
        kind, body = pickle.loads(message)
        if kind == "publish":
            for what, args in body:
                try:
                    sink._emit(what, *args)
                except Exception as e:
                    failed = failed or f"publishing a {what} failed: {e!r}"
        elif kind == "flush":
            number, timeout = body
            try:
                sink.flush(timeout=timeout)
            except Exception as e:
                said = (
                    str(e)
                    if isinstance(e, PublisherError)
                    else f"the broker did not acknowledge every output: {e!r}"
                )
                failed = failed or said
            conn.send(("ok", None, number) if failed is None else ("error", failed, number))
            failed = None
        elif kind == "close":
            try:
                sink.flush()
                sink.close()
            except Exception as e:
                conn.send(("error", f"last flush failed: {e!r}", _UNNUMBERED))
            else:
                conn.send(("ok", None, _UNNUMBERED))
            return
    try:
        sink.close()
    except Exception as e:  # best effort: the service is already gone
        log.warning("publisher close after the service went away: %s", e)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s publisher: %(message)s")
    # As the CLI does: kafka-python logs each metadata retry as an error (ten lines a second for a
    # deleted topic, ~1,000 before a flush timed out); the service's one line names what failed.
    logging.getLogger("kafka").setLevel(logging.CRITICAL + 1)
    _serve(Connection(int(sys.argv[1])))
    os._exit(0)  # kafka-python's threads are done or irrelevant: the service asked, or is gone
