"""What each segment looks like (cards), where customers sit (the map) and how segments group
(the tree), computed from the gathered inputs through the engine's public API. Pure.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from models.features import FEATURE_INDEX, FEATURES, feature_label, format_value
from models.segments.engine import SegmentEngine
from models.segments.lifecycle import STAGES
from models.segments.population import customer_key
from stream.ops.report.gather import Change, ModelChange, Population
from stream.ops.report.timeline import Timeline, renames

# The common RFM segment map's groups, best first (models.segments.rfm), then non-buyers.
RFM_ORDER = (
    "Champions",
    "Loyal",
    "Potential Loyalist",
    "New Customers",
    "Promising",
    "Need Attention",
    "About To Sleep",
    "Can't Lose Them",
    "At Risk",
    "Hibernating",
    "Lost",
    "No purchase",
)
CONTRASTS = 6  # features shown per card: those that set the segment apart most
EXAMPLES = 3  # explanations quoted per card
NAME_HISTORY = 6  # latest names shown per card
DEFAULT_MAP_SAMPLE = 3000
_KIND = {f.name: f.kind for f in FEATURES}
# Typical value shown per kind: medians for skewed amounts and counts, means for shares (the
# median share of a channel is often 0% in every segment, which says nothing).
_MEAN_KINDS = ("share", "ratio")


@dataclass(frozen=True)
class Contrast:
    feature: str
    label: str
    z: float  # members' mean against everyone's, in everyone's standard deviations (model space)
    segment: str  # the members' typical value, in its unit
    population: str  # everyone's


@dataclass
class Card:
    id: int
    name: str
    customers: int
    share: float
    outliers: int
    contrasts: list[Contrast]
    rfm: dict[str, int]  # RFM group -> customers (RFM_ORDER)
    examples: list[str]  # explanations of recent changes into the segment
    names: list[tuple[str, str]]  # (date, what happened) newest last
    super_segment: int | None
    grouped_with: list[str] = field(default_factory=list)  # the other segments of its super-segment
    # From the version's Buy-Till-You-Die fit, over the members who bought (None: no fit yet).
    churn_risk: float | None = None  # median churn risk
    predicted_value: float | None = None  # mean predicted value of the next 365 days
    stages: dict[str, int] = field(default_factory=dict)  # lifecycle stage -> members


@dataclass
class MapData:
    x: np.ndarray
    y: np.ndarray
    segment: np.ndarray
    outlier: np.ndarray
    ids: list[str]
    centroids: dict[int, tuple[float, float]]
    axes: tuple[str, str]
    of: int  # customers the sample was drawn from


@dataclass
class TreeNode:
    id: str
    parent: str
    label: str
    customers: int
    members: list[str] = field(default_factory=list)  # segment names under the node
    segment: int | None = None  # the segment of a leaf


def engine_rows(engine: SegmentEngine, raw: np.ndarray) -> np.ndarray:
    """Feature rows (FEATURE_NAMES order) in the engine's column order."""
    return raw[:, [FEATURE_INDEX[f] for f in engine.feature_names]] if len(raw) else raw


def with_currency(feature: str, text: str, currency: str | None) -> str:
    return f"{text} {currency or '(currency of the events)'}" if _KIND.get(feature) == "money" else text


def _typical(feature: str, values: np.ndarray) -> float:
    if not len(values):
        return 0.0
    return float(values.mean()) if _KIND.get(feature) in _MEAN_KINDS else float(np.median(values))


def contrasts(
    engine: SegmentEngine, raw: np.ndarray, Z: np.ndarray, members: np.ndarray, currency: str | None
) -> list[Contrast]:
    """The features on which the members differ most from everyone, largest difference first."""
    if not members.any() or not len(Z):
        return []
    mu, sd = Z.mean(axis=0), Z.std(axis=0)
    z = np.where(sd > 1e-9, (Z[members].mean(axis=0) - mu) / np.where(sd > 1e-9, sd, 1.0), 0.0)
    out = []
    for j in np.argsort(-np.abs(z), kind="stable")[:CONTRASTS].tolist():
        name = engine.feature_names[j]
        seg = with_currency(name, format_value(name, _typical(name, raw[members, j])), currency)
        pop = with_currency(name, format_value(name, _typical(name, raw[:, j])), currency)
        out.append(Contrast(name, feature_label(name), float(z[j]), seg, pop))
    return out


