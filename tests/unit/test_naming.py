"""Segment names: claims checked on members against the population, kept while they hold, renamed
with a `renamed` event (models/segments/naming.py). Statistics are synthetic member statistics
(what member_stats computes from the customer sample), except where rows are the point."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.features import FEATURE_INDEX, FEATURE_NAMES
from models.segments.engine import SegmentEngine
from models.segments.naming import (
    CLAIMS,
    OPPOSITES,
    RULES,
    SegmentNamer,
    holds,
    member_stats,
    name_of,
)
from models.segments.registry import ModelEvent
from tests.helpers import mechanics_params

# A population of buyers and browsers: the reference every claim is measured against.
POP: dict[str, float] = {
    "n": 2000.0,
    "buyers": 0.7,
    "rate": 1.2,
    "aov": 40.0,
    "value": 45.0,
    "promo": 0.2,
    "refund": 0.0,
    "abandon": 0.2,
    "abandon_all": 0.2,
    "repeat": 0.6,
    "share_web": 0.45,
    "share_app": 0.25,
    "share_email": 0.1,
    "share_store": 0.0,
    "share_social": 0.05,
    "mean_share_store": 0.12,
    "mix_browse": 0.55,
    "mix_cart": 0.1,
    "mix_engage": 0.3,
    "mix_support": 0.0,
}
MAINSTREAM = dict(POP, n=300.0, buyers=1.0)
LOYAL = dict(MAINSTREAM, rate=3.3, value=230.0, aov=70.0, repeat=0.95)
LIFECYCLE_WORDS = ("lapsing", "recently active", "declining", "dormant", "new", "fading", "rising")


# -- claims against members and population -----------------------------------------------------


def test_a_refund_heavy_segment_is_named_for_returns_never_high_value_loyal() -> None:
    """The unseen-persona report: 0.67 refund rate named "High-value loyal"."""
    assert name_of(LOYAL, POP) == "High-value loyal"
    returners = dict(LOYAL, refund=0.67)
    assert name_of(returners, POP) == "Frequent returners"
    # ...and a segment named for value is renamed at once when its members turn refund-heavy.
    namer = SegmentNamer(rename_after=3)
    assert namer.update({1: LOYAL}, POP, 1, 0.0)[0] == {1: "High-value loyal"}
    names, events = namer.update({1: returners}, POP, 2, 0.0)
    assert names == {1: "Frequent returners"}
    assert [(e.kind, e.previous_name, e.name) for e in events] == [
        ("renamed", "High-value loyal", "Frequent returners")
    ]
    assert "refund rate 67%" in events[0].detail
    # A twin of a refund-heavy segment is never told apart by "high-value" either.
    names, _ = namer.update({1: returners, 2: dict(returners, value=300.0, rate=0.4)}, POP, 3, 0.0)
    assert "high-value" not in names[2] and "loyal" not in names[2]


def test_promo_heavy_only_above_the_population() -> None:
    """The grocery report: "Promo-driven" where nearly every basket carries a discount."""
    promo = dict(MAINSTREAM, promo=0.9)
    assert name_of(promo, POP) == "Promo-driven"
    grocery = dict(POP, promo=0.85)
    assert name_of(promo, grocery) == "Mainstream"
    assert not holds("promo_heavy", dict(MAINSTREAM, promo=1.0), grocery)
    # Well above a population that barely uses promotions, even if under half of the orders.
    assert name_of(dict(MAINSTREAM, promo=0.5), dict(POP, promo=0.05)) == "Promo-driven"
    assert name_of(dict(MAINSTREAM, promo=0.35), dict(POP, promo=0.05)) != "Promo-driven"
    # Nor is a twin told apart as "promo-heavy" there.
    namer = SegmentNamer()
    names, _ = namer.update({1: dict(MAINSTREAM, promo=0.9), 2: dict(MAINSTREAM, promo=1.0)}, grocery, 1, 0.0)
    assert not any("romo" in n for n in names.values())


def test_value_frequency_and_channels_come_from_the_members() -> None:
    assert name_of(dict(MAINSTREAM, value=200.0, rate=0.9), POP) == "Big spenders"
    assert name_of(dict(MAINSTREAM, rate=3.0, repeat=0.9), POP) == "Frequent buyers"
    assert name_of(dict(MAINSTREAM, rate=0.5), POP) == "Occasional buyers"
    assert name_of(dict(MAINSTREAM, repeat=0.05), POP) == "One-time buyers"
    assert name_of(dict(MAINSTREAM, share_app=0.75), POP) == "Mobile-first"
    assert name_of(dict(MAINSTREAM, share_store=0.7, share_web=0.2, share_app=0.1), POP) == "Store shoppers"
    omni = dict(MAINSTREAM, share_store=0.35, share_web=0.3, share_app=0.2)
    assert name_of(dict(omni, value=300.0, rate=3.0, repeat=0.9), POP) == "Store-centric omnichannel"
    # "Frequent" is relative and needs repeat buyers: one purchase each is not a habit.
    assert name_of(dict(MAINSTREAM, rate=3.0, repeat=0.1), POP) != "Frequent buyers"
    # A channel everybody uses says nothing (CDNOW: every purchase on the web).
    web = dict(POP, share_web=1.0)
    assert name_of(dict(MAINSTREAM, share_web=1.0), web) == "Mainstream"


def test_browsers_no_purchase_only_when_the_members_did_not_buy() -> None:
    browsers = dict(POP, n=200.0, buyers=0.05, mix_browse=0.8, mix_engage=0.1)
    assert name_of(browsers, POP) == "Browsers, no purchase"
    assert name_of(dict(browsers, buyers=0.35), POP) == "Browsers, few buyers"
    assert not name_of(dict(browsers, buyers=0.8), POP).endswith(("no purchase", "few buyers"))
    # A "no purchase" name is refuted at once when most members buy.
    namer = SegmentNamer(rename_after=5)
    namer.update({3: browsers}, POP, 1, 0.0)
    names, events = namer.update({3: dict(browsers, buyers=0.8)}, POP, 2, 0.0)
    assert not names[3].endswith("no purchase") and [e.kind for e in events] == ["renamed"]


def test_names_describe_behaviour_not_lifecycle_phase() -> None:
    """Recency, tenure and trend belong to the lifecycle stage: statistics never read them."""
    rng = np.random.default_rng(0)
    rows = np.abs(rng.normal(1.0, 1.0, (300, len(FEATURE_NAMES))))
    before = member_stats(rows, FEATURE_NAMES)
    for f in ("recency_days", "recency_purchase_days", "tenure_days", "engagement_trend"):
        rows[:, FEATURE_INDEX[f]] = rng.uniform(0, 700, len(rows))
    assert member_stats(rows, FEATURE_NAMES) == before
    assert not any(w in r.name.lower() for r in RULES for w in LIFECYCLE_WORDS)
    assert not any(w in c.word for c in CLAIMS.values() for w in LIFECYCLE_WORDS)


def test_member_statistics_are_medians_and_shares_of_the_members() -> None:
    cols = {f: i for i, f in enumerate(FEATURE_NAMES)}
    rows = np.zeros((5, len(FEATURE_NAMES)))
    rows[:, cols["purchases"]] = [0, 1, 4, 9, 12]
    rows[:, cols["purchase_rate"]] = [0, 1, 2, 3, 4]
    rows[:, cols["aov"]] = [0, 10, 20, 30, 40]
    rows[:, cols["purchase_gap_days"]] = [365, 365, 7, 7, 3]
    rows[:, cols["promo_share"]] = [0, 1, 1, 0, 1]
    s = member_stats(rows, FEATURE_NAMES)
    assert s["n"] == 5 and s["buyers"] == 0.8
    # Among the four buyers: a non-buyer's zeros are not "low spend".
    assert s["rate"] == 2.5 and s["aov"] == 25.0 and s["value"] == 65.0  # median of 10, 40, 90, 160
    assert s["repeat"] == 0.75 and s["promo"] == 1.0
    assert member_stats(rows[:0], FEATURE_NAMES) == {"n": 0.0}


# -- no contradictions -------------------------------------------------------------------------

_STAT = st.floats(0.0, 1.0)


@st.composite
def member_statistics(draw: st.DrawFn) -> dict[str, float]:
    return {
        "n": 50.0,
        "buyers": draw(_STAT),
        "rate": draw(st.floats(0.0, 8.0)),
        "aov": draw(st.floats(0.0, 200.0)),
        "value": draw(st.floats(0.0, 600.0)),
        "promo": draw(_STAT),
        "refund": draw(_STAT),
        "abandon": draw(_STAT),
        "abandon_all": draw(_STAT),
        "repeat": draw(_STAT),
        "mean_share_store": draw(_STAT),
        **{k: draw(_STAT) for k in POP if k.startswith(("share_", "mix_"))},
    }


# Pairs that are exclusive by rule (a name takes one side), not by the claims' ranges.
_BY_RULE = {("buyers", "non_buyers"), ("no_purchase", "few_buyers"), ("high_value", "refund_heavy")}


@settings(max_examples=300, deadline=None)
@given(member_statistics(), member_statistics())
def test_opposite_claims_never_hold_together(m: dict[str, float], p: dict[str, float]) -> None:
    """Even at their looser holding thresholds, so a kept name cannot contradict itself."""
    for a, b in OPPOSITES:
        if (a, b) in _BY_RULE:
            continue
        assert not (holds(a, m, p, strict=False) and holds(b, m, p, strict=False)), (a, b)


@settings(max_examples=100, deadline=None)
@given(st.lists(member_statistics(), min_size=2, max_size=6), member_statistics())
def test_no_name_makes_contradictory_or_untrue_claims(
    segments: list[dict[str, float]], p: dict[str, float]
) -> None:
    namer = SegmentNamer(rename_after=1)
    # Twins on purpose: every segment twice, so that qualifiers are needed.
    stats = {i: m for i, m in enumerate(segments + segments)}
    for version in (1, 2):
        names, _ = namer.update(stats, p, version, 0.0)
        assert len(set(names.values())) == len(names)  # no two segments share a name
        for sid, claimed in namer.claims().items():
            claims, name = set(claimed), names[sid]
            assert not any({a, b} <= claims for a, b in OPPOSITES), name
            assert all(holds(c, stats[sid], p, strict=False) for c in claims), name
            if "high_value" in claims:
                assert not holds("refund_heavy", stats[sid], p), name


def test_twins_get_a_qualifier_that_tells_them_apart_else_a_number() -> None:
    namer = SegmentNamer()
    app = dict(MAINSTREAM, promo=0.9, share_app=0.7)
    names, _ = namer.update(
        {1: dict(MAINSTREAM, promo=0.9), 2: app, 3: dict(MAINSTREAM, promo=0.9)}, POP, 1, 0.0
    )
    assert names == {1: "Promo-driven", 2: "Promo-driven, app-first", 3: "Promo-driven 2"}
    # One twin's rename does not renumber the others: display names stay with their ids.
    names, _ = namer.update({2: app, 3: dict(MAINSTREAM, promo=0.9)}, POP, 2, 0.0)
    assert names == {2: "Promo-driven, app-first", 3: "Promo-driven 2"}


# -- currency ----------------------------------------------------------------------------------


def _rename_to_loyal(currency: str | None) -> ModelEvent:
    namer = SegmentNamer(rename_after=1)
    namer.update({1: MAINSTREAM}, POP, 1, 0.0)
    _, events = namer.update({1: LOYAL}, POP, 2, 0.0, currency)
    assert [e.name for e in events] == ["High-value loyal"]
    return events[0]


def test_money_in_a_renames_evidence_shows_the_events_currency() -> None:
    assert "median spend a month 230 EUR (population 45 EUR)" in _rename_to_loyal("EUR").detail
    # Unknown or mixed: no money figure and no currency, a ratio to the population instead.
    detail = _rename_to_loyal(None).detail
    assert "median spend a month 5.1x the population's" in detail
    assert "EUR" not in detail and "230" not in detail
    # Names themselves carry no money figures.
    assert not any(ch.isdigit() for r in RULES for ch in r.name)


def test_the_engine_knows_one_currency_and_calls_two_mixed() -> None:
    e = SegmentEngine(mechanics_params())
    assert e.currency is None
    e.note_currencies({"EUR"})
    e.note_currencies(set())
    assert e.currency == "EUR"
    assert SegmentEngine.restore(e.snapshot()).currency == "EUR"
    e.note_currencies({"USD"})
    assert e.currency is None and e.currencies == frozenset({"EUR", "USD"})


# -- stability ---------------------------------------------------------------------------------


def test_a_name_changes_only_after_its_claims_failed_for_n_versions() -> None:
    namer = SegmentNamer(rename_after=3)
    promo, plain = dict(MAINSTREAM, promo=0.9), dict(MAINSTREAM, promo=0.2)
    assert namer.update({7: promo}, POP, 1, 0.0)[0] == {7: "Promo-driven"}
    # Two versions where the claim fails, then it holds again: no rename, the count restarts.
    for v, m in ((2, plain), (3, plain), (4, promo), (5, plain), (6, plain)):
        names, events = namer.update({7: m}, POP, v, 10.0 * v)
        assert names == {7: "Promo-driven"} and events == []
    # Between the entry and holding thresholds the claim still holds: no count.
    assert namer.update({7: dict(MAINSTREAM, promo=0.4)}, POP, 7, 70.0) == ({7: "Promo-driven"}, [])
    for v in (8, 9):
        assert namer.update({7: plain}, POP, v, 10.0 * v) == ({7: "Promo-driven"}, [])
    names, events = namer.update({7: plain}, POP, 10, 100.0)
    assert names == {7: "Mainstream"}
    assert events == [
        ModelEvent(
            "renamed",
            10,
            7,
            (),
            events[0].detail,
            100.0,
            name="Mainstream",
            previous_name="Promo-driven",
        )
    ]
    assert events[0].detail.startswith("renamed 'Promo-driven' -> 'Mainstream' (its claims failed 3 versions")


def test_a_name_that_still_holds_is_kept_when_another_would_now_rank_first() -> None:
    namer = SegmentNamer(rename_after=1)
    big = dict(MAINSTREAM, value=200.0, rate=0.9)
    assert namer.update({1: big}, POP, 1, 0.0)[0] == {1: "Big spenders"}
    for v in range(2, 6):  # now frequent too: "High-value loyal" ranks first, "Big spenders" holds
        assert namer.update({1: LOYAL}, POP, v, 0.0) == ({1: "Big spenders"}, [])


def test_a_candidate_that_keeps_changing_takes_over_after_twice_the_wait() -> None:
    namer = SegmentNamer(rename_after=3)
    namer.update({1: dict(MAINSTREAM, promo=0.9)}, POP, 1, 0.0)
    a, b = dict(MAINSTREAM, share_app=0.75), dict(MAINSTREAM, share_email=0.7)
    kinds = [namer.update({1: m}, POP, v, 0.0)[1] for v, m in zip(range(2, 8), [a, b] * 3, strict=True)]
    assert [len(k) for k in kinds] == [0, 0, 0, 0, 0, 1]
    assert kinds[-1][0].name == "Email-responsive"


def test_too_few_members_neither_confirm_nor_fail_a_name() -> None:
    namer = SegmentNamer(rename_after=1)
    namer.update({1: dict(MAINSTREAM, promo=0.9)}, POP, 1, 0.0)
    assert namer.update({1: dict(MAINSTREAM, promo=0.0, n=3.0)}, POP, 2, 0.0) == ({1: "Promo-driven"}, [])


def test_names_of_an_older_checkpoint_are_judged_again() -> None:
    """Checkpoints of the centroid-named releases hold `base` and `_pending`: their names stay
    until the members give a candidate, then are renamed (with an event)."""
    namer = SegmentNamer.__new__(SegmentNamer)
    namer.__setstate__({"base": {1: "Dormant", 2: "Dormant", 3: "New"}, "_pending": {}})
    assert namer.names() == {1: "Dormant", 2: "Dormant 2", 3: "New"}
    events: list[ModelEvent] = []
    for v in (1, 2, 3):
        events += namer.update({1: MAINSTREAM, 2: LOYAL, 3: dict(MAINSTREAM, promo=0.9)}, POP, v, 0.0)[1]
    assert namer.names() == {1: "Mainstream", 2: "High-value loyal", 3: "Promo-driven"}
    assert sorted(e.previous_name or "" for e in events) == ["Dormant", "Dormant 2", "New"]


@pytest.mark.parametrize("bad", [0, -1])
def test_rename_after_is_at_least_one(bad: int) -> None:
    with pytest.raises(ValueError, match="rename_after"):
        SegmentNamer(rename_after=bad)
    with pytest.raises(ValueError, match="rename_versions"):
        mechanics_params(rename_versions=bad)
