"""`segstream report` without servers: membership rebuilt from changes, the segment cards, the
map and tree, and a rendered page that fetches nothing (stream/ops/report). The browser test is
tests/integration/test_report.py."""

from __future__ import annotations

import re

import numpy as np
import pytest

from models.contracts import InteractionEvent
from models.features import FEATURE_NAMES, CustomerState, FeatureParams, apply_event, evaluate, fact_of
from models.segments.engine import EngineParams, SegmentEngine
from models.sim import generate
from stream.ops.report import page
from stream.ops.report.build import render, window_start
from stream.ops.report.gather import Change, ModelChange, Population, ReportInputs, decode_changes
from stream.ops.report.segments import Card, cards, sample_rows, tree
from stream.ops.report.timeline import ERASED, NEW, rebuild, renames

DAY = 86400.0


def ch(customer: str, seq: int, day: float, prev: int | None, cur: int | None, why: str = "") -> Change:
    return Change(customer, seq, day * DAY, prev, cur, f"seg {cur}" if cur is not None else "", "event", why)


def test_membership_is_rebuilt_per_day_from_previous_and_current() -> None:
    changes = [
        ch("a", 1, 0.1, None, 1),
        ch("b", 1, 0.2, None, 1),
        ch("c", 1, 0.3, None, 2),
        ch("a", 2, 3.5, 1, 2),
        ch("b", 2, 4.5, 1, None),  # erased
        ch("d", 1, 4.6, None, 2),
    ]
    t = rebuild(reversed(changes), window_start=2 * DAY)  # input order does not matter
    assert t.days == ["1970-01-01", "1970-01-02", "1970-01-03", "1970-01-04", "1970-01-05"]
    assert t.sizes == {1: [2, 2, 2, 1, 0], 2: [1, 1, 1, 2, 3]}
    # Window [day 2, day 4.6]: a moved 1 -> 2, b was erased, c stayed, d is new.
    assert t.flows == {(1, 2): 1, (1, ERASED): 1, (2, 2): 1, (NEW, 2): 1}
    assert t.entered == {2: 2} and t.exited == {1: 2}
    vol = t.volatility()
    assert vol[1] == pytest.approx(2 / t.mean_size(1) / (t.window_days / 7))
    assert t.names == {1: [(0.1 * DAY, "seg 1")], 2: [(0.3 * DAY, "seg 2")]}


def test_a_trimmed_topic_starts_each_customer_where_its_first_change_left() -> None:
    # The topic lost a's first change: its first change read says it was in segment 3.
    t = rebuild([ch("a", 5, 10.2, 3, 4), ch("b", 2, 10.4, None, 3)])
    assert t.sizes == {3: [1], 4: [1]}  # a left 3 for 4, b came to 3
    assert t.flows == {(3, 4): 1, (NEW, 3): 1}


def test_renames_are_read_from_drift_details() -> None:
    events = [
        ModelChange("drift", 3, 2, (), "renamed 'Promo-driven' -> \"Promo's best\"", 5.0),
        ModelChange("drift", 3, 1, (), "centroid moved 0.97 (spacing 3.20)", 5.0),
        ModelChange("birth", 1, 2, (), "new segment of weight 72.0", 1.0),
    ]
    (r,) = renames(events)
    assert (r.segment, r.old, r.new) == (2, "Promo-driven", "Promo's best")


def test_changes_decode_and_bad_records_are_counted() -> None:
    good = (
        b'{"change_id":"x","customer_id":"c1","seq":2,"previous":{"id":1,"name":"A"},'
        b'"current":null,"membership":{},"confidence":1.0,"outlier":false,"reason":"erase",'
        b'"explanation":"erased","rfm":null,"model_version":3,"event_time":"2026-04-29T17:05:25Z"}'
    )
    changes, bad = decode_changes([good, b"not json", b'{"customer_id": 3}'])
    assert bad == 2
    (c,) = changes
    assert (c.customer, c.seq, c.previous, c.current, c.reason) == ("c1", 2, 1, None, "erase")
    assert c.t == pytest.approx(1777482325.0)


def test_since_takes_a_date_a_time_or_days_before_the_newest_change() -> None:
    assert window_start(None, 100.0) is None
    assert window_start("2d", 10 * DAY) == 8 * DAY
    assert window_start("2026-03-01", None) == pytest.approx(1772323200.0)
    assert window_start("2026-03-01T12:00:00+02:00", None) == pytest.approx(1772323200.0 + 10 * 3600)
    with pytest.raises(Exception, match="ISO 8601"):
        window_start("last week", None)


def test_the_map_sample_is_the_same_customers_in_any_order() -> None:
    ids = [f"c{i:05d}" for i in range(500)]
    picked = {ids[i] for i in sample_rows(ids, 50)}
    shuffled = list(reversed(ids))
    assert {shuffled[i] for i in sample_rows(shuffled, 50)} == picked
    assert len(picked) == 50
    assert sample_rows(ids[:10], 50).tolist() == list(range(10))


# ---------------------------------------------------------------- a whole page


