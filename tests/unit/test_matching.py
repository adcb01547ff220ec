"""Segments matched by members (stream/ops/matching.py) and `diff` counting moves against them."""

from __future__ import annotations

import json

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.ops.diff import NamespaceSnapshot, Segment, compare
from stream.ops.matching import NO_SEGMENT, match_segments


def test_identical_segmentations_match_id_to_id_even_on_ties() -> None:
    m = match_segments({(1, 1): 5, (2, 2): 5, (1, 2): 0})
    assert m.pairs == {1: 1, 2: 2} and m.agreement == 1.0 and not m.renumbered
    # Every pairing keeps one customer: the equal ids win.
    m = match_segments({(1, 1): 1, (1, 2): 1, (2, 1): 1, (2, 2): 1})
    assert m.pairs == {1: 1, 2: 2}


def test_no_segment_pairs_only_with_itself_and_empty_pairs_are_no_match() -> None:
    m = match_segments({(NO_SEGMENT, NO_SEGMENT): 3, (NO_SEGMENT, 4): 2, (1, 4): 6, (2, 4): 1})
    assert m.pairs == {NO_SEGMENT: NO_SEGMENT, 1: 4}
    assert (m.agreed, m.total) == (9, 12)
    assert m.partner_of_b(4) == 1 and m.partner_of_b(9) is None
    assert match_segments({}).agreement == 1.0


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 5), st.integers(2, 5), st.integers(0, 10_000))
def test_the_matching_keeps_the_most_customers_together(ka: int, kb: int, seed: int) -> None:
    """Against brute force over every one-to-one pairing."""
    from itertools import permutations

    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 20, (ka, kb))
    confusion = {(a, 10 + b): int(counts[a, b]) for a in range(ka) for b in range(kb)}
    m = counts if ka <= kb else counts.T  # pair every row of the smaller side
    best = max(
        sum(int(m[i, p[i]]) for i in range(m.shape[0])) for p in permutations(range(m.shape[1]), m.shape[0])
    )
    assert match_segments(confusion).agreed == best


def _snap(ns: str, customers: dict[str, int], segments: dict[int, tuple[str, float]]) -> NamespaceSnapshot:
    return NamespaceSnapshot(
        ns,
        1,
        {sid: Segment(sid, name, {"spend": spend}) for sid, (name, spend) in segments.items()},
        {c: (s, b"same") for c, s in customers.items()},
    )


def test_diff_counts_no_move_when_only_the_ids_differ() -> None:
    a = _snap("a", {"c1": 1, "c2": 1, "c3": 2}, {1: ("Loyal", 100.0), 2: ("Dormant", 5.0)})
    b = _snap("b", {"c1": 5, "c2": 5, "c3": 6}, {5: ("Loyal", 100.0), 6: ("Dormant", 5.0)})
    r = compare(a, b)
    assert r.changed_segment == 0 and r.changed_segment_id == 3
    assert r.matching.pairs == {1: 5, 2: 6} and r.matching.renumbered
    assert not r.model_differs  # the same segments under other numbers
    assert not r.identical  # but subscribers would see other ids
    doc = r.as_dict()
    assert doc["customers"]["changed_segment"] == 0
    assert doc["matching"]["agreement"] == 1.0 and doc["matching"]["changed_segment_id"] == 3
    assert [(p["a_id"], p["b_id"], p["customers"]) for p in doc["matching"]["pairs"]] == [
        (1, 5, 2),
        (2, 6, 1),
    ]
    assert all(s["matched"] for s in doc["segments"])
    json.dumps(doc)


def test_diff_counts_customers_outside_the_matched_pair_as_moved() -> None:
    a = _snap("a", {"c1": 1, "c2": 1, "c3": 1, "c4": 2}, {1: ("Loyal", 100.0), 2: ("Dormant", 5.0)})
    b = _snap("b", {"c1": 7, "c2": 7, "c3": 8, "c4": 8}, {7: ("Loyal", 100.0), 8: ("Dormant", 6.0)})
    r = compare(a, b)
    assert r.matching.pairs == {1: 7, 2: 8}
    assert r.changed_segment == 1 and r.samples["changed_segment"] == ["c3"]
    assert r.model_differs  # Dormant's centre moved
