"""`segstream evaluate`: replay one log through each model with the real pipeline, compare them.

Each model runs the same BatchProcessor the service runs (features, inactivity re-scoring,
hysteresis, lifecycle stages), on an in-memory feature store, so the comparison measures what
production would do. The reference is offline scikit-learn KMeans (k-means++, n_init=10) fitted
on the final feature vectors of the customers (only those active in the last ``window_days`` if
given: the drift view), in each model's own model space.

Quality is scored twice: by each customer's *published* segment (what downstream saw, after
hysteresis: the headline) and by the segment *nearest* to it in the final version (what the
model would pick now); the share where they differ is its own column.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry

from models.contracts import SegmentChange
from models.features import FEATURE_INDEX, CustomerState, evaluate_many, snapshot
from models.features.vector import SNAPSHOT_WIDTH
from models.segments.engine import EngineParams, SegmentEngine
from models.segments.lifecycle import stage_name
from models.segments.scoring import (
    customer_months,
    model_change_shares,
    published_vs_nearest,
    segment_flaps,
    stage_flaps,
)
from stream.config import Settings
from stream.io.kafka import SourceRecord
from stream.io.sinks.collect import CollectSink
from stream.runtime.metrics import Metrics
from stream.runtime.pipeline import BatchProcessor
from stream.state import MemoryFeatureStore


@dataclass(frozen=True)
class ModelReport:
    model: str
    customers: int
    segments: int
    ssq_ratio: float  # published segments' SSQ / offline k-means SSQ (lower is better, 1 = as good)
    ari: float | None  # published segments against the planted personas
    ari_reference: float | None
    id_agreement: float  # min over consecutive versions (after 30 days) of "same id for the same customer"
    id_agreement_median: float  # the typical pair (the min is often one unlucky version)
    versions: int
    births: int  # after the first version
    deaths: int
    changes: int
    flapping: float  # share of customers going A -> B -> A within 30 days of event time
    events_per_s: float  # the whole pipeline without Redis/Kafka
    dead_letters: int = 0  # records the pipeline refused (decided before the model: equal for all)
    dead_letter_classes: dict[str, int] = field(default_factory=dict)  # error class -> count
    nearest_ssq_ratio: float = float("nan")  # as ssq_ratio, each customer in its nearest segment
    nearest_ari: float | None = None
    published_differs: float = 0.0  # share of customers published in a segment not their nearest
    segment_flaps_per_month: float = 0.0  # segment returns within 30 days per customer-month
    stage_flaps_per_month: float = 0.0  # lifecycle-stage returns within 30 days per customer-month
    stages: dict[str, int] = field(default_factory=dict)  # customers per final lifecycle stage
    renames: int = 0  # segment ids whose name changed between consecutive versions
    model_changes_median: float = 0.0  # median share of customers a version moved (model_update)


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

    ids, raw, held = customer_vectors(store, settings)
    first_seen = {c: float(h.first_ts) for c, h in zip(ids, held, strict=True)}
    end = max((float(store.watermark(p)) for p in range(settings.topics.partitions)), default=0.0)
    stages = Counter(stage_name(h.stage) or "none" for h in held)
    if window_days is not None:
        recent = raw[:, FEATURE_INDEX["recency_days"]] <= window_days
        raw, ids = raw[recent], [c for c, keep in zip(ids, recent, strict=True) if keep]
        held = [h for h, keep in zip(held, recent, strict=True) if keep]
    k = params.n_segments
    if not engine.warmed_up or len(raw) < k:
        raise ValueError(f"{params.model}: the log is too short to warm the model up")

    assignment = engine.assign(raw)
    d = np.where(np.isfinite(assignment.distances), assignment.distances, np.inf)
    nearest_d = d.min(axis=1)
    nearest = assignment.segment_ids
    # What downstream holds: each customer's published segment (a segment the final version no
    # longer has counts as its nearest for SSQ, and as a difference in published_differs).
    published = np.array([h.segment for h in held], dtype=np.int64)
    column = {int(sid): j for j, sid in enumerate(assignment.ids.tolist())}
    published_d = np.array(
        [d[i, column[s]] if s in column else nearest_d[i] for i, s in enumerate(published.tolist())]
    )
    Z = engine.model_space(raw)
    reference = KMeans(k, init="k-means++", n_init=10, random_state=params.seed).fit(Z)
    ari = ari_ref = nearest_ari = None
    if truth:
        labels = [truth.get(c, "?") for c in ids]
        ari = float(adjusted_rand_score(labels, published))
        nearest_ari = float(adjusted_rand_score(labels, nearest))
        ari_ref = float(adjusted_rand_score(labels, reference.labels_))

    # Id stability: each version's assignment of the final vectors against the next version's;
    # renames: ids kept from one version to the next under another name.
    # The minimum counts pairs after the log's first 30 days of event time (issue #22's goal):
    # the first versions fit a population still arriving.
    settled = min(first_seen.values(), default=0.0) + 30 * 86400
    agreements = []
    renames = 0
    previous = previous_names = None
    for blob in sink.snapshots:
        version = SegmentEngine.restore(blob)
        current = version.assign(raw).segment_ids
        names = version.live_names()
        if previous is not None and version.t_max >= settled:
            agreements.append(float((current == previous).mean()))
        if previous_names is not None:
            renames += sum(names[i] != previous_names[i] for i in names.keys() & previous_names.keys())
        previous, previous_names = current, names
    first_version = min((e["version"] for e in sink.model_events), default=0)
    births = sum(e["kind"] == "birth" and e["version"] > first_version for e in sink.model_events)
    deaths = sum(e["kind"] == "death" for e in sink.model_events)
    months = customer_months(first_seen, end)
    model_moves = model_change_shares(sink.changes, len(first_seen))
    return ModelReport(
        model=params.model,
        customers=len(ids),
        segments=len(engine.segments()),
        ssq_ratio=float((published_d**2).sum()) / float(reference.inertia_),
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
        nearest_ssq_ratio=float((nearest_d**2).sum()) / float(reference.inertia_),
        nearest_ari=nearest_ari,
        published_differs=published_vs_nearest(published, nearest),
        segment_flaps_per_month=sum(segment_flaps(sink.changes).values()) / months if months else 0.0,
        stage_flaps_per_month=sum(stage_flaps(sink.changes).values()) / months if months else 0.0,
        stages=dict(sorted(stages.items())),
        renames=renames,
        model_changes_median=float(np.median(model_moves)) if model_moves else 0.0,
    )


def customer_vectors(
    store: MemoryFeatureStore, settings: Settings
) -> tuple[list[str], np.ndarray, list[CustomerState]]:
    """Every customer's id, raw feature vector at its partition's current watermark, and state."""
    ids: list[str] = []
    states: list[CustomerState] = []
    at: list[float] = []
    for p, cid, blob in store.scan_customers(settings.topics.partitions):
        ids.append(cid)
        states.append(CustomerState.unpack(blob))
        at.append(float(store.watermark(p)))
    snaps = np.array([snapshot(s) for s in states]) if states else np.zeros((0, SNAPSHOT_WIDTH))
    return ids, evaluate_many(snaps, settings.features.params(), np.array(at)), states


def flapping_share(changes: Sequence[SegmentChange]) -> float:
    """Share of customers with a segment that went A -> B -> A within 30 days of event time."""
    seen = {c.customer_id for c in changes}
    return len(segment_flaps(changes)) / len(seen) if seen else 0.0


def params_for(base: EngineParams, models: Sequence[str]) -> list[EngineParams]:
    return [replace(base, model=m) for m in models]
