"""The simulation behind the generator: customers, phases, sessions and events as numpy columns."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from models.sim.personas import (
    CATEGORIES,
    CHANNEL_INDEX,
    DEFAULT_PERSONA_WEIGHTS,
    HOUR_PROFILES,
    NEW_PERSONA_WEIGHT,
    PERSONA_ORDER,
    PERSONAS,
    SCENARIOS,
    SESSION_CHANNELS,
    SUPPORT_CHANNELS,
    SUPPORT_P,
    TYPE_INDEX,
    Persona,
)

# ----------------------------------------------------------------------------- simulation


@dataclass
class _Phase:
    persona: Persona
    cust: np.ndarray  # customer indices (0-based)
    w0: np.ndarray  # window start, fraction of the period
    w1: np.ndarray  # window end
    rate_slope: float = 0.0  # session rate multiplier 1 + slope * t (t = fraction of period)
    spend_slope: float = 0.0  # basket multiplier 1 + slope * t
    min_one: bool = True  # at least one session per customer


@dataclass
class _Columns:
    cust: list[np.ndarray] = field(default_factory=list)
    t_ms: list[np.ndarray] = field(default_factory=list)  # ms since start
    chan: list[np.ndarray] = field(default_factory=list)
    typ: list[np.ndarray] = field(default_factory=list)
    amount: list[np.ndarray] = field(default_factory=list)  # NaN = none
    discount: list[np.ndarray] = field(default_factory=list)  # NaN = none
    cat: list[np.ndarray] = field(default_factory=list)  # -1 = none
    campaign: list[np.ndarray] = field(default_factory=list)  # -1 = none, else week number
    items: list[np.ndarray] = field(default_factory=list)  # -1 = none
    store: list[np.ndarray] = field(default_factory=list)  # -1 = none
    persona: list[np.ndarray] = field(default_factory=list)  # persona index in PERSONA_ORDER

    def add(
        self,
        persona: int,
        limit: np.ndarray,
        cust: np.ndarray,
        t_ms: np.ndarray,
        chan: np.ndarray | int,
        typ: np.ndarray | int,
        amount: np.ndarray | None = None,
        discount: np.ndarray | None = None,
        cat: np.ndarray | None = None,
        campaign: np.ndarray | None = None,
        items: np.ndarray | None = None,
        store: np.ndarray | None = None,
    ) -> None:
        n = len(cust)
        keep = np.asarray(t_ms) < limit[cust]  # nothing after the end of the customer's window

        def full(v: np.ndarray | int | float | None, fill: float, dtype: type) -> np.ndarray:
            if v is None:
                return np.full(n, fill, dtype=dtype)[keep]
            if np.isscalar(v):
                return np.full(n, v, dtype=dtype)[keep]
            return np.asarray(v, dtype=dtype)[keep]

        self.cust.append(np.asarray(cust, dtype=np.int64)[keep])
        self.t_ms.append(np.asarray(t_ms, dtype=np.int64)[keep])
        self.chan.append(full(chan, 0, np.int8))
        self.typ.append(full(typ, 0, np.int8))
        self.amount.append(full(amount, np.nan, np.float64))
        self.discount.append(full(discount, np.nan, np.float64))
        self.cat.append(full(cat, -1, np.int8))
        self.campaign.append(full(campaign, -1, np.int32))
        self.items.append(full(items, -1, np.int16))
        self.store.append(full(store, -1, np.int16))
        self.persona.append(np.full(int(keep.sum()), persona, dtype=np.int8))


@dataclass
class Simulation:
    n: int
    start_ms: int
    customers: int
    truth_idx: np.ndarray  # persona index per customer at the end
    cust: np.ndarray
    t_ms: np.ndarray
    chan: np.ndarray
    typ: np.ndarray
    amount: np.ndarray
    discount: np.ndarray
    cat: np.ndarray
    campaign: np.ndarray
    items: np.ndarray
    store: np.ndarray
    persona: np.ndarray  # index in persona_names
    persona_names: tuple[str, ...]


def check_args(customers: int, days: int, scenario: str, malformed_fraction: float, start: datetime) -> None:
    if customers < 1 or days < 1:
        raise ValueError("customers and days must be >= 1")
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; one of {', '.join(SCENARIOS)}")
    if not 0.0 <= malformed_fraction <= 1.0:
        raise ValueError("malformed_fraction must be within [0, 1]")
    if start.tzinfo is None or start.utcoffset() is None:
        raise ValueError("start must be timezone-aware")


def check_weights(weights: Mapping[str, float], known: Sequence[str]) -> dict[str, float]:
    """``weights`` as a dict, or ValueError naming what is wrong (unknown names, bad values)."""
    unknown = sorted(set(weights) - set(known))
    if unknown:
        raise ValueError(f"unknown personas {unknown}; known: {', '.join(known)}")
    if any(w < 0 or not math.isfinite(w) for w in weights.values()) or sum(weights.values()) <= 0:
        raise ValueError("persona weights must be finite, >= 0 and not all zero")
    return dict(weights)


def persona_weights_for(scenario: str, persona_weights: Mapping[str, float] | None) -> dict[str, float]:
    weights = dict(DEFAULT_PERSONA_WEIGHTS if persona_weights is None else persona_weights)
    if scenario == "new_persona" and "mobile_impulse" not in weights:
        weights["mobile_impulse"] = NEW_PERSONA_WEIGHT * sum(weights.values())
    return check_weights(weights, list(PERSONAS))


def assign_exact(
    rng: np.random.Generator, n: int, order: Sequence[str], weights: Mapping[str, float]
) -> np.ndarray:
    """Index in ``order`` of each of ``n`` items: exact proportional counts (largest remainder),
    shuffled. Names are taken in ``order``, never dict order, so the draw is the weights'."""
    names = [name for name in order if name in weights]
    w = np.array([weights[name] for name in names], dtype=float)
    quota = w / w.sum() * n
    counts = np.floor(quota).astype(np.int64)
    rest = n - int(counts.sum())
    if rest:
        by_remainder = np.lexsort((np.arange(len(names)), -(quota - counts)))
        counts[by_remainder[:rest]] += 1
    idx = np.repeat(np.array([order.index(name) for name in names], dtype=np.int64), counts)
    return rng.permutation(idx)


