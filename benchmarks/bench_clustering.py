"""Clustering throughput: batch assignment and learning of the default model vs River KMeans.

Run: ``OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_clustering.py [--quality]``
(single-threaded BLAS is set below if unset: on 2 busy cores multi-threaded BLAS is much slower
for these small matrices). Prints medians over repeats and ratios to the goals and the baseline.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import statistics
import time

import numpy as np
from river import cluster

from models.features import SNAPSHOT_WIDTH, FeatureParams, evaluate_many
from models.segments.engine import EngineParams, SegmentEngine
from models.segments.microclusters import MicroClusterKMeans
from models.segments.population import customer_key
from models.segments.vectorize import DEFAULT_FEATURES


def planted(n: int, k: int = 8, d: int = 22, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3.0, (k, d))
    y = rng.integers(0, k, n)
    return centres[y] + rng.normal(0, 1.0, (n, d)), y


def planted_raw(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Raw-unit customers (heavy tails, shares) from planted model-space blobs."""
    X, y = planted(n, d=len(DEFAULT_FEATURES), seed=seed)
    raw = np.abs(X) * 5.0
    shares = np.abs(X[:, 8:14]) + 1e-9
    raw[:, 8:14] = shares / shares.sum(axis=1, keepdims=True)
    raw[:, 18:21] = 1 / (1 + np.exp(-X[:, 18:21]))
    raw[:, 21] = np.clip(1 + X[:, 21] / 5, 0, 5)
    # The rhythm columns (state format 2): a spread in (0, 3) and the interaction mix's shares.
    raw[:, 23] = np.clip(1 + X[:, 23] / 3, 0, 3)
    mix = np.abs(X[:, 29:33]) + 1e-9
    raw[:, 29:33] = mix / mix.sum(axis=1, keepdims=True)
    return raw, y


