"""Explanations: why a customer moved, in the features' own units."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models.features.table import feature_label, format_value
from models.segments.vectorize import Vectorizer
from models.segments.version import ModelVersion

__all__ = ["explain_many"]


def explain_many(
    v: ModelVersion | None,
    vectorizer: Vectorizer,
    feature_names: Sequence[str],
    raw_rows: np.ndarray,
    from_ids: Sequence[int | None],
    to_ids: Sequence[int],
) -> list[str]:
    """Plain words for each change: the features that contribute most to ``to_ids[i]`` beating
    ``from_ids[i]``, in their units, against the old segment's typical value. One transform and
    one ranking for the batch's changes (the change path's main cost)."""
    n = len(to_ids)
    if v is None:
        return ["model warming up"] * n
    if n == 0:
        return []
    pos = {int(s): i for i, s in enumerate(v.ids.tolist())}
    raw = np.asarray(raw_rows, dtype=np.float64).reshape(n, -1)
    z = vectorizer.transform(raw)
    # Row of each segment in the centroid table; the zero vector stands for "no old segment".
    zero = len(v.centroids)
    table = np.vstack([v.centroids, np.zeros((1, v.centroids.shape[1]))])
    from_rows = np.array([pos.get(f, zero) if f is not None else zero for f in from_ids])
    to_rows = np.array([pos.get(t, zero) for t in to_ids])
    contrib = (z - table[from_rows]) ** 2 - (z - table[to_rows]) ** 2
    top = np.argsort(-contrib, axis=1, kind="stable")[:, :3].tolist()
    typical = vectorizer.inverse(v.centroids)  # each segment's typical values, raw units
    out = []
    for i, (from_id, to_id) in enumerate(zip(from_ids, to_ids, strict=True)):
        if to_id not in pos:
            out.append(f"segment {to_id} is not in model version {v.number}")
            continue
        from_row = -1 if from_id is None else pos.get(from_id, -1)
        known = from_row >= 0
        from_name = v.names.get(from_id, f"segment {from_id}") if from_id is not None else None
        parts = []
        for f in top[i]:
            if contrib[i, f] <= 0:
                break
            name = feature_names[f]
            text = f"{feature_label(name)} {format_value(name, float(raw[i, f]))}"
            if known:
                # Against the old segment's typical value: the customer's own previous value
                # is not known here, so no "rose"/"fell".
                text += f" (typical of {from_name}: {format_value(name, float(typical[from_row, f]))})"
            parts.append(text)
        lead = "" if known else f"closest to {v.names.get(to_id, to_id)}: "
        out.append(lead + ("; ".join(parts) if parts else "small changes across many features"))
    return out
