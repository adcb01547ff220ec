"""`segstream evaluate`: replay one log through each model with the real pipeline, compare them.

Each model runs the same BatchProcessor the service runs (features, inactivity re-scoring,
hysteresis), on an in-memory feature store, so the comparison measures what production would do.
The reference is offline scikit-learn KMeans (k-means++, n_init=10) fitted on the final feature
vectors of the customers (only those active in the last ``window_days`` if given: the drift view),
in each model's own model space.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry

from models.contracts import SegmentChange
from models.features import DAY, FEATURE_INDEX, CustomerState, evaluate_many, snapshot
from models.segments.engine import EngineParams, SegmentEngine
from stream.config import Settings
from stream.io.kafka import SourceRecord
from stream.io.sinks.collect import CollectSink
from stream.runtime.metrics import Metrics
from stream.runtime.pipeline import BatchProcessor
from stream.state import MemoryFeatureStore

FLAP_WINDOW = 30 * DAY


@dataclass(frozen=True)
class ModelReport:
    model: str
    customers: int
    segments: int
    ssq_ratio: float  # within-cluster SSQ / offline k-means SSQ (lower is better, 1 = as good)
    ari: float | None  # against the planted personas
    ari_reference: float | None
    id_agreement: float  # min over consecutive versions of "same id for the same customer"
    id_agreement_median: float  # the typical pair (the min is often one unlucky version)
    versions: int
    births: int  # after the first version
    deaths: int
    changes: int
    flapping: float  # share of customers going A -> B -> A within 30 days of event time
    events_per_s: float  # the whole pipeline without Redis/Kafka
    dead_letters: int = 0  # records the pipeline refused (decided before the model: equal for all)
    dead_letter_classes: dict[str, int] = field(default_factory=dict)  # error class -> count


def log_records(source: str, lines: Iterable[tuple[bytes | None, bytes]]) -> list[SourceRecord]:
    """(key, value) pairs as the records ``evaluate_log`` replays: one partition, in log order."""
    return [SourceRecord(source, 0, i, key, value) for i, (key, value) in enumerate(lines)]


def evaluate_log(
    records: Sequence[SourceRecord],
    settings: Settings,
    params_list: Sequence[EngineParams],
    truth: dict[str, str] | None = None,
    window_days: float | None = None,
    batch_size: int = 2000,
    progress: Any = None,
) -> list[ModelReport]:
    return [
        _evaluate_one(records, settings, p, truth, window_days, batch_size, progress) for p in params_list
    ]


def _evaluate_one(
    records: Sequence[SourceRecord],
    settings: Settings,
    params: EngineParams,
    truth: dict[str, str] | None,
    window_days: float | None,
    batch_size: int,
    progress: Any,
) -> ModelReport:
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    store = MemoryFeatureStore()
    engine = SegmentEngine(params, feature_params=settings.features.params())
    sink = CollectSink(engine)
    processor = BatchProcessor(settings, store, engine, sink, Metrics(CollectorRegistry()))
    dead_letters: dict[str, int] = {}
    started = time.perf_counter()
    for lo in range(0, len(records), batch_size):
        result = processor.process(records[lo : lo + batch_size])
        for name, n in result.dead_letter_classes.items():
            dead_letters[name] = dead_letters.get(name, 0) + n
        if progress is not None:
            progress(min(lo + batch_size, len(records)))
    processor.close()  # the last batch's state into the store
    seconds = time.perf_counter() - started

    ids, raw = customer_vectors(store, settings)
    if window_days is not None:
        recent = raw[:, FEATURE_INDEX["recency_days"]] <= window_days
        raw, ids = raw[recent], [c for c, keep in zip(ids, recent, strict=True) if keep]
    k = params.n_segments
    if not engine.warmed_up or len(raw) < k:
        raise ValueError(f"{params.model}: the log is too short to warm the model up")

    assignment = engine.assign(raw)
    d = np.where(np.isfinite(assignment.distances), assignment.distances, np.inf)
    ssq = float((d.min(axis=1) ** 2).sum())
    Z = engine.model_space(raw)
    reference = KMeans(k, init="k-means++", n_init=10, random_state=params.seed).fit(Z)
    ari = ari_ref = None
    if truth:
        labels = [truth.get(c, "?") for c in ids]
        ari = float(adjusted_rand_score(labels, assignment.segment_ids))
        ari_ref = float(adjusted_rand_score(labels, reference.labels_))

    # Id stability: each version's assignment of the final vectors against the next version's.
    agreements = []
    previous = None
    for blob in sink.snapshots:
        current = SegmentEngine.restore(blob).assign(raw).segment_ids
        if previous is not None:
            agreements.append(float((current == previous).mean()))
        previous = current
    first_version = min((e["version"] for e in sink.model_events), default=0)
    births = sum(e["kind"] == "birth" and e["version"] > first_version for e in sink.model_events)
    deaths = sum(e["kind"] == "death" for e in sink.model_events)
    return ModelReport(
        model=params.model,
        customers=len(ids),
        segments=len(engine.segments()),
        ssq_ratio=ssq / float(reference.inertia_),
        ari=ari,
        ari_reference=ari_ref,
        id_agreement=min(agreements) if agreements else float("nan"),
        id_agreement_median=float(np.median(agreements)) if agreements else float("nan"),
        versions=len(sink.snapshots),
        births=births,
        deaths=deaths,
        changes=len(sink.changes),
        flapping=flapping_share(sink.changes),
        events_per_s=len(records) / seconds if seconds else 0.0,
        dead_letters=sum(dead_letters.values()),
        dead_letter_classes=dict(sorted(dead_letters.items())),
    )


def customer_vectors(store: MemoryFeatureStore, settings: Settings) -> tuple[list[str], np.ndarray]:
    """Every customer's id and raw feature vector, at its partition's current watermark."""
    ids: list[str] = []
    snaps: list[list[float]] = []
    at: list[float] = []
    for p, cid, blob in store.scan_customers(settings.topics.partitions):
        ids.append(cid)
        snaps.append(snapshot(CustomerState.unpack(blob)))
        at.append(float(store.watermark(p)))
    return ids, evaluate_many(np.array(snaps), settings.features.params(), np.array(at))


def flapping_share(changes: Sequence[SegmentChange]) -> float:
    """Share of customers with a segment that went A -> B -> A within FLAP_WINDOW of event time."""
    left_at: dict[tuple[str, int], float] = {}
    seen: set[str] = set()
    flapped: set[str] = set()
    for c in changes:
        t = c.event_time.timestamp()
        seen.add(c.customer_id)
        if c.previous is not None:
            left_at[(c.customer_id, c.previous.id)] = t
        if c.current is not None:
            left = left_at.get((c.customer_id, c.current.id))
            if left is not None and t - left <= FLAP_WINDOW:
                flapped.add(c.customer_id)
    return len(flapped) / len(seen) if seen else 0.0


def params_for(base: EngineParams, models: Sequence[str]) -> list[EngineParams]:
    return [replace(base, model=m) for m in models]
