"""The report's charts as Plotly figures (plotly is the optional ``report`` extra).

Every chart is drawn as SVG (no WebGL trace types): the file must render the same in any browser,
headless ones without a GPU included. Colours are fixed per segment id across all charts.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative

from stream.ops.diff import DiffReport
from stream.ops.report.gather import ModelChange
from stream.ops.report.segments import RFM_ORDER, Card, MapData, TreeNode
from stream.ops.report.timeline import ERASED, NEW, Timeline

PALETTE = qualitative.D3 + qualitative.Set2 + qualitative.Pastel1
GREY = "#9aa0a6"
FONT = "system-ui, -apple-system, Segoe UI, Roboto, Helvetica, Arial, sans-serif"
MARKED = ("birth", "death", "split", "merge")  # model events drawn on the sizes chart
_RFM_COLOURS = dict(
    zip(RFM_ORDER, ("#1a9850", "#66bd63", "#a6d96a", "#d9ef8b", "#fee08b", "#fdae61", "#f46d43",
                    "#d73027", "#a50026", "#8073ac", "#542788", "#bdbdbd"), strict=True)
)  # fmt: skip


def colours(ids: list[int]) -> dict[int, str]:
    """Segment id -> colour, by id order (the same segment has the same colour in every chart)."""
    return {sid: PALETTE[i % len(PALETTE)] for i, sid in enumerate(sorted(set(ids)))}


def _layout(fig: go.Figure, height: int, **kw: Any) -> go.Figure:
    fig.update_layout(
        template="plotly_white",
        height=height,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        font={"family": FONT, "size": 12},
        **kw,
    )
    return fig


def _label(sid: int, names: dict[int, str]) -> str:
    if sid == NEW:
        return "(new customers)"
    if sid == ERASED:
        return "(erased)"
    return f"{names.get(sid, f'segment {sid}')} ({sid})"


# ---------------------------------------------------------------- cards


def profile(card: Card, colour: str) -> go.Figure:
    """What sets the segment apart: its members against everyone, in standard deviations, with
    the values in their units beside each bar."""
    cs = list(reversed(card.contrasts))
    fig = go.Figure(
        go.Bar(
            x=[c.z for c in cs],
            y=[c.label for c in cs],
            orientation="h",
            marker_color=[colour if c.z >= 0 else GREY for c in cs],
            text=[f"{c.segment} (all: {c.population})" for c in cs],
            textposition="auto",
            hovertemplate="%{y}: %{x:+.2f} sd<br>%{text}<extra></extra>",
        )
    )
    fig.update_xaxes(title_text="members vs everyone (standard deviations)", zeroline=True)
    return _layout(fig, 240, showlegend=False)


def rfm_mix(cards: list[Card]) -> go.Figure:
    """Each segment's customers by RFM group, as shares of the segment."""
    ys = [f"{c.name} ({c.id})" for c in cards][::-1]
    fig = go.Figure()
    for group in RFM_ORDER:
        shares = [c.rfm.get(group, 0) / max(c.customers, 1) for c in cards][::-1]
        if any(shares):
            fig.add_trace(
                go.Bar(
                    name=group,
                    x=shares,
                    y=ys,
                    orientation="h",
                    marker_color=_RFM_COLOURS[group],
                    hovertemplate=f"{group}: %{{x:.0%}}<extra>%{{y}}</extra>",
                )
            )
    fig.update_xaxes(tickformat=".0%", range=[0, 1])
    return _layout(fig, 120 + 28 * len(cards), barmode="stack", legend={"orientation": "h", "y": -0.15})


# ---------------------------------------------------------------- map and tree


