"""The hysteresis' margin narrows with a customer's stay, and a first segment chosen on a few days
of history is provisional (models.segments.decide)."""

from __future__ import annotations

import itertools

import numpy as np

from models.segments.decide import DAY, Hysteresis, decide_moves

RULE = Hysteresis(
    margin=0.55, min_dwell_days=21.0, margin_floor=0.2, margin_relax_days=120.0, first_look_days=7
)


def decide(d_best: float, d_current: float, days_in: float, first_seen: float | None = None) -> int | None:
    """Customer in segment 1 since day 0; segment 2 is the best; the row ``days_in`` days later."""
    return RULE.target(1, 0.0, 2, d_best, d_current, days_in * DAY, first_seen)


def test_the_margin_narrows_from_the_dwell_to_the_floor() -> None:
    margins = [RULE.margin_after(d) for d in range(0, 400)]
    assert margins[:22] == [0.55] * 22
    assert all(a >= b for a, b in itertools.pairwise(margins))  # never widens
    assert margins[120:] == [0.2] * 280
    assert Hysteresis(0.55, 21, None, 120).margin_after(500) == 0.55  # no floor: as before
    assert Hysteresis(0.55, 21, 0.6, 120).margin_after(500) == 0.55  # a floor above the margin: as before
    assert Hysteresis(0.55, 21, 0.2, 10).margin_after(22) == 0.2  # relaxed by the end of the dwell


def test_a_customer_long_in_a_segment_follows_a_mildly_nearer_one() -> None:
    assert decide(1.0, 1.3, days_in=30) == 1  # wide margin soon after a move: held
    assert decide(1.0, 1.3, days_in=130) == 2  # months later: 1.3 beats the floor's 1.25
    assert decide(1.0, 1.2, days_in=400) == 1  # a boundary case stays however long


def test_no_return_within_30_days_unless_clearly_elsewhere() -> None:
    """A flap (back to the segment left less than 30 days before) needs the best segment at less
    than half the distance: the margin right after a move is (nearly) the full one."""
    for days_in in np.arange(0, 30, 0.5):
        for ratio in (1.1, 1.5, 2.0):
            assert decide(1.0, ratio, days_in=float(days_in)) == 1


def test_a_first_segment_on_a_few_days_of_history_is_provisional() -> None:
    # Given at first contact (first_seen = since = 0): kept while the history is short...
    assert decide(1.0, 5.0, days_in=3, first_seen=0.0) == 1
    # ...then left for a segment nearer by the floor's margin, without the dwell
    assert decide(1.0, 1.3, days_in=7, first_seen=0.0) == 2
    assert decide(1.0, 1.2, days_in=7, first_seen=0.0) == 1
    # a first segment given after a week of history (the model was warming up) is not provisional
    assert decide(1.0, 1.3, days_in=8, first_seen=-8 * DAY) == 1
    # nor is the segment a provisional one moved to (the move came after the first week)
    moved_at = 7 * DAY
    assert RULE.target(2, moved_at, 1, 1.0, 1.3, moved_at + 3 * DAY, first_seen=0.0) == 2


class Row:
    def __init__(self, index: int, at: float) -> None:
        self.index, self.at, self.reason, self.stage, self.stage_move = index, at, "event", 2, None


def test_decide_moves_reads_each_customers_first_event() -> None:
    """Two customers in segment 0 since day 0, both now 1.3x nearer segment 1 on day 8: the one
    first seen on day 0 is provisional and moves; the one first seen 60 days earlier stays."""
    rows = [Row(0, 8 * DAY), Row(1, 8 * DAY)]
    distances = np.array([[1.3, 1.0], [1.3, 1.0]])
    segment, since, seq = [0, 0], [0, 0], [1, 1]
    deltas: dict[int, int] = {}
    moves = decide_moves(
        rows, [1, 1], distances, {0: 0, 1: 1}, {0, 1}, segment, since, seq, deltas, RULE,
        first_seen=np.array([0, -60 * DAY]),
    )  # fmt: skip
    assert [(m.row, m.previous, m.segment) for m in moves] == [(0, 0, 1)]
    assert segment == [1, 0] and since == [int(8 * DAY), 0] and seq == [2, 1] and deltas == {0: -1, 1: 1}


def test_a_first_purchase_takes_the_best_segment_at_once() -> None:
    """Two long-known customers (first seen 60 days ago) in segment 0 since day 0, both a little
    nearer segment 1 on day 8, inside the dwell: the hysteresis holds the one whose row is an
    ordinary event; the one whose row is its first purchase (stage prospect -> new) is a buyer for
    good and takes segment 1 at once, its stage change published first."""
    from models.segments.lifecycle import NEW, PROSPECT

    rows = [Row(0, 8 * DAY), Row(1, 8 * DAY)]
    rows[1].stage, rows[1].stage_move = NEW, (PROSPECT, NEW, "first purchase")
    distances = np.array([[1.1, 1.0], [1.1, 1.0]])
    segment, since, seq = [0, 0], [0, 0], [1, 1]
    deltas: dict[int, int] = {}
    moves = decide_moves(
        rows, [1, 1], distances, {0: 0, 1: 1}, {0, 1}, segment, since, seq, deltas, RULE,
        first_seen=np.array([-60 * DAY, -60 * DAY]),
    )  # fmt: skip
    got = [(m.row, m.kind, m.previous, m.segment) for m in moves]
    assert got == [(1, "stage", 0, 0), (1, "segment", 0, 1)]
    assert segment == [0, 1] and seq == [1, 3] and deltas == {0: -1, 1: 1}
