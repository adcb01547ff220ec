"""Segment names from their members: claims checked against the population, kept while they hold.

A name is a set of *claims* about a segment's customers. Each is measured on the members the
version's customer sample puts in the segment (their medians and shares, :func:`member_stats`)
and compared with the whole sample: "Promo-driven" says the members' median promo share is well
above the population's, not above an absolute 0.5 (on a grocery log where nearly every basket
carries a loyalty discount, nobody is promo-driven). Names describe behaviour only: recency,
tenure and decline are the lifecycle stage's, and nothing here reads them.

- Rules are checked in a fixed order (:data:`RULES`) and the first whose claims all hold names
  the segment. Returns come before value: a refund-heavy segment is "Frequent returners", never
  "High-value loyal".
- A claim enters at a strict threshold and holds down to a looser one. Opposite claims
  ("frequent" and "occasional", "promo-heavy" and "full-price") hold on disjoint ranges, so a
  name whose claims hold never contradicts itself.
- Stability (:class:`SegmentNamer`): a segment keeps its name while the name's claims hold. When
  they have failed ``rename_after`` versions running and one candidate name has been computed
  for as long, the segment is renamed and a ``renamed`` model event says so. A *refuted* name
  (value claimed for a refund-heavy segment, "no purchase" for members who mostly bought, a
  buyer's name for members who did not) is replaced at once.
- Twins: a segment whose name another live segment has gets a qualifier from a claim it holds
  and the other does not ("Promo-driven, app-first"), else a number ("Mainstream 2"). Display
  names are fixed when given, so one segment's rename never changes another's name.
- Names carry no money figures (a figure would change at every version or go stale). A rename's
  evidence, in its event's detail, shows money in the events' currency when exactly one was seen,
  and only as a ratio to the population otherwise.

>>> pop = {"n": 100.0, "buyers": 0.7, "rate": 1.0, "value": 40.0, "aov": 40.0, "promo": 0.2,
...        "refund": 0.0, "repeat": 0.6}
>>> name_of(dict(pop, rate=3.0, value=150.0, repeat=0.9), pop)
'High-value loyal'
>>> name_of(dict(pop, rate=3.0, value=150.0, repeat=0.9, refund=0.67), pop)
'Frequent returners'
>>> name_of(dict(pop, promo=0.9), dict(pop, promo=0.85))  # everybody's on promotion: says nothing
'Mainstream'
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from models.features.vector import NO_RHYTHM_DAYS
from models.segments.registry import ModelEvent

__all__ = [
    "CLAIMS",
    "OPPOSITES",
    "RULES",
    "Rule",
    "SegmentNamer",
    "group_stats",
    "member_stats",
    "name_of",
]

Stats = Mapping[str, float]

# Fewer sample members than this say nothing either way: a name is neither confirmed nor failed.
MIN_MEMBERS = 5
DEFAULT_RENAME_AFTER = 3

_CHANNELS = ("web", "app", "email", "store", "social")
_MIXES = ("browse", "cart", "engage", "support")
# Medians among the members who bought: a non-buyer's zeros would say "no spend", not "low".
_BUYER_MEDIANS = {
    "rate": "purchase_rate",
    "aov": "aov",
    "promo": "promo_share",
    "refund": "refund_rate",
    "abandon": "cart_abandonment",
}
# Medians among all members.
_ALL_MEDIANS = {
    **{f"share_{c}": f"share_{c}" for c in _CHANNELS},
    **{f"mix_{k}": f"mix_{k}" for k in _MIXES},
    "abandon_all": "cart_abandonment",
}


# -- statistics ----------------------------------------------------------------------------------


def member_stats(rows: np.ndarray, feature_names: Sequence[str]) -> dict[str, float]:
    """Statistics of a group of customers (raw feature rows, original units).

    ``n`` members; ``buyers``, the share who bought; among buyers, the medians ``rate`` (purchase
    days a month), ``aov``, ``value`` (purchase_rate x aov: spend a month), ``promo``,
    ``refund``, ``abandon``, and ``repeat``, the share who bought on two days or more; among all,
    the medians of the channel shares and interaction mix, ``abandon_all``, and the mean store
    share (``mean_share_store``: does the population use stores at all). A feature the rows do
    not have leaves its statistics out, and the claims that need them do not hold.
    """
    idx = {f: i for i, f in enumerate(feature_names)}
    n = len(rows)
    out: dict[str, float] = {"n": float(n)}
    if n == 0:
        return out
    if "purchases" in idx:
        bought = rows[:, idx["purchases"]] > 0
    elif "purchase_rate" in idx:
        bought = rows[:, idx["purchase_rate"]] > 0
    else:
        bought = np.zeros(n, dtype=bool)
    out["buyers"] = float(bought.mean())
    if bought.any():
        b = rows[bought]
        for key, f in _BUYER_MEDIANS.items():
            if f in idx:
                out[key] = float(np.median(b[:, idx[f]]))
        if "purchase_rate" in idx and "aov" in idx:
            out["value"] = float(np.median(b[:, idx["purchase_rate"]] * b[:, idx["aov"]]))
        if "purchase_gap_days" in idx:
            # A gap exists from the second purchase day on; before that it is the sentinel.
            out["repeat"] = float((b[:, idx["purchase_gap_days"]] < NO_RHYTHM_DAYS).mean())
    for key, f in _ALL_MEDIANS.items():
        if f in idx:
            out[key] = float(np.median(rows[:, idx[f]]))
    if "share_store" in idx:
        out["mean_share_store"] = float(rows[:, idx["share_store"]].mean())
    return out


def group_stats(
    rows: np.ndarray, segment_ids: np.ndarray, ids: Sequence[int], feature_names: Sequence[str]
) -> tuple[dict[int, dict[str, float]], dict[str, float]]:
    """:func:`member_stats` of each segment in ``ids`` (its rows: ``segment_ids == id``) and of all
    the rows (the population)."""
    rows = np.asarray(rows, dtype=np.float64).reshape(len(segment_ids), -1)
    seg = np.asarray(segment_ids)
    per = {int(sid): member_stats(rows[seg == sid], feature_names) for sid in ids}
    return per, member_stats(rows, feature_names)


# -- claims --------------------------------------------------------------------------------------


def _get(s: Stats, key: str) -> float:
    return float(s.get(key, math.nan))  # NaN fails every comparison: the claim does not hold


def _at_least(value: float, enter: float, hold: float, strict: bool) -> bool:
    return value >= (enter if strict else hold)


def _at_most(value: float, enter: float, hold: float, strict: bool) -> bool:
    return value <= (enter if strict else hold)


Test = Callable[[Stats, Stats, bool], bool]  # (members, population, strict: entering) -> holds


@dataclass(frozen=True)
class Claim:
    word: str  # as a qualifier ("Promo-driven, app-first")
    test: Test
    evidence: tuple[str, ...]  # the statistics that back it (a rename's detail shows them)


def _ratio(key: str, enter: float, hold: float, above: bool) -> Test:
    """Members' ``key`` at least (``above``) or at most ``enter`` times the population's."""

    def test(m: Stats, p: Stats, strict: bool) -> bool:
        ref = _get(p, key)
        if not ref > 0:
            return False
        x = _get(m, key) / ref
        return _at_least(x, enter, hold, strict) if above else _at_most(x, enter, hold, strict)

    return test


def _share_above(key: str, floor: float, margin: float, pop_key: str | None = None) -> Test:
    """Members' ``key`` (a share) at least ``floor`` and ``margin`` above the population's; both
    relax by a third of the margin (and 0.1 of the floor) to hold."""

    def test(m: Stats, p: Stats, strict: bool) -> bool:
        ref = _get(p, pop_key or key)
        x = _get(m, key)
        return _at_least(x, max(floor, ref + margin), max(floor - 0.1, ref + margin * 2 / 3), strict)

    return test


def _share_below(key: str, ceiling: float, margin: float) -> Test:
    """Members' ``key`` at most ``ceiling`` and ``margin`` below the population's."""

    def test(m: Stats, p: Stats, strict: bool) -> bool:
        ref = _get(p, key)
        x = _get(m, key)
        return _at_most(x, min(ceiling, ref - margin), min(ceiling + 0.05, ref - margin * 2 / 3), strict)

    return test


def _frequent(m: Stats, p: Stats, strict: bool) -> bool:
    # Relative to the population, and at least a purchase day every two months in any case.
    rate, ref = _get(m, "rate"), _get(p, "rate")
    return _at_least(rate, max(1.5 * ref, 0.5), max(1.25 * ref, 0.4), strict) and _at_least(
        _get(m, "repeat"), 0.5, 0.4, strict
    )


def _omnichannel(m: Stats, p: Stats, strict: bool) -> bool:
    used = sum(_at_least(_get(m, f"share_{c}"), 0.15, 0.1, strict) for c in _CHANNELS)
    return _at_least(_get(m, "share_store"), 0.25, 0.2, strict) and used >= 3


def _online(m: Stats, p: Stats, strict: bool) -> bool:
    # "Online" says something only where the population also shops in store.
    uses_stores = _get(p, "mean_share_store") >= 0.1
    return uses_stores and _at_most(_get(m, "share_store"), 0.05, 0.1, strict)


def _leading_mix(kind: str) -> Test:
    """The members' largest kind of interaction (to hold: within 0.1 of the largest)."""

    def test(m: Stats, p: Stats, strict: bool) -> bool:
        mine = _get(m, f"mix_{kind}")
        top = max((_get(m, f"mix_{k}") for k in _MIXES), default=math.nan)
        return mine > 0 and _at_least(mine, top, top - 0.1, strict)

    return test


