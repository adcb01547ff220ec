"""Engine behaviour: stable ids, births, hysteresis, batch-cut independence, RFM (names: test_naming.py)."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from models.segments.engine import DAY, SegmentEngine
from models.segments.rfm import RFMScorer, rfm_group
from models.segments.vectorize import DEFAULT_FEATURES
from tests.helpers import mechanics_params

FEATS = tuple(f"f{i}" for i in range(6))
CENTRES = np.random.default_rng(100).normal(0, 6.0, (5, 6))


def stream(n: int, blobs: list[int], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y = rng.choice(blobs, n)
    return CENTRES[y] + rng.normal(0, 1.0, (n, 6))


def engine(**kw: object) -> SegmentEngine:
    base: dict[str, object] = dict(n_segments=3, warmup_vectors=400, update_every=400, seed=3)
    base.update(kw)
    return SegmentEngine(mechanics_params(**base), FEATS)  # type: ignore[arg-type]


def test_stationary_ids_are_stable_and_quiet() -> None:
    e = engine()
    probe = stream(1000, [0, 1, 2], seed=99)
    previous = None
    agreement = []
    for b in range(12):
        _, events = e.process(stream(400, [0, 1, 2], seed=b), np.full(400, b * DAY))
        if b > 0:
            assert not [ev for ev in events if ev.kind in ("birth", "death", "split", "merge")], events
        ids = e.assign(probe).segment_ids
        if previous is not None:
            agreement.append(float((ids == previous).mean()))
        previous = ids
    assert min(agreement) >= 0.98


def test_new_blob_is_a_birth() -> None:
    e = engine(n_segments=4)
    for b in range(6):
        e.process(stream(400, [0, 1, 2], seed=b), np.full(400, b * DAY))
    kinds = []
    for b in range(6, 12):
        _, events = e.process(stream(400, [0, 1, 2, 3, 3, 3], seed=b), np.full(400, b * DAY))
        kinds += [ev.kind for ev in events]
    assert "birth" in kinds
    new_blob = e.assign(stream(50, [3], seed=77)).segment_ids
    assert len(set(new_blob.tolist())) == 1


def test_hysteresis_keeps_boundary_customers() -> None:
    e = engine()
    e.process(stream(800, [0, 1, 2], seed=1), np.zeros(800))
    a, b = e.assign(CENTRES[[0, 1]]).segment_ids.tolist()
    assert a != b
    cen = {p.id: np.array([p.centroid[f] for f in FEATS]) for p in e.segments()}
    mid = (cen[a] + cen[b]) / 2
    # Points wobbling around the boundary (within the margin) never move a customer out of a.
    current, since = a, 0.0
    for i, eps in enumerate(np.linspace(-0.03, 0.03, 21)):
        x = mid + eps * (cen[b] - cen[a])
        row = e.assign(x[None, :]).row(0)
        current = e.decide(current, since, row, float(i) * 10 * DAY)
        assert current == a
    # Without hysteresis the same wobble flips the customer back and forth.
    loose = engine(margin=0.0, min_dwell_days=0.0)
    loose.process(stream(800, [0, 1, 2], seed=1), np.zeros(800))
    current, moves = a, 0
    for eps in np.tile([-0.03, 0.03], 5):
        row = loose.assign((mid + eps * (cen[b] - cen[a]))[None, :]).row(0)
        nxt = loose.decide(current, 0.0, row, 0.0)
        moves += nxt != current
        current = nxt
    assert moves >= 5
    # A clear move happens after the minimum dwell, not before.
    row = e.assign(CENTRES[1][None, :]).row(0)
    assert e.decide(a, 0.0, row, 1 * DAY) == a
    assert e.decide(a, 0.0, row, 8 * DAY) == b
    assert e.decide(None, None, row, 0.0) == b
    assert "(typical of " in e.explain(CENTRES[1], a, b)


def test_batch_explanations_and_membership_match_the_single_row_ones() -> None:
    e = engine()
    e.process(stream(800, [0, 1, 2], seed=1), np.zeros(800))
    rows = stream(40, [0, 1, 2, 3], seed=8)
    a = e.assign(rows)
    ids = [p.id for p in e.segments()]
    rng = np.random.default_rng(3)
    from_ids = [
        None if i % 7 == 0 else 999 if i % 11 == 0 else ids[rng.integers(len(ids))] for i in range(40)
    ]
    to_ids = [int(t) if i % 13 else 777 for i, t in enumerate(a.segment_ids.tolist())]
    many = e.explain_many(rows, from_ids, to_ids)
    assert many == [e.explain(r, f, t) for r, f, t in zip(rows, from_ids, to_ids, strict=True)]
    assert "is not in model version" in many[0] and "closest to " in many[7]
    assert any("(typical of " in text for text in many)
    for i in range(len(rows)):
        row = a.row(i)
        expected = {str(k): round(v, 4) for k, v in sorted(row.membership.items()) if v >= 0.005}
        assert a.memberships([i])[0] == expected
        assert abs(sum(a.memberships([i], min_prob=0.0)[0].values()) - 1.0) < 1e-3


FULL = stream(1700, [0, 1, 2, 3], seed=5)
TIMES = np.arange(1700.0) * 600


def _run(cuts: list[int]) -> tuple[list[tuple[int, int, float]], list[object], SegmentEngine]:
    e = engine(warmup_vectors=300, update_every=250)
    out: list[tuple[int, int, float]] = []
    events: list[object] = []
    bounds = [0, *sorted(set(cuts)), len(FULL)]
    for lo, hi in itertools.pairwise(bounds):
        r, ev = e.process(FULL[lo:hi], TIMES[lo:hi])
        events += ev
        out += [(int(r.segment_ids[i]), int(r.versions[i]), r.row(i).confidence) for i in range(len(r))]
    return out, events, e


REFERENCE = _run([])


@settings(max_examples=8, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=1699), max_size=6))
def test_batch_cuts_do_not_matter(cuts: list[int]) -> None:
    out, events, e = _run(cuts)
    assert out == REFERENCE[0]
    assert events == REFERENCE[1]
    probe = stream(100, [0, 1, 2, 3], seed=9)
    assert np.array_equal(e.assign(probe).membership, REFERENCE[2].assign(probe).membership)


def test_warming_up() -> None:
    e = engine()
    r, events = e.process(stream(100, [0], seed=0), np.zeros(100))
    assert (r.segment_ids == -1).all() and events == [] and not e.warmed_up and e.version == 0
    assert e.segments()[0].name == "warming up"
    assert e.live_names() == {s.id: s.name for s in e.segments()}


def test_profiles_hierarchy_and_outliers() -> None:
    e = engine()
    e.process(stream(800, [0, 1, 2], seed=4), np.zeros(800))
    segs = e.segments()
    assert len(segs) == 3 and abs(sum(s.share for s in segs) - 1) < 1e-9
    assert e.live_names() == {s.id: s.name for s in segs}
    assert all(s.parent is not None for s in segs)
    text = e.hierarchy().render()
    assert text.count("- [") == 3
    far = e.assign((CENTRES[0] + 40.0)[None, :])
    assert far.outlier[0]
    assert not e.assign(CENTRES[:3]).outlier.any()


# -- RFM -------------------------------------------------------------------------------------


def test_rfm_obvious_cases() -> None:
    s = RFMScorer()
    rng = np.random.default_rng(1)
    s.update(rng.uniform(0, 400, 5000), rng.poisson(4, 5000), rng.gamma(2.0, 80.0, 5000))
    best = s.score(1.0, 40, 10000.0)
    assert (best.r, best.f, best.m, best.group) == (5, 5, 5, "Champions")
    worst = s.score(399.0, 0, 0.0)
    assert (worst.r, worst.f, worst.m, worst.group) == (1, 1, 1, "Lost")
    assert s.score(2.0, 1, 20.0).group in ("New Customers", "Potential Loyalist")
    assert s.score(390.0, 30, 9000.0).group == "Can't Lose Them"
    assert rfm_group(1, 3, 4) == "At Risk" and rfm_group(2, 1, 2) == "Hibernating"


def test_engine_rfm() -> None:
    e = SegmentEngine(mechanics_params(n_segments=2, warmup_vectors=200, update_every=200))
    rng = np.random.default_rng(0)
    raw = np.abs(rng.normal(1.0, 1.0, (200, len(DEFAULT_FEATURES)))) * 10
    e.process(raw, np.zeros(200))
    score = e.rfm(raw[0])
    assert 1 <= score.r <= 5 and score.group


def test_quiet_rows_weigh_the_days_they_stand_for() -> None:
    """An inactivity row (recency r days) counts max(1, quiet_weight * r); 0 turns it off."""
    feats = ("recency_days", "f1")
    raw = np.array([[0.0, 1.0], [0.5, 1.0], [14.0, 1.0], [30.0, 2.0]])
    on = SegmentEngine(mechanics_params(n_segments=2, quiet_weight=0.5), feats)
    weights = on._row_weights(raw)
    assert weights is not None
    assert weights.tolist() == [1.0, 1.0, 7.0, 15.0]
    assert SegmentEngine(mechanics_params(n_segments=2, quiet_weight=0.0), feats)._row_weights(raw) is None


def test_a_retired_segment_keeps_its_last_name() -> None:
    e = engine(n_segments=3, half_life_days=2.0)
    for b in range(4):
        e.process(stream(400, [0, 1, 2], seed=b), np.full(400, b * DAY))
    before = {p.id: p.name for p in e.segments()}
    # The population moves to other places for weeks: the old segments decay away and retire.
    for b in range(4, 30):
        e.process(stream(400, [3, 4], seed=b), np.full(400, b * DAY))
    live = {p.id for p in e.segments()}
    gone = sorted(set(before) - live)
    assert gone, "no segment was retired"
    for sid in gone:
        assert e.name_of(sid) == f"{before[sid]} (retired)"
    for sid in live:
        assert e.name_of(sid) == {p.id: p.name for p in e.segments()}[sid]
    assert e.name_of(10_000) == "segment 10000"
    assert SegmentEngine.restore(e.snapshot()).name_of(gone[0]) == e.name_of(gone[0])


def test_update_days_builds_a_version_at_the_first_learned_row_past_the_interval() -> None:
    def versions_by_row(cuts: list[int], learn: np.ndarray | None = None) -> np.ndarray:
        e = engine(warmup_vectors=300, update_every=100_000, update_days=2.0)
        bounds = [0, *cuts, len(FULL)]
        parts = []
        for lo, hi in itertools.pairwise(bounds):
            part = None if learn is None else learn[lo:hi]
            parts.append(e.process(FULL[lo:hi], TIMES[lo:hi], part)[0].versions)
        return np.concatenate(parts)

    v = versions_by_row([])
    starts = np.flatnonzero(np.diff(v)) + 1  # first row assigned by each new version
    # Warm-up at row 300, then every 288 rows (2 days of rows 600 s apart) of the 11.8-day stream.
    assert starts.tolist() == [300, 588, 876, 1164, 1452]
    built_at = TIMES[starts - 1]  # the row whose arrival built the version
    assert np.all(np.diff(built_at) >= 2 * DAY) and np.all(np.diff(built_at) < 2 * DAY + 600)
    assert np.array_equal(versions_by_row([1, 299, 300, 301, 977, 1500]), v)
    # Rows the model does not learn from never build a version, however much time passes.
    learn = np.ones(len(FULL), dtype=bool)
    learn[400:] = False
    assert versions_by_row([], learn).max() == 1