@pytest.fixture(scope="module")
def inputs() -> ReportInputs:
    """Customers of a generated log, their features as of its end and an engine fitted on them."""
    log = generate(customers=240, days=60, seed=5)
    params = FeatureParams()
    states: dict[str, CustomerState] = {}
    for r in log.records:
        e = InteractionEvent.model_validate_json(r.value)
        apply_event(states.setdefault(e.customer_id, CustomerState.new()), params, fact_of(e))
    end = max(s.last_ts for s in states.values())
    ids = sorted(states)
    raw = np.vstack([evaluate(states[c], params, end) for c in ids])
    engine = SegmentEngine(
        EngineParams(n_segments=4, warmup_vectors=200, update_every=200, warmup_days=0, population=0),
        FEATURE_NAMES,
    )
    engine.process(raw, np.full(len(raw), float(end)))
    segment = engine.assign(raw).segment_ids
    pop = Population(ids, segment, raw, np.full(len(ids), float(end)))
    changes = [
        Change(
            c, 1, float(end) - (i % 20) * DAY, None, int(s), engine.name_of(int(s)), "event", "closest to it"
        )
        for i, (c, s) in enumerate(zip(ids, segment.tolist(), strict=True))
    ]
    events = [ModelChange("birth", 1, 0, (), "new segment of weight 10.0", float(end) - 15 * DAY)]
    return ReportInputs("unit", engine, pop, changes, events, "EUR", {"changes": "c", "model_events": "m"})


def test_the_page_holds_every_chart_and_fetches_nothing(inputs: ReportInputs) -> None:
    r = render(inputs, since="10d", sample=100, generated_at=0.0)
    live = [sid for sid in inputs.engine.live_names() if sid >= 0]
    held = [sid for sid in live if (inputs.population.segment == sid).any()]  # a profile needs members
    assert sorted(r.charts) == sorted(
        [*(f"profile-{sid}" for sid in held), "rfm", "map", "hierarchy", "sizes", "flows", "volatility"]
    )
    assert r.map_points == 100 and r.customers == 240 and r.segments == len(live)
    html = r.html
    for name in r.charts:
        assert f'data-chart="{name}"' in html
    # Self-contained: no element loads anything from a URL, plotly.js is inline.
    assert not re.search(r"<(script|link|img|iframe)[^>]*(src|href)=", html)
    assert html.count("<script") >= 1 + len(r.charts)
    # Amounts carry the currency; churn and value show where the version has a BTYD fit.
    fitted = inputs.engine.value_model.bgnbd is not None
    assert " EUR" in html and ("data-optional='scores'" in html) == fitted
    # The same data and clock give the same file.
    assert render(inputs, since="10d", sample=100, generated_at=0.0).html == html


def test_a_card_shows_churn_and_value_only_where_the_engine_has_them() -> None:
    card = Card(7, "Loyal <b>", 10, 0.5, 0, [], {"Champions": 10}, [], [], None)
    html = page.card_html(card, "#123456", "<div></div>", "EUR")
    assert "data-optional='scores'" not in html and "Loyal &lt;b&gt;" in html
    card.churn_risk, card.predicted_value = 0.25, 1234.0
    html = page.card_html(card, "#123456", "<div></div>", "EUR")
    assert "data-optional='scores'" in html and "25%" in html and "1,234 EUR" in html


def test_a_segment_without_members_has_no_empty_chart(inputs: ReportInputs) -> None:
    pop = inputs.population
    first = int(pop.segment[0])
    others = np.where(pop.segment == first, int(pop.segment[pop.segment != first][0]), pop.segment)
    emptied = ReportInputs(
        "unit",
        inputs.engine,
        Population(pop.ids, others, pop.raw, pop.at),
        inputs.changes,
        inputs.model_events,
        "EUR",
        inputs.topics,
    )
    r = render(emptied, since="10d", sample=100, generated_at=0.0)
    assert f"profile-{first}" not in r.charts
    assert "No customer is published in this segment yet." in r.html


def test_a_card_counts_its_members_lifecycle_stages(inputs: ReportInputs) -> None:
    pop = inputs.population
    stage = np.arange(len(pop)) % 3  # prospect, new, active
    staged = Population(pop.ids, pop.segment, pop.raw, pop.at, stage)
    n = len(pop)
    deck = cards(
        inputs.engine, staged, np.zeros((n, 2)), np.zeros(n, bool), [""] * n, rebuild([]), [], [], "EUR"
    )
    for card in deck:
        members = staged.segment == card.id
        assert sum(card.stages.values()) == int(members.sum())
        assert card.stages.get("new", 0) == int((members & (stage == 1)).sum())
    html = page.card_html(deck[0], "#123456", "<div></div>", "EUR")
    assert "lifecycle: " in html


def test_the_tree_counts_customers_per_group(inputs: ReportInputs) -> None:
    counts = {
        int(s): int((inputs.population.segment == s).sum()) for s in set(inputs.population.segment.tolist())
    }
    nodes = tree(inputs.engine, counts)
    root = nodes[0]
    assert root.parent == "" and root.customers == sum(n for s, n in counts.items() if s >= 0)
    leaves = [n for n in nodes if n.segment is not None]
    assert sorted(n.segment for n in leaves if n.segment is not None) == sorted(
        s for s in inputs.engine.live_names() if s >= 0
    )
    by_id = {n.id: n for n in nodes}
    for n in nodes[1:]:
        assert by_id[n.parent].customers >= n.customers