def customer_map(m: MapData, names: dict[int, str], colour: dict[int, str]) -> go.Figure:
    fig = go.Figure()
    for sid in sorted(set(m.segment.tolist())):
        rows = (m.segment == sid) & ~m.outlier
        fig.add_trace(
            go.Scatter(
                x=m.x[rows],
                y=m.y[rows],
                mode="markers",
                name=_label(sid, names) if sid >= 0 else "(no segment yet)",
                marker={"size": 5, "color": colour.get(sid, GREY), "opacity": 0.6},
                text=[m.ids[i] for i in np.flatnonzero(rows)],
                hovertemplate="%{text}<extra>%{fullData.name}</extra>",
            )
        )
    out = np.flatnonzero(m.outlier)
    if len(out):
        fig.add_trace(
            go.Scatter(
                x=m.x[out],
                y=m.y[out],
                mode="markers",
                name="outliers",
                marker={
                    "size": 8,
                    "symbol": "x-thin-open",
                    "line": {"width": 1.5},
                    "color": [colour.get(int(s), GREY) for s in m.segment[out]],
                },
                text=[f"{m.ids[i]} ({_label(int(m.segment[i]), names)})" for i in out],
                hovertemplate="outlier %{text}<extra></extra>",
            )
        )
    if m.centroids:
        ids = sorted(m.centroids)
        fig.add_trace(
            go.Scatter(
                x=[m.centroids[s][0] for s in ids],
                y=[m.centroids[s][1] for s in ids],
                mode="markers+text",
                name="segment centres",
                text=[names.get(s, str(s)) for s in ids],
                textposition="top center",
                marker={
                    "size": 16,
                    "symbol": "diamond",
                    "color": [colour.get(s, GREY) for s in ids],
                    "line": {"width": 1.5, "color": "#222"},
                },
                hovertemplate="centre of %{text}<extra></extra>",
            )
        )
    fig.update_xaxes(title_text=m.axes[0], zeroline=False)
    fig.update_yaxes(title_text=m.axes[1], zeroline=False)
    return _layout(fig, 560, legend={"itemsizing": "constant"})


def hierarchy(nodes: list[TreeNode], colour: dict[int, str]) -> go.Figure:
    """The tree as an icicle: the root on top, each group above the segments it holds."""
    fills = [colour.get(n.segment, GREY) if n.segment is not None else "#e5e7eb" for n in nodes]
    fig = go.Figure(
        go.Icicle(
            ids=[n.id for n in nodes],
            parents=[n.parent for n in nodes],
            labels=[n.label for n in nodes],
            values=[n.customers for n in nodes],
            branchvalues="total",
            customdata=[", ".join(n.members) for n in nodes],
            texttemplate="%{label}<br>%{value:,} customers",
            hovertemplate="%{label}<br>%{value:,} customers (%{percentRoot:.0%})<br>%{customdata}"
            "<extra></extra>",
            tiling={"orientation": "v"},
            marker={"colors": fills},
            insidetextfont={"color": "#111"},
        )
    )
    return _layout(fig, 480)


# ---------------------------------------------------------------- over time


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M")


def sizes(t: Timeline, names: dict[int, str], colour: dict[int, str], events: list[ModelChange]) -> go.Figure:
    """Customers per segment at the end of each day, stacked; model events marked."""
    fig = go.Figure()
    for sid, row in t.sizes.items():
        if not any(row):
            continue
        fig.add_trace(
            go.Scatter(
                x=t.days,
                y=row,
                name=_label(sid, names),
                mode="lines",
                stackgroup="sizes",
                line={"width": 0.5, "color": colour.get(sid, GREY)},
                hovertemplate="%{x}: %{y:,}<extra>%{fullData.name}</extra>",
            )
        )
    top = max((sum(r[i] for r in t.sizes.values()) for i in range(len(t.days))), default=0)
    marked: dict[tuple[str, str], list[str]] = {}
    for e in events:
        if e.kind in MARKED:
            marked.setdefault((e.kind, _iso(e.t)[:10]), []).append(f"{e.kind} {e.segment}: {e.detail}")
    symbols = {"birth": "triangle-up", "death": "x", "split": "diamond-wide", "merge": "hourglass"}
    for kind in MARKED:
        pts = sorted((day, lines) for (k, day), lines in marked.items() if k == kind)
        if pts:
            fig.add_trace(
                go.Scatter(
                    x=[d for d, _ in pts],
                    y=[top * 1.04] * len(pts),
                    mode="markers",
                    name=f"{kind}s (model events)",
                    marker={"symbol": symbols[kind], "size": 11, "color": "#333"},
                    text=["<br>".join(lines[:8]) for _, lines in pts],
                    hovertemplate="%{x}<br>%{text}<extra></extra>",
                )
            )
    for kind, day in sorted(marked):
        if kind != "birth":
            fig.add_vline(x=day, line_width=1, line_dash="dot", line_color="#888")
    fig.add_vrect(x0=_iso(t.window[0]), x1=_iso(t.window[1]), fillcolor="#fde68a", opacity=0.25, line_width=0)
    fig.update_yaxes(title_text="customers")
    fig.update_xaxes(title_text="event time (day)")
    return _layout(fig, 440, hovermode="x unified")


