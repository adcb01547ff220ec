"""Compare segment models on one stream (pure: arrays in, rows out).

Per model configuration: SSQ against an offline k-means reference fitted on the final vectors
(model space), ARI against planted labels (and the reference's ARI), id agreement between
consecutive versions on a fixed probe, births and deaths, flapping (a customer going A -> B -> A
within 30 days under the engine's hysteresis) and learn+predict time per vector.
Needs scikit-learn (a dev dependency) for the reference.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from models.segments.engine import DAY, EngineParams, SegmentEngine
from models.segments.microclusters import sq_distances
from models.segments.vectorize import DEFAULT_FEATURES

__all__ = ["EvalRow", "evaluate"]


@dataclass(frozen=True)
class EvalRow:
    model: str
    params: EngineParams
    ssq_ratio: float
    ari: float
    ari_reference: float
    id_agreement: float  # min over consecutive versions
    births: int
    deaths: int
    moves: int
    flapping_rate: float  # A -> B -> A within 30 days, per move
    us_per_vector: float


def evaluate(
    raw_stream: np.ndarray,
    event_times: np.ndarray,
    truth_labels: np.ndarray,
    params_list: list[EngineParams],
    customer_ids: np.ndarray | None = None,
    feature_names: tuple[str, ...] = DEFAULT_FEATURES,
    batch_size: int = 1000,
    probe_size: int = 2000,
) -> list[EvalRow]:
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    raw = np.asarray(raw_stream, dtype=np.float64)
    times = np.asarray(event_times, dtype=np.float64)
    truth = np.asarray(truth_labels)
    customers = np.arange(len(raw)) if customer_ids is None else np.asarray(customer_ids)
    probe = raw[-probe_size:]
    rows: list[EvalRow] = []
    for params in params_list:
        engine = SegmentEngine(params, feature_names)
        agreement: list[float] = []
        last_probe: np.ndarray | None = None
        births = deaths = moves = flaps = 0
        state: dict[object, tuple[int | None, float | None, int | None, float]] = {}
        elapsed = 0.0
        for lo in range(0, len(raw), batch_size):
            hi = min(lo + batch_size, len(raw))
            t0 = time.perf_counter()
            result, events = engine.process(raw[lo:hi], times[lo:hi])
            elapsed += time.perf_counter() - t0
            births += sum(e.kind == "birth" for e in events if e.version > 1)
            deaths += sum(e.kind == "death" for e in events)
            if any(e.kind == "version" for e in events):
                ids = engine.assign(probe).segment_ids
                if last_probe is not None:
                    agreement.append(float((ids == last_probe).mean()))
                last_probe = ids
            for i in range(hi - lo):
                c = customers[lo + i]
                cur, since, prev, left_prev = state.get(c, (None, None, None, -np.inf))
                t = float(times[lo + i])
                nxt = engine.decide(cur, since, result.row(i), t)
                if nxt != cur:
                    if cur is not None:
                        moves += 1
                        if nxt == prev and t - left_prev <= 30 * DAY:
                            flaps += 1
                    state[c] = (nxt, t, cur, t)
        Z = engine.vectorizer.transform(raw)
        ref = KMeans(params.n_segments, init="k-means++", n_init=10, random_state=params.seed).fit(Z)
        cur_version = engine._current
        if cur_version is None:
            ssq = float("nan")
        else:
            ssq = float(sq_distances(Z, cur_version.centroids).min(axis=1).sum())
        final = engine.assign(raw).segment_ids
        rows.append(
            EvalRow(
                model=params.model,
                params=params,
                ssq_ratio=ssq / float(ref.inertia_),
                ari=float(adjusted_rand_score(truth, final)),
                ari_reference=float(adjusted_rand_score(truth, ref.labels_)),
                id_agreement=min(agreement) if agreement else float("nan"),
                births=births,
                deaths=deaths,
                moves=moves,
                flapping_rate=flaps / moves if moves else 0.0,
                us_per_vector=elapsed / len(raw) * 1e6,
            )
        )
    return rows