CLAIMS: dict[str, Claim] = {
    "buyers": Claim("buyers", lambda m, p, s: _at_least(_get(m, "buyers"), 0.5, 0.4, s), ("buyers",)),
    "non_buyers": Claim(
        "mostly non-buyers", lambda m, p, s: _get(m, "buyers") < (0.5 if s else 0.6), ("buyers",)
    ),
    "no_purchase": Claim(
        "no purchase", lambda m, p, s: _at_most(_get(m, "buyers"), 0.2, 0.3, s), ("buyers",)
    ),
    "few_buyers": Claim("few buyers", lambda m, p, s: _get(m, "buyers") > (0.2 if s else 0.1), ("buyers",)),
    "refund_heavy": Claim("high returns", _share_above("refund", 0.3, 0.15), ("refund",)),
    "high_value": Claim("high-value", _ratio("value", 2.0, 1.6, above=True), ("value",)),
    "low_value": Claim("low-spend", _ratio("value", 0.5, 0.6, above=False), ("value",)),
    "big_basket": Claim("big-basket", _ratio("aov", 1.75, 1.5, above=True), ("aov",)),
    "small_basket": Claim("small-basket", _ratio("aov", 0.55, 0.65, above=False), ("aov",)),
    "frequent": Claim("frequent", _frequent, ("rate", "repeat")),
    "infrequent": Claim("occasional", _ratio("rate", 0.67, 0.8, above=False), ("rate",)),
    "repeat": Claim("repeat", _share_above("repeat", 0.7, 0.2), ("repeat",)),
    "one_off": Claim("one-time", _share_below("repeat", 0.2, 0.15), ("repeat",)),
    "promo_heavy": Claim("promo-heavy", _share_above("promo", 0.5, 0.25), ("promo",)),
    "full_price": Claim("full-price", _share_below("promo", 0.1, 0.15), ("promo",)),
    "cart_abandoning": Claim("cart-abandoning", _share_above("abandon", 0.5, 0.25), ("abandon",)),
    "carted": Claim(
        "cart-abandoning", lambda m, p, s: _at_least(_get(m, "abandon_all"), 0.5, 0.4, s), ("abandon_all",)
    ),
    "support_heavy": Claim("support-heavy", _share_above("mix_support", 0.1, 0.1), ("mix_support",)),
    "omnichannel": Claim("omnichannel", _omnichannel, tuple(f"share_{c}" for c in _CHANNELS)),
    "online": Claim("online", _online, ("share_store",)),
    "in_store": Claim("in-store", _share_above("share_store", 0.25, 0.15), ("share_store",)),
    "store_led": Claim("store-first", _share_above("share_store", 0.5, 0.15), ("share_store",)),
    "app_led": Claim("app-first", _share_above("share_app", 0.45, 0.15), ("share_app",)),
    "email_led": Claim("email-led", _share_above("share_email", 0.4, 0.15), ("share_email",)),
    "social_led": Claim("social-led", _share_above("share_social", 0.4, 0.15), ("share_social",)),
    "web_led": Claim("web-first", _share_above("share_web", 0.6, 0.15), ("share_web",)),
    "browse_led": Claim("browsing", _leading_mix("browse"), ("mix_browse",)),
    "engage_led": Claim("engaged", _leading_mix("engage"), ("mix_engage",)),
    "support_mix_led": Claim("support contacts", _leading_mix("support"), ("mix_support",)),
}