def flows(t: Timeline, names: dict[int, str], colour: dict[int, str]) -> go.Figure:
    """Where the customers of each segment at the window's start are at its end."""
    starts = sorted({a for a, _ in t.flows})
    ends = sorted({b for _, b in t.flows})
    index = {("s", s): i for i, s in enumerate(starts)}
    index.update({("e", e): len(starts) + i for i, e in enumerate(ends)})
    nodes = [("s", s) for s in starts] + [("e", e) for e in ends]
    links = [(a, b, n) for (a, b), n in t.flows.items()]
    fig = go.Figure(
        go.Sankey(
            arrangement="snap",
            node={
                "label": [_label(s, names) for _, s in nodes],
                "color": [colour.get(s, GREY) for _, s in nodes],
                "pad": 12,
                "hovertemplate": "%{label}: %{value:,} customers<extra></extra>",
            },
            link={
                "source": [index[("s", a)] for a, _, _ in links],
                "target": [index[("e", b)] for _, b, _ in links],
                "value": [n for _, _, n in links],
                "color": [
                    "rgba(160,160,160,0.25)" if a == b else "rgba(220,80,60,0.45)" for a, b, _ in links
                ],
                "hovertemplate": "%{source.label} -> %{target.label}: %{value:,}<extra></extra>",
            },
        )
    )
    return _layout(fig, max(420, 34 * max(len(starts), len(ends))))


def volatility(t: Timeline, names: dict[int, str], colour: dict[int, str]) -> go.Figure:
    vol = t.volatility()
    ids = sorted(vol, key=lambda s: -vol[s])
    fig = go.Figure(
        go.Bar(
            x=[_label(s, names) for s in ids],
            y=[vol[s] for s in ids],
            marker_color=[colour.get(s, GREY) for s in ids],
            customdata=[[t.entered.get(s, 0), t.exited.get(s, 0), t.mean_size(s)] for s in ids],
            hovertemplate="%{x}: %{y:.1%} per week<br>%{customdata[0]:,} in, %{customdata[1]:,} out, "
            "%{customdata[2]:,.0f} customers on average<extra></extra>",
        )
    )
    fig.update_yaxes(title_text="(entered + exited) / size, per week", tickformat=".0%")
    return _layout(fig, 360)


# ---------------------------------------------------------------- what-if


def overlap(r: DiffReport) -> go.Figure:
    """Where A's customers are in B, rows and columns in matched order (matches on the diagonal)."""
    a_ids = sorted({a for a, _ in r.confusion}, key=lambda a: (a not in r.matching.pairs, a))
    pairs = r.matching.pairs
    b_ids = [pairs[a] for a in a_ids if a in pairs] + sorted(
        {b for _, b in r.confusion} - set(pairs.values())
    )
    z = np.array([[r.confusion.get((a, b), 0) for b in b_ids] for a in a_ids], dtype=float)
    share = z / np.maximum(z.sum(axis=1, keepdims=True), 1)
    fig = go.Figure(
        go.Heatmap(
            z=share,
            x=[f"{r.names_b.get(b, b)} ({b})" for b in b_ids],
            y=[f"{r.names_a.get(a, a)} ({a})" for a in a_ids],
            text=z.astype(int),
            texttemplate="%{text:,}",
            colorscale="Blues",
            zmin=0,
            zmax=1,
            colorbar={"title": {"text": "share of row"}, "tickformat": ".0%"},
            hovertemplate="%{y} -> %{x}: %{text:,} customers (%{z:.0%} of the row)<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed", title_text=r.a)
    fig.update_xaxes(title_text=r.b)
    return _layout(fig, 160 + 32 * len(a_ids))


def matched_sizes(r: DiffReport) -> go.Figure:
    """Each A segment's size beside its match's size in B."""
    segs = [s for s in r.segments if s.a_id >= 0]
    x = [f"{s.a_name} ({s.a_id})" for s in segs]
    fig = go.Figure(
        [
            go.Bar(name=r.a, x=x, y=[s.a_size for s in segs], marker_color=PALETTE[0]),
            go.Bar(
                name=f"{r.b} (matched segment)",
                x=x,
                y=[s.b_size if s.matched else 0 for s in segs],
                marker_color=PALETTE[1],
                customdata=[f"{s.b_name} ({s.b_id})" if s.matched else "no match" for s in segs],
                hovertemplate="%{customdata}: %{y:,}<extra></extra>",
            ),
        ]
    )
    fig.update_yaxes(title_text="customers")
    return _layout(fig, 380, barmode="group")
