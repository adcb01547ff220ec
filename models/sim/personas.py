"""The planted personas and the generator's vocabulary: behaviour as data.

Each :class:`Persona` is a row of parameters (session rate, channel mix, funnel, basket, promo
response, hour-of-day profile, trend); adding a persona is adding a row to ``PERSONA_ORDER``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)
SCENARIOS = ("stationary", "gradual_drift", "sudden_shift", "new_persona", "persona_disappears")
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
