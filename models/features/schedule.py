"""The inactivity schedule: when a quiet customer's silence crosses a threshold.

Thresholds are days of silence after a customer's newest event; each crossing re-scores the
customer in event time. The schedule is lazy (see :func:`schedule_after_event`).
"""

from __future__ import annotations

from functools import lru_cache

from models.features.state import DAY, CustomerState


def next_due(state: CustomerState, thresholds_days: tuple[float, ...], after_ts: float) -> int:
    """Event time of the next inactivity threshold crossing strictly after ``after_ts`` (0 = none)."""
    return due_after(state.last_ts, threshold_offsets(tuple(thresholds_days)), after_ts)


def due_after(last_ts: int, offsets: tuple[int, ...], after_ts: float) -> int:
    """:func:`next_due` on plain numbers; ``offsets``: the thresholds in seconds, ascending."""
    for offset in offsets:
        if last_ts + offset > after_ts:
            return last_ts + offset
    return 0


def schedule_after_event(state: CustomerState, offsets: tuple[int, ...], watermark: int) -> bool:
    """Update the inactivity schedule after an event; True when ``state.next_due`` changed (and
    the schedule in the store must be written).

    The schedule is lazy: it may hold a time before the next threshold crossing, never after.
    An active customer's every event pushes the crossing later; rewriting the schedule each time
    was three sorted-set writes per event in Redis. Instead the old entry stays, and when it comes
    due, :func:`is_crossing` tells a real crossing (re-score) from an early look (reschedule), at
    most once per shortest threshold. ``offsets``: the thresholds in seconds, ascending.
    """
    due = due_after_event(state.last_ts, state.next_due, offsets, watermark)
    if due != state.next_due:
        state.next_due = due
        return True
    return False


def due_after_event(last_ts: int, due: int, offsets: tuple[int, ...], watermark: int) -> int:
    """:func:`schedule_after_event` on plain numbers: the schedule's new due time (or ``due``)."""
    for off in offsets:
        crossing = last_ts + off
        if crossing > watermark:
            return crossing if due == 0 or crossing < due else due
    return due


def is_crossing(state: CustomerState, offsets: tuple[int, ...], at_ts: int) -> bool:
    """Whether ``at_ts`` is one of the customer's inactivity threshold crossings."""
    return crosses(state.last_ts, offsets, at_ts)


def crosses(last_ts: int, offsets: tuple[int, ...], at_ts: int) -> bool:
    """:func:`is_crossing` on plain numbers."""
    return (at_ts - last_ts) in offsets


@lru_cache(maxsize=32)
def threshold_offsets(thresholds_days: tuple[float, ...]) -> tuple[int, ...]:
    return tuple(int(days * DAY) for days in sorted(thresholds_days))
