"""The evaluation runs end to end on a small planted stream."""

from __future__ import annotations

import numpy as np

from models.segments.evaluate import evaluate
from tests.helpers import mechanics_params

FEATS = tuple(f"f{i}" for i in range(5))


def test_evaluate_small_stream() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 6.0, (3, 5))
    y = rng.integers(0, 3, 3000)
    X = centres[y] + rng.normal(0, 1.0, (3000, 5))
    params = mechanics_params(n_segments=3, warmup_vectors=500, update_every=500, seed=1)
    (row,) = evaluate(X, np.arange(3000.0) * 60, y, [params], np.arange(3000) % 400, FEATS, probe_size=500)
    assert row.ssq_ratio <= 1.05
    assert row.ari >= 0.95 * row.ari_reference
    assert row.id_agreement >= 0.98
    assert row.births == 0 and row.deaths == 0
    assert row.flapping_rate == 0.0
