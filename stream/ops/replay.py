"""Replay an event log into a namespace of its own: rebuild state, or try a model config on history.

Sources are JSONL(.gz) files or a Kafka topic read from an offset or a point in time up to the end
offsets seen at the start (``assign``, no consumer group, nothing committed). Records go through the
same :class:`~stream.runtime.pipeline.BatchProcessor` as the service, into a shadow Redis namespace and
output topics with a suffix, beside production.

Determinism: the replay reads the partitions as the service does (all of them, mixed as the log
or the polls have them) and the learner's merge puts their rows in one order that depends only
on the log (docs/decisions/0028-the-learner-merges-its-partitions.md): a replay publishes, per
partition, what one service instance publishes, and replaying one log twice gives the same change
stream (the wall-clock emit time travels only as a Kafka header) and the same features.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from kafka import TopicPartition
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from stream.config import Settings
from stream.errors import ConfigError, SegstreamError
from stream.io.kafka import SourceRecord, ensure_topics, make_consumer, partition_for_key
from stream.io.logfiles import read_lines
from stream.io.sinks import OutputSink, open_sink
from stream.runtime.metrics import Metrics
from stream.runtime.pipeline import BatchProcessor
from stream.state import FeatureStore

log = logging.getLogger(__name__)

DEFAULT_BATCH = 2000
# Settings sections a what-if file may override (everything else is the deployment's business).
WHAT_IF_SECTIONS = ("model", "features")


class NamespaceNotEmpty(SegstreamError):
    """The target namespace already holds state and --fresh was not given."""


@dataclass
class ReplaySummary:
    namespace: str
    source: str
    records: int = 0
    applied: int = 0
    dead_letters: int = 0
    dead_letter_classes: dict[str, int] = field(default_factory=dict)  # error class -> count
    changes: int = 0
    batches: int = 0
    partitions: int = 0
    seconds: float = 0.0
    model_version: int = 0
    output_topics: dict[str, str] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "source": self.source,
            "records": self.records,
            "applied": self.applied,
            "dead_letters": self.dead_letters,
            "dead_letter_classes": dict(sorted(self.dead_letter_classes.items())),
            "changes": self.changes,
            "batches": self.batches,
            "partitions": self.partitions,
            "seconds": round(self.seconds, 3),
            "rate": round(self.rate, 1),
            "model_version": self.model_version,
            "output_topics": self.output_topics,
        }


# ---------------------------------------------------------------- settings


def what_if_overrides(path: Path) -> dict[str, Any]:
    """The ``model:`` (and ``features:``) sections of a what-if YAML file, as settings overrides."""
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError as e:
        raise ConfigError(f"model config file not found: {path}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"model config file {path} is not valid YAML: {e}") from e
    if not isinstance(raw, dict) or not any(k in raw for k in WHAT_IF_SECTIONS):
        raise ConfigError(f"model config file {path} needs a 'model:' section (and/or 'features:')")
    unknown = sorted(set(raw) - set(WHAT_IF_SECTIONS))
    if unknown:
        raise ConfigError(
            f"model config file {path}: only model/features sections are allowed, not {unknown}"
        )
    out: dict[str, Any] = {}
    for section in WHAT_IF_SECTIONS:
        if section in raw:
            if not isinstance(raw[section], dict):
                raise ConfigError(f"model config file {path}: '{section}' must be a mapping")
            out[section] = raw[section]
    return out


def replay_overrides(namespace: str, suffix: str | None, what_if: dict[str, Any] | None) -> dict[str, Any]:
    """Settings overrides for a replay: its namespace, its output topic suffix, the what-if sections,
    and the learner's role: a replay builds its namespace's model alone, whatever role the
    deployment's settings give the service (`follower` or `auto` would leave it at version 0).

    >>> replay_overrides("ns1", None, {"model": {"role": "follower", "margin": 0.4}})["model"]
    {'role': 'learner', 'margin': 0.4}
    """
    o: dict[str, Any] = {
        "redis": {"namespace": namespace},
        "topics": {"suffix": f".{namespace}" if suffix is None else suffix},
    }
    for k, v in (what_if or {}).items():
        o[k] = dict(v)
    o["model"] = {**o.get("model", {}), "role": "learner"}
    return o


def with_overrides(settings: Settings, overrides: dict[str, Any]) -> Settings:
    """``settings`` with whole-section overrides applied on top, each section validated.

    Applied after loading on purpose: a replay's namespace, suffix and what-if sections must win
    over SEGSTREAM_* variables as well as over the file.
    """
    update: dict[str, Any] = {}
    for section, values in overrides.items():
        current = getattr(settings, section, None)
        if current is None:
            raise ConfigError(f"unknown settings section {section!r}")
        try:
            update[section] = type(current).model_validate({**current.model_dump(), **values})
        except ValidationError as e:
            problems = "; ".join(
                f"{section}.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
                for err in e.errors(include_url=False)
            )
            raise ConfigError(f"invalid settings: {problems}") from e
    return settings.model_copy(update=update)


# ---------------------------------------------------------------- sources


@dataclass
class Source:
    """Records of every partition, each partition's in offset order, interleaved as the log has
    them; ``ends`` gives, per partition, the offset after its last record (what "read to its
    end" means for the learner's merge)."""

    description: str
    topic: str
    partitions: int
    total: int | None  # records to read, when known up front
    read: Callable[[], Iterator[SourceRecord]]
    ends: Callable[[], dict[int, int]]


def file_source(paths: Sequence[Path], partitions: int = 1) -> Source:
    """JSONL(.gz) files, in the given order. One partition (offset = line ordinal across the files),
    or ``partitions`` by key hash like the producer does (offsets count per partition)."""
    for path in paths:
        if not path.exists():
            raise SegstreamError(f"log file not found: {path}")
    topic = paths[0].name if len(paths) == 1 else "replay"

    def read() -> Iterator[SourceRecord]:
        next_offset = [0] * partitions
        for path in paths:
            for key, value in read_lines(path):
                p = partition_for_key(key, partitions)  # as the topic would have them
                yield SourceRecord(path.name, p, next_offset[p], key, value)
                next_offset[p] += 1

    def ends() -> dict[int, int]:
        """A counting pass: where each partition ends (the merge must know which have ended)."""
        count = dict.fromkeys(range(partitions), 0)
        for path in paths:
            for key, _ in read_lines(path):
                count[partition_for_key(key, partitions)] += 1
        return count

    return Source(", ".join(str(p) for p in paths), topic, partitions, None, read, ends)


def parse_time(text: str) -> datetime:
    """An ISO 8601 time; a naive one is taken as UTC."""
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as e:
        raise SegstreamError(
            f"--from-time {text!r} is not an ISO 8601 time (e.g. 2026-01-31T00:00:00Z)"
        ) from e
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def kafka_source(
    settings: Settings, topic: str, from_offset: int | None = None, from_time: datetime | None = None
) -> Source:
    """A topic from ``from_offset`` (per partition) or ``from_time`` up to today's end offsets."""
    if from_offset is not None and from_time is not None:
        raise SegstreamError("give --from-offset or --from-time, not both")
    consumer = make_consumer(settings, group_id=None, enable_auto_commit=False)
    try:
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            raise SegstreamError(f"topic {topic!r} does not exist (or has no partitions)")
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        begin = consumer.beginning_offsets(tps)
        end = consumer.end_offsets(tps)
        if from_time is not None:
            found = consumer.offsets_for_times({tp: int(from_time.timestamp() * 1000) for tp in tps})
            start = {tp: (found[tp].offset if found.get(tp) is not None else end[tp]) for tp in tps}
        else:
            start = {tp: max(begin[tp], from_offset or 0) for tp in tps}
    finally:
        consumer.close()
    ranges = {tp.partition: (start[tp], end[tp]) for tp in tps}
    total = sum(max(e - s, 0) for s, e in ranges.values())
    where = f"offset {from_offset}" if from_offset is not None else (from_time or "the beginning")

    def read() -> Iterator[SourceRecord]:
        consumer = make_consumer(settings, group_id=None, enable_auto_commit=False)
        try:
            yield from _read_partitions(consumer, topic, ranges)
        finally:
            consumer.close()

    def source_ends() -> dict[int, int]:
        return {p: e for p, (_, e) in ranges.items()}

    return Source(f"kafka topic {topic} from {where}", topic, len(tps), total, read, source_ends)


def _read_partitions(consumer: Any, topic: str, ranges: dict[int, tuple[int, int]]) -> Iterator[SourceRecord]:
    """Every partition from its start up to its end, as the polls mix them (the merge orders
    them); a partition stops at its end."""
    tps = {p: TopicPartition(topic, p) for p, (s, e) in ranges.items() if s < e}
    if not tps:
        return
    consumer.assign(list(tps.values()))
    for p, tp in tps.items():
        consumer.seek(tp, ranges[p][0])
    open_ = set(tps)
    idle_polls = 0
    while open_:
        polled = consumer.poll(timeout_ms=1000)
        got = False
        for p in sorted(open_):
            tp, end = tps[p], ranges[p][1]
            for m in polled.get(tp, []):
                if m.offset >= end:
                    break
                got = True
                yield SourceRecord(topic, p, m.offset, m.key, m.value)
            # Transactions or compaction leave gaps: the position may reach the end without a record.
            if consumer.position(tp) >= end:
                open_.discard(p)
                consumer.pause(tp)
        if got:
            idle_polls = 0
            continue
        idle_polls += 1
        if idle_polls > 60:
            where = ", ".join(f"{p} at {consumer.position(tps[p])} of {ranges[p][1]}" for p in sorted(open_))
            raise SegstreamError(f"{topic}: no records for 60 s (partition {where})")


def batched(records: Iterable[SourceRecord], size: int) -> Iterator[list[SourceRecord]]:
    batch: list[SourceRecord] = []
    for r in records:
        batch.append(r)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


# ---------------------------------------------------------------- the replay


def namespace_key_count(store: FeatureStore, limit: int = 1) -> int:
    """How many keys the namespace holds (stops counting at ``limit``)."""
    n = 0
    for _ in store.client.scan_iter(match=f"{store.ns}:*", count=1000):
        n += 1
        if n >= limit:
            break
    return n


def clear_namespace(store: FeatureStore) -> int:
    """Delete every key of the namespace (SCAN + DEL in chunks, never KEYS); returns the count."""
    deleted = 0
    chunk: list[bytes] = []
    for key in store.client.scan_iter(match=f"{store.ns}:*", count=1000):
        chunk.append(key)
        if len(chunk) >= 500:
            deleted += int(store.client.delete(*chunk))
            chunk = []
    if chunk:
        deleted += int(store.client.delete(*chunk))
    return deleted


Progress = Callable[[int], None]


def replay(
    settings: Settings,
    source: Source,
    batch_size: int = DEFAULT_BATCH,
    fresh: bool = False,
    progress: Progress | None = None,
    registry: CollectorRegistry | None = None,
) -> ReplaySummary:
    """Replay ``source`` into ``settings.redis.namespace``; outputs to the topics with the suffix."""
    if batch_size < 1:
        raise SegstreamError("batch size must be at least 1")
    ns = settings.redis.namespace
    t = settings.topics
    outputs = t.outputs()
    if source.topic and source.topic in outputs.values():
        raise SegstreamError(f"the replay would write into its own source topic {source.topic!r}")
    summary = ReplaySummary(namespace=ns, source=source.description, output_topics=outputs)
    r = settings.redis
    store = FeatureStore(r.url.get_secret_value(), ns, cluster=r.cluster).start(r.connect_timeout_seconds)
    sink: OutputSink | None = None
    try:
        if namespace_key_count(store):
            if not fresh:
                raise NamespaceNotEmpty(
                    f"namespace {ns!r} already holds state; pass --fresh to delete it and replay from scratch"
                )
            n = clear_namespace(store)
            log.info("deleted %d keys of namespace %s", n, ns)
        from stream.runtime.engines import load_engine
        from stream.runtime.service import tune_runtime  # the service's wiring, one definition

        engine = load_engine(settings, store)
        ensure_topics(settings, only=list(outputs.values()))
        store.save_meta(source.topic, source.partitions)
        store.take_census(source.partitions)
        sink = open_sink(settings)
        metrics = Metrics(registry or CollectorRegistry())
        processor = BatchProcessor(settings, store, engine, sink, metrics)
        tune_runtime()
        summary.partitions = source.partitions
        started = time.perf_counter()
        # As the service reads them: every partition owned, each "read to its end" once its last
        # record is in, so the learner's merge (stream.runtime.merge) orders the rows as it does
        # live, and the replay publishes what one service instance would.
        owned = frozenset(range(source.partitions))
        processor.owned = owned
        ends = source.ends()
        read = dict.fromkeys(owned, 0)
        log.info("replaying %s", source.description)
        # A last empty batch once every partition ended: what the merge still held goes.
        for batch in itertools.chain(batched(source.read(), batch_size), [[]]):
            for rec in batch:
                read[rec.partition] = rec.offset + 1
            ended = frozenset(p for p in owned if read[p] >= ends.get(p, 0))
            processor.drained = ended if batch else owned
            result = processor.process(batch)
            summary.records += len(batch)
            summary.applied += result.applied
            summary.dead_letters += result.dead_letters
            for name, n in result.dead_letter_classes.items():
                summary.dead_letter_classes[name] = summary.dead_letter_classes.get(name, 0) + n
            summary.changes += result.changes
            summary.batches += 1 if batch else 0
            if progress is not None and batch:
                progress(len(batch))
        processor.close()  # every batch's state written (raises a failed write)
        # The model as the replay left it: diff, export and segments read it from the namespace.
        store.save_model(engine.snapshot(), engine.version)
        sink.flush()
        summary.model_version = engine.version
        summary.seconds = time.perf_counter() - started
        return summary
    finally:
        if sink is not None:
            sink.close()
        store.close()