# Claims that cannot both be made of one segment (their ranges are disjoint; a test holds it).
OPPOSITES: tuple[tuple[str, str], ...] = (
    ("buyers", "non_buyers"),
    ("buyers", "no_purchase"),
    ("no_purchase", "few_buyers"),
    ("high_value", "low_value"),
    ("big_basket", "small_basket"),
    ("frequent", "infrequent"),
    ("frequent", "one_off"),
    ("repeat", "one_off"),
    ("promo_heavy", "full_price"),
    ("online", "in_store"),
    ("online", "store_led"),
    ("online", "omnichannel"),
    ("high_value", "refund_heavy"),
)
_OPPOSITE: dict[str, set[str]] = {}
for _a, _b in OPPOSITES:
    _OPPOSITE.setdefault(_a, set()).add(_b)
    _OPPOSITE.setdefault(_b, set()).add(_a)

# A name claiming the key is refuted at once (no waiting) when the value's claim enters.
REFUTED_BY: dict[str, str] = {
    "high_value": "refund_heavy",
    "no_purchase": "buyers",
    "buyers": "no_purchase",
}


def holds(claim: str, m: Stats, p: Stats, strict: bool = True) -> bool:
    return CLAIMS[claim].test(m, p, strict)


# -- rules ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    name: str
    claims: tuple[str, ...]
    unless: tuple[str, ...] = ()  # claims that must not enter (returns come before the rest)
    fallback: bool = False  # holds only while no other rule of its group does


