"""Scores of what downstream services saw: the published changes, not the model's nearest pick.

Pure functions over the change stream (:class:`~models.contracts.SegmentChange`) and plain
arrays; ``segstream evaluate`` and the goal benchmarks call them.

A *flap* is a return: a customer leaves A for B and comes back to A within 30 days of event time
(its segment, or its lifecycle stage). Rates are per customer-month: the months each customer
was observed, from its first event to the end of the log, so a log of a year and one of a month
compare.

>>> from datetime import UTC, datetime
>>> from models.contracts import SegmentChange, SegmentRef
>>> def ch(seq, day, prev, cur):
...     return SegmentChange(change_id=str(seq), customer_id="c", seq=seq,
...         previous=SegmentRef(id=prev, name="") if prev is not None else None,
...         current=SegmentRef(id=cur, name=""), confidence=1.0, reason="event",
...         explanation="", model_version=1, source_topic="t", source_partition=0,
...         source_offset=seq, event_time=datetime.fromtimestamp(day * 86400, UTC))
>>> segment_flaps([ch(1, 1, None, 1), ch(2, 5, 1, 2), ch(3, 20, 2, 1), ch(4, 80, 1, 2)])
{'c': 1}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from models.contracts import SegmentChange

__all__ = [
    "FLAP_WINDOW_DAYS",
    "customer_months",
    "model_change_shares",
    "published_vs_nearest",
    "segment_flaps",
    "stage_flaps",
]

FLAP_WINDOW_DAYS = 30.0
_DAY = 86400.0


def _flaps(moves: Iterable[tuple[str, float, object, object]]) -> dict[str, int]:
    """Returns per customer from (customer, time, left, entered) moves in time order."""
    left_at: dict[tuple[str, object], float] = {}
    out: dict[str, int] = {}
    window = FLAP_WINDOW_DAYS * _DAY
    for customer, t, left, entered in moves:
        if left is not None:
            left_at[(customer, left)] = t
        if entered is not None:
            was = left_at.pop((customer, entered), None)
            if was is not None and t - was <= window:
                out[customer] = out.get(customer, 0) + 1
    return out


def segment_flaps(changes: Sequence[SegmentChange]) -> dict[str, int]:
    """Each customer's segment returns within the window (customers with none are left out)."""
    return _flaps(
        (
            c.customer_id,
            c.event_time.timestamp(),
            c.previous.id if c.previous is not None else None,
            c.current.id if c.current is not None else None,
        )
        for c in changes
        if c.kind == "segment"
    )


def stage_flaps(changes: Sequence[SegmentChange]) -> dict[str, int]:
    """Each customer's lifecycle-stage returns within the window."""
    return _flaps(
        (c.customer_id, c.event_time.timestamp(), c.previous_stage, c.stage)
        for c in changes
        if c.kind == "stage"
    )


def customer_months(first_seen: Mapping[str, float], end: float) -> float:
    """Months (30 days) the customers were observed, from their first event to ``end``."""
    return sum(max(end - t, 0.0) for t in first_seen.values()) / (30 * _DAY)


def model_change_shares(changes: Sequence[SegmentChange], customers: int) -> list[float]:
    """Per model version that moved anyone, the share of customers it moved with reason
    ``model_update`` (a version's retirement or re-scoring, not the customers' own events). A
    customer's first segment is not a move: the first version gives one to every customer seen
    while the model warmed up, which would make that version look like it moved them all."""
    by_version: dict[int, int] = {}
    for c in changes:
        if c.reason == "model_update" and c.kind == "segment" and c.previous is not None:
            by_version[c.model_version] = by_version.get(c.model_version, 0) + 1
    return [n / customers for _, n in sorted(by_version.items())] if customers else []


def published_vs_nearest(published: np.ndarray, nearest: np.ndarray) -> float:
    """Share of customers whose published segment is not the one nearest to them now."""
    return float((published != nearest).mean()) if len(published) else 0.0
