"""Metrics and health endpoints: /metrics, /healthz (loop alive), /readyz (able to do its job)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


class Health:
    """Shared between the poll loop (writer) and the HTTP thread (reader)."""

    def __init__(self, stall_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.stall_seconds = stall_seconds
        self._clock = clock
        self._last_beat = clock()
        self.checks: dict[str, Callable[[], str | None]] = {}  # name -> None when ok, else reason

    def beat(self) -> None:
        self._last_beat = self._clock()

    def healthy(self) -> tuple[bool, str]:
        idle = self._clock() - self._last_beat
        if idle > self.stall_seconds:
            return False, f"poll loop stalled for {idle:.0f} s (limit {self.stall_seconds:g} s)"
        return True, "ok"

    def ready(self) -> tuple[bool, dict[str, str]]:
        failures: dict[str, str] = {}
        for name, check in self.checks.items():
            try:
                reason = check()
            except Exception as e:  # a readiness probe reports, it never raises
                reason = f"{type(e).__name__}: {e}"
            if reason:
                failures[name] = reason
        return not failures, failures


def serve(registry: CollectorRegistry, health: Health, host: str, port: int) -> ThreadingHTTPServer:
    """Start the endpoint server on a daemon thread; port 0 picks a free port (see server_port)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                ok, reason = health.healthy()
                self._json(200 if ok else 503, {"status": "ok" if ok else "stalled", "reason": reason})
            elif path == "/readyz":
                ok, failures = health.ready()
                self._json(
                    200 if ok else 503, {"status": "ready" if ok else "not ready", "reasons": failures}
                )
            else:
                self._json(404, {"error": f"no such endpoint {path}; try /metrics, /healthz, /readyz"})

        def _json(self, code: int, body: dict) -> None:
            self._send(code, json.dumps(body).encode(), "application/json")

        def _send(self, code: int, body: bytes, ctype: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # scrapes every few seconds would drown the service log

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="segstream-http", daemon=True).start()
    return server