def customer_stream(n: int, customers: int = 20_000, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Rows as the pipeline hands them to a learner: feature vectors, times, keys, state snapshots
    (random but well-formed states of ``customers`` customers over 90 days)."""
    rng = np.random.default_rng(seed)
    t = 1.7e9 + np.sort(rng.uniform(0, 90 * 86400, n))
    who = rng.integers(0, customers, n)
    snaps = np.zeros((n, SNAPSHOT_WIDTH))
    snaps[:, 0] = t - rng.uniform(0, 60 * 86400, n)  # first seen
    snaps[:, 1] = snaps[:, 3] = t  # last event, reference time
    snaps[:, 2] = t - rng.uniform(0, 30 * 86400, n)  # last purchase
    snaps[:, 4:9] = rng.integers(1, 30, (n, 5))  # events, purchases, refunds, promo, carts
    snaps[:, 9] = snaps[:, 5] * rng.gamma(2.0, 30.0, n)  # spend
    snaps[:, 11:25] = rng.gamma(2.0, 1.0 + who[:, None] % 5, (n, 14))  # decayed sums
    # Rhythm: customer c buys every 3 + c % 20 days, its newest purchase days before t.
    gap = 3 + who % 20
    today = (t // 86400).astype(np.int64)
    k = np.minimum(snaps[:, 5].astype(np.int64), 8)
    for j in range(8):
        back = 7 - j
        day = np.where(back < k, today - back * gap, 0)
        snaps[:, 28 + j] = snaps[:, 36 + j] = day
    snaps[:, 25] = (today - (k - 1) * gap) * 86400  # first purchase
    snaps[:, 26] = snaps[:, 27] = snaps[:, 5]  # purchase days, active days
    keys = np.array([customer_key(f"c{c}") for c in who.tolist()], dtype=np.uint64)
    return evaluate_many(snaps, FeatureParams(), t), t, keys, snaps


def median_rate(fn, n: int, repeats: int) -> float:  # type: ignore[no-untyped-def]
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        rates.append(n / (time.perf_counter() - t0))
    return statistics.median(rates)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quality", action="store_true", help="also run the model comparison")
    args = ap.parse_args()
    n = args.n
    X, _ = planted(n, d=len(DEFAULT_FEATURES))  # the model space is one column per feature
    times = np.arange(n, dtype=np.float64)

    def learn() -> MicroClusterKMeans:
        m = MicroClusterKMeans(n_clusters=8, max_micro=150, recluster_every=0, seed=42)
        for i in range(0, n, 2000):
            m.learn_many(X[i : i + 2000], times[i : i + 2000])
            m.recluster()
        return m

    model = learn()
    learn_rate = median_rate(learn, n, args.repeats)
    assign_rate = median_rate(lambda: model.predict_many(X), n, args.repeats)

    raw, _ = planted_raw(n)
    # The engine as shipped (EngineParams() is the default settings'): its first version waits for
    # 21 days of event time, so the rows come a minute apart (50,000 rows: 35 days).
    etimes = np.arange(n, dtype=np.float64) * 60.0
    engine = SegmentEngine(EngineParams())
    engine.process(raw[:40_000], etimes[:40_000])
    assert engine.warmed_up, "the benchmark must assign with a built version"
    engine_assign = median_rate(lambda: engine.assign(raw), n, args.repeats)

    def engine_run() -> None:
        e = SegmentEngine(EngineParams())
        for i in range(0, n, 1000):
            e.process(raw[i : i + 1000], etimes[i : i + 1000])

    engine_process = median_rate(engine_run, n, max(1, args.repeats // 2))

    # Population mode (the service's default): every version also ages and fits the sample.
    craw, ctimes, ckeys, csnaps = customer_stream(n)

    def engine_population() -> None:
        e = SegmentEngine(EngineParams())
        for i in range(0, n, 1000):
            sl = slice(i, i + 1000)
            e.process(craw[sl], ctimes[sl], None, ckeys[sl], csnaps[sl])

    engine_sampled = median_rate(engine_population, n, max(1, args.repeats // 2))

    nb = min(n, 10_000)
    dicts = [dict(enumerate(r)) for r in X[:nb].tolist()]

    def river_kmeans() -> None:
        km = cluster.KMeans(n_clusters=8, halflife=0.02, seed=42)
        for x in dicts:
            km.learn_one(x)
            km.predict_one(x)

    river_rate = median_rate(river_kmeans, nb, max(1, args.repeats // 2))

    print(f"vectors: {n} x {X.shape[1]}, medians over {args.repeats} repeats (OPENBLAS_NUM_THREADS=1)")
    print(
        f"MicroClusterKMeans predict_many   {assign_rate:12,.0f} vec/s  goal 200k: {assign_rate / 2e5:5.1f}x"
    )
    print(f"MicroClusterKMeans learn_many     {learn_rate:12,.0f} vec/s  goal  50k: {learn_rate / 5e4:5.1f}x")
    print(
        f"SegmentEngine.assign (raw->soft)  {engine_assign:12,.0f} vec/s"
        f"  goal 200k: {engine_assign / 2e5:5.1f}x"
    )
    print(
        f"SegmentEngine.process (assign+learn) {engine_process:9,.0f} vec/s"
        f"  goal  50k: {engine_process / 5e4:5.1f}x"
    )
    print(
        f"  with a 2048-customer sample    {engine_sampled:12,.0f} vec/s"
        f"  goal  50k: {engine_sampled / 5e4:5.1f}x"
        f"  ({n // 2000} versions)"
    )
    print(f"River KMeans learn+predict_one    {river_rate:12,.0f} vec/s  (baseline)")
    print(
        f"ratios vs River: assign {assign_rate / river_rate:.0f}x, learn {learn_rate / river_rate:.0f}x, "
        f"engine process {engine_process / river_rate:.0f}x"
    )

    if args.quality:
        from models.segments.evaluate import evaluate

        m = 20_000
        Xq, yq = planted(m, d=len(DEFAULT_FEATURES), seed=1)
        rawq = np.abs(Xq) * 5.0
        t = np.arange(m) * 60.0
        plist = [EngineParams(model=name) for name in ("microclusters", "kmeans", "streamkmeans", "dbstream")]
        for row in evaluate(rawq, t, yq, plist, customer_ids=np.arange(m) % 3000):
            print(
                f"{row.model:14s} ssq {row.ssq_ratio:5.2f}x ari {row.ari:5.2f}"
                f" (ref {row.ari_reference:4.2f}) "
                f"id-agree {row.id_agreement:5.3f} births {row.births} deaths {row.deaths} "
                f"flap {row.flapping_rate:5.3f} {row.us_per_vector:7.1f} us/vec"
            )


if __name__ == "__main__":
    main()