def _buyer(name: str, *claims: str) -> Rule:
    return Rule(name, ("buyers", *claims), unless=("refund_heavy",))


def _non_buyer(name: str, *claims: str) -> tuple[Rule, Rule]:
    return (
        Rule(f"{name}, no purchase", ("non_buyers", "no_purchase", *claims), fallback=not claims),
        Rule(f"{name}, few buyers", ("non_buyers", "few_buyers", *claims), fallback=not claims),
    )


RULES: tuple[Rule, ...] = (
    *_non_buyer("Cart abandoners", "carted"),
    *_non_buyer("Email-responsive", "email_led"),
    *_non_buyer("Browsers", "browse_led"),
    *_non_buyer("Engaged", "engage_led"),
    *_non_buyer("Support contacts", "support_mix_led"),
    *_non_buyer("Visitors"),
    Rule("Frequent returners", ("buyers", "refund_heavy")),
    # Channel behaviour that defines a persona comes before value: a big spender who shops in
    # store and on three channels is store-centric first.
    _buyer("Store-centric omnichannel", "omnichannel"),
    _buyer("High-value loyal", "high_value", "frequent"),
    _buyer("Promo-driven occasional", "promo_heavy", "infrequent"),
    _buyer("Promo-driven", "promo_heavy"),
    _buyer("Cart abandoners", "cart_abandoning"),
    _buyer("Support-heavy", "support_heavy"),
    _buyer("Store shoppers", "store_led"),
    _buyer("Mobile-first", "app_led"),
    _buyer("Email-responsive", "email_led"),
    _buyer("Social-led", "social_led"),
    _buyer("Big spenders", "high_value"),
    _buyer("Frequent buyers", "frequent"),
    _buyer("One-time buyers", "one_off"),
    _buyer("Occasional buyers", "infrequent"),
    _buyer("Low spenders", "low_value"),
    Rule("Mainstream", ("buyers",), unless=("refund_heavy",), fallback=True),
)
_RULE_OF = {r.name: r for r in RULES}
# What a segment without members to judge by is called until it has them (it never holds).
UNPROFILED = Rule("Unprofiled", ("never",))
_GROUP = {r.name: "non_buyers" if "non_buyers" in r.claims else "buyers" for r in RULES}

