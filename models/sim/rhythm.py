"""The ``rhythm`` scenario: grocery shoppers who buy on a rhythm of their own, as a purchase log.

The other scenarios draw sessions as a Poisson process, so a customer has no rhythm to learn.
Here a customer's shopping trips are a renewal process: gamma gaps whose median is its own period
(:class:`~models.sim.personas.RhythmPersona`); a weekly shopper mostly moves its trip to its own
weekday. Most trips are store purchases; online ones come with their app or web session. On top:

- same-day repeat baskets: a second, small purchase a few hours after some trips;
- store closures: New Year's Day, Easter Sunday and Monday, Christmas and Boxing Day, and one
  three-day chain-wide closure at a seeded date; store trips move to the day before or after,
  online orders go on;
- a seasonal peak in December: extra trips (most in the ten days before Christmas) and bigger
  baskets, for everyone;
- pausers: one or two breaks of 13-17 days (a holiday), inserted into the rhythm, which then
  resumes as it was;
- lapsers: buy nothing from a day between 30% and 85% of the period on (no trip, visit, refund or
  support contact); a quarter of the newsletters sent after that are still opened.

The plan (personas, kinds, stops, pauses, closures) is drawn from the seed before any event and
depends on ``customers``, ``days``, ``start`` and the weights only, so
:func:`~models.sim.generator.rhythm_truth` gives it without simulating events. Days are UTC days.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np
from scipy.special import gammaincinv

from models.sim.personas import (
    CATEGORIES,
    CHANNEL_INDEX,
    DEFAULT_RHYTHM_WEIGHTS,
    HOUR_PROFILES,
    RHYTHM_PERSONA_ORDER,
    SUPPORT_CHANNELS,
    SUPPORT_P,
    TYPE_INDEX,
    RhythmPersona,
)
from models.sim.simulate import Simulation, _Columns, assemble, assign_exact, check_weights

RHYTHM_NAMES = tuple(p.name for p in RHYTHM_PERSONA_ORDER)
RHYTHM_KINDS = ("steady", "pauser", "lapser")
KIND_SHARES = {"steady": 0.70, "pauser": 0.15, "lapser": 0.15}  # within each persona, exact
PAUSE_DAYS = (13, 17)  # a pause's length, both inclusive
LAPSE_AT = (0.30, 0.85)  # a lapser's stop, as a fraction of the period
NEVER = 1 << 40  # a grid day after any log

_DAY_MS = 86_400_000
_WEEK_MS = 7 * _DAY_MS
_CHUNK = 8192  # customers simulated at once: bounds the trip matrix, not the result
_STORE, _WEB, _APP = CHANNEL_INDEX["store"], CHANNEL_INDEX["web"], CHANNEL_INDEX["app"]
_TRIP_CHANNELS = np.array([_STORE, _WEB, _APP])  # order of RhythmPersona.channels
_MIX_CONCENTRATION = 15.0  # Dirichlet: each customer's own channel mix around its persona's
_ANCHOR_WEEKDAYS = np.array([0.06, 0.06, 0.08, 0.12, 0.25, 0.35, 0.08])  # Mon..Sun, big shop day
_OPEN_HOURS = (8, 21)  # stores
_SHOP_HOURS = np.asarray(HOUR_PROFILES["shop"][_OPEN_HOURS[0] : _OPEN_HOURS[1]])
_SHOP_HOURS = _SHOP_HOURS / _SHOP_HOURS.sum()
_ONLINE_HOURS = np.asarray(HOUR_PROFILES["evening"])
_MAIL_HOURS = np.asarray(HOUR_PROFILES["day"])
_GROCERY = np.array([0.0, 0.02, 0.08, 0.06, 0.80, 0.01, 0.02, 0.01])  # in CATEGORIES order
_CARD_USED = 0.92  # a card holder shows the card on most baskets, not all
_REPEAT_MEAN, _REPEAT_SIGMA = 12.0, 0.6  # EUR: the forgotten items
_STORE_VISIT_P = 0.1  # a store trip also logs a visit (app check-in)
_ELSEWHERE_P = 0.1  # a store trip in another store than the customer's own
_SUPPORT_RATE = 0.002  # per day
_LAPSED_OPENS = 0.25  # share of newsletters a lapser still opens
_BEFORE_CLOSURE_P = 0.6  # a store trip on a closed day moves before it (else after)
_CLOSURE_SPACING = 7  # days between the seeded closure and a holiday

assert abs(_GROCERY.sum() - 1) < 1e-9 and len(_GROCERY) == len(CATEGORIES)


# ----------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class Calendar:
    """The period on a grid of UTC days: day 0 is the UTC date of ``start``."""

    origin_ms: int  # UTC midnight of day 0, epoch ms
    offset_ms: int  # start - origin
    n_days: int  # grid days covering the period
    weekday0: int  # weekday of day 0, Monday = 0
    closures: tuple[tuple[int, int], ...]  # [first, end) grid days, every store closed
    closed: np.ndarray  # per grid day
    before: np.ndarray  # per closed grid day: the last open day before its closure
    after: np.ndarray  # per closed grid day: the first open day after its closure
    peaks: tuple[tuple[int, int], ...]  # [first, end) grid days of each December
    boost: np.ndarray  # per grid day: extra trips, in units of the customer's own daily rate
    basket: np.ndarray  # per grid day: basket multiplier


def _easter(year: int) -> date:
    """Easter Sunday (Gregorian; the anonymous algorithm, Meeus/Jones/Butcher)."""
    a = year % 19
    b, c = divmod(year, 100)
    d, e = divmod(b, 4)
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    ell = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * ell) // 451
    month, day = divmod(h + ell - 7 * m + 114, 31)
    return date(year, month, day + 1)


def _runs(mask: np.ndarray) -> tuple[tuple[int, int], ...]:
    """[first, end) of each run of True."""
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    return tuple(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True))


def calendar(start: datetime, days: int, u_closure: float) -> Calendar:
    """Closures and the December peak over the period; ``u_closure`` places the seeded closure."""
    start_utc = start.astimezone(UTC)
    first = start_utc.date()
    origin = datetime(first.year, first.month, first.day, tzinfo=UTC)
    offset_ms = round((start_utc - origin).total_seconds() * 1000)
    n = math.ceil((offset_ms + days * _DAY_MS) / _DAY_MS)
    spans: list[tuple[int, int]] = []
    for year in range(first.year, (first + timedelta(days=n - 1)).year + 1):
        for holiday, length in ((date(year, 1, 1), 1), (_easter(year), 2), (date(year, 12, 25), 2)):
            a = (holiday - first).days
            if a < n and a + length > 0:
                spans.append((a, a + length))
    if n >= 10:
        # a chain-wide closure (a refit, a strike) of three days, a week or more away from any
        # holiday: shifted trips land on open days, and two closures do not make one long one
        a = int(n * (0.2 + 0.6 * u_closure))
        for b0, b1 in sorted(spans):
            if a < b1 + _CLOSURE_SPACING and b0 < a + 3 + _CLOSURE_SPACING:
                a = b1 + _CLOSURE_SPACING
        if a + 3 <= n:
            spans.append((a, a + 3))
    closed = np.zeros(n, dtype=bool)
    before = np.full(n, -1, dtype=np.int64)
    after = np.full(n, -1, dtype=np.int64)
    for a, b in spans:
        lo, hi = max(a, 0), min(b, n)
        closed[lo:hi] = True
        before[lo:hi] = a - 1
        after[lo:hi] = b
    grid = np.datetime64(first, "D") + np.arange(n)
    month_start = grid.astype("datetime64[M]")
    december = month_start.astype(np.int64) % 12 == 11
    dom = (grid - month_start.astype("datetime64[D]")).astype(np.int64) + 1
    # the run-up to Christmas is the busiest; the days after it are quieter
    boost = np.where(december, np.where(dom <= 14, 0.5, np.where(dom <= 24, 1.0, 0.3)), 0.0)
    basket = np.where(december, np.where(dom <= 24, 1.3, 1.1), 1.0)
    return Calendar(
        origin_ms=round(origin.timestamp() * 1000),
        offset_ms=offset_ms,
        n_days=n,
        weekday0=first.weekday(),
        closures=tuple(sorted((max(a, 0), min(b, n)) for a, b in spans)),
        closed=closed,
        before=before,
        after=after,
        peaks=_runs(december),
        boost=boost,
        basket=basket,
    )


@dataclass(frozen=True)
class RhythmPlan:
    """Everything about the scenario that is not an event: who, which kind, when, where."""

    cal: Calendar
    persona: np.ndarray  # index in RHYTHM_PERSONA_ORDER, per customer
    kind: np.ndarray  # index in RHYTHM_KINDS
    stop_day: np.ndarray  # lapsers: first grid day without shopping; NEVER for the others
    pause_start: np.ndarray  # (customers, 2) grid days; NEVER: no pause
    pause_len: np.ndarray  # (customers, 2) days; 0: no pause


def rhythm_weights(persona_weights: Mapping[str, float] | None) -> dict[str, float]:
    return check_weights(DEFAULT_RHYTHM_WEIGHTS if persona_weights is None else persona_weights, RHYTHM_NAMES)


def assign_rhythm_personas(
    rng: np.random.Generator, customers: int, persona_weights: Mapping[str, float] | None
) -> np.ndarray:
    """The plan's first draw, so that the personas alone do not depend on ``days``."""
    return assign_exact(rng, customers, RHYTHM_NAMES, rhythm_weights(persona_weights))


