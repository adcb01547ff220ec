"""The published model (topic ``segments.model``, key ``model``, one record per model version):
data any service can read to score feature vectors as segstream does (docs/model-format.md).

A raw feature row ``x`` (in ``feature_names`` order) is taken to model space feature by feature:
non-finite values become 0, then ``x`` is clipped to ``[clip_low, clip_high]`` (a null bound is
none), then ``log1p(max(x, 0))`` where ``log1p`` is true, then ``z = (x - mean) / std * weight``.
A row's segment is the one whose ``centroid`` is nearest to ``z`` (Euclidean).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "MODEL_FORMAT",
    "BGNBDParams",
    "BTYDParams",
    "GammaGammaParams",
    "ModelHierarchy",
    "ModelTransform",
    "PublishedModel",
    "PublishedSegment",
]

MODEL_FORMAT: Literal["segstream-model/1"] = "segstream-model/1"


class ModelTransform(BaseModel):
    """Raw feature rows -> model space; one entry per feature, in ``feature_names`` order."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    log1p: list[bool] = Field(description="Take log1p(max(x, 0)) of the clipped value.")
    clip_low: list[float | None] = Field(description="Lower clip bound (null: none).")
    clip_high: list[float | None] = Field(description="Upper clip bound (null: none).")
    mean: list[float] = Field(description="Mean of the shaped feature (the version's scaler).")
    std: list[float] = Field(description="Standard deviation of the shaped feature (> 0).")
    weight: list[float] = Field(description="Weight of the standardised feature in distances.")


class PublishedSegment(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    id: int = Field(description="Stable segment id.")
    name: str
    centroid: list[float] = Field(description="Centre in model space (the transform's output).")
    variance: list[float] = Field(description="Per-feature variance in model space (soft membership).")
    size: float = Field(description="The segment's (decayed) weight in the version's fit.")
    share: float = Field(description="size / the sum of sizes.")
    outlier_distance: float = Field(
        description="A row farther than this from the centroid (model space) is an outlier of it."
    )
    parent: int | None = Field(description="Id of its super-segment (the smallest id in it).")
    profile: dict[str, float] = Field(description="The centroid in original units, by feature name.")


class ModelHierarchy(BaseModel):
    """Weighted Ward linkage over the segments, as in scipy: node ``i < k`` is segment
    ``ids[i]``; merge ``j`` (a row of ``linkage``: left node, right node, distance, weight) is
    node ``k + j``."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    ids: list[int]
    linkage: list[tuple[int, int, float, float]]


class BGNBDParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    r: float
    alpha: float
    a: float
    b: float


class GammaGammaParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    p: float
    q: float
    gamma: float


class BTYDParams(BaseModel):
    """The version's Buy-Till-You-Die fit (days as the time unit; spend in the events' currency)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    bgnbd: BGNBDParams
    gamma_gamma: GammaGammaParams


class PublishedModel(BaseModel):
    """One model version as data (topic ``segments.model``; the newest per key is the model)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    format: Literal["segstream-model/1"] = MODEL_FORMAT
    version: int = Field(ge=1, description="Model version number (grows by one per version).")
    event_time: datetime = Field(description="Event time of the newest row the version learned from.")
    feature_names: list[str]
    transform: ModelTransform
    segments: list[PublishedSegment] = Field(description="The version's segments, by id.")
    hierarchy: ModelHierarchy
    btyd: BTYDParams | None = Field(description="Present once the customer sample allowed a fit.")
    checkpoint_b64: str | None = Field(
        None,
        description="The engine's internal checkpoint (base64 of the segstream-engine/2 format, "
        "docs/model-format.md); other services can ignore it.",
    )
