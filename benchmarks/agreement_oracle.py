"""How much id agreement between consecutive model versions can a refit reach at all? (#4)

Not a speed benchmark: an upper bound for one of ``segstream evaluate``'s accuracy figures.
The log (``generate(600, 120, seed)``, stationary by default, one partition in file order, as
``segstream evaluate`` reads it) goes through the real pipeline with the default engine. At every
model version the whole customer population is taken from the feature store at that moment and
clustered offline with scikit-learn KMeans, in one fixed model space (the final vectorizer):

- ``fresh``: k-means++ with n_init=10 (the SSQ-best fit at that time, what the accuracy goal's
  reference is at the end);
- ``warm``: one k-means run started from the previous fit's centroids (the stickiest refit).

Each fit labels the final feature vectors; consecutive fits' labels are matched one-to-one in the
best possible way (Hungarian assignment), and agreement is the share of customers that keep their
matched id. This is generous to the oracle (the engine's own figure needs equal ids, without
re-matching). Prints the minimum and median over consecutive pairs and the final fit's
SSQ against the offline reference.

    .venv/bin/python benchmarks/agreement_oracle.py [--seed 3] [--scenario stationary]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from prometheus_client import CollectorRegistry
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from models.segments.engine import SegmentEngine  # noqa: E402
from models.sim import generate  # noqa: E402
from stream.config import load  # noqa: E402
from stream.io.sinks.collect import CollectSink  # noqa: E402
from stream.ops.evaluate import customer_vectors, log_records  # noqa: E402
from stream.runtime.engines import engine_params  # noqa: E402
from stream.runtime.metrics import Metrics  # noqa: E402
from stream.runtime.pipeline import BatchProcessor  # noqa: E402
from stream.state import MemoryFeatureStore  # noqa: E402

STEP = 250  # records between looks at the engine's version


def matched_agreement(a: np.ndarray, b: np.ndarray, k: int) -> float:
    counts = np.zeros((k, k))
    np.add.at(counts, (a, b), 1)
    rows, cols = linear_sum_assignment(-counts)
    return float(counts[rows, cols].sum() / len(a))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--scenario", default="stationary")
    args = ap.parse_args()

    log = generate(600, 120, seed=args.seed, scenario=args.scenario)
    settings = load(overrides={"topics": {"partitions": 1}})
    records = log_records("interactions", ((r.key, r.value) for r in log.records))
    store = MemoryFeatureStore()
    engine = SegmentEngine(engine_params(settings))
    processor = BatchProcessor(settings, store, engine, CollectSink(engine), Metrics(CollectorRegistry()))
    populations = []
    version = 0
    for lo in range(0, len(records), STEP):
        processor.process(records[lo : lo + STEP])
        if engine.version != version:
            version = engine.version
            processor.drain()
            populations.append(customer_vectors(store, settings)[1])
    processor.close()
    final = customer_vectors(store, settings)[1]
    space = engine.vectorizer
    final_z = space.transform(final)
    k = engine.params.n_segments
    reference = KMeans(k, init="k-means++", n_init=10, random_state=42).fit(final_z)
    print(
        f"log: generate(600, 120, seed={args.seed}, scenario={args.scenario}): {len(records):,} records, "
        f"{len(final)} customers, {len(populations)} model versions"
    )
    for mode in ("fresh", "warm"):
        labels_before: np.ndarray | None = None
        centres: np.ndarray | None = None
        agreements = []
        fit = reference
        for pop in [*populations, final]:
            z = space.transform(pop)
            if mode == "fresh" or centres is None:
                fit = KMeans(k, init="k-means++", n_init=10, random_state=42).fit(z)
            else:
                fit = KMeans(k, init=centres, n_init=1).fit(z)
            labels = fit.predict(final_z)
            if labels_before is not None:
                agreements.append(matched_agreement(labels_before, labels, k))
            labels_before, centres = labels, fit.cluster_centers_
        ssq = float(((final_z - fit.cluster_centers_[fit.predict(final_z)]) ** 2).sum() / reference.inertia_)
        ag = np.array(agreements)
        print(
            f"  {mode:5s} refits: agreement of consecutive versions min {ag.min():.3f}, median "
            f"{np.median(ag):.3f}, pairs >= 0.98: {int((ag >= 0.98).sum())} of {len(ag)}; "
            f"final SSQ / offline k-means {ssq:.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