def plan_rhythm(
    rng: np.random.Generator,
    customers: int,
    days: int,
    start: datetime,
    persona_weights: Mapping[str, float] | None,
) -> RhythmPlan:
    persona = assign_rhythm_personas(rng, customers, persona_weights)
    kind = np.zeros(customers, dtype=np.int64)
    for g in range(len(RHYTHM_PERSONA_ORDER)):
        members = np.flatnonzero(persona == g)
        if len(members):
            kind[members] = assign_exact(rng, len(members), RHYTHM_KINDS, KIND_SHARES)
    # the same draws for every customer whatever its kind: the plan does not depend on draw order
    u = rng.random((customers, 6))
    cal = calendar(start, days, float(rng.random()))

    lapser = kind == RHYTHM_KINDS.index("lapser")
    at = np.floor((LAPSE_AT[0] + (LAPSE_AT[1] - LAPSE_AT[0]) * u[:, 0]) * days).astype(np.int64)
    stop_day = np.where(lapser, at, NEVER)

    # Pauses: after a tenth of the period (a rhythm to break first), and early enough that 2.5
    # periods are left to resume. Two pauses for half the pausers when they fit, with a period
    # between them; none when the log is too short (the pauser is then steady).
    period = np.array([p.period_days for p in RHYTHM_PERSONA_ORDER])[persona]
    length = PAUSE_DAYS[0] + np.floor(u[:, 1:3] * (PAUSE_DAYS[1] - PAUSE_DAYS[0] + 1)).astype(np.int64)
    lo = math.ceil(0.1 * days) + 3
    hi = days - np.ceil(2.5 * period).astype(np.int64)[:, None] - 3 - length  # latest start, per pause
    mid = (lo + hi[:, 1]) // 2
    first_hi = mid - length[:, 0] - np.ceil(period).astype(np.int64)
    pauser = kind == RHYTHM_KINDS.index("pauser")
    two = pauser & (u[:, 3] < 0.5) & (first_hi >= lo) & (hi[:, 1] >= mid)
    one = pauser & ~two & (hi[:, 0] >= lo)

    def pick(lo_: np.ndarray | int, hi_: np.ndarray, v: np.ndarray) -> np.ndarray:
        return lo_ + np.floor(v * (hi_ - lo_ + 1)).astype(np.int64)

    pause_start = np.full((customers, 2), NEVER, dtype=np.int64)
    pause_start[:, 0] = np.where(
        two, pick(lo, first_hi, u[:, 4]), np.where(one, pick(lo, hi[:, 0], u[:, 4]), NEVER)
    )
    pause_start[:, 1] = np.where(two, pick(mid, hi[:, 1], u[:, 5]), NEVER)
    pause_len = np.where(pause_start < NEVER, length, 0)
    kind = np.where(pauser & ~(one | two), RHYTHM_KINDS.index("steady"), kind)
    return RhythmPlan(cal, persona, kind, stop_day, pause_start, pause_len)


