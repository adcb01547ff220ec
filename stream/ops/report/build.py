"""A namespace's report: gather (I/O), compute and draw (pure), assemble one HTML file."""

from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

import numpy as np

from stream.config import Settings
from stream.errors import SegstreamError
from stream.ops import diff as df
from stream.ops.report import figures, page
from stream.ops.report.gather import ReportInputs, epoch, gather
from stream.ops.report.segments import DEFAULT_MAP_SAMPLE, cards, engine_rows, project, rfm_groups, tree
from stream.ops.report.timeline import DAY, rebuild

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)d$")


@dataclass
class Rendered:
    html: str
    charts: list[str]  # data-chart names, in page order
    segments: int
    customers: int
    changes: int
    map_points: int
    seconds: float = 0.0
    bytes: int = 0


def window_start(since: str | None, last_change: float | None) -> float | None:
    """``--since``: an ISO 8601 date or time (UTC if no offset), or ``Nd``: N days before the
    newest change's event time. None: the default window."""
    if since is None:
        return None
    m = _RELATIVE.match(since.strip())
    if m:
        return (last_change or time.time()) - float(m[1]) * DAY
    try:
        t = datetime.fromisoformat(since.strip())
    except ValueError as e:
        raise SegstreamError(f"--since {since!r}: give an ISO 8601 date or time, or Nd (e.g. 30d)") from e
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp()