# Qualifiers for twins, in the order they are tried.
QUALIFIERS = (
    "high_value",
    "low_value",
    "frequent",
    "infrequent",
    "big_basket",
    "small_basket",
    "repeat",
    "one_off",
    "promo_heavy",
    "full_price",
    "in_store",
    "online",
    "app_led",
    "email_led",
    "social_led",
    "web_led",
    "cart_abandoning",
    "support_heavy",
)


def _rule_holds(rule: Rule, m: Stats, p: Stats, strict: bool) -> bool:
    if any(c not in CLAIMS for c in rule.claims):
        return False
    if not all(holds(c, m, p, strict) for c in rule.claims):
        return False
    if any(holds(c, m, p, True) for c in rule.unless):
        return False
    if rule.fallback:  # "nothing stands out" stops holding once something does
        group = _GROUP[rule.name]
        return not any(
            _rule_holds(r, m, p, True) for r in RULES if not r.fallback and _GROUP[r.name] == group
        )
    return True


def candidate(m: Stats, p: Stats) -> Rule:
    """The first rule whose claims enter for members ``m`` against population ``p``."""
    if _get(m, "n") < 1:
        return UNPROFILED
    return next((r for r in RULES if _rule_holds(r, m, p, True)), UNPROFILED)


def name_of(m: Stats, p: Stats) -> str:
    """The name a segment with these member statistics would get now (no twins, no history)."""
    return candidate(m, p).name


# -- stable names --------------------------------------------------------------------------------


@dataclass
class _Entry:
    name: str  # as displayed (qualifier or number included)
    rule: str | None  # None: from a checkpoint of the centroid-named releases, never holds
    qualifier: str | None = None  # the claim key of its qualifier
    failing: int = 0  # versions running its claims have failed
    candidate: str | None = None  # the rule computed at those versions, and for how many running
    streak: int = 0

    def claims(self) -> tuple[str, ...]:
        rule = _RULE_OF.get(self.rule or "")
        return (*(rule.claims if rule else ()), *((self.qualifier,) if self.qualifier else ()))