def assign_personas(rng: np.random.Generator, customers: int, weights: dict[str, float]) -> np.ndarray:
    """Persona index (in PERSONA_ORDER) per customer, in exact proportion to ``weights``."""
    return assign_exact(rng, customers, [p.name for p in PERSONA_ORDER], weights)


def plan_phases(
    rng: np.random.Generator, assigned: np.ndarray, scenario: str
) -> tuple[list[_Phase], np.ndarray]:
    """Behaviour phases per customer group, and the persona index each customer ends with."""
    phases: list[_Phase] = []
    truth = assigned.copy()
    pidx = {p.name: i for i, p in enumerate(PERSONA_ORDER)}
    for i, persona in enumerate(PERSONA_ORDER):
        cust = np.flatnonzero(assigned == i)
        if len(cust) == 0:
            continue
        n = len(cust)
        w0 = np.zeros(n)
        w1 = np.ones(n)
        if persona.name == "new_customer":
            w0 = rng.uniform(0.80, 0.95, n)
        if persona.trend == "decline":
            w1 = rng.uniform(0.60, 0.85, n)
        if scenario == "gradual_drift" and persona.name == "high_value_loyal":
            phases.append(_Phase(persona, cust, w0, w1, rate_slope=-0.6, spend_slope=-0.5))
        elif scenario == "sudden_shift" and persona.name == "promo_driven_occasional":
            phases.append(_Phase(persona, cust, w0, np.minimum(w1, 0.5)))
            shifted = PERSONAS["app_converted_promo"]
            phases.append(_Phase(shifted, cust, np.full(n, 0.5), w1, min_one=False))
            truth[cust] = pidx[shifted.name]
        elif scenario == "new_persona" and persona.name == "mobile_impulse":
            phases.append(_Phase(persona, cust, rng.uniform(0.5, 0.75, n), w1))
        elif scenario == "persona_disappears" and persona.name == "browser_no_purchase":
            phases.append(_Phase(persona, cust, w0, np.minimum(w1, 0.5)))
        else:
            phases.append(_Phase(persona, cust, w0, w1))
    return phases, truth