# ----------------------------------------------------------------------------- events


def _hours(rng: np.random.Generator, profile: np.ndarray, n: int) -> np.ndarray:
    return rng.choice(len(profile), n, p=profile) + rng.random(n)


def _at(cal: Calendar, day: np.ndarray, hour: np.ndarray) -> np.ndarray:
    """ms since start of a grid day and an hour of that day."""
    return day * _DAY_MS + (hour * 3_600_000).astype(np.int64) - cal.offset_ms


def _simulate_customers(
    rng: np.random.Generator,
    cols: _Columns,
    plan: RhythmPlan,
    g: int,
    cust: np.ndarray,
    limit: np.ndarray,
) -> None:
    p: RhythmPersona = RHYTHM_PERSONA_ORDER[g]
    cal = plan.cal
    n, nd = len(cust), cal.n_days

    # ---- the customers' habits
    period = p.period_days * np.exp(rng.normal(0.0, p.period_sigma, n))
    weekday = rng.choice(7, n, p=_ANCHOR_WEEKDAYS)
    store_hour = _OPEN_HOURS[0] + _hours(rng, _SHOP_HOURS, n)
    mix = rng.dirichlet(np.asarray(p.channels) * _MIX_CONCENTRATION, n)
    card = rng.random(n) < p.p_card
    basket = np.exp(rng.normal(-0.5 * 0.25**2, 0.25, n))  # mean 1
    mail = rng.gamma(0.7, 1 / 0.7, n)  # some read every newsletter, some none
    home = rng.integers(1, 60, n)
    p_start, p_len, stop = plan.pause_start[cust], plan.pause_len[cust], plan.stop_day[cust]

    def in_pause(o: np.ndarray, day: np.ndarray) -> np.ndarray:
        s, ln = p_start[o], p_len[o]
        return ((day >= s[:, 0]) & (day < s[:, 0] + ln[:, 0])) | (
            (day >= s[:, 1]) & (day < s[:, 1] + ln[:, 1])
        )

    def shops(o: np.ndarray, day: np.ndarray) -> np.ndarray:
        return (day >= 0) & (day < nd) & (day < stop[o]) & ~in_pause(o, day)

    # ---- trips: gamma gaps in the customer's own time, started at a random phase
    horizon = nd + int(p_len.sum(axis=1).max(initial=0)) + 1
    k = math.ceil(horizon / period.min() * 1.3) + 8
    scale = (period / float(gammaincinv(p.gap_shape, 0.5)))[:, None]  # the median is the period
    gaps = rng.gamma(p.gap_shape, scale, (n, k))
    t = np.cumsum(gaps, axis=1) - rng.random(n)[:, None] * gaps[:, :1]
    while (t[:, -1] < horizon).any():
        t = np.hstack([t, t[:, -1:] + np.cumsum(rng.gamma(p.gap_shape, scale, (n, k)), axis=1)])
    o, j = np.nonzero(t < horizon)
    op = t[o, j]
    # A pause is inserted into the rhythm: trips after its start move by its length, so the
    # customer comes back on the rhythm it left.
    s1 = p_start[:, 0].astype(float)
    s2 = (p_start[:, 1] - p_len[:, 0]).astype(float)
    day = np.floor(op + p_len[o, 0] * (op >= s1[o]) + p_len[o, 1] * (op >= s2[o])).astype(np.int64)
    if p.weekday_anchor > 0:
        off = (weekday[o] - (cal.weekday0 + day)) % 7
        moved = day + np.where(off > 3, off - 7, off)
        snap = (rng.random(len(day)) < p.weekday_anchor) & ~in_pause(o, moved)
        day = np.where(snap, moved, day)
    total_boost = float(cal.boost.sum())
    if total_boost > 0:  # the December peak: extra trips at the customer's own rate times the boost
        extra = np.repeat(np.arange(n), rng.poisson(total_boost / period))
        o = np.concatenate([o, extra])
        day = np.concatenate([day, rng.choice(nd, len(extra), p=cal.boost / total_boost)])
    u = rng.random(len(o))
    cum = np.cumsum(mix, axis=1)
    ch = _TRIP_CHANNELS[(u >= cum[o, 0]).astype(np.int64) + (u >= cum[o, 1])]
    at = np.clip(day, 0, nd - 1)
    moves = (ch == _STORE) & (day >= 0) & (day < nd) & cal.closed[at]
    early = rng.random(len(o)) < _BEFORE_CLOSURE_P
    day = np.where(moves, np.where(early, cal.before[at], cal.after[at]), day)
    ok = shops(o, day)
    o, day, ch = o[ok], day[ok], ch[ok]
    # one trip per customer and day: rhythm trips come first, so a peak trip on their day goes
    _, first = np.unique(o * nd + day, return_index=True)
    o, day, ch = o[first], day[first], ch[first]
    m = len(o)
    store = ch == _STORE
    hour = np.where(
        store,
        np.clip(store_hour[o] + rng.normal(0.0, 1.0, m), _OPEN_HOURS[0], _OPEN_HOURS[1] - 0.25),
        _hours(rng, _ONLINE_HOURS, m),
    )
    # same-day repeat: the forgotten items, a few hours later (the store still open)
    later = hour + rng.uniform(1.5, 5.0, m)
    r = np.flatnonzero((rng.random(m) < p.p_repeat) & (later < np.where(store, _OPEN_HOURS[1] - 0.1, 23.9)))
    rep_ch = np.where(store[r] & (rng.random(len(r)) < 0.2), _APP, ch[r])

    # ---- purchases (trips, then repeats)
    po = np.concatenate([o, o[r]])
    pday = np.concatenate([day, day[r]])
    pch = np.concatenate([ch, rep_ch])
    t_buy = _at(cal, pday, np.concatenate([hour, later[r]]))
    mu = math.log(p.amount_mean) - p.amount_sigma**2 / 2.0
    amount = np.concatenate(
        [
            rng.lognormal(mu, p.amount_sigma, m) * basket[o],
            rng.lognormal(math.log(_REPEAT_MEAN) - _REPEAT_SIGMA**2 / 2.0, _REPEAT_SIGMA, len(r)),
        ]
    )
    amount = np.maximum(np.round(amount * cal.basket[pday], 2), 0.5)
    big = len(po)
    week = (t_buy // _WEEK_MS).astype(np.int32) + 1
    loyal = card[po] & (rng.random(big) < _CARD_USED)
    camp = rng.random(big) < p.p_campaign
    frac = np.where(loyal, rng.uniform(*p.loyalty_range, big), 0.0)
    frac += np.where(camp, rng.uniform(*p.campaign_range, big), 0.0)
    discount = np.where(frac > 0, np.round(amount * frac, 2), np.nan)
    category = rng.choice(len(CATEGORIES), big, p=_GROCERY)
    elsewhere = rng.random(big) < _ELSEWHERE_P
    store_id = np.where(pch == _STORE, np.where(elsewhere, rng.integers(1, 60, big), home[po]), -1)
    cols.add(
        g,
        limit,
        cust[po],
        t_buy,
        pch,
        TYPE_INDEX["purchase"],
        amount=amount,
        discount=discount,
        cat=category,
        campaign=np.where(camp, week, -1),
        items=1 + rng.poisson(np.minimum(amount / 4.5, 80.0)),
        store=store_id,
    )
    # a store trip sometimes checks in with the app first (once the store is open)
    v = np.flatnonzero((pch[:m] == _STORE) & (rng.random(m) < _STORE_VISIT_P))
    t_visit = t_buy[v] - (rng.uniform(5.0, 30.0, len(v)) * 60_000).astype(np.int64)
    t_visit = np.maximum(t_visit, _at(cal, pday[v], np.full(len(v), float(_OPEN_HOURS[0]))))
    cols.add(g, limit, cust[po[v]], t_visit, _STORE, TYPE_INDEX["store_visit"], store=store_id[v])
    # an online order is the end of a short session: entry, search, product views, cart, checkout
    w = np.flatnonzero(pch != _STORE)
    search = rng.random(len(w)) < 0.25
    views = rng.poisson(0.7, len(w))
    steps = 3 + search + views  # before the purchase
    step_s = rng.uniform(20.0, 90.0, len(w))
    entry = np.where(pch[w] == _APP, TYPE_INDEX["app_open"], TYPE_INDEX["page_view"])
    for count, first_step, typ, with_cat in (
        (np.ones(len(w), dtype=np.int64), np.zeros(len(w), dtype=np.int64), entry, False),
        (search.astype(np.int64), np.ones(len(w), dtype=np.int64), TYPE_INDEX["search"], False),
        (views, 1 + search, TYPE_INDEX["product_view"], True),
        (np.ones(len(w), dtype=np.int64), steps - 2, TYPE_INDEX["add_to_cart"], True),
        (np.ones(len(w), dtype=np.int64), steps - 1, TYPE_INDEX["checkout"], True),
    ):
        i = np.repeat(np.arange(len(w)), count)
        pos = first_step[i] + np.arange(len(i)) - np.repeat(np.cumsum(count) - count, count)
        t_step = t_buy[w[i]] - ((steps[i] - pos) * step_s[i] * 1000.0).astype(np.int64)
        ty = typ[i] if isinstance(typ, np.ndarray) else typ
        cols.add(g, limit, cust[po[w[i]]], t_step, pch[w[i]], ty, cat=category[w[i]] if with_cat else None)

    # ---- refunds: a few days later, mostly part of the basket, where it was bought
    f = np.flatnonzero(rng.random(big) < p.refund_prob)
    rday = pday[f] + rng.integers(1, 11, len(f))
    rch = np.where(
        pch[f] == _STORE, _STORE, np.where(rng.random(len(f)) < 0.4, CHANNEL_INDEX["call_center"], pch[f])
    )
    part = np.where(rng.random(len(f)) < 0.2, 1.0, rng.uniform(0.05, 0.4, len(f)))
    r_hour = rng.uniform(_OPEN_HOURS[0] + 1, _OPEN_HOURS[1] - 1, len(f))
    ok = shops(po[f], rday) & ~((rch == _STORE) & cal.closed[np.clip(rday, 0, nd - 1)])
    f = f[ok]
    cols.add(
        g,
        limit,
        cust[po[f]],
        _at(cal, rday[ok], r_hour[ok]),
        rch[ok],
        TYPE_INDEX["refund"],
        amount=np.maximum(np.round(amount[f] * part[ok], 2), 0.01),
        cat=category[f],
        store=np.where(rch[ok] == _STORE, store_id[f], -1),
    )

    # ---- visits without a purchase: the app or site, to check offers
    b = np.repeat(np.arange(n), rng.poisson(p.browse_rate * nd, n))
    b_day = rng.integers(0, nd, len(b))
    app_share = mix[:, 2] / (mix[:, 1] + mix[:, 2])
    b_ch = np.where(rng.random(len(b)) < app_share[b], _APP, _WEB)
    b_t = _at(cal, b_day, _hours(rng, _ONLINE_HOURS, len(b)))
    b_views = 1 + rng.poisson(1.0, len(b))
    b_cat = rng.choice(len(CATEGORIES), len(b), p=_GROCERY)
    keep = shops(b, b_day)
    b, b_ch, b_t, b_views, b_cat = b[keep], b_ch[keep], b_t[keep], b_views[keep], b_cat[keep]
    entry = np.where(b_ch == _APP, TYPE_INDEX["app_open"], TYPE_INDEX["page_view"])
    cols.add(g, limit, cust[b], b_t, b_ch, entry)
    i = np.repeat(np.arange(len(b)), b_views)
    pos = 1 + np.arange(len(i)) - np.repeat(np.cumsum(b_views) - b_views, b_views)
    t_view = b_t[i] + (pos * rng.uniform(20.0, 90.0, len(i)) * 1000.0).astype(np.int64)
    cols.add(g, limit, cust[b[i]], t_view, b_ch[i], TYPE_INDEX["product_view"], cat=b_cat[i])

    # ---- the newsletter: opens (clicks on some), fewer once a customer has lapsed
    e = np.repeat(np.arange(n), rng.poisson(p.email_rate * mail * nd))
    e_day = rng.integers(0, nd, len(e))
    keep = (e_day < stop[e]) | (rng.random(len(e)) < _LAPSED_OPENS)
    e, e_day = e[keep], e_day[keep]
    e_t = _at(cal, e_day, _hours(rng, _MAIL_HOURS, len(e)))
    e_week = (e_t // _WEEK_MS).astype(np.int32) + 1
    cols.add(g, limit, cust[e], e_t, CHANNEL_INDEX["email"], TYPE_INDEX["email_open"], campaign=e_week)
    click = rng.random(len(e)) < 0.12
    t_click = e_t[click] + (rng.uniform(5.0, 600.0, int(click.sum())) * 1000).astype(np.int64)
    cols.add(
        g,
        limit,
        cust[e[click]],
        t_click,
        CHANNEL_INDEX["email"],
        TYPE_INDEX["email_click"],
        campaign=e_week[click],
    )

    # ---- support contacts, rare
    s = np.repeat(np.arange(n), rng.poisson(_SUPPORT_RATE * nd, n))
    s_day = rng.integers(0, nd, len(s))
    s_ch = SUPPORT_CHANNELS[rng.choice(3, len(s), p=SUPPORT_P)]
    keep = shops(s, s_day)
    s_t = _at(cal, s_day[keep], _hours(rng, _MAIL_HOURS, int(keep.sum())))
    cols.add(g, limit, cust[s[keep]], s_t, s_ch[keep], TYPE_INDEX["support_contact"])


def simulate_rhythm(
    customers: int,
    days: int,
    seed: int,
    start: datetime,
    persona_weights: Mapping[str, float] | None,
) -> tuple[np.random.Generator, Simulation]:
    rng = np.random.default_rng(seed)
    plan = plan_rhythm(rng, customers, days, start, persona_weights)
    cols = _Columns()
    limit = np.full(customers, np.iinfo(np.int64).max, dtype=np.int64)  # the period is the limit
    for g in range(len(RHYTHM_PERSONA_ORDER)):
        members = np.flatnonzero(plan.persona == g)
        for lo in range(0, len(members), _CHUNK):
            _simulate_customers(rng, cols, plan, g, members[lo : lo + _CHUNK], limit)
    return rng, assemble(cols, customers, days, start, plan.persona, RHYTHM_NAMES)
