"""`segstream status` reads every worker's /metrics: rates add up, gauges combine, a dead one is a note."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from stream.ops import status
from stream.runtime.http import Health, serve
from stream.runtime.metrics import Metrics


@pytest.fixture
def workers() -> Iterator[list[tuple[str, Metrics]]]:
    out, servers = [], []
    for _ in range(2):
        registry = CollectorRegistry()
        metrics = Metrics(registry)
        srv = serve(registry, Health(stall_seconds=30), "127.0.0.1", 0)
        servers.append(srv)
        out.append((f"http://127.0.0.1:{srv.server_address[1]}/metrics", metrics))
    yield out
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def test_status_sums_the_workers(workers: list[tuple[str, Metrics]], monkeypatch: pytest.MonkeyPatch) -> None:
    (url0, learner), (url1, follower) = workers
    learner.assigned_partitions.set(2)
    follower.assigned_partitions.set(2)
    learner.model_version.set(7)
    follower.model_version.set(6)  # one batch behind the learner
    learner.last_loop.set(1000.0)
    follower.last_loop.set(990.0)

    clock = iter([0.0, 2.0])

    def traffic(_: float) -> None:  # what the workers do during the rate window
        learner.events_consumed.inc(30)
        follower.events_consumed.inc(60)
        follower.changes.labels(reason="event").inc(4)

    monkeypatch.setattr(status.time, "sleep", traffic)
    monkeypatch.setattr(status.time, "monotonic", lambda: next(clock))
    report = status.StatusReport(namespace="ns", topic="t", group="g", now=0.0)
    dead = "http://127.0.0.1:9/metrics"
    status._metrics_part(report, [url0, url1, dead], interval=2.0)

    assert report.rates["consumed/s"] == pytest.approx(45.0)  # (30 + 60) / 2 s
    assert report.rates["changes/s"] == pytest.approx(2.0)
    assert report.gauges["segstream_assigned_partitions"] == 4
    assert report.gauges["segstream_model_version"] == 7
    assert report.gauges["segstream_last_loop_timestamp_seconds"] == 990.0  # the slowest loop
    assert len(report.notes) == 1 and dead in report.notes[0]
