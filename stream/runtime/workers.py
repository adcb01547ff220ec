"""``segstream run --workers N``: N service processes on one machine, segmenting with one model.

Why: one service process is bound to about one core by its GIL (features, assignment and
kafka-python's record decoding all run under it), while Redis, the broker and the publisher
leave the machine's other cores mostly idle. Partitions are the unit of parallelism.

Worker ``i`` is a fresh interpreter (``python -m stream.runtime.workers``; not a fork: a worker has
threads) that reads the partitions ``p`` with ``p % N == i``. They are assigned, not subscribed:
siblings never rebalance against each other, and worker 0 always has partition 0. Worker 0 is the
learner: it learns the model from its customers (a hash sample of all of them) and checkpoints
every version to Redis, as a single instance does. The others are followers (``model.role``):
they swap to the newest checkpointed version between batches and never learn, so every change
is assigned by a version the learner built. Worker ``i`` serves /metrics, /healthz and /readyz
on ``service.metrics_port + i``.

Crash-only: when a worker fails, the supervisor stops the others and exits non-zero; a restart
resumes every partition from Redis's applied offsets, as after any crash. A worker reads its
settings from its stdin and stops when the stdin closes, so a killed supervisor leaves no
worker behind.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import asdict
from typing import IO, Any

from stream.config import Settings
from stream.errors import ConfigError, SegstreamError

log = logging.getLogger(__name__)

STOP_TIMEOUT = 60.0


class WorkerFailed(SegstreamError):
    """A worker exited with an error; the others were stopped."""


def worker_partitions(index: int, workers: int, partitions: int) -> list[int]:
    return [p for p in range(partitions) if p % workers == index]


def worker_settings(settings: Settings, index: int) -> Settings:
    """Worker ``index``'s settings: its metrics port, and the follower role for all but worker 0.

    The learner builds a version every ``update_every`` rows of its own, as one process does: each
    version learns from as many rows, and versions come N times less often in event time. (A
    version every ``update_every / N`` of its rows kept the event-time cadence, but its fixed cost
    per version, ~13 ms plus a snapshot every follower reloads, then grew with N on the one
    learner: it was the last worker to finish in every measured run, 0.2-0.6 s behind.)"""
    svc = settings.service
    port = svc.metrics_port + index if svc.metrics_port else 0
    update: dict[str, Any] = {"service": svc.model_copy(update={"metrics_port": port, "workers": 1})}
    if index:
        update["model"] = settings.model.model_copy(update={"role": "follower"})
    return settings.model_copy(update=update)


def run_workers(
    settings: Settings, until_idle: float | None = None, max_records: int | None = None
) -> list[dict[str, Any]]:
    """Start ``service.workers`` workers, wait for all of them; returns each one's run summary.

    SIGTERM/SIGINT stop every worker gracefully. ``max_records`` is split evenly between them."""
    n = settings.service.workers
    parts = settings.topics.partitions
    if n > parts:
        raise ConfigError(
            f"service.workers is {n} but topics.partitions is {parts}: a worker needs a partition"
        )
    per_worker = -(-max_records // n) if max_records else None
    procs: list[subprocess.Popen[bytes]] = []
    for i in range(n):
        proc = subprocess.Popen(
            [sys.executable, "-m", "stream.runtime.workers", str(i), str(n)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        procs.append(proc)
        assert proc.stdin is not None
        proc.stdin.write(pickle.dumps((worker_settings(settings, i), until_idle, per_worker)))
        proc.stdin.flush()  # stays open: the worker stops when it closes

    stopping = threading.Event()

    def stop_all(*_: Any) -> None:
        stopping.set()
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)

    def failure(code: int | None) -> bool:
        # A worker still starting up when asked to stop dies of the signal: not a failure.
        return bool(code) and not (stopping.is_set() and code == -signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop_all) for sig in (signal.SIGTERM, signal.SIGINT)}
    failed: tuple[int, int] | None = None
    try:
        while any(p.poll() is None for p in procs):
            for i, p in enumerate(procs):
                code = p.poll()
                if failure(code) and failed is None:
                    assert code is not None
                    failed = (i, code)
                    log.error("worker %d exited with code %d: stopping the others", i, code)
                    stop_all()
            time.sleep(0.1)
        for i, p in enumerate(procs):  # one that failed last is seen here
            if failure(p.returncode) and failed is None:
                failed = (i, p.returncode)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        deadline = time.monotonic() + STOP_TIMEOUT
        for p in procs:
            try:
                p.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    if failed is not None:
        raise WorkerFailed(f"worker {failed[0]} exited with code {failed[1]}; the others were stopped")
    return [_summary(p.stdout) for p in procs]


def _summary(out: IO[bytes] | None) -> dict[str, Any]:
    lines = out.read().decode().splitlines() if out is not None else []
    return json.loads(lines[-1]) if lines else {}


def _stop_on_eof(stop: Any) -> None:
    """The supervisor holds our stdin open for as long as it lives."""
    while sys.stdin.buffer.read(4096):
        pass
    stop()


def _worker(index: int, count: int) -> int:
    from stream.runtime.service import Service

    settings, until_idle, max_records = pickle.load(sys.stdin.buffer)
    logging.basicConfig(
        level=getattr(logging, settings.service.log_level),
        format=f"%(asctime)s %(levelname)s worker {index} %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # As `segstream` without -v: the libraries' own connection errors are noise next to ours.
    quiet = settings.service.log_level != "DEBUG"
    for library in ("kafka", "redis"):
        logging.getLogger(library).setLevel(logging.CRITICAL + 1 if quiet else logging.INFO)
    partitions = worker_partitions(index, count, settings.topics.partitions)
    service = Service(settings, partitions=partitions)
    service.install_signal_handlers()
    threading.Thread(target=_stop_on_eof, args=(service.request_stop,), daemon=True).start()
    service.start()
    log.info(
        "%s of %s partitions %s, metrics on port %s",
        settings.model.role,
        settings.topics.interactions,
        partitions,
        service.http_port,
    )
    try:
        summary = service.run(until_idle=until_idle, max_records=max_records)
    finally:
        service.close()
    # By error class, from the metrics: the same count as the summary's, per class.
    classes = service.metrics.dead_letter_counts()
    sys.stdout.write(json.dumps({**asdict(summary), "dead_letter_classes": classes}) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    try:
        code = _worker(int(sys.argv[1]), int(sys.argv[2]))
    except SegstreamError as e:  # one line for the operator, as `segstream run` prints it
        print(f"segstream: worker {sys.argv[1]}: error: {e}", file=sys.stderr)
        code = 1
    except Exception:
        traceback.print_exc()
        code = 1
    sys.stderr.flush()
    os._exit(code)  # without waiting for client threads; the supervisor stops the siblings
