"""One screen of operational status, gathered from Kafka, Redis and (if it answers) /metrics.

Each source is read on its own and a failing one becomes a note on the report, never an error:
status is what an operator runs when something is wrong.
"""

from __future__ import annotations

import logging
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kafka import TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from stream.config import Settings
from stream.errors import ServiceUnavailable
from stream.io.kafka import make_admin, make_consumer
from stream.runtime.integrity import (
    PartitionFacts,
    Where,
    first_problem,
    outputs_problem,
    topic_ids,
)

log = logging.getLogger(__name__)

# Counters whose rates status shows (prometheus_client appends _total to counter samples).
RATE_SERIES = {
    "consumed/s": "segstream_events_consumed_total",
    "applied/s": "segstream_events_applied_total",
    "dead letters/s": "segstream_dead_letters_total",
    "changes/s": "segstream_segment_changes_total",
    "errors/s": "segstream_errors_total",
}


@dataclass
class PartitionStatus:
    partition: int
    committed: int | None = None  # next offset the group will read
    end: int | None = None
    applied: int | None = None  # last offset applied to Redis (-1: none)
    watermark: int | None = None  # event-time seconds
    stored_topic: str = ""  # the input topic id the state was built from
    begin: int | None = None

    @property
    def lag_messages(self) -> int | None:
        if self.end is None:
            return None
        # Redis is never behind the committed offset; a group that never committed is at Redis's.
        pos = self.committed if self.committed is not None else (self.applied or -1) + 1
        return max(self.end - pos, 0)

    def lag_seconds(self, now: float) -> float | None:
        return now - self.watermark if self.watermark else None


@dataclass
class SegmentRow:
    id: int
    name: str
    customers: int


@dataclass
class StatusReport:
    namespace: str
    topic: str
    group: str
    now: float
    partitions: list[PartitionStatus] = field(default_factory=list)
    model_version: int | None = None
    model_event_time: float | None = None  # event time of the data the model was last built on
    model_updated: float | None = None  # wall clock of the last version (from the metrics)
    segments: list[SegmentRow] = field(default_factory=list)
    rates: dict[str, float] = field(default_factory=dict)
    gauges: dict[str, float] = field(default_factory=dict)
    metrics_url: str | None = None
    notes: list[str] = field(default_factory=list)
    # Kafka or Redis, when it could not be read: why (`segstream status` then exits 1).
    unavailable: dict[str, str] = field(default_factory=dict)
    output_topics: dict[str, str] = field(default_factory=dict)  # as the namespace recorded them

    @property
    def total_lag(self) -> int | None:
        lags = [p.lag_messages for p in self.partitions if p.lag_messages is not None]
        return sum(lags) if lags else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "topic": self.topic,
            "group": self.group,
            "now": self.now,
            "partitions": [
                {
                    "partition": p.partition,
                    "committed": p.committed,
                    "end": p.end,
                    "lag_messages": p.lag_messages,
                    "applied": p.applied,
                    "watermark": p.watermark,
                    "lag_seconds": p.lag_seconds(self.now),
                }
                for p in self.partitions
            ],
            "model": {
                "version": self.model_version,
                "event_time": self.model_event_time,
                "updated": self.model_updated,
            },
            "segments": [{"id": s.id, "name": s.name, "customers": s.customers} for s in self.segments],
            "rates": self.rates,
            "gauges": self.gauges,
            "metrics_url": self.metrics_url,
            "notes": self.notes,
            "unavailable": self.unavailable,
        }


# ---------------------------------------------------------------- sources


