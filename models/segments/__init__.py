"""Segments: vectorisation, online clustering, stable ids, names, hierarchy, RFM, evaluation."""

from models.segments.engine import (
    Assignment,
    AssignmentRow,
    EngineParams,
    SegmentEngine,
    SegmentProfile,
)
from models.segments.microclusters import MicroClusterKMeans
from models.segments.registry import ModelEvent, SegmentRegistry
from models.segments.rfm import RFMScorer
from models.segments.vectorize import DEFAULT_FEATURES, Vectorizer

__all__ = [
    "DEFAULT_FEATURES",
    "Assignment",
    "AssignmentRow",
    "EngineParams",
    "MicroClusterKMeans",
    "ModelEvent",
    "RFMScorer",
    "SegmentEngine",
    "SegmentProfile",
    "SegmentRegistry",
    "Vectorizer",
]
