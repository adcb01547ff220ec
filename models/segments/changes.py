"""The one way a segment change is built, and its deterministic id.

A change's id is a hash of where it comes from (the source topic and partition, and the record
offset, or what stands for it: ``"retired 3"`` for a move out of a retired segment), the
customer and the customer's change sequence number: the same log gives the same ids, and a
batch redone after a crash republishes the same ids.

>>> change_id("interactions", 0, 41, "c1", 2) == change_id("interactions", 0, 41, "c1", 2)
True
>>> len(change_id("erase", 1, 7, "c1", 3))
32
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from models.contracts import (
    ChangeKind,
    ChangeReason,
    CustomerValue,
    RFMScore,
    SegmentChange,
    SegmentRef,
    StageName,
)

__all__ = ["ERASE_EXPLANATION", "ERASE_SOURCE", "change_id", "erase_change", "segment_change"]

ERASE_SOURCE = "erase"
ERASE_EXPLANATION = "erased on request"


def change_id(source: str, partition: int, position: int | str, customer_id: str, seq: int) -> str:
    """Deterministic: the same source position and customer sequence give the same id."""
    return hashlib.sha256(f"{source}|{partition}|{position}|{customer_id}|{seq}".encode()).hexdigest()[:32]


def segment_change(
    *,
    customer_id: str,
    seq: int,
    previous: SegmentRef | None,
    current: SegmentRef | None,
    membership: dict[str, float],
    confidence: float,
    outlier: bool,
    reason: ChangeReason,
    explanation: str,
    rfm: RFMScore | None,
    model_version: int,
    event_time: float,
    source_topic: str,
    source_partition: int,
    source_offset: int,
    position: int | str | None = None,
    kind: ChangeKind = "segment",
    stage: StageName | None = None,
    previous_stage: StageName | None = None,
    value: CustomerValue | None = None,
) -> SegmentChange:
    """A change, its id from ``position`` (default: the source offset)."""
    return SegmentChange(
        change_id=change_id(
            source_topic, source_partition, source_offset if position is None else position, customer_id, seq
        ),
        customer_id=customer_id,
        seq=seq,
        previous=previous,
        current=current,
        kind=kind,
        stage=stage,
        previous_stage=previous_stage,
        membership=membership,
        confidence=confidence,
        outlier=outlier,
        reason=reason,
        explanation=explanation,
        rfm=rfm,
        value=value,
        model_version=model_version,
        event_time=datetime.fromtimestamp(event_time, UTC),
        source_topic=source_topic,
        source_partition=source_partition,
        source_offset=source_offset,
    )


def erase_change(
    customer_id: str,
    partition: int,
    applied_offset: int,
    segment: int,
    seq: int,
    last_ts: int,
    model_version: int,
    names: dict[int, str],
) -> SegmentChange:
    """The change that erases a customer (``segstream forget``): its id comes from the
    partition's applied offset at the erase, so erasing the same state again gives the same id."""
    previous = SegmentRef(id=segment, name=names.get(segment, f"segment {segment}")) if segment >= 0 else None
    return segment_change(
        customer_id=customer_id,
        seq=seq + 1,
        previous=previous,
        current=None,
        membership={},
        confidence=1.0,
        outlier=False,
        reason="erase",
        explanation=ERASE_EXPLANATION,
        rfm=None,
        model_version=model_version,
        event_time=last_ts,
        source_topic=ERASE_SOURCE,
        source_partition=partition,
        source_offset=max(applied_offset, 0),
        position=applied_offset,
    )