def _fmt(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M UTC")


def render(
    inputs: ReportInputs,
    since: str | None = None,
    sample: int = DEFAULT_MAP_SAMPLE,
    compare: df.DiffReport | None = None,
    generated_at: float | None = None,
) -> Rendered:
    """The report's HTML from gathered inputs (no I/O)."""
    engine, pop = inputs.engine, inputs.population
    last = max((c.t for c in inputs.changes), default=None)
    timeline = rebuild(inputs.changes, window_start(since, last))
    raw = engine_rows(engine, pop.raw)
    Z = engine.model_space(raw) if len(pop) else np.zeros((0, len(engine.feature_names)))
    outlier = engine.assign(raw).outlier if len(pop) else np.zeros(0, dtype=bool)
    rfm = rfm_groups(engine, raw)
    deck = cards(engine, pop, Z, outlier, rfm, timeline, inputs.changes, inputs.model_events, inputs.currency)
    names = engine.live_names()
    for sid, seen in timeline.names.items():  # retired segments keep the last name they had
        names.setdefault(sid, seen[-1][1])
    counts = Counter(pop.segment.tolist())
    colour = figures.colours([*names, *counts, *timeline.sizes])
    charts: list[str] = []

    def chart(name: str, fig: Any) -> str:
        charts.append(name)
        return page.chart(name, fig)

    cur = inputs.currency or "the events' currency"
    seg = page.Section(
        "segments",
        "Segments",
        f"{len(deck)} segments of model version {engine.version}. Each card: size, what sets the segment "
        f"apart (its members against everyone: typical values in their units, amounts in {escape(cur)}; "
        "medians, means for shares), RFM mix, recent explanations from the changes topic and the "
        "segment's names over time.",
    )
    seg.body.append(
        "<div class='cards'>"
        + "".join(
            page.card_html(
                c,
                colour.get(c.id, figures.GREY),
                chart(f"profile-{c.id}", figures.profile(c, colour.get(c.id, figures.GREY)))
                if c.contrasts
                # A segment the model holds but no customer is published in yet (born at the
                # latest version; its members move in at their next events or re-scoring).
                else "<p class='muted'>No customer is published in this segment yet.</p>",
                inputs.currency,
            )
            for c in deck
        )
        + "</div>"
    )
    seg.body.append(
        f"<div class='panel'><h3>RFM mix by segment</h3>{chart('rfm', figures.rfm_mix(deck))}</div>"
    )
    retired = {s: n for s, n in counts.items() if s >= 0 and s not in engine.live_names()}
    if retired:
        seg.body.append(
            "<p class='muted'>"
            + escape(
                f"{sum(retired.values()):,} customer(s) are still in retired segment(s) "
                f"{', '.join(map(str, sorted(retired)))}: they move with their next event or re-scoring."
            )
            + "</p>"
        )
    m = project(engine, pop, Z, outlier, sample)
    mapped = page.Section(
        "map",
        "Map",
        f"{len(m.ids):,} of {m.of:,} customers (a fixed sample by customer key), placed by the two "
        "directions along which customers differ most in the model space (principal components), "
        "coloured by segment; diamonds are the segments' centres, crosses outliers.",
        [f"<div class='panel'>{chart('map', figures.customer_map(m, names, colour))}</div>"],
    )
    nodes = tree(engine, {int(k): v for k, v in counts.items()})
    tree_section = page.Section(
        "hierarchy",
        "Hierarchy",
        "Segments grouped by similarity (Ward linkage over the centres): each box is a group with "
        "the customers in it; the engine's super-segments are the top groups.",
        [f"<div class='panel'>{chart('hierarchy', figures.hierarchy(nodes, colour))}</div>"],
    )
    ws, we = timeline.window
    time_section = page.Section(
        "time",
        "Over time",
        f"Membership rebuilt from {len(inputs.changes):,} changes on {escape(inputs.topics['changes'])}, "
        "per day of event time; model events (births, deaths, splits, merges) are marked. The "
        f"shaded window, {escape(_fmt(ws))} to {escape(_fmt(we))} ({timeline.window_days:.0f} days; "
        "<code>--since</code>), is what the flows and the volatility cover.",
    )
    if timeline.days:
        time_section.body += [
            f"<div class='panel'><h3>Segment sizes</h3>"
            f"{chart('sizes', figures.sizes(timeline, names, colour, inputs.model_events))}</div>",
            "<div class='panel'><h3>Flows between segments over the window</h3><p class='muted'>Left: "
            "the segment at the window's start; right: at its end; grey bands stay, red bands move."
            f"</p>{chart('flows', figures.flows(timeline, names, colour))}</div>",
            "<div class='panel'><h3>Membership volatility</h3><p class='muted'>(customers who entered "
            "+ who left) / average size, per week of the window.</p>"
            f"{chart('volatility', figures.volatility(timeline, names, colour))}</div>",
        ]
    else:
        time_section.body.append("<p class='notes'>No changes to show: the changes topic is empty.</p>")
    sections = [seg, mapped, tree_section, time_section]
    if compare is not None:
        mt = compare.matching
        sections.append(
            page.Section(
                "compare",
                f"What-if: {compare.a} vs {compare.b}",
                escape(
                    f"Segments matched by their members (a Hungarian assignment on the overlap): "
                    f"{mt.agreement:.1%} of the {mt.total:,} customers in both stay together; "
                    f"{compare.changed_segment:,} change segment, {compare.only_a:,} only in {compare.a}, "
                    f"{compare.only_b:,} only in {compare.b}; model versions {compare.a_version} and "
                    f"{compare.b_version}."
                ),
                [
                    f"<div class='panel'><h3>Where each segment's customers are in {escape(compare.b)}</h3>"
                    f"{chart('compare-overlap', figures.overlap(compare))}</div>",
                    f"<div class='panel'><h3>Sizes of matched segments</h3>"
                    f"{chart('compare-sizes', figures.matched_sizes(compare))}</div>",
                ],
            )
        )
    as_of = float(pop.at.max()) if len(pop) else None
    facts = [
        f"namespace {inputs.namespace}",
        f"model version {engine.version}",
        f"{len(pop):,} customers",
        f"data as of {_fmt(as_of)}" if as_of else "no customers",
        f"generated {_fmt(generated_at if generated_at is not None else time.time())}",
    ]
    html = page.document(
        f"Segments of {inputs.namespace}",
        facts,
        inputs.notes,
        sections,
        "Made by `segstream report` from the namespace's store, its changes and model-events topics. "
        "Self-contained: opens offline.",
    )
    return Rendered(html, charts, len(deck), len(pop), len(inputs.changes), len(m.ids))


def build(
    settings: Settings,
    store: Any,
    partitions: int,
    out: Path,
    since: str | None = None,
    sample: int = DEFAULT_MAP_SAMPLE,
    currency: str | None = None,
    compare_with: tuple[Any, int, str] | None = None,
) -> Rendered:
    """Gather the namespace, render its report and write it to ``out`` (atomically); with
    ``compare_with`` (store, partitions, namespace of B) also the what-if pictures."""
    t0 = time.perf_counter()
    window_start(since, 0.0)  # a malformed --since fails before the reading, not after it
    inputs = gather(settings, store, partitions, currency)
    comparison = None
    if compare_with is not None:
        b_store, b_parts, b_ns = compare_with
        a_snap = df.snapshot(store, partitions)
        b_snap = df.snapshot(b_store, b_parts)
        if not b_snap.customers and b_snap.model_version is None:
            raise SegstreamError(f"namespace {b_ns!r} is empty (no customers, no model)")
        comparison = df.compare(a_snap, b_snap)
    rendered = render(inputs, since, sample, comparison)
    data = rendered.html.encode()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    tmp.write_bytes(data)
    tmp.replace(out)  # never a half-written report under the final name
    rendered.seconds = time.perf_counter() - t0
    rendered.bytes = len(data)
    return rendered


__all__ = ["Rendered", "build", "epoch", "render", "window_start"]
