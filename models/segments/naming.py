"""Human names for segments, from where the centroid sits relative to the population.

Rules are checked in a fixed priority order and the first that holds names the segment, so the
result is deterministic. Inputs are the centroid in raw units and its z-scores against the
population (a missing feature makes its rules not apply). Names are suggestions; ids are the
contract: a name once given stays with its id unless the computed name differs at two
consecutive versions (then the segment is renamed and a drift event says so).

>>> suggest_name({"purchases": 0.0, "browse_decayed": 9.0}, {"browse_decayed": 1.2})
'Browsers, no purchase'
>>> suggest_name({"purchases": 20.0, "recency_days": 5.0}, {"spend": 1.5, "purchases": 1.2})
'High-value loyal'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from models.segments.registry import ModelEvent
from models.segments.vectorize import Vectorizer

__all__ = ["SegmentNamer", "qualify_duplicates", "suggest_name"]

# Features that tell two segments of the same name apart, with words for above / below the others.
_QUALIFIERS: tuple[tuple[str, str, str], ...] = (
    ("spend", "higher spend", "lower spend"),
    ("purchases", "frequent", "infrequent"),
    ("recency_days", "lapsing", "recently active"),
    ("engagement_trend", "rising", "fading"),
    ("promo_share", "promo-heavy", "full-price"),
    ("share_app", "app-first", "less app"),
    ("share_store", "in-store", "online"),
    ("share_email", "email-responsive", "less email"),
    ("browse_decayed", "browsing more", "browsing less"),
)


# Qualifiers that also claim an absolute ("full-price"), with the raw range the claim needs and
# the comparative word used outside it: a segment with 61% of its orders on promotion is "less
# promo" than its 96% twin, not "full-price" (seen in the demo).
_ABSOLUTE: dict[str, tuple[str, float, float, str]] = {
    "full-price": ("promo_share", 0.0, 0.3, "less promo"),
    "promo-heavy": ("promo_share", 0.5, 1.0, "more promo"),
    "online": ("share_store", 0.0, 0.2, "less in-store"),
    "in-store": ("share_store", 0.3, 1.0, "more in-store"),
    "lower spend": ("purchases", 0.5, float("inf"), "no purchase"),
}


def _honest(word: str, raw: Mapping[str, float] | None) -> str:
    rule = _ABSOLUTE.get(word)
    if rule is None or raw is None or rule[0] not in raw:
        return word
    feature, lo, hi, comparative = rule
    return word if lo <= raw[feature] <= hi else comparative


def qualify_duplicates(
    names: Mapping[int, str],
    z: Mapping[int, Mapping[str, float]],
    raw: Mapping[int, Mapping[str, float]] | None = None,
) -> dict[int, str]:
    """Segments sharing a base name get a qualifier from the feature that sets each apart most
    from the others of that name ("Promo-driven occasional, app-first"); ids break ties. With
    the centroids in ``raw`` units, a word that claims an absolute ("full-price", "online") is
    used only where it is true, a comparative otherwise ("less promo")."""
    out = dict(names)
    groups: dict[str, list[int]] = {}
    for sid in sorted(names):
        groups.setdefault(names[sid], []).append(sid)
    for base, sids in groups.items():
        if len(sids) < 2:
            continue
        used: set[str] = set()
        for sid in sids:
            best: tuple[float, str] | None = None
            for feature, above, below in _QUALIFIERS:
                others = [z[o].get(feature, 0.0) for o in sids if o != sid]
                gap = z[sid].get(feature, 0.0) - sum(others) / len(others)
                word = _honest(above if gap > 0 else below, raw.get(sid) if raw is not None else None)
                if word not in used and (best is None or abs(gap) > best[0]):
                    best = (abs(gap), word)
            if best is not None:
                used.add(best[1])
                out[sid] = f"{base}, {best[1]}"
    return out


DORMANT_MIN_DAYS = 30.0  # no segment is "Dormant" whose typical customer was active this month


def suggest_name(raw: Mapping[str, float], z: Mapping[str, float]) -> str:
    """The name of a centroid: ``raw`` in original units, ``z`` as z-scores vs the population."""

    def r(name: str, default: float = float("nan")) -> float:
        return float(raw.get(name, default))

    def zz(name: str) -> float:
        return float(z.get(name, 0.0))

    purchases = r("purchases")
    recency = r("recency_days")
    tenure = r("tenure_days")
    trend = r("engagement_trend")
    if purchases < 0.5 and (zz("browse_decayed") > 0 or zz("cart_decayed") > 0):
        return "Browsers, no purchase"
    # Quiet against the population is not enough: the population's scale comes from the rows the
    # model learned (mostly taken at events, recency ~0), so a week's silence can score z > 1.
    if recency > 120 or (
        recency >= DORMANT_MIN_DAYS and zz("recency_days") > 1.0 and zz("engage_decayed") < -0.5
    ):
        return "Dormant"
    # "New" is relative: while the whole population is young (the first weeks of a log), nobody
    # is new compared with the others and behaviour names the segments instead.
    if (tenure < 30 and zz("tenure_days") < -0.5) or zz("tenure_days") < -1.25:
        return "New"
    if trend < 0.7:
        # Non-buyers whose browsing fades: "Declining engagement, lower spend" (seen in the demo)
        # said nothing of their never buying.
        return "Declining engagement" if purchases >= 0.5 else "Fading browsers, no purchase"
    shares = {k: r(k, 0.0) for k in ("share_web", "share_app", "share_email", "share_store", "share_social")}
    active = sum(1 for v in shares.values() if v >= 0.15)
    # Channel behaviour that defines a persona comes before value: a big spender who shops in
    # store and on three channels is store-centric first.
    if shares["share_store"] >= 0.3 and active >= 3 and purchases >= 1:
        return "Store-centric omnichannel"
    if zz("spend") > 0.75 and zz("purchases") > 0.5:
        return "High-value loyal"
    if r("promo_share") > 0.5 or zz("promo_share") > 1.0:
        return "Promo-driven occasional" if zz("purchases") <= 0.25 else "Promo-driven"
    if r("refund_rate") > 0.3 or zz("refund_rate") > 1.5:
        return "Frequent returners"
    if r("cart_abandonment") > 0.6 or zz("cart_abandonment") > 1.5:
        return "Cart abandoners"
    if zz("support_decayed") > 1.5:
        return "Support-heavy"
    if shares["share_store"] >= 0.5:
        return "Store shoppers"
    if shares["share_app"] >= 0.45:
        return "Mobile-first"
    if shares["share_email"] >= 0.4:
        return "Email-responsive"
    if shares["share_social"] >= 0.4:
        return "Social-led"
    if zz("spend") > 0.5:
        return "Big spenders"
    if zz("purchases") > 0.25:
        return "Regulars"
    if zz("purchases") < -0.25:
        return "Occasional"
    return "Mainstream"


class SegmentNamer:
    """Keeps names sticky to ids, adds suffixes to duplicates, reports renames as drift."""

    def __init__(self) -> None:
        self.base: dict[int, str] = {}
        self._pending: dict[int, str] = {}

    def update(
        self,
        suggestions: Mapping[int, str],
        version: int,
        event_time: float,
    ) -> tuple[dict[int, str], list[ModelEvent]]:
        events: list[ModelEvent] = []
        for sid in sorted(suggestions):
            new = suggestions[sid]
            old = self.base.get(sid)
            if old is None:
                self.base[sid] = new
            elif new == old:
                self._pending.pop(sid, None)
            elif self._pending.get(sid) == new:
                self.base[sid] = new
                del self._pending[sid]
                events.append(
                    ModelEvent("drift", version, sid, (), f"renamed {old!r} -> {new!r}", event_time)
                )
            else:
                self._pending[sid] = new
        for sid in list(self.base):
            if sid not in suggestions:
                del self.base[sid]
                self._pending.pop(sid, None)
        return self.names(), events

    def names(self) -> dict[int, str]:
        """Display names: duplicates get a suffix in id order ("Dormant", "Dormant 2")."""
        seen: dict[str, int] = {}
        out: dict[int, str] = {}
        for sid in sorted(self.base):
            b = self.base[sid]
            seen[b] = seen.get(b, 0) + 1
            out[sid] = b if seen[b] == 1 else f"{b} {seen[b]}"
        return out


def suggest_names(
    ids: np.ndarray, centroids: np.ndarray, vectorizer: Vectorizer, feature_names: Sequence[str]
) -> dict[int, str]:
    """A name for each segment of a version, from where its centroid sits against the population
    (standardised) and in original units; segments sharing a name get qualifiers."""
    raw_c = vectorizer.inverse(centroids)
    z = vectorizer.standardised(centroids)
    out = {}
    zs: dict[int, dict[str, float]] = {}
    raws: dict[int, dict[str, float]] = {}
    for i, sid in enumerate(ids.tolist()):
        zs[sid] = dict(zip(feature_names, z[i].tolist(), strict=True))
        raws[sid] = dict(zip(feature_names, raw_c[i].tolist(), strict=True))
        out[sid] = suggest_name(raws[sid], zs[sid])
    return qualify_duplicates(out, zs, raws)
