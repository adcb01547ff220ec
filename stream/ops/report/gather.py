"""Reading what a report shows: the namespace's customers and model (through the store protocol),
the whole changes and model-events topics, and the currency amounts are in.

Everything is turned into plain data here (:class:`ReportInputs`); the rest of the package
computes and draws from it without I/O, so its tests need neither Kafka nor Redis.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec
import numpy as np

from models.features import CustomerState, FeatureParams, evaluate_many, snapshot
from models.segments.engine import SegmentEngine
from stream.config import Settings
from stream.errors import SegstreamError, ServiceUnavailable
from stream.io.kafka import read_latest, read_topic

log = logging.getLogger(__name__)

CURRENCY_PROBE = 500  # newest input records looked at for the currency amounts are in


class SegmentRef(msgspec.Struct):
    id: int
    name: str


class ChangeRecord(msgspec.Struct):
    """The fields of a change (schemas/segment_change.schema.json) the report uses."""

    customer_id: str
    seq: int
    previous: SegmentRef | None
    current: SegmentRef | None
    reason: str
    explanation: str
    event_time: str


class ModelEventRecord(msgspec.Struct):
    kind: str
    version: int
    segment_id: int
    related_ids: list[int]
    detail: str
    event_time: str


@dataclass(frozen=True, slots=True)
class Change:
    """One published segment change; ``previous``/``current`` None: no segment before / erased."""

    customer: str
    seq: int
    t: float  # event time, epoch seconds
    previous: int | None
    current: int | None
    current_name: str
    reason: str
    explanation: str


@dataclass(frozen=True, slots=True)
class ModelChange:
    """One model event: birth, death, split, merge, drift (renames are drifts), version."""

    kind: str
    version: int
    segment: int
    related: tuple[int, ...]
    detail: str
    t: float


@dataclass
class Population:
    """Every customer of the namespace, sorted by id."""

    ids: list[str]
    segment: np.ndarray  # the segment the customer is in (-1: none yet)
    raw: np.ndarray  # features in original units (FEATURE_NAMES order), as of ``at``
    at: np.ndarray  # event time each row is evaluated at: max(partition watermark, last event)
    stage: np.ndarray | None = None  # lifecycle stage index (models.segments.lifecycle.STAGES; -1 none)

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class ReportInputs:
    namespace: str
    engine: SegmentEngine
    population: Population
    changes: list[Change]
    model_events: list[ModelChange]
    currency: str | None
    topics: dict[str, str]  # what was read: changes / model_events -> topic name
    notes: list[str] = field(default_factory=list)  # what could not be read, said in the report


def epoch(text: str) -> float:
    """An RFC 3339 time ('Z' or an offset) as epoch seconds."""
    return datetime.fromisoformat(text).timestamp()


# ---------------------------------------------------------------- the store


def read_engine(store: Any, namespace: str) -> SegmentEngine:
    saved = store.load_model()
    if saved is None:
        raise SegstreamError(f"no model in namespace {namespace!r} yet: run `segstream run` first")
    return SegmentEngine.restore(saved[1])


def read_population(store: Any, partitions: int, params: FeatureParams) -> Population:
    """Every customer's segment and features, each evaluated as its partition's watermark (as
    ``segstream export`` does), read partition by partition through the store protocol."""
    ids: list[str] = []
    segments: list[int] = []
    stages: list[int] = []
    snaps: list[list[float]] = []
    ats: list[float] = []
    for p in range(partitions):
        wm = store.watermark(p)
        for cid, blob in store.partition_states(p):
            s = CustomerState.unpack(blob)
            ids.append(cid)
            segments.append(s.segment)
            stages.append(s.stage)
            snaps.append(snapshot(s))
            ats.append(float(max(wm, s.last_ts)))
    if not ids:
        return Population([], np.zeros(0, dtype=np.int64), np.zeros((0, 0)), np.zeros(0))
    # Redis hands buckets back in no useful order: sort by id, so a report of the same state is
    # the same file.
    order = sorted(range(len(ids)), key=ids.__getitem__)
    at = np.array(ats)[order]
    raw = evaluate_many(np.array(snaps)[order], params, at)
    return Population(
        [ids[i] for i in order],
        np.array(segments, dtype=np.int64)[order],
        raw,
        at,
        np.array(stages, dtype=np.int64)[order],
    )


# ---------------------------------------------------------------- the topics


def decode_changes(values: list[bytes]) -> tuple[list[Change], int]:
    """Changes of the changes topic, and how many records were not changes (skipped)."""
    dec = msgspec.json.Decoder(ChangeRecord)
    out: list[Change] = []
    bad = 0
    for v in values:
        try:
            c = dec.decode(v)
            t = epoch(c.event_time)
        except (msgspec.DecodeError, ValueError):
            bad += 1
            continue
        out.append(
            Change(
                customer=c.customer_id,
                seq=c.seq,
                t=t,
                previous=c.previous.id if c.previous is not None else None,
                current=c.current.id if c.current is not None else None,
                current_name=c.current.name if c.current is not None else "",
                reason=c.reason,
                explanation=c.explanation,
            )
        )
    return out, bad


def decode_model_events(values: list[bytes]) -> tuple[list[ModelChange], int]:
    dec = msgspec.json.Decoder(ModelEventRecord)
    out: list[ModelChange] = []
    bad = 0
    for v in values:
        try:
            e = dec.decode(v)
            t = epoch(e.event_time)
        except (msgspec.DecodeError, ValueError):
            bad += 1
            continue
        out.append(ModelChange(e.kind, e.version, e.segment_id, tuple(e.related_ids), e.detail, t))
    return out, bad


def _read_or_note(settings: Settings, topic: str, notes: list[str]) -> list[bytes]:
    """A whole topic; a topic that does not exist is a note in the report (a namespace filled
    without the service has no history), an unreachable broker an error."""
    try:
        return read_topic(settings, topic)
    except ServiceUnavailable:
        raise
    except SegstreamError as e:
        notes.append(str(e))
        return []


def detect_currency(settings: Settings) -> str | None:
    """The currency of the newest purchases on the input topic (features hold amounts, not their
    currency); None when it cannot be told (no such topic, no purchase, several currencies)."""
    try:
        values = read_latest(settings, settings.topics.interactions, CURRENCY_PROBE)
    except ServiceUnavailable:
        raise
    except SegstreamError:
        return None
    seen: set[str] = set()
    for v in values:
        try:
            doc = json.loads(v)
        except ValueError:
            continue
        if isinstance(doc, dict) and isinstance(doc.get("currency"), str):
            seen.add(doc["currency"])
    return seen.pop() if len(seen) == 1 else None


def gather(settings: Settings, store: Any, partitions: int, currency: str | None = None) -> ReportInputs:
    """Everything a report of the settings' namespace shows."""
    ns = settings.redis.namespace
    engine = read_engine(store, ns)
    population = read_population(store, partitions, settings.features.params())
    notes: list[str] = []
    topics = {"changes": settings.topics.out("changes"), "model_events": settings.topics.out("model_events")}
    changes, bad_c = decode_changes(_read_or_note(settings, topics["changes"], notes))
    events, bad_e = decode_model_events(_read_or_note(settings, topics["model_events"], notes))
    for n, what in ((bad_c, topics["changes"]), (bad_e, topics["model_events"])):
        if n:
            notes.append(f"{n:,} record(s) of {what} could not be read and were left out")
    if currency is None:
        currency = detect_currency(settings)
    return ReportInputs(ns, engine, population, changes, events, currency, topics, notes)
