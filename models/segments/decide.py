"""Who moves where, and what the model learns from: the segment decisions of the pipeline.

- :class:`Hysteresis`: a customer moves only when the best segment wins by a margin, after a
  minimum stay (boundary customers do not flap); the margin narrows with the stay
  (:meth:`Hysteresis.margin_after`), so a customer long in a segment that is no longer its
  nearest follows; a first segment chosen on a few days of history is provisional;
- :func:`decide_moves`: the moves of a chunk of rows assigned by one version, applied to the
  customers' state columns, with the lifecycle stage changes the rows carry, in row order
  (a row's stage change before its segment move);
- :func:`learn_mask`: the model learns from each customer at most once per interval, so that
  segments describe customers, not events;
- :func:`clearly_elsewhere`: the quiet customers a model version moved a segment away from, the
  clearest first and at most so many (the pipeline's periodic re-scoring, reason ``model_update``).

Plain values in, plain values out: the pipeline (``stream``) loads the states, calls these and
writes what they changed.

>>> rule = Hysteresis(margin=0.5, min_dwell_days=21)
>>> rule.target(1, 0.0, 2, d_best=1.0, d_current=3.0, t=30 * 86400.0)
2
>>> rule.target(1, 0.0, 2, d_best=1.0, d_current=1.5, t=30 * 86400.0)
1
>>> relaxing = Hysteresis(margin=0.5, min_dwell_days=21, margin_floor=0.2, margin_relax_days=120)
>>> relaxing.target(1, 0.0, 2, d_best=1.0, d_current=1.5, t=200 * 86400.0)
2
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import numpy as np

from models.segments.lifecycle import PROSPECT

__all__ = [
    "DAY",
    "Hysteresis",
    "Move",
    "RowLike",
    "clearly_elsewhere",
    "decide_moves",
    "learn_mask",
    "record_move",
]

DAY = 86400.0


class RowLike(Protocol):
    """What the decisions read of a row: its customer's position in the batch's state columns,
    its event time, why it is there ("event" or "inactivity"), the customer's lifecycle stage
    after it and, when the row changed the stage, (before, after, why)."""

    @property
    def index(self) -> int: ...
    @property
    def at(self) -> float: ...
    @property
    def reason(self) -> str: ...
    @property
    def stage(self) -> int: ...
    @property
    def stage_move(self) -> tuple[int, int, str] | None: ...


class Move(NamedTuple):
    """One change to publish. ``kind`` "segment": ``previous`` -> ``segment``, the customer in
    ``stage`` throughout. ``kind`` "stage": ``previous_stage`` -> ``stage``, the customer in
    ``segment`` (``previous`` the same, -1 when it has none yet)."""

    row: int  # position of the row in its chunk
    previous: int | None  # the segment left (None: the customer's first)
    segment: int
    reason: str  # the row's reason, or "model_update" out of a retired segment
    seq: int  # the customer's change sequence number after the move
    kind: str = "segment"
    previous_stage: int = -1
    stage: int = -1
    why: str = ""  # a stage change's explanation


@dataclass(frozen=True)
class Hysteresis:
    """What holds a customer in its segment (docs/decisions/0012 and 0029): a move needs the best
    segment nearer by ``margin`` after ``min_dwell_days`` in the current one; after the dwell the
    margin narrows in a straight line to ``margin_floor`` at ``margin_relax_days`` (``None``: it
    stays ``margin``); a segment given in a customer's first ``first_look_days`` of history is
    provisional (0: off)."""

    margin: float
    min_dwell_days: float
    margin_floor: float | None = None
    margin_relax_days: float = 0.0
    first_look_days: float = 0.0

    def margin_after(self, days_in: float) -> float:
        """The margin of a customer ``days_in`` days in its segment.

        Why it narrows: right after a move the margin is wide, so a boundary customer cannot come
        straight back (a return within weeks is a flap); a customer that has stayed for months
        and is now nearer another segment, even by a little, has changed (or the model has), and
        a segment that is no longer its nearest tells downstream something untrue.

        >>> rule = Hysteresis(0.55, 21, margin_floor=0.2, margin_relax_days=120)
        >>> [round(rule.margin_after(d), 3) for d in (10, 21, 70.5, 120, 400)]
        [0.55, 0.55, 0.375, 0.2, 0.2]
        """
        floor, margin, dwell = self.margin_floor, self.margin, self.min_dwell_days
        if floor is None or floor >= margin or days_in <= dwell:
            return margin
        span = self.margin_relax_days - dwell
        done = 1.0 if span <= 0 else min((days_in - dwell) / span, 1.0)
        return margin + (floor - margin) * done

    def target(
        self,
        current: int | None,
        since: float | None,
        best: int,
        d_best: float,
        d_current: float,
        t: float,
        first_seen: float | None = None,
    ) -> int | None:
        """The segment the customer should be in at ``t`` (``current`` if no move).

        A customer moves when the best segment is closer than ``(1 - m)`` times the distance to
        the current one and the customer has been in the current one (since ``since``) for
        ``min_dwell_days``, where ``m`` is :meth:`margin_after` its stay. A customer without a
        segment, or whose segment is not in the row's version (``d_current`` is ``inf``), takes
        the best one; no best segment (``best < 0``, warming up) moves nobody.

        A segment given in the customer's first ``first_look_days`` of history (``first_seen``
        its first event) was chosen on little evidence: it is kept until that history exists,
        then left for the best segment if nearer by ``margin_floor``, without the dwell (once:
        the segment it moves to is not provisional).
        """
        if best < 0:
            return current
        if current is None or not math.isfinite(d_current):
            return best
        if best == current:
            return current
        look = self.first_look_days * DAY
        if since is not None and first_seen is not None and look > 0 and since - first_seen < look:
            if t - first_seen < look:
                return current
            floor = self.margin if self.margin_floor is None else min(self.margin_floor, self.margin)
            return best if d_best <= (1.0 - floor) * d_current else current
        dwelt = since is None or t - since >= self.min_dwell_days * DAY
        margin = self.margin if since is None else self.margin_after((t - since) / DAY)
        if dwelt and d_best <= (1.0 - margin) * d_current:
            return best
        return current


def record_move(deltas: dict[int, int], previous: int | None, segment: int) -> None:
    """Count a move in the per-segment deltas the store applies with the batch."""
    if previous is not None:
        deltas[previous] = deltas.get(previous, 0) - 1
    deltas[segment] = deltas.get(segment, 0) + 1


def decide_moves(
    rows: Sequence[RowLike],
    best_ids: Sequence[int],
    distances: np.ndarray,
    column: dict[int, int],
    live: Collection[int],
    segment: list[int],
    segment_since: list[int],
    seq: list[int],
    deltas: dict[int, int],
    rule: Hysteresis,
    first_seen: Sequence[float] | np.ndarray | None = None,
) -> list[Move]:
    """The moves of rows assigned by one version, in row order, applied to the state columns
    (``segment``, ``segment_since``, ``seq``, indexed by each row's ``index``) and counted in
    ``deltas``. ``distances[k, column[id]]`` is row k's distance to segment ``id``; ``live`` the
    version's segment ids: a customer whose segment is not among them (a model update retired
    it) moves to the best one with reason ``model_update``; the others as ``rule`` says.
    ``first_seen`` (by row index): each customer's first event time, for the provisional first
    segment of :meth:`Hysteresis.target`."""
    moves: list[Move] = []
    for k, row in enumerate(rows):
        best = best_ids[k]
        i = row.index
        stage_move = row.stage_move
        # warming up (best < 0): no id is published as if it meant something; stages still are
        current = segment[i] if segment[i] >= 0 else None
        if stage_move is not None:  # the stage first: a segment move of the row is in the new one
            seq[i] += 1
            moves.append(Move(k, current, segment[i], row.reason, seq[i], "stage", *stage_move))
        if best >= 0 and best != current:  # (already there: the common case, kept cheap)
            reason = row.reason
            if current is not None and current not in live:
                target: int | None = best
                reason = "model_update"
            else:
                d_cur = float(distances[k, column[current]]) if current in column else math.inf
                since = float(segment_since[i]) if current is not None else None
                d_best = float(distances[k, column[best]])
                first = float(first_seen[i]) if first_seen is not None else None
                if stage_move is not None and stage_move[0] == PROSPECT:
                    # The first purchase: a customer who never bought is a buyer from now on, a
                    # change for good that no hysteresis holds back (a "no purchase" segment would
                    # go on naming a buyer): it takes the best segment, as one without a segment.
                    target = best
                else:
                    target = rule.target(current, since, best, d_best, d_cur, row.at, first)
            if target is not None and target != current:
                segment[i] = target
                segment_since[i] = int(row.at)
                seq[i] += 1
                record_move(deltas, current, target)
                moves.append(Move(k, current, target, reason, seq[i], "segment", row.stage, row.stage))
    return moves


def learn_mask(rows: Sequence[RowLike], last_learned: list[int], interval_seconds: float) -> np.ndarray:
    """Which rows the model learns from: each customer at most once per interval (a daily shopper
    would otherwise outweigh a monthly one 30 to 1), and every inactivity re-scoring.
    ``last_learned`` (by row index) is updated for the rows taken."""
    mask = np.zeros(len(rows), dtype=bool)
    for k, row in enumerate(rows):
        i = row.index
        if row.reason == "inactivity" or row.at - last_learned[i] >= interval_seconds:
            mask[k] = True
            last_learned[i] = int(row.at)
    return mask


def clearly_elsewhere(
    customers: Sequence[str],
    current: Sequence[int],
    since: Sequence[float],
    best: Sequence[int],
    d_current: Sequence[float],
    d_best: Sequence[float],
    t: Sequence[float],
    margin: float,
    min_dwell_days: float,
    limit: int,
) -> list[int]:
    """The positions of the customers to move to their ``best`` segment, clearest first: those
    whose current segment is no longer near them, at most ``limit``.

    A customer qualifies when its current segment exists in the version (``d_current`` finite),
    the best one is another (``best >= 0``), it has been in the current one ``min_dwell_days``
    as of ``t``, and ``d_best <= (1 - margin) * d_current``: the hysteresis' test with a wider
    ``margin`` (the caller keeps it above the hysteresis margin, so that a boundary customer the
    hysteresis holds is never taken). The clearest are those with the largest
    ``d_current / d_best``; ties go by customer id, so the same input picks the same customers.

    >>> clearly_elsewhere(["a", "b", "c"], [1, 1, 1], [0.0] * 3, [2, 2, 2], [4.0, 1.5, 9.0],
    ...                   [1.0, 1.0, 1.0], [30 * DAY] * 3, margin=0.7, min_dwell_days=21, limit=5)
    [2, 0]
    """
    scale = 1.0 - margin
    dwell = min_dwell_days * DAY
    picked: list[tuple[float, str, int]] = []
    for i, (cur, b, dc, db) in enumerate(zip(current, best, d_current, d_best, strict=True)):
        if b < 0 or b == cur or cur < 0 or not math.isfinite(dc):
            continue
        if t[i] - since[i] < dwell or db > scale * dc:
            continue
        ratio = dc / db if db > 0 else math.inf
        picked.append((-ratio, customers[i], i))
    picked.sort()
    return [i for _, _, i in picked[: max(limit, 0)]]