def _redis_part(settings: Settings, report: StatusReport) -> int:
    """Fill applied offsets, watermarks, model and segments; returns the partition count."""
    from models.segments.engine import SegmentEngine
    from stream.state import FeatureStore
    from stream.state.protocol import keys_lost

    r = settings.redis
    store = FeatureStore(r.url.get_secret_value(), r.namespace, cluster=r.cluster).start(
        r.connect_timeout_seconds
    )
    try:
        meta = store.meta()
        report.topic = meta.get("topic", report.topic)
        n = int(meta.get("partitions", settings.topics.partitions))
        pipe = store.client.pipeline(transaction=False)
        for p in range(n):
            pipe.get(store.offset_key(p))
            pipe.get(store.watermark_key(p))
            pipe.get(store.topic_key(p))
        res = pipe.execute()
        for p in range(n):
            off, wm, tid = res[3 * p : 3 * p + 3]
            report.partitions.append(
                PartitionStatus(
                    p,
                    applied=int(off) if off is not None else -1,
                    watermark=int(wm) if wm else None,
                    stored_topic=tid.decode() if tid else "",
                )
            )
        report.output_topics = store.output_topics()
        for p, what in store.census_problems(n):
            report.notes.append(f"`segstream run` would stop: {keys_lost(store.ns, p, what)}")
        counts = store.segment_counts(n)
        saved = store.load_model()
        names: dict[int, str] = {}
        if saved is not None:
            engine = SegmentEngine.restore(saved[1])
            report.model_version = engine.version
            t_max = float(engine.t_max)
            report.model_event_time = t_max if t_max > 0 and t_max != float("inf") else None
            names = {i: n for i, n in engine.live_names().items() if i >= 0}
        else:
            report.notes.append(f"no model in namespace {settings.redis.namespace!r} yet")
        for sid in sorted(set(counts) | set(names), key=lambda s: (-counts.get(s, 0), s)):
            if counts.get(sid, 0) or sid in names:
                report.segments.append(
                    SegmentRow(sid, names.get(sid, f"segment {sid} (retired)"), counts.get(sid, 0))
                )
        return n
    finally:
        store.close()


def _kafka_part(settings: Settings, report: StatusReport, partitions: int) -> None:
    topic = report.topic
    consumer = make_consumer(settings, request_timeout_ms=10_000)
    try:
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            report.notes.append(f"topic {topic!r} does not exist (a namespace filled from files?)")
            return
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        end = consumer.end_offsets(tps)
        begin = consumer.beginning_offsets(tps)
        by_p = {ps.partition: ps for ps in report.partitions}
        for tp in tps:
            ps = by_p.get(tp.partition)
            if ps is None:
                ps = PartitionStatus(tp.partition)
                report.partitions.append(ps)
            ps.end = end.get(tp)
            ps.begin = begin.get(tp)
            ps.committed = consumer.committed(tp)
        if len(tps) != partitions:
            report.notes.append(f"topic has {len(tps)} partitions, the namespace records {partitions}")
        report.partitions.sort(key=lambda ps: ps.partition)
        _integrity_notes(settings, report)
    finally:
        consumer.close()


def _integrity_notes(settings: Settings, report: StatusReport) -> None:
    """What would stop the service (a recreated topic, lost state), said here too."""
    outputs = list(settings.topics.outputs().values())
    admin = make_admin(settings)
    try:
        ids = topic_ids(admin, [report.topic, *outputs])
    finally:
        admin.close()
    current = ids[report.topic]
    recorded = {n: tid for n, tid in report.output_topics.items() if n in outputs}
    if (changed := outputs_problem(recorded, ids, report.namespace)) is not None:
        report.notes.append(f"`segstream run` would stop: {changed}")
    where = Where(report.topic, report.namespace, report.group)
    facts = [
        PartitionFacts(ps.partition, ps.applied, ps.stored_topic, current, ps.committed, ps.begin, ps.end)
        for ps in report.partitions
        if ps.applied is not None
    ]
    if (problem := first_problem(facts, where)) is not None:
        report.notes.append(f"`segstream run` would stop: {problem}")


def scrape(url: str, timeout: float = 2.0) -> dict[str, float]:
    """Sum every sample by name (labels folded): enough for rates and totals."""
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        text = resp.read().decode()
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            totals[s.name] = totals.get(s.name, 0.0) + float(s.value)
    return totals


