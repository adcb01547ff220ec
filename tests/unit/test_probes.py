"""The health prober: what /readyz and the silence gauge report, from recorded answers only."""

from __future__ import annotations

import threading
import time

import pytest
from kafka.errors import KafkaConnectionError, NodeNotReadyError
from prometheus_client import CollectorRegistry, generate_latest

from stream.config import load
from stream.errors import ServiceUnavailable
from stream.io.kafka import make_admin
from stream.runtime.metrics import Metrics
from stream.runtime.probes import Probe, Prober


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_dependency_is_ready_until_it_has_been_silent_too_long() -> None:
    clock = FakeClock()
    failure: list[Exception] = []

    def check() -> None:
        if failure:
            raise failure[0]

    probe = Probe("kafka", check, answered_at=clock.now, clock=clock)
    probe.probe()
    assert probe.problem(5.0) is None
    failure.append(KafkaConnectionError("111 ECONNREFUSED"))
    clock.now += 1
    probe.probe()
    assert probe.problem(5.0) is None  # one failed probe is not silence yet
    clock.now += 4.5
    assert probe.problem(5.0) == "no answer for 5.5 s (last error: KafkaConnectionError: 111 ECONNREFUSED)"
    # kafka-python's "node in reconnect backoff" does not hide the error that put it there.
    failure[0] = NodeNotReadyError("No node_id provided")
    probe.probe()
    assert probe.problem(5.0) == "no answer for 5.5 s (last error: KafkaConnectionError: 111 ECONNREFUSED)"
    assert probe.silence() == pytest.approx(5.5)
    failure.clear()
    probe.probe()
    assert probe.problem(5.0) is None and probe.silence() == 0.0


def test_a_lost_connection_is_worded() -> None:
    clock = FakeClock()

    def check() -> None:
        raise NodeNotReadyError("No node_id provided")

    probe = Probe("kafka", check, answered_at=clock.now, clock=clock)
    probe.probe()
    clock.now += 6
    assert probe.problem(5.0) == (
        "no answer for 6.0 s (last error: NodeNotReadyError: no connection to the broker (reconnecting))"
    )


def test_a_request_still_waiting_is_reported() -> None:
    clock = FakeClock()
    probe = Probe("redis", lambda: None, answered_at=clock.now, clock=clock)
    seen: list[str | None] = []

    def hung() -> None:  # what a paused server looks like from the probe's thread
        clock.now += 6
        seen.append(probe.problem(5.0))

    probe._check = hung
    probe.probe()
    assert seen == ["no answer for 6.0 s (the last request has waited 6.0 s)"]


def test_never_answered() -> None:
    clock = FakeClock()
    probe = Probe("redis", lambda: None, clock=clock)
    clock.now += 0.5
    assert probe.problem(5.0) == "no answer yet (0.5 s)"


def test_errors_are_one_line_with_their_class() -> None:
    clock = FakeClock()

    def check() -> None:
        raise ServiceUnavailable("Kafka at x did not answer") from TimeoutError("took\ntoo long")

    probe = Probe("kafka", check, answered_at=clock.now, clock=clock)
    probe.probe()
    clock.now += 10
    assert probe.problem(5.0) == "no answer for 10.0 s (last error: TimeoutError: took too long)"


def test_the_prober_feeds_the_silence_gauge_and_stops() -> None:
    """Against nothing listening: it never blocks its caller, the gauge grows, stop() returns."""
    settings = load(
        None,
        {
            "kafka": {"bootstrap_servers": "127.0.0.1:1", "connect_timeout_seconds": 0.5},
            "redis": {"url": "redis://127.0.0.1:1/0"},
            "service": {"dependency_silence_seconds": 0.3},
        },
    )
    registry = CollectorRegistry()
    prober = Prober(settings, Metrics(registry), interval=0.05, answered_at=time.monotonic()).start()
    try:
        time.sleep(0.8)
        for name in ("kafka", "redis"):
            problem = prober.problem(name)
            assert problem is not None and problem.startswith("no answer for "), problem
        text = generate_latest(registry).decode()
        assert 'segstream_dependency_silence_seconds{dependency="kafka"}' in text
        assert 'segstream_dependency_silence_seconds{dependency="redis"}' in text
        kafka = prober.problem("kafka") or ""
        assert "ECONNREFUSED" in kafka or "Unable to bootstrap" in kafka, kafka
        assert "Connection refused" in (prober.problem("redis") or "")
    finally:
        began = time.monotonic()
        prober.stop()
        assert time.monotonic() - began < 3.0


def test_a_failed_bootstrap_leaves_no_client_thread_behind() -> None:
    """kafka-python starts a client's IO thread before bootstrapping and leaves it running when
    the bootstrap fails; the prober retries every second for as long as a broker is away."""
    settings = load(None, {"kafka": {"bootstrap_servers": "127.0.0.1:1", "connect_timeout_seconds": 0.3}})
    before = {t.ident for t in threading.enumerate()}
    for _ in range(3):
        began = time.monotonic()
        with pytest.raises(ServiceUnavailable, match=r"Kafka at 127.0.0.1:1 did not answer within 0.3 s"):
            make_admin(settings)
        assert time.monotonic() - began < 2.0
    left = [t.name for t in threading.enumerate() if t.ident not in before and t.is_alive()]
    assert left == []
