"""Contract tests every segment model passes, and quality against offline k-means on blobs."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from models.segments.catalog import CATALOG
from models.segments.engine import SegmentEngine
from models.segments.microclusters import MicroClusterKMeans, sq_distances
from tests.helpers import mechanics_params

FEATS = tuple(f"f{i}" for i in range(6))


def blobs(
    n: int, k: int = 4, d: int = 6, seed: int = 0, spread: float = 6.0
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, spread, (k, d))
    y = rng.integers(0, k, n)
    return centres[y] + rng.normal(0, 1.0, (n, d)), y


# -- MicroClusterKMeans on its own (River API + batch API) -----------------------------------


def test_river_api_learn_predict_one() -> None:
    X, _ = blobs(300, k=3, d=2)
    model = MicroClusterKMeans(n_clusters=3, max_micro=30, recluster_every=100, seed=1)
    for row in X:
        model.learn_one({"a": row[0], "b": row[1]})
    labels = {model.predict_one({"a": r[0], "b": r[1]}) for r in X[:50]}
    assert labels <= {0, 1, 2}
    assert model.n_micro <= 30


def _fit(seed: int) -> MicroClusterKMeans:
    X, _ = blobs(4000, seed=3)
    m = MicroClusterKMeans(n_clusters=4, max_micro=60, recluster_every=0, seed=seed)
    for i in range(0, len(X), 1000):
        m.learn_many(X[i : i + 1000], np.full(1000, float(i)))
        m.recluster()
    return m


def test_deterministic_with_seed_and_picklable() -> None:
    a, b = _fit(7), _fit(7)
    assert a.centroids is not None and b.centroids is not None
    assert np.array_equal(a.centroids, b.centroids)
    assert np.array_equal(a.ls, b.ls)
    c = pickle.loads(pickle.dumps(a))
    X, _ = blobs(500, seed=9)
    assert np.array_equal(c.predict_many(X), a.predict_many(X))
    c.learn_many(X, np.zeros(len(X)))
    a.learn_many(X, np.zeros(len(X)))
    assert np.array_equal(c.n, a.n)


def test_rescale_is_exact() -> None:
    m = _fit(1)
    a, b = np.linspace(0.5, 2.0, 6), np.linspace(-1.0, 1.0, 6)
    centres, var, cen = m.centres(), m.variances(), m.centroids
    m.rescale(a, b)
    np.testing.assert_allclose(m.centres(), a * centres + b, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(m.variances(), var * a * a, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(m.centroids, a * cen + b, rtol=1e-12)


def test_quality_vs_offline_kmeans() -> None:
    X, y = blobs(8000, k=6, d=8, seed=11, spread=3.0)
    m = MicroClusterKMeans(n_clusters=6, max_micro=120, recluster_every=0, seed=3)
    for i in range(0, len(X), 2000):
        m.learn_many(X[i : i + 2000], np.zeros(2000))
        m.recluster()
    assert m.centroids is not None
    ref = KMeans(6, init="k-means++", n_init=10, random_state=3).fit(X)
    ssq = sq_distances(X, m.centroids).min(axis=1).sum()
    assert ssq <= 1.05 * ref.inertia_
    ari = adjusted_rand_score(y, m.predict_many(X))
    assert ari >= 0.95 * adjusted_rand_score(y, ref.labels_)


# -- every engine model passes the same contract ---------------------------------------------

# Every model of the catalog marked for evaluation (CluStream and DenStream, ~2 ms per
# learn_one, are left to the evaluation run to keep this suite fast).
MODELS = [name for name, spec in CATALOG.items() if spec.in_evaluate]


def _engine(model: str) -> SegmentEngine:
    return SegmentEngine(
        mechanics_params(n_segments=3, warmup_vectors=300, update_every=300, model=model, seed=5), FEATS
    )


@pytest.mark.parametrize("model", MODELS)
def test_engine_contract(model: str) -> None:
    X, _ = blobs(900, k=3, seed=2)
    t = np.arange(900.0) * 60
    e1, e2 = _engine(model), _engine(model)
    r1, ev1 = e1.process(X, t)
    r2, ev2 = e2.process(X, t)
    # learn/predict, warm-up then assignments
    assert (r1.segment_ids[:300] == -1).all() and (r1.segment_ids[300:] >= 0).all()
    assert e1.version == 3 and e1.warmed_up
    # determinism with the seed
    assert np.array_equal(r1.segment_ids, r2.segment_ids) and ev1 == ev2
    # soft membership sums to one over the row's version
    row = r1.row(899)
    assert abs(sum(row.membership.values()) - 1.0) < 1e-9
    assert row.segment_id in row.membership
    # snapshot / restore is exact, pickling too
    r = SegmentEngine.restore(e1.snapshot())
    p = pickle.loads(pickle.dumps(e1))
    Y, _ = blobs(300, k=3, seed=8)
    a, b, c = e1.assign(Y), r.assign(Y), p.assign(Y)
    assert np.array_equal(a.segment_ids, b.segment_ids) and np.array_equal(a.membership, b.membership)
    assert np.array_equal(a.segment_ids, c.segment_ids)
    # and both continue identically; River's learners have no safe checkpoint (their restored
    # engines assign but refuse to learn: models.segments.checkpoint)
    ra, _ = e1.process(Y, np.full(300, 1e6))
    if not CATALOG[model].checkpointed:
        with pytest.raises(NotImplementedError, match="no safe checkpoint"):
            r.process(Y, np.full(300, 1e6))
        return
    rb, _ = r.process(Y, np.full(300, 1e6))
    assert np.array_equal(ra.segment_ids, rb.segment_ids)
    assert e1.version == r.version and e1.segments() == r.segments()


def test_sample_weight_counts_like_repeated_rows() -> None:
    """A row of weight 3 adds the same statistics as the row three times (same time)."""
    X, _ = blobs(300, seed=4)
    t = np.zeros(len(X))
    w = np.where(np.arange(len(X)) % 2 == 0, 3.0, 1.0)
    a = MicroClusterKMeans(n_clusters=3, max_micro=1000, seed=1)
    a.learn_many(X, t, w)
    b = MicroClusterKMeans(n_clusters=3, max_micro=1000, seed=1)
    b.learn_many(X, t)
    assert a.n.sum() == pytest.approx(w.sum())
    assert a.ls.sum(axis=0) == pytest.approx((X * w[:, None]).sum(axis=0))
    assert b.n.sum() == pytest.approx(len(X))