def rates(before: dict[str, float], after: dict[str, float], seconds: float) -> dict[str, float]:
    out: dict[str, float] = {}
    for label, name in RATE_SERIES.items():
        if name in after and seconds > 0:
            out[label] = max(after[name] - before.get(name, 0.0), 0.0) / seconds
    return out


# How the processes' gauges combine (the workers of `segstream run --workers`): partitions add
# up, the loop is as alive as its slowest worker, the model is the learner's newest version.
_GAUGES: dict[str, Callable[[list[float]], float]] = {
    "segstream_assigned_partitions": sum,
    "segstream_last_loop_timestamp_seconds": min,
    "segstream_model_version": max,
    "segstream_model_updated_timestamp_seconds": max,
}


_SCRAPE_ERRORS = (OSError, ValueError)  # urllib's URLError is an OSError; ValueError: not metrics


def _metrics_part(report: StatusReport, urls: list[str], interval: float) -> None:
    """Rates summed over the endpoints that answered; one note per endpoint that did not."""
    report.metrics_url = ", ".join(urls)
    first: dict[str, dict[str, float]] = {}
    for url in urls:
        try:
            first[url] = scrape(url)
        except _SCRAPE_ERRORS as e:
            reason = getattr(e, "reason", e)
            report.notes.append(f"metrics at {url} did not answer ({reason}): is `segstream run` running?")
    if not first:
        return
    t0 = time.monotonic()
    time.sleep(interval)
    before: dict[str, float] = {}
    after: dict[str, float] = {}
    gauges: dict[str, list[float]] = {}
    for url, one in first.items():
        try:
            two = scrape(url)
        except _SCRAPE_ERRORS as e:
            report.notes.append(f"metrics at {url} stopped answering ({getattr(e, 'reason', e)})")
            continue
        for name in RATE_SERIES.values():
            if name in two:
                before[name] = before.get(name, 0.0) + one.get(name, 0.0)
                after[name] = after.get(name, 0.0) + two[name]
        for key in _GAUGES:
            if key in two:
                gauges.setdefault(key, []).append(two[key])
    report.rates = rates(before, after, time.monotonic() - t0)
    report.gauges = {key: _GAUGES[key](values) for key, values in gauges.items()}
    updated = report.gauges.get("segstream_model_updated_timestamp_seconds")
    if updated:
        report.model_updated = updated


def gather(settings: Settings, metrics_urls: list[str], interval: float = 1.0) -> StatusReport:
    report = StatusReport(
        namespace=settings.redis.namespace,
        topic=settings.topics.interactions,
        group=settings.kafka.group_id,
        now=time.time(),
    )
    partitions = settings.topics.partitions
    try:
        partitions = _redis_part(settings, report)
    except Exception as e:  # degrade: show what the other sources say
        report.notes.append(f"redis: {e}")
        report.unavailable["redis"] = _reason("Redis", e)
    try:
        _kafka_part(settings, report, partitions)
    except Exception as e:
        report.notes.append(f"kafka: {e}")
        report.unavailable["kafka"] = _reason("Kafka", e)
    if metrics_urls:
        _metrics_part(report, metrics_urls, interval)
    if not report.partitions:
        report.partitions = [PartitionStatus(p) for p in range(partitions)]
    report.now = time.time()
    return report


def _reason(server: str, e: Exception) -> str:
    """One sentence naming the server: ServiceUnavailable's own, else the error's."""
    if isinstance(e, ServiceUnavailable):
        return str(e)
    text = str(e)
    name = type(e).__name__
    return f"{server} could not be read: {text if text.startswith(name) else f'{name}: {text}'}"


def fmt_age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = abs(seconds)
    sign = "-" if seconds < 0 else ""
    if s < 120:
        return f"{sign}{s:.0f} s"
    if s < 7200:
        return f"{sign}{s / 60:.0f} min"
    if s < 172800:
        return f"{sign}{s / 3600:.1f} h"
    return f"{sign}{s / 86400:.1f} d"


def fmt_time(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(ts)) if ts else "-"
