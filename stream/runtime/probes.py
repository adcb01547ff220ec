"""Health probes: Kafka and Redis are asked something cheap every second, off the request path.

/readyz must answer fast whatever the servers do, and tell the truth about them. Asking them from
the HTTP handler did neither: a PING on the service's Redis client waited up to its 30 s read
timeout for a paused server, and the broker was "ready" as long as no poll had failed (kafka-python
retries quietly inside ``poll``). Here each dependency has a daemon thread and a client of its
own (kafka-python clients are not thread-safe: the service's consumer is never touched), which
records when the dependency last answered and the last error since; /readyz and the
``segstream_dependency_silence_seconds`` gauge only read those values.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from redis.cluster import RedisCluster

from stream.config import Settings
from stream.state import connect

log = logging.getLogger(__name__)

INTERVAL = 1.0  # seconds between two probes of a dependency


def describe(e: BaseException) -> str:
    """``Class: message`` of an error (of its cause for a wrapped one), on one line."""
    if e.__cause__ is not None:
        e = e.__cause__
    text = " ".join(str(e).split())
    name = type(e).__name__
    return text if text.startswith(name) else f"{name}: {text}" if text else name


class Probe:
    """One dependency, asked by ``check`` (raises when it does not answer) every ``interval``
    seconds on a daemon thread. ``close`` runs on that thread when it stops."""

    def __init__(
        self,
        name: str,
        check: Callable[[], Any],
        close: Callable[[], None] = lambda: None,
        interval: float = INTERVAL,
        answered_at: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._check = check
        self._close = close
        self._interval = interval
        self._clock = clock
        self._started = clock()
        # (last answer, last error since): replaced as a whole, so readers need no lock.
        self._state: tuple[float | None, str | None] = (answered_at, None)
        self._asking: float | None = None  # when the request in flight was sent
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._warned = False

    def silence(self) -> float:
        """Seconds since the last answer (since the probe started if there was none)."""
        answered, _ = self._state
        return self._clock() - (self._started if answered is None else answered)

    def problem(self, limit: float) -> str | None:
        """None if the dependency answered within ``limit`` seconds, else why not."""
        answered, error = self._state
        silent = self.silence()
        if answered is not None and silent <= limit:
            return None
        text = f"no answer for {silent:.1f} s" if answered is not None else f"no answer yet ({silent:.1f} s)"
        asking = self._asking
        if error:
            return f"{text} (last error: {error})"
        if asking is not None:
            return f"{text} (the last request has waited {self._clock() - asking:.1f} s)"
        return text

    def probe(self) -> None:
        """Ask once and record the outcome (the thread's loop; tests call it directly)."""
        self._asking = self._clock()
        try:
            self._check()
        except Exception as e:
            answered, previous = self._state
            error = describe(e)
            # kafka-python reports a node in reconnect backoff as "NodeNotReadyError: No node_id
            # provided": keep the error that put it there, which says what is wrong.
            if error.startswith("NodeNotReadyError"):
                error = previous or "NodeNotReadyError: no connection to the broker (reconnecting)"
            self._state = (answered, error)
        else:
            self._state = (self._clock(), None)
        finally:
            self._asking = None

    def _log(self, limit: float) -> None:
        problem = self.problem(limit)
        if problem is not None and not self._warned:
            self._warned = True
            log.warning("%s: %s", self.name, problem)
        elif problem is None and self._warned:
            self._warned = False
            log.info("%s answers again", self.name)

    def start(self, limit: float) -> None:
        def loop() -> None:
            try:
                while not self._stop.is_set():
                    began = self._clock()
                    self.probe()
                    self._log(limit)
                    self._stop.wait(max(self._interval - (self._clock() - began), 0.0))
            finally:
                try:
                    self._close()
                except Exception as e:  # on the way out: nothing left to report it to
                    log.debug("closing the %s probe's client: %s", self.name, e)

        self._thread = threading.Thread(target=loop, name=f"segstream-probe-{self.name}", daemon=True)
        self._thread.start()

    def halt(self) -> None:
        """Ask the thread to stop after its current probe."""
        self._stop.set()

    def stop(self, timeout: float) -> None:
        self.halt()
        if self._thread is not None:
            # A probe waiting on a server that does not answer finishes (and closes its client)
            # on its own: the thread is a daemon, shutting down does not wait for it.
            self._thread.join(timeout)


class Prober:
    """Kafka and Redis probes for /readyz and the dependency gauge.

    ``answered_at``: when both last answered, if the caller just talked to them (the service
    starts its prober once it has), so that they count as answering from the start."""

    def __init__(
        self,
        settings: Settings,
        metrics: Any = None,
        interval: float = INTERVAL,
        answered_at: float | None = None,
    ) -> None:
        self.limit = settings.service.dependency_silence_seconds
        self._redis = _RedisClient(settings, timeout=self.limit)
        self._kafka = _KafkaClient(settings, timeout=self.limit)
        self.probes = {
            "kafka": Probe("kafka", self._kafka.check, self._kafka.close, interval, answered_at),
            "redis": Probe("redis", self._redis.check, self._redis.close, interval, answered_at),
        }
        if metrics is not None:
            for name, probe in self.probes.items():
                metrics.dependency_silence.labels(dependency=name).set_function(probe.silence)

    def start(self) -> Prober:
        for probe in self.probes.values():
            probe.start(self.limit)
        return self

    def problem(self, name: str) -> str | None:
        return self.probes[name].problem(self.limit)

    def stop(self, timeout: float = 1.0) -> None:
        for probe in self.probes.values():
            probe.halt()
        for probe in self.probes.values():
            probe.stop(timeout)


class _RedisClient:
    """PING on a connection of the prober's own, with a read timeout of ``timeout`` seconds. A
    Redis Cluster (``redis.cluster``): every primary of the cluster client's map answers it (a
    failed one is dropped from the map by the refresh its error asks for, once a replica took
    over)."""

    def __init__(self, settings: Settings, timeout: float) -> None:
        self._url = settings.redis.url.get_secret_value()
        self._cluster = settings.redis.cluster
        self._connect_timeout = min(settings.redis.connect_timeout_seconds, timeout)
        self._timeout = timeout
        self._client: Any = None

    def check(self) -> None:
        if self._client is None:
            self._client = connect(self._url, self._cluster, self._timeout, self._connect_timeout)
        if isinstance(self._client, RedisCluster):
            self._client.ping(target_nodes=RedisCluster.PRIMARIES)
        else:
            self._client.ping()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


class _KafkaClient:
    """A cheap request (DescribeCluster) on an admin client of the prober's own. It is made on
    the probe's thread, on first use, and again after a failed bootstrap."""

    def __init__(self, settings: Settings, timeout: float) -> None:
        self._settings = settings
        self._timeout_ms = int(timeout * 1000)
        self._admin: Any = None

    def check(self) -> None:
        from stream.io.kafka import make_admin

        if self._admin is None:
            self._admin = make_admin(
                self._settings,
                client_id=f"{self._settings.kafka.client_id}-health",
                request_timeout_ms=self._timeout_ms,
                # Back within a second of the broker: kafka-python's default backoff grows to 30 s.
                reconnect_backoff_max_ms=1000,
            )
        self._admin.describe_cluster()

    def close(self) -> None:
        if self._admin is not None:
            self._admin.close()
