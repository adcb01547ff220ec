"""The feature table: one row per feature, the one place a feature is described.

Every other place derives from it: the feature vector's order (:data:`FEATURE_NAMES`), the
units the CLI and the docs print, the labels and number formats of explanations, how the
vectoriser shapes each feature before standardising it (``log1p`` for heavy tails, a clip range
for bounded ones), and the columns of ``segstream segments``. What a feature is computed from is
:func:`models.features.vector.evaluate_many`, which fills the columns by name.

Adding a feature: a row here and its column in ``evaluate_many`` (and, if it needs a new
decayed sum, a name in ``models.features.state.DECAYED``: the packed state and the batch columns
follow that tuple).

>>> FEATURES[0].name, FEATURE_INDEX["spend"], "spend" in LOG_FEATURES
('recency_purchase_days', 4, True)
>>> CLIP_RANGES["share_web"], FEATURE_UNITS["aov"]
((0.0, 1.0), 'average order value (net spend / purchases)')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

__all__ = [
    "CLIP_RANGES",
    "DEFAULT_WEIGHTS",
    "FEATURES",
    "FEATURE_INDEX",
    "FEATURE_NAMES",
    "FEATURE_UNITS",
    "LOG_FEATURES",
    "Feature",
    "feature_label",
    "format_value",
]

Kind = Literal["days", "count", "money", "share", "ratio"]


@dataclass(frozen=True)
class Feature:
    name: str
    unit: str  # what it measures, in its unit (CLI, docs)
    label: str  # how explanations name it
    kind: Kind  # how a value is written (format_value)
    # The shaping before standardisation: "log1p" for heavy-tailed non-negative values, else the
    # range the value is clipped into.
    shape: Literal["log1p"] | tuple[float, float]
    column: str | None = None  # its heading in `segstream segments` (None: not shown)
    # How much it counts in the segments' distances, after standardisation (model.feature_weights
    # overrides). 0: it describes where a customer is in its cycle or grows without bound
    # (recency, tenure, lifetime totals, short-half-life rates): the lifecycle stage and RFM
    # read those, the clustering does not (segments describe who the customer is).
    weight: float = 1.0


_SHARE = (0.0, 1.0)

FEATURES: Final[tuple[Feature, ...]] = (
    Feature(
        "recency_purchase_days",
        "days since the last purchase (730 = never)",
        "days since last purchase",
        "days",
        "log1p",
        weight=0.0,
    ),
    Feature(
        "recency_days", "days since the last interaction of any kind", "recency", "days", "log1p", weight=0.0
    ),
    Feature("tenure_days", "days since the first interaction", "tenure", "days", "log1p", weight=0.0),
    Feature("purchases", "lifetime purchase count", "purchases", "count", "log1p", weight=0.0),
    Feature(
        "spend", "lifetime spend net of refunds, in the event currency", "spend", "money", "log1p", weight=0.0
    ),
    Feature(
        "purchases_decayed",
        "purchases, exponentially decayed (monetary half-life)",
        "recent purchases",
        "count",
        "log1p",
    ),
    Feature(
        "spend_decayed",
        "net spend, exponentially decayed (monetary half-life)",
        "spend (decayed)",
        "money",
        "log1p",
        "spend 90d",
    ),
    Feature(
        "aov", "average order value (net spend / purchases)", "average order value", "money", "log1p", "aov"
    ),
    Feature(
        "share_web",
        "share of recent interactions on the web (channel half-life)",
        "share web",
        "share",
        _SHARE,
    ),
    Feature("share_app", "share on app and push", "share app", "share", _SHARE),
    Feature("share_email", "share on email and sms", "share email", "share", _SHARE),
    Feature("share_store", "share in store", "share store", "share", _SHARE),
    Feature("share_social", "share on social", "share social", "share", _SHARE),
    Feature("share_other", "share on ads, call centre and others", "share other", "share", _SHARE),
    Feature(
        "browse_decayed",
        "page/product views, searches, store visits (channel half-life)",
        "browsing",
        "count",
        "log1p",
        weight=0.0,
    ),
    Feature(
        "cart_decayed",
        "add-to-cart and checkout events (channel half-life)",
        "cart activity",
        "count",
        "log1p",
        weight=0.0,
    ),
    Feature(
        "engage_decayed",
        "email/push/app/social/ad engagement (channel half-life)",
        "engagement",
        "count",
        "log1p",
        weight=0.0,
    ),
    Feature(
        "support_decayed",
        "support contacts (channel half-life)",
        "support contacts",
        "count",
        "log1p",
        weight=0.0,
    ),
    Feature(
        "promo_share",
        "share of purchases with a campaign or discount",
        "promo share",
        "share",
        _SHARE,
        "promo",
    ),
    Feature("refund_rate", "refunds per purchase (capped at 1)", "refund rate", "share", _SHARE, "refunds"),
    Feature(
        "cart_abandonment",
        "share of add-to-carts not followed by a purchase",
        "cart abandonment",
        "share",
        _SHARE,
    ),
    Feature(
        "engagement_trend",
        "short over long half-life activity rate: 1 steady, <1 fading, >1 rising",
        "engagement trend",
        "ratio",
        (0.0, 5.0),
        weight=0.0,
    ),
    Feature(
        "purchase_gap_days",
        "typical days between purchase days: the median of the newest gaps (365: no repeat yet)",
        "days between purchases",
        "days",
        "log1p",
        "gap d",
    ),
    Feature(
        "purchase_regularity",
        "spread of those gaps: standard deviation over mean (0: like clockwork)",
        "purchase irregularity",
        "ratio",
        (0.0, 3.0),
    ),
    Feature(
        "visit_gap_days",
        "typical days between active days (365: active on one day only)",
        "days between visits",
        "days",
        "log1p",
    ),
    Feature(
        "purchase_rate",
        "purchase days per 30 days since the first purchase",
        "purchases a month",
        "count",
        "log1p",
        "buys/mo",
    ),
    Feature(
        "purchase_days",
        "distinct days with a purchase (the Buy-Till-You-Die model's frequency is this minus 1)",
        "purchase days",
        "count",
        "log1p",
        weight=0.0,
    ),
    Feature(
        "purchase_span_days",
        "days from the first purchase to the newest",
        "buying span",
        "days",
        "log1p",
        weight=0.0,
    ),
    Feature(
        "buyer_age_days", "days since the first purchase (0: none)", "buyer age", "days", "log1p", weight=0.0
    ),
    Feature(
        "mix_browse", "share of recent interactions that are browsing", "browsing share", "share", _SHARE
    ),
    Feature("mix_cart", "share that are cart activity", "cart share", "share", _SHARE),
    Feature(
        "mix_engage",
        "share that are engagement (email, push, app, social, ads)",
        "engagement share",
        "share",
        _SHARE,
    ),
    Feature("mix_support", "share that are support contacts", "support share", "share", _SHARE),
)

FEATURE_NAMES: Final = tuple(f.name for f in FEATURES)
FEATURE_INDEX: Final = {name: i for i, name in enumerate(FEATURE_NAMES)}
FEATURE_UNITS: Final = {f.name: f.unit for f in FEATURES}
LOG_FEATURES: Final = frozenset(f.name for f in FEATURES if f.shape == "log1p")
DEFAULT_WEIGHTS: Final = {f.name: f.weight for f in FEATURES}
CLIP_RANGES: Final = {f.name: f.shape for f in FEATURES if isinstance(f.shape, tuple)}
_BY_NAME: Final = {f.name: f for f in FEATURES}


def feature_label(name: str) -> str:
    """How explanations name a feature (its name with spaces if it is not in the table)."""
    f = _BY_NAME.get(name)
    return f.label if f is not None else name.replace("_", " ")


def format_value(name: str, value: float, unit: bool = True) -> str:
    """A feature value in its unit: "18 days", "1,240", "35%", "0.72", "3.0" (``unit=False``:
    "18" for days, as a table column headed in days writes it).

    >>> format_value("recency_days", 18.2), format_value("spend", 1240.4), format_value("share_web", 0.35)
    ('18 days', '1,240', '35%')
    """
    f = _BY_NAME.get(name)
    kind = f.kind if f is not None else "share"
    if kind == "days":
        return f"{value:.0f} days" if unit else f"{value:.0f}"
    if kind == "money":  # never negative (net spend is floored at 0); no "-0" from rounding
        return f"{max(value, 0.0):,.0f}"
    if kind == "share":
        return f"{max(value, 0.0):.0%}"
    return f"{value:.2f}" if kind == "ratio" else f"{max(value, 0.0):.1f}"