class SegmentNamer:
    """Names that stay with their ids while they hold (see the module's docstring).

    >>> pop = {"n": 100.0, "buyers": 0.7, "rate": 1.0, "value": 40.0, "aov": 40.0, "promo": 0.2,
    ...        "refund": 0.0, "repeat": 0.6}
    >>> namer = SegmentNamer(rename_after=2)
    >>> promo = dict(pop, promo=0.9, rate=1.0)
    >>> namer.update({1: promo}, pop, 1, 0.0)[0]
    {1: 'Promo-driven'}
    >>> full = dict(pop, promo=0.0)
    >>> namer.update({1: full}, pop, 2, 0.0)  # one version is not a change
    ({1: 'Promo-driven'}, [])
    >>> names, events = namer.update({1: full}, pop, 3, 0.0)
    >>> names, [(e.kind, e.name, e.previous_name) for e in events]
    ({1: 'Mainstream'}, [('renamed', 'Mainstream', 'Promo-driven')])
    """

    def __init__(self, rename_after: int = DEFAULT_RENAME_AFTER) -> None:
        if rename_after < 1:
            raise ValueError("rename_after must be >= 1")
        self.rename_after = rename_after
        self._entries: dict[int, _Entry] = {}

    def __setstate__(self, state: dict[str, object]) -> None:
        if "base" in state:  # a checkpoint of the centroid-named releases: names to be re-judged
            base: dict[int, str] = state["base"]  # type: ignore[assignment]
            shown = _numbered(base)
            state = {
                "rename_after": DEFAULT_RENAME_AFTER,
                "_entries": {sid: _Entry(shown[sid], None) for sid in base},
            }
        self.__dict__.update(state)

    def names(self) -> dict[int, str]:
        return {sid: e.name for sid, e in sorted(self._entries.items())}

    def claims(self) -> dict[int, tuple[str, ...]]:
        """What each segment's name claims (keys of :data:`CLAIMS`)."""
        return {sid: e.claims() for sid, e in sorted(self._entries.items())}

    def update(
        self,
        stats: Mapping[int, Stats],
        population: Stats,
        version: int,
        event_time: float,
        currency: str | None = None,
    ) -> tuple[dict[int, str], list[ModelEvent]]:
        """The names of a version's segments (``stats``: each one's :func:`member_stats`) and
        the ``renamed`` events of the segments whose name changed."""
        for sid in [s for s in self._entries if s not in stats]:
            del self._entries[sid]  # a retired id (the engine keeps its last name)
        todo: list[tuple[int, str]] = []  # (id, why) to (re)name, in id order
        rules = {sid: candidate(stats[sid], population) for sid in stats}
        for sid in sorted(stats):
            entry = self._entries.get(sid)
            m = stats[sid]
            if entry is None:
                todo.append((sid, "new"))
                continue
            if _get(m, "n") < MIN_MEMBERS:
                continue  # too few members to judge: neither confirmed nor failed
            refuted = self._refuted(entry, m, population)
            if refuted is not None:
                todo.append((sid, f"refuted: {CLAIMS[refuted].word}"))
                continue
            if self._holds(entry, m, population):
                entry.failing, entry.candidate, entry.streak = 0, None, 0
                continue
            entry.failing += 1
            cand = rules[sid].name
            entry.streak = entry.streak + 1 if cand == entry.candidate else 1
            entry.candidate = cand
            n = self.rename_after
            # A candidate that keeps changing would leave a failed name in place for ever: after
            # twice the wait, the current candidate takes over.
            if (entry.failing >= n and entry.streak >= n) or entry.failing >= 2 * n:
                todo.append((sid, f"its claims failed {entry.failing} versions running"))
        events: list[ModelEvent] = []
        for sid, why in todo:
            old = self._entries.pop(sid, None)
            rule = rules[sid]
            name, qualifier = self._display(sid, rule, stats, population)
            self._entries[sid] = _Entry(name, rule.name if rule is not UNPROFILED else None, qualifier)
            if old is not None and old.name != name:
                detail = f"renamed {old.name!r} -> {name!r} ({why})"
                facts = evidence(self._entries[sid].claims(), stats[sid], population, currency)
                events.append(
                    ModelEvent(
                        "renamed",
                        version,
                        sid,
                        (),
                        f"{detail}: {facts}" if facts else detail,
                        event_time,
                        name=name,
                        previous_name=old.name,
                    )
                )
        return self.names(), events

    @staticmethod
    def _holds(entry: _Entry, m: Stats, p: Stats) -> bool:
        rule = _RULE_OF.get(entry.rule or "")
        if rule is None:
            return False
        if not _rule_holds(rule, m, p, strict=False):
            return False
        return entry.qualifier is None or holds(entry.qualifier, m, p, strict=False)

    @staticmethod
    def _refuted(entry: _Entry, m: Stats, p: Stats) -> str | None:
        for claim in entry.claims():
            against = REFUTED_BY.get(claim)
            if against is not None and holds(against, m, p, strict=True):
                return against
        return None

    def _display(self, sid: int, rule: Rule, stats: Mapping[int, Stats], p: Stats) -> tuple[str, str | None]:
        """The name shown for ``sid`` under ``rule``: the rule's name, with a qualifier (or a
        number) when a live segment already shows it."""
        taken = {e.name for s, e in self._entries.items() if s != sid}
        if rule.name not in taken:
            return rule.name, None
        twins = [s for s, e in self._entries.items() if s != sid and e.rule == rule.name and s in stats]
        m = stats[sid]
        mine = set(rule.claims)
        for q in QUALIFIERS:
            if q in mine or _OPPOSITE.get(q, set()) & mine or not holds(q, m, p, strict=True):
                continue
            if REFUTED_BY.get(q) is not None and holds(REFUTED_BY[q], m, p, strict=True):
                continue
            if any(holds(q, stats[t], p, strict=False) for t in twins):
                continue  # it would not tell them apart
            name = f"{rule.name}, {CLAIMS[q].word}"
            if name not in taken:
                return name, q
        k = 2
        while f"{rule.name} {k}" in taken:
            k += 1
        return f"{rule.name} {k}", None