def _intensity_cdf(persona: Persona, phase: _Phase, days: int, start: datetime) -> np.ndarray:
    """Cumulative expected activity per hour bin (H + 1 values, 1.0 = one flat day)."""
    hours = days * 24
    h = np.arange(hours)
    t = (h + 0.5) / hours
    w = np.tile(np.asarray(HOUR_PROFILES[persona.hours]), days)
    dow = (start.weekday() + h // 24) % 7
    week = np.where(dow >= 5, persona.weekend_boost, 1.0)
    w = w * week * (7.0 / (5.0 + 2.0 * persona.weekend_boost))
    if persona.trend == "decline":
        w = w * np.exp(-3.5 * t) * 3.5 / (1.0 - math.exp(-3.5))  # same total as flat
    if phase.rate_slope:
        w = w * np.maximum(0.0, 1.0 + phase.rate_slope * t)
    return np.concatenate(([0.0], np.cumsum(w)))


def _draw_times(
    rng: np.random.Generator,
    cdf: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    rate: np.ndarray,
    min_one: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Poisson number of events per customer within hour windows [a, b), times in ms."""
    lo, hi = cdf[a], cdf[b]
    mass = hi - lo
    counts = rng.poisson(rate * mass)
    if min_one:
        counts = np.where(mass > 0, np.maximum(counts, 1), counts)
    owner = np.repeat(np.arange(len(a)), counts)
    u = lo[owner] + rng.random(len(owner)) * mass[owner]
    bins = np.clip(np.searchsorted(cdf, u, side="right") - 1, 0, len(cdf) - 2)
    t_ms = (bins * 3600.0 + rng.random(len(owner)) * 3600.0) * 1000.0
    return owner, t_ms.astype(np.int64)


def _simulate_phase(
    rng: np.random.Generator,
    cols: _Columns,
    phase: _Phase,
    days: int,
    start: datetime,
    home_store: np.ndarray,
) -> None:
    p = phase.persona
    pi = PERSONA_ORDER.index(p)
    hours = days * 24
    end_ms = days * 86_400_000
    cdf = _intensity_cdf(p, phase, days, start)
    a = np.floor(phase.w0 * hours).astype(np.int64)
    b = np.maximum(a, np.ceil(phase.w1 * hours).astype(np.int64))
    n_c = len(phase.cust)
    limit = np.zeros(len(home_store), dtype=np.int64)
    limit[phase.cust] = b * 3_600_000
    activity = rng.gamma(2.0, 0.5, n_c)  # per-customer heterogeneity, mean 1

    # ---- sessions: optional referral, entry, search, product views, cart, checkout, purchase
    owner, t0 = _draw_times(rng, cdf, a, b, p.session_rate * activity, phase.min_one)
    s = len(owner)
    cust = phase.cust[owner]
    channel = SESSION_CHANNELS[rng.choice(3, s, p=np.asarray(p.session_channels))]
    online = channel != CHANNEL_INDEX["store"]
    r = rng.random(s)
    ref_ad = online & (r < p.p_ad_referral)
    ref_email = online & ~ref_ad & (r < p.p_ad_referral + p.p_email_referral)
    has_ref = ref_ad | ref_email
    cat = rng.choice(len(CATEGORIES), s, p=np.asarray(p.category_weights) / sum(p.category_weights))
    week = (t0 // (7 * 86_400_000)).astype(np.int32) + 1
    search = online & (rng.random(s) < p.p_search)
    cart = online & (rng.random(s) < p.p_cart)
    n_pv = np.where(online, rng.poisson(p.mean_product_views, s), 0)
    n_pv = np.where(cart, np.maximum(n_pv, 1), n_pv)
    checkout = cart & (rng.random(s) < p.p_checkout)
    bought = checkout & (rng.random(s) < p.p_purchase)
    bought |= ~online & (rng.random(s) < p.p_store_purchase)
    gap = rng.uniform(20.0, 90.0, s)  # seconds between steps of this session

    base_entry = has_ref.astype(np.int64)
    base_search = base_entry + 1
    base_pv = base_search + search
    base_cart = base_pv + n_pv
    base_co = base_cart + cart
    base_buy = np.where(online, base_co + checkout, 1 + rng.integers(2, 30, s))  # store: minutes

    def slot(count: np.ndarray, base: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        count = count.astype(np.int64)
        idx = np.repeat(np.arange(s), count)
        within = np.arange(len(idx)) - np.repeat(np.cumsum(count) - count, count)
        pos = base[idx] + within
        return idx, t0[idx] + (pos * gap[idx] * 1000.0).astype(np.int64)

    store_ids = np.where(channel == CHANNEL_INDEX["store"], home_store[cust], -1)
    i, t = slot(has_ref, np.zeros(s, dtype=np.int64))
    cols.add(
        pi,
        limit,
        cust[i],
        t,
        np.where(ref_ad[i], CHANNEL_INDEX["ads"], CHANNEL_INDEX["email"]),
        np.where(ref_ad[i], TYPE_INDEX["ad_click"], TYPE_INDEX["email_click"]),
        campaign=week[i],
    )
    entry_type = np.where(
        channel == CHANNEL_INDEX["app"],
        TYPE_INDEX["app_open"],
        np.where(channel == CHANNEL_INDEX["store"], TYPE_INDEX["store_visit"], TYPE_INDEX["page_view"]),
    )
    i, t = slot(np.ones(s), base_entry)
    cols.add(pi, limit, cust[i], t, channel[i], entry_type[i], store=store_ids[i])
    i, t = slot(search, base_search)
    cols.add(pi, limit, cust[i], t, channel[i], TYPE_INDEX["search"])
    i, t = slot(n_pv, base_pv)
    cols.add(pi, limit, cust[i], t, channel[i], TYPE_INDEX["product_view"], cat=cat[i])
    i, t = slot(cart, base_cart)
    cols.add(pi, limit, cust[i], t, channel[i], TYPE_INDEX["add_to_cart"], cat=cat[i])
    i, t = slot(checkout, base_co)
    cols.add(pi, limit, cust[i], t, channel[i], TYPE_INDEX["checkout"], cat=cat[i])

    i, t = slot(bought, base_buy)
    m = len(i)
    if m:
        tfrac = t / end_ms
        spend = np.maximum(0.2, 1.0 + phase.spend_slope * tfrac)
        mu = math.log(p.amount_mean) - p.amount_sigma**2 / 2.0
        amount = np.round(rng.lognormal(mu, p.amount_sigma, m) * spend, 2)
        amount = np.maximum(amount, 0.5)
        promo = rng.random(m) < p.promo_share
        disc_frac = rng.uniform(p.discount_range[0], p.discount_range[1] + 1e-9, m)
        discount = np.where(promo & (disc_frac > 0), np.round(amount * disc_frac, 2), np.nan)
        campaign = np.where(promo | has_ref[i], week[i], -1)
        items = 1 + rng.poisson(np.minimum(amount / 40.0, 8.0))
        cols.add(
            pi,
            limit,
            cust[i],
            t,
            channel[i],
            TYPE_INDEX["purchase"],
            amount=amount,
            discount=discount,
            cat=cat[i],
            campaign=campaign,
            items=items,
            store=store_ids[i],
        )
        # refunds, 1-14 days later, full or partial
        ref = rng.random(m) < p.refund_prob
        k = np.flatnonzero(ref)
        if len(k):
            t_ref = t[k] + (rng.uniform(1.0, 14.0, len(k)) * 86_400_000).astype(np.int64)
            part = np.where(rng.random(len(k)) < 0.7, 1.0, rng.uniform(0.2, 0.8, len(k)))
            ch = channel[i][k]
            ref_ch = np.where(
                ch == CHANNEL_INDEX["store"],
                CHANNEL_INDEX["store"],
                np.where(rng.random(len(k)) < 0.4, CHANNEL_INDEX["call_center"], ch),
            )
            cols.add(
                pi,
                limit,
                cust[i][k],
                t_ref,
                ref_ch,
                TYPE_INDEX["refund"],
                amount=np.round(amount[k] * part, 2),
                cat=cat[i][k],
                store=np.where(ref_ch == CHANNEL_INDEX["store"], store_ids[i][k], -1),
            )

    # ---- single touches: email (with clicks), push, social, support
    owner, t = _draw_times(rng, cdf, a, b, p.email_open_rate * activity, False)
    c = phase.cust[owner]
    wk = (t // (7 * 86_400_000)).astype(np.int32) + 1
    cols.add(pi, limit, c, t, CHANNEL_INDEX["email"], TYPE_INDEX["email_open"], campaign=wk)
    click = rng.random(len(c)) < p.p_email_click
    t_click = t[click] + (rng.uniform(5.0, 600.0, int(click.sum())) * 1000).astype(np.int64)
    cols.add(
        pi, limit, c[click], t_click, CHANNEL_INDEX["email"], TYPE_INDEX["email_click"], campaign=wk[click]
    )
    for rate, ch, ty in (
        (p.push_rate, CHANNEL_INDEX["push"], TYPE_INDEX["push_open"]),
        (p.social_rate, CHANNEL_INDEX["social"], TYPE_INDEX["social_engage"]),
    ):
        owner, t = _draw_times(rng, cdf, a, b, rate * activity, False)
        cols.add(pi, limit, phase.cust[owner], t, ch, ty)
    owner, t = _draw_times(rng, cdf, a, b, np.full(n_c, p.support_rate), False)
    cols.add(
        pi,
        limit,
        phase.cust[owner],
        t,
        SUPPORT_CHANNELS[rng.choice(3, len(owner), p=SUPPORT_P)],
        TYPE_INDEX["support_contact"],
    )


def simulate(
    customers: int,
    days: int,
    seed: int,
    start: datetime,
    scenario: str,
    persona_weights: Mapping[str, float] | None,
) -> tuple[np.random.Generator, Simulation]:
    rng = np.random.default_rng(seed)
    assigned = assign_personas(rng, customers, persona_weights_for(scenario, persona_weights))
    phases, truth = plan_phases(rng, assigned, scenario)
    home_store = rng.integers(1, 60, customers).astype(np.int16)
    cols = _Columns()
    for phase in phases:
        _simulate_phase(rng, cols, phase, days, start, home_store)
    return rng, assemble(cols, customers, days, start, truth, tuple(p.name for p in PERSONA_ORDER))


def assemble(
    cols: _Columns,
    customers: int,
    days: int,
    start: datetime,
    truth: np.ndarray,
    persona_names: tuple[str, ...],
) -> Simulation:
    """The columns as one simulation: events within the period, sorted by time."""

    def cat(xs: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(xs)

    t_ms = cat(cols.t_ms)
    cust = cat(cols.cust)
    keep = (t_ms >= 0) & (t_ms < days * 86_400_000)
    # stable order: event time, then customer, then generation order
    order = np.lexsort((cust, t_ms))
    order = order[keep[order]]
    start_ms = round(start.timestamp() * 1000)
    return Simulation(
        n=len(order),
        start_ms=start_ms,
        customers=customers,
        truth_idx=truth,
        cust=cust[order],
        t_ms=t_ms[order] + start_ms,
        chan=cat(cols.chan)[order],
        typ=cat(cols.typ)[order],
        amount=cat(cols.amount)[order],
        discount=cat(cols.discount)[order],
        cat=cat(cols.cat)[order],
        campaign=cat(cols.campaign)[order],
        items=cat(cols.items)[order],
        store=cat(cols.store)[order],
        persona=cat(cols.persona)[order],
        persona_names=persona_names,
    )
