"""Seeded, realistic omnichannel demo events with planted personas and drift scenarios.

Every customer is given one planted persona (behaviour parameters: session rate, channel mix,
purchase funnel, basket size, promo response, time-of-day pattern, activity trend...), and the
generator draws their interactions over ``days`` days. The result is a list of Kafka-ready
records (key = customer id, value = compact JSON of an :class:`~models.contracts.InteractionEvent`)
sorted by event time, plus the ground truth ``customer_id -> persona``. Same arguments, same bytes.

>>> log = generate(customers=50, days=30, seed=7)
>>> rec = log.records[0]
>>> rec.key == rec.customer_id.encode() and not rec.malformed
True
>>> sorted(set(log.truth.values()))[:2]
['browser_no_purchase', 'declining_engagement']
>>> log2 = generate(customers=50, days=30, seed=7)
>>> [r.value for r in log2.records] == [r.value for r in log.records]
True

Scenarios (for drift tests of the clustering engine), see :data:`SCENARIOS`:

- ``stationary``: personas keep their behaviour for the whole period.
- ``gradual_drift``: ``high_value_loyal`` customers' session rate and basket size decline
  linearly over the period (to ~40% and ~50% at the end); truth stays ``high_value_loyal``.
- ``sudden_shift``: at mid-period ``promo_driven_occasional`` customers switch to
  ``app_converted_promo`` (app heavy, more frequent, higher spend); truth is the new persona.
- ``new_persona``: ``mobile_impulse`` customers (app only, night owls, small frequent baskets)
  appear only in the second half (their first event is after mid-period).
- ``persona_disappears``: ``browser_no_purchase`` customers stop entirely at mid-period; truth
  keeps their persona (they are the segment that dies).

The ground truth is the persona each customer has at the end of the period.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, NamedTuple

import numpy as np

__all__ = [
    "CATEGORIES",
    "DEFAULT_PERSONA_WEIGHTS",
    "DEFAULT_START",
    "MALFORMED_KINDS",
    "PERSONAS",
    "SCENARIOS",
    "GeneratedLog",
    "GeneratedRecord",
    "Persona",
    "generate",
    "ground_truth",
    "iter_records",
    "write_truth_csv",
]

DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)
SCENARIOS = ("stationary", "gradual_drift", "sudden_shift", "new_persona", "persona_disappears")
CURRENCY = "EUR"
CATEGORIES = ("electronics", "fashion", "home", "beauty", "grocery", "sports", "toys", "books")

# Codes used in the columnar simulation; the names are the wire values of models.contracts.
_CHANNELS = ("web", "app", "email", "sms", "push", "social", "store", "ads", "call_center")
_TYPES = (
    "page_view",
    "product_view",
    "search",
    "add_to_cart",
    "checkout",
    "purchase",
    "refund",
    "email_open",
    "email_click",
    "push_open",
    "app_open",
    "social_engage",
    "ad_click",
    "store_visit",
    "support_contact",
)
_CH = {name: i for i, name in enumerate(_CHANNELS)}
_TY = {name: i for i, name in enumerate(_TYPES)}
_SESSION_CHANNELS = np.array([_CH["web"], _CH["app"], _CH["store"]])
_SUPPORT_CHANNELS = np.array([_CH["call_center"], _CH["email"], _CH["web"]])
_SUPPORT_P = np.array([0.5, 0.2, 0.3])


def _hours(*bumps: tuple[float, float, float], floor: float = 0.02) -> tuple[float, ...]:
    """A 24-hour activity profile from gaussian bumps (centre hour, width, height), sum 1."""
    h = np.arange(24, dtype=float)
    w = np.full(24, floor)
    for centre, width, height in bumps:
        d = np.minimum(np.abs(h - centre), 24 - np.abs(h - centre))  # circular distance
        w += height * np.exp(-0.5 * (d / width) ** 2)
    return tuple(float(x) for x in w / w.sum())


HOUR_PROFILES: dict[str, tuple[float, ...]] = {
    "day": _hours((12.5, 1.5, 0.6), (20.0, 1.8, 1.0), (9.0, 1.5, 0.3)),
    "evening": _hours((21.0, 1.8, 1.0), (13.0, 1.5, 0.3)),
    "shop": _hours((11.0, 2.0, 0.9), (17.0, 2.0, 1.0), (20.5, 1.2, 0.3), floor=0.005),
    "night": _hours((23.5, 2.0, 1.0), (1.5, 1.5, 0.6), (13.0, 1.5, 0.2)),
}


@dataclass(frozen=True)
class Persona:
    """Behaviour parameters of one planted persona (rates are per customer per day)."""

    name: str
    description: str
    session_rate: float
    session_channels: tuple[float, float, float]  # web, app, store
    mean_product_views: float
    p_search: float
    p_cart: float  # per web/app session
    p_checkout: float  # given add_to_cart
    p_purchase: float  # given checkout
    p_store_purchase: float  # given a store visit
    amount_mean: float  # EUR, mean of the lognormal basket
    amount_sigma: float
    promo_share: float  # share of purchases with campaign_id and discount
    discount_range: tuple[float, float]  # discount as a fraction of the paid amount
    p_ad_referral: float  # web/app session entered through an ad click
    p_email_referral: float  # web/app session entered through an email click
    email_open_rate: float
    p_email_click: float
    push_rate: float
    social_rate: float
    support_rate: float
    refund_prob: float
    category_weights: tuple[float, ...]
    hours: str = "day"
    weekend_boost: float = 1.0
    trend: str = "flat"  # flat | decline (exponential decay, stops in the last third)

    def __post_init__(self) -> None:
        if len(self.category_weights) != len(CATEGORIES):
            raise ValueError("one category weight per category")
        if self.hours not in HOUR_PROFILES or self.trend not in ("flat", "decline"):
            raise ValueError("unknown hour profile or trend")


_P: list[Persona] = [
    Persona(
        name="high_value_loyal",
        description="Frequent, large baskets, web and app, low promo use, reads email.",
        session_rate=0.30,
        session_channels=(0.55, 0.35, 0.10),
        mean_product_views=3.0,
        p_search=0.5,
        p_cart=0.55,
        p_checkout=0.85,
        p_purchase=0.9,
        p_store_purchase=0.7,
        amount_mean=90.0,
        amount_sigma=0.45,
        promo_share=0.08,
        discount_range=(0.05, 0.15),
        p_ad_referral=0.02,
        p_email_referral=0.10,
        email_open_rate=0.25,
        p_email_click=0.25,
        push_rate=0.05,
        social_rate=0.03,
        support_rate=0.01,
        refund_prob=0.04,
        category_weights=(0.25, 0.2, 0.2, 0.1, 0.05, 0.1, 0.05, 0.05),
    ),
    Persona(
        name="promo_driven_occasional",
        description="Comes for campaigns (ads, email), small discounted baskets.",
        session_rate=0.08,
        session_channels=(0.75, 0.25, 0.0),
        mean_product_views=2.0,
        p_search=0.2,
        p_cart=0.45,
        p_checkout=0.7,
        p_purchase=0.75,
        p_store_purchase=0.0,
        amount_mean=35.0,
        amount_sigma=0.5,
        promo_share=0.85,
        discount_range=(0.15, 0.40),
        p_ad_referral=0.40,
        p_email_referral=0.35,
        email_open_rate=0.20,
        p_email_click=0.35,
        push_rate=0.02,
        social_rate=0.06,
        support_rate=0.005,
        refund_prob=0.06,
        category_weights=(0.1, 0.3, 0.15, 0.2, 0.1, 0.05, 0.05, 0.05),
        hours="evening",
    ),
    Persona(
        name="declining_engagement",
        description="Was a regular buyer; activity decays and mostly stops in the last third.",
        session_rate=0.40,
        session_channels=(0.6, 0.3, 0.1),
        mean_product_views=2.5,
        p_search=0.35,
        p_cart=0.45,
        p_checkout=0.8,
        p_purchase=0.85,
        p_store_purchase=0.5,
        amount_mean=60.0,
        amount_sigma=0.5,
        promo_share=0.2,
        discount_range=(0.1, 0.25),
        p_ad_referral=0.05,
        p_email_referral=0.10,
        email_open_rate=0.25,
        p_email_click=0.15,
        push_rate=0.04,
        social_rate=0.02,
        support_rate=0.02,
        refund_prob=0.08,
        category_weights=(0.15, 0.15, 0.2, 0.1, 0.1, 0.1, 0.1, 0.1),
        trend="decline",
    ),
    Persona(
        name="new_customer",
        description="First seen in the last ~20% of the period; explores, first purchases.",
        session_rate=0.35,
        session_channels=(0.6, 0.35, 0.05),
        mean_product_views=3.5,
        p_search=0.6,
        p_cart=0.4,
        p_checkout=0.7,
        p_purchase=0.8,
        p_store_purchase=0.5,
        amount_mean=50.0,
        amount_sigma=0.55,
        promo_share=0.35,
        discount_range=(0.1, 0.2),
        p_ad_referral=0.2,
        p_email_referral=0.1,
        email_open_rate=0.3,
        p_email_click=0.3,
        push_rate=0.05,
        social_rate=0.05,
        support_rate=0.02,
        refund_prob=0.03,
        category_weights=(0.15, 0.2, 0.15, 0.15, 0.1, 0.1, 0.1, 0.05),
    ),
    Persona(
        name="browser_no_purchase",
        description="Browses, searches, fills carts, never buys.",
        session_rate=0.25,
        session_channels=(0.6, 0.4, 0.0),
        mean_product_views=4.0,
        p_search=0.6,
        p_cart=0.3,
        p_checkout=0.25,
        p_purchase=0.0,
        p_store_purchase=0.0,
        amount_mean=40.0,
        amount_sigma=0.5,
        promo_share=0.0,
        discount_range=(0.0, 0.0),
        p_ad_referral=0.15,
        p_email_referral=0.05,
        email_open_rate=0.10,
        p_email_click=0.1,
        push_rate=0.03,
        social_rate=0.08,
        support_rate=0.0,
        refund_prob=0.0,
        category_weights=(0.3, 0.2, 0.1, 0.1, 0.0, 0.1, 0.1, 0.1),
        hours="evening",
    ),
    Persona(
        name="store_centric_omnichannel",
        description="Shops in stores (weekends), uses the app and email around it.",
        session_rate=0.22,
        session_channels=(0.1, 0.2, 0.7),
        mean_product_views=2.0,
        p_search=0.3,
        p_cart=0.15,
        p_checkout=0.6,
        p_purchase=0.8,
        p_store_purchase=0.7,
        amount_mean=65.0,
        amount_sigma=0.5,
        promo_share=0.15,
        discount_range=(0.05, 0.2),
        p_ad_referral=0.02,
        p_email_referral=0.1,
        email_open_rate=0.3,
        p_email_click=0.15,
        push_rate=0.08,
        social_rate=0.02,
        support_rate=0.02,
        refund_prob=0.05,
        category_weights=(0.05, 0.2, 0.25, 0.15, 0.25, 0.05, 0.05, 0.0),
        hours="shop",
        weekend_boost=1.6,
    ),
    Persona(
        name="mobile_impulse",
        description="App only, late at night, push driven, many small impulse baskets.",
        session_rate=0.6,
        session_channels=(0.03, 0.97, 0.0),
        mean_product_views=1.5,
        p_search=0.1,
        p_cart=0.5,
        p_checkout=0.8,
        p_purchase=0.85,
        p_store_purchase=0.0,
        amount_mean=18.0,
        amount_sigma=0.4,
        promo_share=0.25,
        discount_range=(0.05, 0.2),
        p_ad_referral=0.1,
        p_email_referral=0.0,
        email_open_rate=0.02,
        p_email_click=0.1,
        push_rate=0.5,
        social_rate=0.15,
        support_rate=0.01,
        refund_prob=0.02,
        category_weights=(0.2, 0.2, 0.0, 0.2, 0.0, 0.1, 0.3, 0.0),
        hours="night",
    ),
    Persona(
        name="app_converted_promo",
        description="Former promo shoppers converted to the app: frequent, higher baskets.",
        session_rate=0.25,
        session_channels=(0.15, 0.85, 0.0),
        mean_product_views=2.5,
        p_search=0.3,
        p_cart=0.55,
        p_checkout=0.8,
        p_purchase=0.85,
        p_store_purchase=0.0,
        amount_mean=75.0,
        amount_sigma=0.45,
        promo_share=0.3,
        discount_range=(0.05, 0.2),
        p_ad_referral=0.05,
        p_email_referral=0.05,
        email_open_rate=0.1,
        p_email_click=0.2,
        push_rate=0.3,
        social_rate=0.05,
        support_rate=0.01,
        refund_prob=0.04,
        category_weights=(0.15, 0.3, 0.15, 0.2, 0.05, 0.05, 0.05, 0.05),
        hours="evening",
    ),
]

PERSONAS: dict[str, Persona] = {p.name: p for p in _P}

DEFAULT_PERSONA_WEIGHTS: dict[str, float] = {
    "high_value_loyal": 0.15,
    "promo_driven_occasional": 0.25,
    "declining_engagement": 0.15,
    "new_customer": 0.12,
    "browser_no_purchase": 0.18,
    "store_centric_omnichannel": 0.15,
}
_NEW_PERSONA_WEIGHT = 0.12  # share of mobile_impulse in the new_persona scenario if not given

MALFORMED_KINDS = (
    "not_json",
    "truncated_json",
    "missing_customer_id",
    "unknown_channel",
    "negative_amount",
    "nan_amount",
    "naive_timestamp",
    "oversize_properties",
    "bad_id_charset",
    "purchase_without_amount",
)


class GeneratedRecord(NamedTuple):
    """One Kafka record: ``key``/``value`` as bytes, plus provenance for tests and truth."""

    key: bytes
    value: bytes
    malformed: bool
    customer_id: str
    persona: str
    ts: float  # event time, epoch seconds


@dataclass
class GeneratedLog:
    records: list[GeneratedRecord]
    truth: dict[str, str]  # customer_id -> persona at the end of the period
    malformed_kinds: dict[int, str] = field(default_factory=dict)  # record index -> kind


def customer_id(i: int) -> str:
    """The id of customer number ``i`` (1-based): ``c000123``."""
    return f"c{i:06d}"


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
    persona: list[np.ndarray] = field(default_factory=list)  # persona index in _P

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
class _Simulation:
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
    persona: np.ndarray


def _check_args(customers: int, days: int, scenario: str, malformed_fraction: float, start: datetime) -> None:
    if customers < 1 or days < 1:
        raise ValueError("customers and days must be >= 1")
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; one of {', '.join(SCENARIOS)}")
    if not 0.0 <= malformed_fraction <= 1.0:
        raise ValueError("malformed_fraction must be within [0, 1]")
    if start.tzinfo is None or start.utcoffset() is None:
        raise ValueError("start must be timezone-aware")


def _weights(scenario: str, persona_weights: Mapping[str, float] | None) -> dict[str, float]:
    weights = dict(DEFAULT_PERSONA_WEIGHTS if persona_weights is None else persona_weights)
    if scenario == "new_persona" and "mobile_impulse" not in weights:
        weights["mobile_impulse"] = _NEW_PERSONA_WEIGHT * sum(weights.values())
    unknown = sorted(set(weights) - set(PERSONAS))
    if unknown:
        raise ValueError(f"unknown personas {unknown}; known: {', '.join(PERSONAS)}")
    if any(w < 0 or not math.isfinite(w) for w in weights.values()) or sum(weights.values()) <= 0:
        raise ValueError("persona weights must be finite, >= 0 and not all zero")
    return weights


def _assign(rng: np.random.Generator, customers: int, weights: dict[str, float]) -> np.ndarray:
    """Persona index per customer: exact proportional counts (largest remainder), shuffled."""
    names = [p.name for p in _P if p.name in weights]  # canonical order, not dict order
    w = np.array([weights[n] for n in names], dtype=float)
    quota = w / w.sum() * customers
    counts = np.floor(quota).astype(np.int64)
    rest = customers - int(counts.sum())
    if rest:
        order = np.lexsort((np.arange(len(names)), -(quota - counts)))
        counts[order[:rest]] += 1
    idx = np.repeat(np.array([_P.index(PERSONAS[n]) for n in names], dtype=np.int64), counts)
    return rng.permutation(idx)


def _phases(rng: np.random.Generator, assigned: np.ndarray, scenario: str) -> tuple[list[_Phase], np.ndarray]:
    """Behaviour phases per customer group, and the persona index each customer ends with."""
    phases: list[_Phase] = []
    truth = assigned.copy()
    pidx = {p.name: i for i, p in enumerate(_P)}
    for i, persona in enumerate(_P):
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
    pi = _P.index(p)
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
    channel = _SESSION_CHANNELS[rng.choice(3, s, p=np.asarray(p.session_channels))]
    online = channel != _CH["store"]
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

    store_ids = np.where(channel == _CH["store"], home_store[cust], -1)
    i, t = slot(has_ref, np.zeros(s, dtype=np.int64))
    cols.add(
        pi,
        limit,
        cust[i],
        t,
        np.where(ref_ad[i], _CH["ads"], _CH["email"]),
        np.where(ref_ad[i], _TY["ad_click"], _TY["email_click"]),
        campaign=week[i],
    )
    entry_type = np.where(
        channel == _CH["app"],
        _TY["app_open"],
        np.where(channel == _CH["store"], _TY["store_visit"], _TY["page_view"]),
    )
    i, t = slot(np.ones(s), base_entry)
    cols.add(pi, limit, cust[i], t, channel[i], entry_type[i], store=store_ids[i])
    i, t = slot(search, base_search)
    cols.add(pi, limit, cust[i], t, channel[i], _TY["search"])
    i, t = slot(n_pv, base_pv)
    cols.add(pi, limit, cust[i], t, channel[i], _TY["product_view"], cat=cat[i])
    i, t = slot(cart, base_cart)
    cols.add(pi, limit, cust[i], t, channel[i], _TY["add_to_cart"], cat=cat[i])
    i, t = slot(checkout, base_co)
    cols.add(pi, limit, cust[i], t, channel[i], _TY["checkout"], cat=cat[i])

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
            _TY["purchase"],
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
                ch == _CH["store"],
                _CH["store"],
                np.where(rng.random(len(k)) < 0.4, _CH["call_center"], ch),
            )
            cols.add(
                pi,
                limit,
                cust[i][k],
                t_ref,
                ref_ch,
                _TY["refund"],
                amount=np.round(amount[k] * part, 2),
                cat=cat[i][k],
                store=np.where(ref_ch == _CH["store"], store_ids[i][k], -1),
            )

    # ---- single touches: email (with clicks), push, social, support
    owner, t = _draw_times(rng, cdf, a, b, p.email_open_rate * activity, False)
    c = phase.cust[owner]
    wk = (t // (7 * 86_400_000)).astype(np.int32) + 1
    cols.add(pi, limit, c, t, _CH["email"], _TY["email_open"], campaign=wk)
    click = rng.random(len(c)) < p.p_email_click
    t_click = t[click] + (rng.uniform(5.0, 600.0, int(click.sum())) * 1000).astype(np.int64)
    cols.add(pi, limit, c[click], t_click, _CH["email"], _TY["email_click"], campaign=wk[click])
    for rate, ch, ty in (
        (p.push_rate, _CH["push"], _TY["push_open"]),
        (p.social_rate, _CH["social"], _TY["social_engage"]),
    ):
        owner, t = _draw_times(rng, cdf, a, b, rate * activity, False)
        cols.add(pi, limit, phase.cust[owner], t, ch, ty)
    owner, t = _draw_times(rng, cdf, a, b, np.full(n_c, p.support_rate), False)
    cols.add(
        pi,
        limit,
        phase.cust[owner],
        t,
        _SUPPORT_CHANNELS[rng.choice(3, len(owner), p=_SUPPORT_P)],
        _TY["support_contact"],
    )


def _simulate(
    customers: int,
    days: int,
    seed: int,
    start: datetime,
    scenario: str,
    persona_weights: Mapping[str, float] | None,
) -> tuple[np.random.Generator, _Simulation]:
    rng = np.random.default_rng(seed)
    assigned = _assign(rng, customers, _weights(scenario, persona_weights))
    phases, truth = _phases(rng, assigned, scenario)
    home_store = rng.integers(1, 60, customers).astype(np.int16)
    cols = _Columns()
    for phase in phases:
        _simulate_phase(rng, cols, phase, days, start, home_store)

    def cat(xs: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(xs)

    t_ms = cat(cols.t_ms)
    cust = cat(cols.cust)
    keep = (t_ms >= 0) & (t_ms < days * 86_400_000)
    # stable order: event time, then customer, then generation order
    order = np.lexsort((cust, t_ms))
    order = order[keep[order]]
    start_ms = round(start.timestamp() * 1000)
    sim = _Simulation(
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
    )
    return rng, sim


# ----------------------------------------------------------------------------- encoding


def _dumps(obj: dict[str, object]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def _malformed(kind: str, event: dict[str, object], ordinal: int) -> bytes:
    """A broken version of ``event`` of the given kind (never a valid InteractionEvent)."""
    e = dict(event)
    if kind == "not_json":
        return b"\x00\x9fnot json <event " + str(ordinal).encode() + b">"
    if kind == "truncated_json":
        raw = _dumps(e)
        return raw[: max(1, len(raw) // 2)]
    if kind == "missing_customer_id":
        e.pop("customer_id", None)
    elif kind == "unknown_channel":
        e["channel"] = "carrier_pigeon"
    elif kind in ("negative_amount", "nan_amount", "purchase_without_amount"):
        e.pop("category", None)
        e.update(type="purchase", currency=CURRENCY)
        if kind == "negative_amount":
            e["amount"] = -abs(float(e.get("amount") or 12.5))  # type: ignore[arg-type]
        elif kind == "nan_amount":
            e["amount"] = float("nan")  # json.dumps writes the token NaN
        else:
            e.pop("amount", None)
    elif kind == "naive_timestamp":
        e["ts"] = str(e["ts"]).rstrip("Z")
    elif kind == "oversize_properties":
        e["properties"] = {"blob": "x" * 20_000}
    elif kind == "bad_id_charset":
        e["customer_id"] = f"{e['customer_id']} / ü!"
    return _dumps(e)


def _records(
    rng: np.random.Generator, sim: _Simulation, seed: int, malformed_fraction: float
) -> Iterator[tuple[GeneratedRecord, str | None]]:
    n = sim.n
    n_bad = round(malformed_fraction * n)
    bad_kind: dict[int, str] = {}
    if n_bad:
        which = rng.choice(n, n_bad, replace=False)
        kinds = rng.permutation(np.arange(n_bad) % len(MALFORMED_KINDS))
        bad_kind = {int(w): MALFORMED_KINDS[int(k)] for w, k in zip(which, kinds, strict=True)}

    ids = [customer_id(i + 1) for i in range(sim.customers)]
    keys = [s.encode() for s in ids]
    names = [p.name for p in _P]
    ts_str = np.datetime_as_string(sim.t_ms.astype("datetime64[ms]"), unit="ms").tolist()
    chans, types = _CHANNELS, _TYPES
    monetary = {_TY["purchase"], _TY["refund"]}
    isnan = math.isnan
    cust_l = sim.cust.tolist()
    t_l = sim.t_ms.tolist()
    chan_l = sim.chan.tolist()
    typ_l = sim.typ.tolist()
    amt_l = sim.amount.tolist()
    disc_l = sim.discount.tolist()
    cat_l = sim.cat.tolist()
    camp_l = sim.campaign.tolist()
    items_l = sim.items.tolist()
    store_l = sim.store.tolist()
    pers_l = sim.persona.tolist()
    for k in range(n):
        c = cust_l[k]
        ty = typ_l[k]
        # Hand-written compact JSON with sorted keys: byte-identical to
        # json.dumps(event, separators=(",", ":"), sort_keys=True) (all strings are plain
        # ASCII, floats use repr like json does), and ~4x faster. Tested against json.dumps.
        parts = []
        money = ty in monetary
        if money:
            parts.append(f'"amount":{amt_l[k]!r}')
        if camp_l[k] >= 0:
            parts.append(f'"campaign_id":"cmp-w{camp_l[k]:02d}"')
        if cat_l[k] >= 0:
            parts.append(f'"category":"{CATEGORIES[cat_l[k]]}"')
        parts.append(f'"channel":"{chans[chan_l[k]]}"')
        if money:
            parts.append(f'"currency":"{CURRENCY}"')
        parts.append(f'"customer_id":"{ids[c]}"')
        d = disc_l[k]
        if not isnan(d):
            parts.append(f'"discount":{d!r}')
        parts.append(f'"event_id":"g{seed}-{k}"')
        it, st = items_l[k], store_l[k]
        if it >= 0 and st >= 0:
            parts.append(f'"properties":{{"items":{it},"store_id":"st{st:03d}"}}')
        elif it >= 0:
            parts.append(f'"properties":{{"items":{it}}}')
        elif st >= 0:
            parts.append(f'"properties":{{"store_id":"st{st:03d}"}}')
        parts.append(f'"ts":"{ts_str[k]}Z","type":"{types[ty]}"')
        text = "{" + ",".join(parts) + "}"
        kind = bad_kind.get(k)
        value = text.encode() if kind is None else _malformed(kind, json.loads(text), k)
        yield (
            GeneratedRecord(keys[c], value, kind is not None, ids[c], names[pers_l[k]], t_l[k] / 1000.0),
            kind,
        )


# ----------------------------------------------------------------------------- public API


def generate(
    customers: int,
    days: int,
    seed: int,
    start: datetime = DEFAULT_START,
    scenario: str = "stationary",
    malformed_fraction: float = 0.0,
    persona_weights: Mapping[str, float] | None = None,
) -> GeneratedLog:
    """Generate a seeded event log: records sorted by event time, and the ground truth.

    ``persona_weights`` maps persona names (keys of :data:`PERSONAS`) to relative weights
    (default :data:`DEFAULT_PERSONA_WEIGHTS`); customers are split in exact proportion.
    ``malformed_fraction`` of the records (chosen by the seeded RNG) are replaced by malformed
    ones (kinds in :data:`MALFORMED_KINDS`, recorded in ``GeneratedLog.malformed_kinds``).
    """
    _check_args(customers, days, scenario, malformed_fraction, start)
    rng, sim = _simulate(customers, days, seed, start, scenario, persona_weights)
    records: list[GeneratedRecord] = []
    kinds: dict[int, str] = {}
    for k, (rec, kind) in enumerate(_records(rng, sim, seed, malformed_fraction)):
        records.append(rec)
        if kind is not None:
            kinds[k] = kind
    names = [p.name for p in _P]
    truth = {customer_id(i + 1): names[p] for i, p in enumerate(sim.truth_idx.tolist())}
    return GeneratedLog(records=records, truth=truth, malformed_kinds=kinds)


def iter_records(
    customers: int,
    days: int,
    seed: int,
    start: datetime = DEFAULT_START,
    scenario: str = "stationary",
    malformed_fraction: float = 0.0,
    persona_weights: Mapping[str, float] | None = None,
) -> Iterator[GeneratedRecord]:
    """The records of :func:`generate` with the same arguments, encoded lazily one by one.

    The simulation itself is columnar (~60 bytes per event); only the JSON is produced lazily.
    Get the ground truth with :func:`ground_truth`.
    """
    _check_args(customers, days, scenario, malformed_fraction, start)
    rng, sim = _simulate(customers, days, seed, start, scenario, persona_weights)
    for rec, _kind in _records(rng, sim, seed, malformed_fraction):
        yield rec


def ground_truth(
    customers: int,
    seed: int,
    scenario: str = "stationary",
    persona_weights: Mapping[str, float] | None = None,
) -> dict[str, str]:
    """``customer_id -> persona at the end`` of :func:`generate` with the same arguments (cheap)."""
    _check_args(customers, 1, scenario, 0.0, DEFAULT_START)
    rng = np.random.default_rng(seed)
    assigned = _assign(rng, customers, _weights(scenario, persona_weights))
    _phases_list, truth = _phases(rng, assigned, scenario)
    names = [p.name for p in _P]
    return {customer_id(i + 1): names[p] for i, p in enumerate(truth.tolist())}


def write_truth_csv(truth: Mapping[str, str], fileobj: IO[str]) -> None:
    """Write ``customer_id,persona`` rows (with a header, sorted by customer id) to a text file."""
    fileobj.write("customer_id,persona\n")
    for cid in sorted(truth):
        fileobj.write(f"{cid},{truth[cid]}\n")