def rfm_groups(engine: SegmentEngine, raw: np.ndarray) -> list[str]:
    """Each row's RFM group ("No purchase" for a customer who never bought)."""
    out = []
    for row in raw:
        score = engine.rfm(row)
        out.append(score.group if score is not None else "No purchase")
    return out


def _date(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d")


def name_history(sid: int, timeline: Timeline, events: list[ModelChange]) -> list[tuple[str, str]]:
    """When the segment first carried each name on a change, and its renames (model events)."""
    items = [(t, f"seen as {n}") for t, n in timeline.names.get(sid, [])]
    items += [(r.t, f"renamed {r.old} -> {r.new}") for r in renames(events) if r.segment == sid]
    births = [e for e in events if e.segment == sid and e.kind in ("birth", "split")]
    items += [(e.t, f"{e.kind}: {e.detail}") for e in births[:1]]
    items.sort()
    return [(_date(t), what) for t, what in items[-NAME_HISTORY:]]


def examples(changes: list[Change]) -> dict[int, list[str]]:
    """Per segment, the explanations of the latest changes into it (distinct, newest first)."""
    out: dict[int, list[str]] = defaultdict(list)
    for c in sorted(changes, key=lambda c: (-c.t, c.customer)):
        if c.current is None or not c.explanation:
            continue
        got = out[c.current]
        text = f"{c.customer}: {c.explanation}"
        if len(got) < EXAMPLES and all(not g.endswith(c.explanation) for g in got):
            got.append(text)
    return dict(out)


def _summary(f: Any, values: np.ndarray) -> float | None:
    known = values[np.isfinite(values)]
    return float(f(known)) if len(known) else None


def _stage_mix(stage_names: list[str], members: np.ndarray) -> dict[str, int]:
    if not stage_names:
        return {}
    mix = Counter(s for s, m in zip(stage_names, members.tolist(), strict=True) if m and s)
    return {s: mix[s] for s in STAGES if mix.get(s)}


def cards(
    engine: SegmentEngine,
    pop: Population,
    Z: np.ndarray,
    outlier: np.ndarray,
    rfm: list[str],
    timeline: Timeline,
    changes: list[Change],
    events: list[ModelChange],
    currency: str | None,
) -> list[Card]:
    """One card per live segment, largest first."""
    raw = engine_rows(engine, pop.raw)
    total = max(len(pop), 1)
    quotes = examples(changes)
    profiles = [p for p in engine.segments() if p.id >= 0]
    values = engine.value_many(raw)
    risk = np.array([v.churn_risk if v else np.nan for v in values])
    worth = np.array([v.value_365d if v else np.nan for v in values])
    stage_names = [STAGES[k] if k >= 0 else "" for k in (pop.stage if pop.stage is not None else [])]
    out = []
    for p in profiles:
        members = pop.segment == p.id
        n = int(members.sum())
        mix = Counter(g for g, m in zip(rfm, members.tolist(), strict=True) if m)
        out.append(
            Card(
                id=p.id,
                name=p.name,
                customers=n,
                share=n / total,
                outliers=int(outlier[members].sum()),
                contrasts=contrasts(engine, raw, Z, members, currency),
                rfm={g: mix[g] for g in RFM_ORDER if mix.get(g)},
                examples=quotes.get(p.id, []),
                names=name_history(p.id, timeline, events),
                super_segment=p.parent,
                grouped_with=[
                    q.name for q in profiles if p.parent is not None and q.parent == p.parent and q.id != p.id
                ],
                churn_risk=_summary(np.median, risk[members]),
                predicted_value=_summary(np.mean, worth[members]),
                stages=_stage_mix(stage_names, members),
            )
        )
    return sorted(out, key=lambda c: (-c.customers, c.id))


# ---------------------------------------------------------------- the map


def sample_rows(ids: list[str], n: int) -> np.ndarray:
    """Indices of the ``n`` customers with the smallest sample keys (the model's own customer
    sample rule): the same customers at every report, whatever order they were read in."""
    if len(ids) <= n:
        return np.arange(len(ids))
    keys = np.array([customer_key(c) for c in ids], dtype=np.uint64)
    return np.sort(np.argsort(keys, kind="stable")[:n])


def _axis(k: int, ratio: float, loadings: np.ndarray, names: tuple[str, ...]) -> str:
    """An axis title: the features that weigh most on it, with the direction they grow in."""
    top = np.argsort(-np.abs(loadings), kind="stable")[:3]
    words = ", ".join(f"{'+' if loadings[i] > 0 else '-'}{feature_label(names[i])}" for i in top)
    return f"axis {k} ({ratio:.0%} of the spread): {words}"


def project(
    engine: SegmentEngine, pop: Population, Z: np.ndarray, outlier: np.ndarray, sample: int
) -> MapData:
    """A deterministic sample of customers on the first two principal components of the model
    space (where the engine measures distances), with the segments' centroids."""
    rows = sample_rows(pop.ids, sample)
    Zs = Z[rows]
    if len(Zs) < 2:
        empty = np.zeros(len(rows))
        return MapData(
            empty, empty, pop.segment[rows], outlier[rows], [pop.ids[i] for i in rows], {}, ("", ""), len(pop)
        )
    mu = Zs.mean(axis=0)
    _, s, vt = np.linalg.svd(Zs - mu, full_matrices=False)
    comps = vt[:2].copy()
    # SVD signs are arbitrary: the largest loading is made positive, so an axis keeps its sense.
    comps *= np.where(comps[np.arange(len(comps)), np.argmax(np.abs(comps), axis=1)] < 0, -1.0, 1.0)[:, None]
    xy = (Zs - mu) @ comps.T
    var = s**2 / max(float((s**2).sum()), 1e-12)
    profiles = [p for p in engine.segments() if p.id >= 0]
    centroids: dict[int, tuple[float, float]] = {}
    if profiles:
        C = np.array([[p.centroid[f] for f in engine.feature_names] for p in profiles])
        cxy = (engine.model_space(C) - mu) @ comps.T
        centroids = {p.id: (float(a), float(b)) for p, (a, b) in zip(profiles, cxy, strict=True)}
    names = engine.feature_names
    return MapData(
        x=xy[:, 0],
        y=xy[:, 1] if xy.shape[1] > 1 else np.zeros(len(rows)),
        segment=pop.segment[rows],
        outlier=outlier[rows],
        ids=[pop.ids[i] for i in rows],
        centroids=centroids,
        axes=(
            _axis(1, float(var[0]), comps[0], names),
            _axis(2, float(var[1]) if len(var) > 1 else 0.0, comps[1], names),
        ),
        of=len(pop),
    )


# ---------------------------------------------------------------- the tree


def tree(engine: SegmentEngine, counts: dict[int, int]) -> list[TreeNode]:
    """The segments' Ward hierarchy as nodes (root first), each with its customers; a group is
    labelled by its segments' names (the largest first)."""
    h = engine.hierarchy()
    k = len(h.ids)
    if k == 0:
        return []
    leaves: dict[int, list[int]] = {i: [i] for i in range(k)}
    parent: dict[int, int] = {}
    for j, (a, b, _, _) in enumerate(h.linkage.tolist()):
        node = k + j
        leaves[node] = leaves[int(a)] + leaves[int(b)]
        parent[int(a)] = parent[int(b)] = node
    root = 2 * k - 2 if k > 1 else 0

    def size(node: int) -> int:
        return sum(counts.get(h.ids[i], 0) for i in leaves[node])

    def label(node: int) -> str:
        if node == root:
            return "All segments"
        if node < k:
            return f"{h.names[node]} ({h.ids[node]})"
        ordered = sorted(leaves[node], key=lambda i: (-counts.get(h.ids[i], 0), h.ids[i]))
        names = [h.names[i] for i in ordered]
        return " + ".join(names) if len(names) <= 2 else f"{names[0]} + {len(names) - 1} more"

    out = []
    for node in sorted(leaves, key=lambda n: (n != root, -n)):
        out.append(
            TreeNode(
                id=f"n{node}",
                parent="" if node == root else f"n{parent[node]}",
                label=label(node),
                customers=size(node),
                members=[h.names[i] for i in leaves[node]],
                segment=h.ids[node] if node < k else None,
            )
        )
    return out
