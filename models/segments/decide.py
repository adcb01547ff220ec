"""Who moves where, and what the model learns from: the segment decisions of the pipeline.

- :func:`hysteresis`: a customer moves only when the best segment wins by a margin, after a
  minimum stay (boundary customers do not flap);
- :func:`decide_moves`: the moves of a chunk of rows assigned by one version, applied to the
  customers' state columns, with the lifecycle stage changes the rows carry, in row order
  (a row's stage change before its segment move);
- :func:`learn_mask`: the model learns from each customer at most once per interval, so that
  segments describe customers, not events.

Plain values in, plain values out: the pipeline (``stream``) loads the states, calls these and
writes what they changed.

>>> hysteresis(1, 0.0, 2, d_best=1.0, d_current=3.0, t=30 * 86400.0, margin=0.5, min_dwell_days=21)
2
>>> hysteresis(1, 0.0, 2, d_best=1.0, d_current=1.5, t=30 * 86400.0, margin=0.5, min_dwell_days=21)
1
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from typing import NamedTuple, Protocol

import numpy as np

__all__ = ["DAY", "Move", "RowLike", "decide_moves", "hysteresis", "learn_mask", "record_move"]

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


def hysteresis(
    current: int | None,
    since: float | None,
    best: int,
    d_best: float,
    d_current: float,
    t: float,
    margin: float,
    min_dwell_days: float,
) -> int | None:
    """The segment the customer should be in (``current`` if no move).

    A customer moves when the best segment is closer than ``(1 - margin)`` times the distance to
    the current one and the customer has been in the current one for ``min_dwell_days``. A
    customer without a segment, or whose segment is not in the row's version (``d_current`` is
    ``inf``), takes the best one; no best segment (``best < 0``, warming up) moves nobody.
    """
    if best < 0:
        return current
    if current is None or not math.isfinite(d_current):
        return best
    if best == current:
        return current
    dwelt = since is None or t - since >= min_dwell_days * DAY
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
    margin: float,
    min_dwell_days: float,
) -> list[Move]:
    """The moves of rows assigned by one version, in row order, applied to the state columns
    (``segment``, ``segment_since``, ``seq``, indexed by each row's ``index``) and counted in
    ``deltas``. ``distances[k, column[id]]`` is row k's distance to segment ``id``; ``live`` the
    version's segment ids: a customer whose segment is not among them (a model update retired
    it) moves to the best one with reason ``model_update``."""
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
                target = hysteresis(current, since, best, d_best, d_cur, row.at, margin, min_dwell_days)
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