def _numbered(base: Mapping[int, str]) -> dict[int, str]:
    """Duplicates numbered in id order ("Dormant", "Dormant 2"), as earlier releases showed them."""
    seen: dict[str, int] = {}
    out: dict[int, str] = {}
    for sid in sorted(base):
        b = base[sid]
        seen[b] = seen.get(b, 0) + 1
        out[sid] = b if seen[b] == 1 else f"{b} {seen[b]}"
    return out


# -- evidence ------------------------------------------------------------------------------------


def _money(x: float, currency: str | None) -> str:
    return f"{x:,.0f} {currency}"


def evidence(claims: Sequence[str], m: Stats, p: Stats, currency: str | None) -> str:
    """The members' figures behind ``claims``, against the population's. Money is shown in
    ``currency`` (the events' one currency); without one (none seen, or mixed), as a ratio."""
    parts: list[str] = []
    shown: set[str] = set()
    for claim in claims:
        for key in CLAIMS[claim].evidence if claim in CLAIMS else ():
            if key in shown or key not in m:
                continue
            shown.add(key)
            parts.append(_fact(key, _get(m, key), _get(p, key), currency))
    return "; ".join(parts)


_LABELS = {
    "buyers": "members who bought",
    "repeat": "buyers with two purchase days or more",
    "promo": "median promo share",
    "refund": "median refund rate",
    "abandon": "median cart abandonment",
    "abandon_all": "median cart abandonment",
    **{f"share_{c}": f"median {c} share" for c in _CHANNELS},
    **{f"mix_{k}": f"median {k} share of interactions" for k in _MIXES},
}


def _fact(key: str, x: float, ref: float, currency: str | None) -> str:
    if key in ("value", "aov"):
        what = "median spend a month" if key == "value" else "median order"
        if currency is not None:
            return f"{what} {_money(x, currency)} (population {_money(ref, currency)})"
        return f"{what} {x / ref:.1f}x the population's" if ref > 0 else what
    if key == "rate":
        return f"median {x:.2f} purchase days a month (population {ref:.2f})"
    label = _LABELS.get(key, f"median {key}")
    return f"{label} {x:.0%} (population {ref:.0%})"
