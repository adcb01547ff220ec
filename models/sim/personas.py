"""The planted personas and the generator's vocabulary: behaviour as data.

Each :class:`Persona` is a row of parameters (session rate, channel mix, funnel, basket, promo
response, hour-of-day profile, trend); adding a persona is adding a row to ``PERSONA_ORDER``.
The ``rhythm`` scenario's shoppers are :class:`RhythmPersona` rows of ``RHYTHM_PERSONA_ORDER``:
a purchase rhythm (period, gap spread, weekday) instead of a session rate.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)
SCENARIOS = ("stationary", "gradual_drift", "sudden_shift", "new_persona", "persona_disappears", "rhythm")
CURRENCY = "EUR"
CATEGORIES = ("electronics", "fashion", "home", "beauty", "grocery", "sports", "toys", "books")

# Codes used in the columnar simulation; the names are the wire values of models.contracts.
CHANNELS = ("web", "app", "email", "sms", "push", "social", "store", "ads", "call_center")
TYPES = (
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
CHANNEL_INDEX = {name: i for i, name in enumerate(CHANNELS)}
TYPE_INDEX = {name: i for i, name in enumerate(TYPES)}
SESSION_CHANNELS = np.array([CHANNEL_INDEX["web"], CHANNEL_INDEX["app"], CHANNEL_INDEX["store"]])
SUPPORT_CHANNELS = np.array([CHANNEL_INDEX["call_center"], CHANNEL_INDEX["email"], CHANNEL_INDEX["web"]])
SUPPORT_P = np.array([0.5, 0.2, 0.3])


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


PERSONA_ORDER: list[Persona] = [
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

PERSONAS: dict[str, Persona] = {p.name: p for p in PERSONA_ORDER}

DEFAULT_PERSONA_WEIGHTS: dict[str, float] = {
    "high_value_loyal": 0.15,
    "promo_driven_occasional": 0.25,
    "declining_engagement": 0.15,
    "new_customer": 0.12,
    "browser_no_purchase": 0.18,
    "store_centric_omnichannel": 0.15,
}
NEW_PERSONA_WEIGHT = 0.12  # share of mobile_impulse in the new_persona scenario if not given


@dataclass(frozen=True)
class RhythmPersona:
    """A grocery shopper's purchase rhythm (the ``rhythm`` scenario): trips, not sessions.

    A customer's trips are a renewal process: gamma gaps of median ``period_days`` (its own
    period, spread by ``period_sigma`` around the persona's) and shape ``gap_shape`` (coefficient
    of variation 1/sqrt(shape): 5-8 is a habit with slack, neither clockwork nor Poisson). The
    median, not the mean, so that a "weekly" shopper's typical gap is a week.
    """

    name: str
    description: str
    period_days: float  # median gap between trips
    gap_shape: float
    period_sigma: float  # lognormal sigma of a customer's own period around period_days
    weekday_anchor: float  # share of trips moved to the customer's own weekday (0: none)
    channels: tuple[float, float, float]  # store, web, app: share of trips
    amount_mean: float  # EUR, mean of the lognormal basket
    amount_sigma: float
    p_card: float  # share of customers with a loyalty card (a small discount on most baskets)
    loyalty_range: tuple[float, float]  # loyalty discount, fraction of the paid amount
    p_campaign: float  # share of baskets with a weekly campaign's discount
    campaign_range: tuple[float, float]
    p_repeat: float  # share of trips followed the same day by a second, small basket
    refund_prob: float  # per basket
    email_rate: float  # newsletter opens per day
    browse_rate: float  # app/web visits without a purchase per day

    def __post_init__(self) -> None:
        if not (self.period_days > 0 and self.gap_shape >= 1 and 0 <= self.weekday_anchor <= 1):
            raise ValueError("a rhythm needs a positive period, a gap shape >= 1 and an anchor in [0, 1]")
        if min(self.channels) <= 0 or abs(sum(self.channels) - 1) > 1e-9:
            raise ValueError("channel shares must be positive and sum to 1")


RHYTHM_PERSONA_ORDER: list[RhythmPersona] = [
    RhythmPersona(
        name="twice_weekly",
        description="Tops up twice a week in store, small baskets, loyalty card on nearly every one.",
        period_days=3.5,
        gap_shape=5.0,
        period_sigma=0.12,
        weekday_anchor=0.0,
        channels=(0.85, 0.03, 0.12),
        amount_mean=28.0,
        amount_sigma=0.5,
        p_card=0.95,
        loyalty_range=(0.02, 0.06),
        p_campaign=0.05,
        campaign_range=(0.10, 0.25),
        p_repeat=0.08,
        refund_prob=0.01,
        email_rate=0.04,
        browse_rate=0.015,
    ),
    RhythmPersona(
        name="weekly",
        description="The weekly big shop in store, mostly on its own weekday (often Friday or Saturday).",
        period_days=7.0,
        gap_shape=8.0,
        period_sigma=0.04,
        weekday_anchor=0.85,
        channels=(0.92, 0.03, 0.05),
        amount_mean=80.0,
        amount_sigma=0.45,
        p_card=0.9,
        loyalty_range=(0.02, 0.05),
        p_campaign=0.08,
        campaign_range=(0.10, 0.25),
        p_repeat=0.06,
        refund_prob=0.02,
        email_rate=0.05,
        browse_rate=0.01,
    ),
    RhythmPersona(
        name="fortnightly",
        description="Stocks up every two weeks, in store or online; campaigns more than the card.",
        period_days=14.0,
        gap_shape=6.0,
        period_sigma=0.10,
        weekday_anchor=0.0,
        channels=(0.65, 0.25, 0.10),
        amount_mean=125.0,
        amount_sigma=0.4,
        p_card=0.35,
        loyalty_range=(0.02, 0.05),
        p_campaign=0.30,
        campaign_range=(0.10, 0.25),
        p_repeat=0.05,
        refund_prob=0.03,
        email_rate=0.06,
        browse_rate=0.03,
    ),
    RhythmPersona(
        name="monthly",
        description="A monthly stock-up, often ordered online for delivery, large baskets.",
        period_days=30.4,
        gap_shape=8.0,
        period_sigma=0.08,
        weekday_anchor=0.0,
        channels=(0.45, 0.35, 0.20),
        amount_mean=175.0,
        amount_sigma=0.4,
        p_card=0.7,
        loyalty_range=(0.02, 0.05),
        p_campaign=0.12,
        campaign_range=(0.10, 0.25),
        p_repeat=0.04,
        refund_prob=0.03,
        email_rate=0.05,
        browse_rate=0.03,
    ),
]

RHYTHM_PERSONAS: dict[str, RhythmPersona] = {p.name: p for p in RHYTHM_PERSONA_ORDER}

DEFAULT_RHYTHM_WEIGHTS: dict[str, float] = {
    "twice_weekly": 0.25,
    "weekly": 0.35,
    "fortnightly": 0.20,
    "monthly": 0.20,
}
