"""Export every customer of a namespace: features in their units, segment, lifecycle stage,
membership, outlier, RFM, churn risk and predicted value.

:func:`customer_views` turns packed states into the same dicts ``segstream customer --json``
prints, assigning a whole chunk with one engine call (the model is restored once, not per
customer). Output is deterministic: partitions in order, customers sorted within a partition.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

import numpy as np

from models.features import FEATURE_NAMES, CustomerState, FeatureParams, evaluate
from models.segments.engine import SegmentEngine
from models.segments.lifecycle import STAGES

CHUNK = 1000
MIN_MEMBERSHIP = 0.005


def _iso(ts: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def customer_views(
    rows: list[tuple[int, str, bytes]],
    params: FeatureParams,
    engine: SegmentEngine | None,
    watermarks: dict[int, int],
) -> list[dict[str, Any]]:
    """Views of (partition, customer_id, packed state) rows, evaluated at max(watermark, last event)."""
    if not rows:
        return []
    states = [CustomerState.unpack(blob) for _, _, blob in rows]
    ats = [max(watermarks.get(p, 0), s.last_ts) for (p, _, _), s in zip(rows, states, strict=True)]
    vecs = np.vstack([evaluate(s, params, at) for s, at in zip(states, ats, strict=True)])
    names: dict[int, str] = {}
    assignment = None
    if engine is not None:
        names = engine.live_names()
        assignment = engine.assign(vecs)
        memberships = assignment.memberships(list(range(len(rows))), MIN_MEMBERSHIP)
        values = engine.value_many(vecs)
    out: list[dict[str, Any]] = []
    for i, ((p, cid, _), state, at) in enumerate(zip(rows, states, ats, strict=True)):
        view: dict[str, Any] = {
            "customer_id": cid,
            "partition": p,
            "as_of": _iso(at),
            "features": {n: round(float(v), 4) for n, v in zip(FEATURE_NAMES, vecs[i], strict=True)},
            "events": state.events,
            "segment": None,
            # The stage as last published (a stage moves at an event or at its own crossing).
            "stage": (
                {"name": STAGES[state.stage], "since": _iso(state.stage_since)} if state.stage >= 0 else None
            ),
        }
        if engine is not None and assignment is not None:
            row = assignment.row(i)
            view["segment"] = (
                {
                    "id": state.segment,
                    "name": engine.name_of(state.segment),
                    "since": _iso(state.segment_since),
                }
                if state.segment >= 0
                else None
            )
            view["membership"] = memberships[i]
            # What the model would choose now. It can differ from ``segment``: a customer moves
            # only at an event or a re-scoring, and only past the hysteresis margin and dwell.
            view["nearest"] = (
                {"id": row.segment_id, "name": names.get(row.segment_id, f"segment {row.segment_id}")}
                if row.segment_id >= 0
                else None
            )
            view["outlier"] = bool(row.outlier)
            rfm = engine.rfm(vecs[i])
            view["rfm"] = rfm.model_dump() if rfm is not None else None
            value = values[i]
            view["value"] = value.model_dump() if value is not None else None
            view["model_version"] = engine.version
        out.append(view)
    return out


def names_now(change: dict[str, Any], name_of: Callable[[int], str]) -> dict[str, Any]:
    """A published change (its JSON) with its segments named as the model names them now, as
    ``customer`` and ``export`` do. A change carries the names of its model version; a segment
    renamed since (a ``renamed`` model event) shows its new name, and the published one under
    ``published_name``.

    >>> c = {"previous": None, "current": {"id": 4, "name": "Mainstream"}}
    >>> names_now(c, {4: "High-value loyal"}.__getitem__)["current"]
    {'id': 4, 'name': 'High-value loyal', 'published_name': 'Mainstream'}
    """
    out = dict(change)
    for side in ("previous", "current"):
        ref = change.get(side)
        if ref is None or (now := name_of(int(ref["id"]))) == ref["name"]:
            continue
        # A segment retired since keeps its last name (engine.name_of): not a rename.
        renamed = now != f"{ref['name']} (retired)"
        out[side] = {**ref, "name": now, **({"published_name": ref["name"]} if renamed else {})}
    return out


def customer_view(
    p: int, customer_id: str, blob: bytes, params: FeatureParams, engine: SegmentEngine | None, watermark: int
) -> dict[str, Any]:
    """One customer's view (what ``segstream customer`` shows)."""
    return customer_views([(p, customer_id, blob)], params, engine, {p: watermark})[0]


# ---------------------------------------------------------------- reading a namespace


def iter_views(store: Any, partitions: int, params: FeatureParams) -> Iterator[dict[str, Any]]:
    """Every customer's view, partition by partition, customers sorted, in chunks of CHUNK."""
    saved = store.load_model()
    engine = SegmentEngine.restore(saved[1]) if saved is not None else None
    for p in range(partitions):
        wms = {p: store.watermark(p)}
        ids = store.customer_ids(p)
        for i in range(0, len(ids), CHUNK):
            chunk = ids[i : i + CHUNK]
            blobs = store.get_states(p, chunk)
            rows = [(p, c, b) for c, b in zip(chunk, blobs, strict=True) if b is not None]
            yield from customer_views(rows, params, engine, wms)


# ---------------------------------------------------------------- writers


def write_jsonl(views: Iterable[dict[str, Any]], out: IO[str]) -> int:
    n = 0
    for v in views:
        out.write(json.dumps(v, separators=(",", ":"), sort_keys=False))
        out.write("\n")
        n += 1
    return n


VALUE_FIELDS = ("p_alive", "churn_risk", "purchases_90d", "spend_per_purchase", "value_365d")
CSV_FIELDS = (
    "customer_id",
    "partition",
    "as_of",
    "events",
    "segment_id",
    "segment_name",
    "segment_since",
    "nearest_id",
    "stage",
    "stage_since",
    "outlier",
    "rfm_r",
    "rfm_f",
    "rfm_m",
    "rfm_group",
    *VALUE_FIELDS,
    "model_version",
    *FEATURE_NAMES,
    "membership",
)


def flatten(v: dict[str, Any]) -> dict[str, Any]:
    """One CSV row: features as columns, membership as a compact JSON object."""
    seg = v.get("segment") or {}
    rfm = v.get("rfm") or {}
    stage = v.get("stage") or {}
    value = v.get("value") or {}
    row: dict[str, Any] = {
        "customer_id": v["customer_id"],
        "partition": v["partition"],
        "as_of": v["as_of"],
        "events": v["events"],
        "segment_id": seg.get("id", ""),
        "segment_name": seg.get("name", ""),
        "segment_since": seg.get("since", ""),
        "nearest_id": (v.get("nearest") or {}).get("id", ""),
        "stage": stage.get("name", ""),
        "stage_since": stage.get("since", ""),
        "outlier": "" if "outlier" not in v else str(v["outlier"]).lower(),
        "rfm_r": rfm.get("r", ""),
        "rfm_f": rfm.get("f", ""),
        "rfm_m": rfm.get("m", ""),
        "rfm_group": rfm.get("group", ""),
        **{k: value.get(k, "") for k in VALUE_FIELDS},
        "model_version": v.get("model_version", ""),
        "membership": json.dumps(v.get("membership", {}), separators=(",", ":")),
    }
    row.update(v["features"])
    return row


def write_csv(views: Iterable[dict[str, Any]], out: IO[str]) -> int:
    w = csv.DictWriter(out, fieldnames=CSV_FIELDS, lineterminator="\n")
    w.writeheader()
    n = 0
    for v in views:
        w.writerow(flatten(v))
        n += 1
    return n
