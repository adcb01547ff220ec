"""The report as one self-contained HTML file: plotly.js and every chart's data inlined, nothing
fetched when it is opened (no CDN, no fonts, no images from elsewhere).

Every chart sits in a ``<div class="chart" data-chart="NAME">``: the browser test checks that
each one has drawn.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape

import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs

from stream.ops.report.segments import Card

CSS = """
:root { --ink: #1f2933; --muted: #616e7c; --line: #e4e7eb; --bg: #f7f8fa; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       color: var(--ink); background: var(--bg); }
header { padding: 20px 32px 12px; background: #fff; border-bottom: 1px solid var(--line); }
header h1 { margin: 0 0 4px; font-size: 22px; }
header .facts { color: var(--muted); }
nav { position: sticky; top: 0; z-index: 5; background: #fff; border-bottom: 1px solid var(--line);
      padding: 8px 32px; }
nav a { margin-right: 18px; color: #2563eb; text-decoration: none; }
main { padding: 8px 32px 40px; max-width: 1500px; }
section { margin-top: 24px; }
h2 { font-size: 18px; margin: 0 0 4px; }
p.lead { color: var(--muted); margin: 0 0 12px; max-width: 900px; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(460px, 1fr)); gap: 16px; }
.card { background: #fff; border: 1px solid var(--line); border-top: 6px solid var(--c); border-radius: 8px;
        padding: 12px 16px; }
.card h3 { margin: 0; font-size: 16px; }
.card .size { font-size: 13px; color: var(--muted); margin-bottom: 6px; }
.card .size b { color: var(--ink); font-size: 18px; }
.card h4 { margin: 10px 0 4px; font-size: 12px; text-transform: uppercase; letter-spacing: .04em;
           color: var(--muted); }
.card ul { margin: 0; padding-left: 18px; }
.card li { margin: 2px 0; }
.card .scores { display: flex; gap: 16px; background: #f0fdf4; border-radius: 6px; padding: 6px 10px; }
.panel { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px;
         margin-bottom: 16px; }
.notes { background: #fffbeb; border: 1px solid #fde68a; border-radius: 6px; padding: 8px 12px; }
.muted { color: var(--muted); }
footer { color: var(--muted); padding: 0 32px 24px; font-size: 12px; }
"""


@dataclass
class Section:
    key: str
    title: str
    lead: str
    body: list[str] = field(default_factory=list)  # HTML fragments, in order


def chart(name: str, fig: go.Figure) -> str:
    """A chart's container: the figure's div and the script that draws it (plotly.js is in the
    page's head once); a fixed div id keeps the file the same for the same data."""
    div = pio.to_html(
        fig,
        include_plotlyjs=False,
        full_html=False,
        div_id=f"chart-{name}",
        config={"displaylogo": False, "responsive": True},
    )
    return f'<div class="chart" data-chart="{escape(name)}">{div}</div>'


def card_html(c: Card, colour: str, profile_chart: str, currency: str | None) -> str:
    e = escape
    parts = [
        f'<article class="card" id="segment-{c.id}" style="--c:{e(colour)}">',
        f"<h3>{e(c.name)} <span class='muted'>#{c.id}</span></h3>",
        f"<div class='size'><b>{c.customers:,}</b> customers, {c.share:.1%} of all"
        + (f"; {c.outliers:,} outliers" if c.outliers else "")
        + "</div>",
    ]
    if c.grouped_with:
        parts.append(f"<div class='muted'>super-segment with {e(', '.join(c.grouped_with))}</div>")
    if c.churn_risk is not None or c.predicted_value is not None:
        scores = []
        if c.churn_risk is not None:
            scores.append(f"<span>median churn risk <b>{c.churn_risk:.0%}</b></span>")
        if c.predicted_value is not None:
            unit = f" {e(currency)}" if currency else ""
            scores.append(f"<span>predicted value, next year <b>{c.predicted_value:,.0f}{unit}</b></span>")
        parts.append(f"<div class='scores' data-optional='scores'>{''.join(scores)}</div>")
    if c.stages:
        total = max(sum(c.stages.values()), 1)
        mix = ", ".join(f"{e(s.replace('_', ' '))} {n / total:.0%}" for s, n in c.stages.items())
        parts.append(f"<div class='stages' data-optional='stages'>lifecycle: {mix}</div>")
    parts.append("<h4>What sets it apart</h4>")
    parts.append(profile_chart)
    if c.rfm:
        total = max(c.customers, 1)
        ranked = sorted(c.rfm.items(), key=lambda kv: -kv[1])
        shown = [(g, n) for g, n in ranked if n / total >= 0.005]  # "0%" says nothing
        rest = total - sum(n for _, n in shown) if len(shown) < len(ranked) else 0
        mix = ", ".join(f"{e(g)} {n / total:.0%}" for g, n in shown) + (
            f", others {rest / total:.1%}" if rest else ""
        )
        parts.append(f"<h4>RFM mix</h4><div>{mix}</div>")
    if c.examples:
        items = "".join(f"<li>{e(x)}</li>" for x in c.examples)
        parts.append(f"<h4>Why customers moved here (latest changes)</h4><ul>{items}</ul>")
    if c.names:
        items = "".join(f"<li><span class='muted'>{e(d)}</span> {e(w)}</li>" for d, w in c.names)
        parts.append(f"<h4>Name and history</h4><ul>{items}</ul>")
    parts.append("</article>")
    return "".join(parts)


def document(title: str, facts: list[str], notes: list[str], sections: list[Section], footer: str) -> str:
    e = escape
    nav = "".join(f'<a href="#{e(s.key)}">{e(s.title)}</a>' for s in sections)
    body = []
    for s in sections:
        body.append(f'<section id="{e(s.key)}"><h2>{e(s.title)}</h2><p class="lead">{s.lead}</p>')
        body.extend(s.body)
        body.append("</section>")
    note_html = (
        "<div class='notes'><b>Notes</b><ul>" + "".join(f"<li>{e(n)}</li>" for n in notes) + "</ul></div>"
        if notes
        else ""
    )
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{e(title)}</title><style>{CSS}</style>"
        # plotly.js once, inline: the file opens offline and fetches nothing.
        f"<script type='text/javascript'>{get_plotlyjs()}</script>"
        "</head><body>"
        f"<header><h1>{e(title)}</h1>"
        f"<div class='facts'>{' &middot; '.join(e(f) for f in facts)}</div></header>"
        f"<nav>{nav}</nav><main>{note_html}{''.join(body)}</main>"
        f"<footer>{e(footer)}</footer></body></html>\n"
    )
