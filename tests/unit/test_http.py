"""The endpoint server: /healthz follows the poll loop's heartbeat, /readyz the checks."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, Counter

from stream.runtime.http import Health, serve


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def get(port: int, path: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read(), r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers.get("Content-Type", "")


@pytest.fixture
def server() -> Iterator[tuple[int, Health, FakeClock, CollectorRegistry]]:
    clock = FakeClock()
    health = Health(stall_seconds=30, clock=clock)
    registry = CollectorRegistry()
    srv = serve(registry, health, "127.0.0.1", 0)
    yield srv.server_address[1], health, clock, registry
    srv.shutdown()
    srv.server_close()


def test_healthz_turns_503_when_the_loop_stalls(
    server: tuple[int, Health, FakeClock, CollectorRegistry],
) -> None:
    port, health, clock, _ = server
    code, body, ctype = get(port, "/healthz")
    assert (code, json.loads(body)["status"]) == (200, "ok")
    assert ctype == "application/json"
    clock.now += 29
    assert get(port, "/healthz")[0] == 200
    clock.now += 2  # 31 s without a beat, limit 30
    code, body, _ = get(port, "/healthz")
    assert code == 503
    doc = json.loads(body)
    assert doc["status"] == "stalled"
    assert "stalled for 31 s" in doc["reason"]
    health.beat()  # the loop came back
    assert get(port, "/healthz")[0] == 200


def test_readyz_reports_every_failing_check(server: tuple[int, Health, FakeClock, CollectorRegistry]) -> None:
    port, health, _, _ = server
    assert get(port, "/readyz")[0] == 200  # no checks: ready
    assigned: set[int] = set()
    health.checks["partitions"] = lambda: None if assigned else "no partitions assigned yet"

    def broken() -> str | None:
        raise ConnectionError("redis down")

    health.checks["redis"] = broken
    code, body, _ = get(port, "/readyz")
    assert code == 503
    doc = json.loads(body)
    assert doc["status"] == "not ready"
    assert doc["reasons"] == {
        "partitions": "no partitions assigned yet",
        "redis": "ConnectionError: redis down",
    }
    assigned.add(0)
    health.checks["redis"] = lambda: None
    code, body, _ = get(port, "/readyz")
    assert (code, json.loads(body)) == (200, {"status": "ready", "reasons": {}})


def test_metrics_and_unknown_paths(server: tuple[int, Health, FakeClock, CollectorRegistry]) -> None:
    port, _, _, registry = server
    c = Counter("segstream_test_things", "things", registry=registry)
    c.inc(3)
    code, body, ctype = get(port, "/metrics?x=1")
    assert code == 200
    assert ctype.startswith("text/plain")
    assert b"segstream_test_things_total 3.0" in body
    code, body, _ = get(port, "/nope")
    assert code == 404
    assert "/metrics" in json.loads(body)["error"]


def test_grafana_dashboard_uses_only_exported_series() -> None:
    """Every segstream_* series the dashboard queries exists in stream/metrics.py."""
    import re
    from pathlib import Path

    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from stream.runtime.metrics import Metrics

    registry = CollectorRegistry()
    Metrics(registry)
    exported: set[str] = set()
    for fam in text_string_to_metric_families(generate_latest(registry).decode()):
        suffixes = {
            "counter": ("_total",),
            "histogram": ("_bucket", "_sum", "_count"),
        }.get(fam.type, ("",))
        exported |= {fam.name + s for s in suffixes}
    root = Path(__file__).resolve().parents[2] / "config" / "grafana"
    dash = json.loads((root / "dashboards" / "segstream.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    used = {m for e in exprs for m in re.findall(r"segstream_[a-z_]+", e)}
    assert used, "no queries found"
    assert used <= exported, sorted(used - exported)
    assert all(p["datasource"]["uid"] == "prometheus" for p in dash["panels"] if p["type"] != "row")
    datasource = (root / "datasources" / "prometheus.yaml").read_text()
    assert "uid: prometheus" in datasource and "http://prometheus:9090" in datasource
