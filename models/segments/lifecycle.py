"""Lifecycle stages: where a customer is in its relationship, judged against its own rhythm.

The behavioural segment says who a customer is (its rhythm, value, basket, channels); the stage
says where it is now. Stages, in the order their indices are stored:

- ``prospect``: active, never bought;
- ``new``: bought on one day only, not overdue;
- ``active``: bought on two days or more, not overdue;
- ``at_risk``: overdue: silent for ``at_risk_ratio`` typical gaps, or longer for an irregular
  customer (its mean gap plus ``at_risk_spread`` standard deviations), at least
  ``at_risk_min_days`` and at most ``at_risk_max_days`` (three months without a purchase is
  a risk whatever the rhythm: an erratic buyer's spread would otherwise push it past a year);
- ``lapsed``: silent ``lapsed_ratio / at_risk_ratio`` times as long (between
  ``lapsed_min_days`` and ``lapsed_max_days``);
- ``won_back``: came back after lapsing; for ``won_back_days``, then one of the first three.

"Silent" is measured on the customer's purchases once it has bought on two days (its purchase
rhythm), before that on all its activity (a browser's visits); a buyer still visiting is at
most at risk, never lapsed (:func:`silence_times`). The typical gap is the mean gap between its
newest distinct days, shrunk toward ``prior_gap_days`` by ``prior_weight`` gaps (two purchases a
day apart do not make a customer overdue after three days, and a mean of a few exponential gaps
is often far too short: with one gap of prior the generator's stationary buyers flapped between
active and at risk in 3.1% of customer-months, with three in 0.4%); the spread is shrunk toward
a Poisson buyer's the same way (:func:`overdue_factor`).

Hysteresis is in the rules, not in a timer: a customer enters ``at_risk`` and ``lapsed`` only
when time passes a threshold of its own rhythm, and leaves them only by coming back (the silence
ends). So a customer flaps between ``active`` and ``at_risk`` only by being overdue and then
buying, once per real absence. Every transition without an event happens at a time computed
from the state (:func:`next_stage_crossing`), which the pipeline schedules in event time: the
stage never depends on when the next record arrives or where a batch was cut.

P(alive) is not a rule here: it depends on the model version's fitted population (a stage would
change when the model does, not when the customer does) and overreacts for frequent buyers; it
travels beside the stage as the churn risk.

>>> p = LifecycleParams()
>>> week = [20000 + 7 * k for k in range(8)]  # a weekly shopper's purchase days
>>> round(typical_gap_days(week, p), 2)  # seven gaps of 7 days and three of the 30-day prior
13.9
>>> last = week[-1] * 86400
>>> h = History(8, last, week, last, week)
>>> STAGES[stage_at(ACTIVE, 0, last + 10 * 86400, h, p)]
'active'
>>> STAGES[stage_at(ACTIVE, 0, last + 40 * 86400, h, p)]
'at_risk'
>>> round((next_stage_crossing(ACTIVE, 0, h, p) - last) / 86400, 2)
34.75
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Final, NamedTuple, get_args

from models.contracts import StageName

__all__ = [
    "ACTIVE",
    "AT_RISK",
    "LAPSED",
    "NEW",
    "PROSPECT",
    "STAGES",
    "WON_BACK",
    "History",
    "LifecycleParams",
    "advance",
    "day_thresholds",
    "describe_stage",
    "gap_spread",
    "next_stage_crossing",
    "overdue_factor",
    "silence_after",
    "silence_times",
    "stage_at",
    "stage_name",
    "step",
    "typical_gap_days",
]

STAGES: Final[tuple[StageName, ...]] = get_args(StageName)  # the contract's order is the stored one
PROSPECT, NEW, ACTIVE, AT_RISK, LAPSED, WON_BACK = range(len(STAGES))
NO_STAGE: Final = -1
DAY: Final = 86400


@dataclass(frozen=True, slots=True)
class LifecycleParams:
    at_risk_ratio: float = 2.5
    at_risk_min_days: float = 21.0
    at_risk_spread: float = 3.0
    at_risk_max_days: float = 90.0
    lapsed_ratio: float = 5.0
    lapsed_min_days: float = 60.0
    lapsed_max_days: float = 180.0
    prior_gap_days: float = 30.0
    prior_weight: float = 3.0
    won_back_days: float = 30.0


def stage_name(stage: int) -> StageName | None:
    return STAGES[stage] if 0 <= stage < len(STAGES) else None


def typical_gap_days(days: Sequence[int], p: LifecycleParams) -> float:
    """Mean gap between the newest distinct days (ascending, day numbers), shrunk toward the
    prior gap by ``prior_weight`` gaps."""
    n = len(days) - 1
    if n <= 0:
        return p.prior_gap_days
    return (days[-1] - days[0] + p.prior_weight * p.prior_gap_days) / (n + p.prior_weight)


def gap_spread(days: Sequence[int], p: LifecycleParams) -> float:
    """The gaps' coefficient of variation, shrunk toward 1 (a Poisson buyer's) by
    ``prior_weight`` gaps; a single gap says nothing about spread."""
    n = len(days) - 1
    if n < 2:
        return 1.0
    gaps = [days[k + 1] - days[k] for k in range(n)]
    mean = sum(gaps) / n
    cv = (sum((g - mean) ** 2 for g in gaps) / n) ** 0.5 / mean
    return (n * cv + p.prior_weight) / (n + p.prior_weight)


def overdue_factor(days: Sequence[int], p: LifecycleParams) -> float:
    """Typical gaps of silence before the customer is at risk: ``at_risk_ratio``, or more for an
    irregular customer (mean + ``at_risk_spread`` standard deviations), for whom a long gap is
    normal: a weekly shopper like clockwork is overdue after 2.5 weeks, an erratic one later."""
    return max(p.at_risk_ratio, 1.0 + p.at_risk_spread * gap_spread(days, p))


def _thresholds(days: Sequence[int], p: LifecycleParams) -> tuple[int, int]:
    """Seconds of silence after which the customer is at risk, and lapsed."""
    return _thresholds_of(tuple(days), p)


# The pipeline asks at every row, and a customer's days change at most once a day: most asks
# repeat one (same customer, same day), so a bounded cache halves the per-row cost.
@lru_cache(maxsize=1 << 16)
def _thresholds_of(days: tuple[int, ...], p: LifecycleParams) -> tuple[int, int]:
    at_risk = overdue_factor(days, p) * typical_gap_days(days, p)
    lapsed = at_risk * p.lapsed_ratio / p.at_risk_ratio
    return (
        int(min(max(at_risk, p.at_risk_min_days), p.at_risk_max_days) * DAY),
        int(min(max(lapsed, p.lapsed_min_days), p.lapsed_max_days) * DAY),
    )


class History(NamedTuple):
    """What the stage reads of a customer: its purchase days and activity days, and the newest
    of each (times in seconds, days as day numbers, ascending)."""

    purchase_days: int
    last_purchase: int
    purchase_day_list: Sequence[int]
    last_active: int
    active_day_list: Sequence[int]


def silence_times(h: History, p: LifecycleParams) -> tuple[int, int]:
    """When the customer turns at risk, and lapsed, if it stays silent from now on.

    A customer with a purchase rhythm (two purchase days or more) is at risk once its purchases
    are overdue, and lapsed once they are long overdue and its visits are overdue too: a
    customer on the site every day is not lapsed, whatever it last bought. Before that, its
    activity decides both."""
    return silence_after(h, day_thresholds(h, p))


def day_thresholds(h: History, p: LifecycleParams) -> tuple[int, int, int, int]:
    """What :func:`silence_times` reads of the day lists: seconds of silence to at risk and to
    lapsed, of the activity days, then of the purchase days (0, 0 before two purchase days).
    They change only when a day list or the purchase day count does, so a caller that sees every
    change (the pipeline's per-event loop: :meth:`StateBatch.note` says) keeps them per customer."""
    risk_a, lapse_a = _thresholds(h.active_day_list, p)
    if h.purchase_days < 2:
        return risk_a, lapse_a, 0, 0
    return (risk_a, lapse_a, *_thresholds(h.purchase_day_list, p))


def silence_after(h: History, thresholds: tuple[int, int, int, int]) -> tuple[int, int]:
    """:func:`silence_times` from the customer's :func:`day_thresholds`."""
    risk_a, lapse_a, risk_p, lapse_p = thresholds
    if h.purchase_days < 2:
        return h.last_active + risk_a, h.last_active + lapse_a
    return h.last_purchase + risk_p, max(h.last_purchase + lapse_p, h.last_active + risk_a)


def _base(purchase_days: int) -> int:
    return PROSPECT if purchase_days == 0 else NEW if purchase_days == 1 else ACTIVE


def stage_at(
    stage: int, since: int, at: float, h: History, p: LifecycleParams, times: tuple[int, int] | None = None
) -> int:
    """The stage as of event time ``at`` of a customer in ``stage`` since ``since`` (``times``:
    its :func:`silence_times`, when already computed).

    A row older than the stage (a late event) is judged as of the stage's start: a stage is
    never undone by looking back in time."""
    at = max(at, since)
    risk, lapse = times or silence_times(h, p)
    if at >= lapse:
        return LAPSED
    if at >= risk:
        return LAPSED if stage == LAPSED else AT_RISK
    if stage == LAPSED:
        return WON_BACK
    if stage == WON_BACK and at < since + p.won_back_days * DAY:
        return WON_BACK
    return _base(h.purchase_days)


def next_stage_crossing(
    stage: int, since: int, h: History, p: LifecycleParams, times: tuple[int, int] | None = None
) -> int:
    """Event time of the next change of stage if the customer stays silent (0: none, lapsed)."""
    risk, lapse = times or silence_times(h, p)
    if stage == LAPSED:
        return 0
    if stage == AT_RISK:
        return lapse
    if stage == WON_BACK:
        return min(risk, since + int(p.won_back_days * DAY))
    return risk


def advance(
    stage: int, since: int, at: float, h: History, p: LifecycleParams, times: tuple[int, int] | None = None
) -> tuple[int, int, int]:
    """The stage as of ``at``, since when, and the next crossing: :func:`stage_at` and
    :func:`next_stage_crossing` on one evaluation of the thresholds (the pipeline's per-row step;
    ``times``: its :func:`silence_times`, when already computed).

    >>> week = [20000 + 7 * k for k in range(8)]
    >>> h = History(8, week[-1] * DAY, week, week[-1] * DAY, week)
    >>> p, at = LifecycleParams(), week[-1] * DAY + 40 * DAY
    >>> new, since, crossing = advance(ACTIVE, 0, at, h, p)
    >>> STAGES[new], since == at, crossing == next_stage_crossing(AT_RISK, at, h, p)
    ('at_risk', True, True)
    """
    times = times or silence_times(h, p)
    new = stage_at(stage, since, at, h, p, times)
    if new != stage:
        since = max(int(at), since)
    return new, since, next_stage_crossing(new, since, h, p, times)


def step(
    stage: int,
    since: int,
    at: float,
    purchase_days: int,
    last_purchase: int,
    last_active: int,
    thresholds: tuple[int, int, int, int],
    won_back_seconds: float,
) -> tuple[int, int, int]:
    """:func:`advance` on plain numbers, from the customer's kept :func:`day_thresholds` (the
    pipeline's per-row step: no History, no function per rule). ``won_back_seconds``:
    ``p.won_back_days * DAY``. A property test checks it against :func:`advance`."""
    risk_a, lapse_a, risk_p, lapse_p = thresholds
    if purchase_days < 2:
        risk, lapse = last_active + risk_a, last_active + lapse_a
    else:
        risk = last_purchase + risk_p
        lapse = max(last_purchase + lapse_p, last_active + risk_a)
    t = max(at, since)
    if t >= lapse:
        new = LAPSED
    elif t >= risk:
        new = LAPSED if stage == LAPSED else AT_RISK
    elif stage == LAPSED or (stage == WON_BACK and t < since + won_back_seconds):
        new = WON_BACK
    else:
        new = PROSPECT if purchase_days == 0 else NEW if purchase_days == 1 else ACTIVE
    if new != stage:
        since = max(int(at), since)
    if new == LAPSED:
        return new, since, 0
    if new == AT_RISK:
        return new, since, lapse
    if new == WON_BACK:
        return new, since, min(risk, since + int(won_back_seconds))
    return new, since, risk


def describe_stage(stage: int, at: float, h: History, p: LifecycleParams) -> str:
    """One line saying why the customer is in ``stage`` (change events carry it)."""
    buyer = h.purchase_days >= 2
    if buyer:
        last, days, what = h.last_purchase, h.purchase_day_list, "purchase"
    else:
        last, days, what = h.last_active, h.active_day_list, "activity"
    silent = max(at - last, 0) / DAY
    gap = typical_gap_days(days, p)
    overdue = f"no {what} for {silent:.0f} days, {silent / gap:.1f}x its typical {gap:.0f}-day gap"
    if stage == AT_RISK:
        visits = max(at - h.last_active, 0) / DAY
        still = f"; last active {visits:.0f} days ago" if buyer and visits < silent else ""
        return f"at_risk: {overdue}{still}"
    if stage == LAPSED:
        quiet = f", no activity for {(at - h.last_active) / DAY:.0f} days" if buyer else ""
        return f"lapsed: {overdue}{quiet}"
    if stage == WON_BACK:
        return f"won back: active again after lapsing (typical gap {gap:.0f} days)"
    if stage == PROSPECT:
        return "prospect: active, no purchase yet"
    if stage == NEW:
        return "new: first purchase, no repeat yet"
    return f"active: last {what} {silent:.0f} days ago, typical gap {gap:.0f} days"
