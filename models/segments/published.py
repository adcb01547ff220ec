"""The published model: a model version as documented data (models.contracts.model), built from
the engine, and the engine's checkpoint read back from a published record.

>>> import numpy as np
>>> from models.segments.engine import DEFAULT_FEATURES, EngineParams, SegmentEngine
>>> params = EngineParams(n_segments=3, warmup_vectors=300, update_every=300, warmup_days=0, population=0)
>>> engine = SegmentEngine(params)
>>> raw = np.abs(np.random.default_rng(0).normal(1.0, 0.5, (300, len(DEFAULT_FEATURES))))
>>> _ = engine.process(raw, np.arange(300.0))
>>> doc = published_model(engine, engine.snapshot())
>>> doc.version, len(doc.segments), doc.transform.weight == engine.vectorizer.weights.tolist()
(1, 3, True)
>>> SegmentEngine.restore(checkpoint_of(doc.model_dump_json().encode())).version
1
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Any

from models.contracts.model import (
    BGNBDParams,
    BTYDParams,
    GammaGammaParams,
    ModelHierarchy,
    ModelTransform,
    PublishedModel,
    PublishedSegment,
)
from models.segments.checkpoint import CheckpointError

__all__ = ["checkpoint_of", "published_model"]


def published_model(engine: Any, checkpoint: bytes | None = None) -> PublishedModel:
    """The engine's current version as data (``checkpoint``: the engine's checkpoint to carry)."""
    v = engine._current
    if v is None:
        raise ValueError("no model version yet: nothing to publish while warming up")
    column = {int(sid): j for j, sid in enumerate(v.ids.tolist())}
    segments = []
    for p in engine.segments():  # by id, profiles in original units
        j = column[p.id]
        segments.append(
            PublishedSegment(
                id=p.id,
                name=p.name,
                centroid=v.centroids[j].tolist(),
                variance=v.variances[j].tolist(),
                size=p.size,
                share=p.share,
                outlier_distance=float(v.thresholds[j]),
                parent=p.parent,
                profile=p.centroid,
            )
        )
    h = engine.hierarchy()
    linkage = [(int(a), int(b), float(d), float(w)) for a, b, d, w in h.linkage.tolist()]
    value = engine.value_model
    btyd = None
    if value.bgnbd is not None and value.gamma_gamma is not None:
        g, m = value.bgnbd, value.gamma_gamma
        btyd = BTYDParams(
            bgnbd=BGNBDParams(r=g.r, alpha=g.alpha, a=g.a, b=g.b),
            gamma_gamma=GammaGammaParams(p=m.p, q=m.q, gamma=m.gamma),
        )
    return PublishedModel(
        version=engine.version,
        event_time=datetime.fromtimestamp(float(engine.t_max), UTC),
        feature_names=list(engine.feature_names),
        transform=ModelTransform(**engine.vectorizer.steps()),
        segments=segments,
        hierarchy=ModelHierarchy(ids=h.ids, linkage=linkage),
        btyd=btyd,
        checkpoint_b64=base64.b64encode(checkpoint).decode() if checkpoint is not None else None,
    )


def checkpoint_of(record: bytes) -> bytes:
    """The engine checkpoint a ``segments.model`` record carries (to restore with
    ``SegmentEngine.restore``, which reads data only); a CheckpointError if it has none."""
    try:
        doc = json.loads(record)
        b64 = doc.get("checkpoint_b64") if isinstance(doc, dict) else None
        if not isinstance(b64, str):
            raise CheckpointError("model record refused: it carries no checkpoint")
        return base64.b64decode(b64, validate=True)
    except (ValueError, binascii.Error) as e:
        if isinstance(e, CheckpointError):
            raise
        raise CheckpointError(f"model record refused: not a published model ({type(e).__name__})") from None
