"""The output contracts: segment changes and dead letters (JSON on Kafka; JSON Schemas in schemas/).

>>> dl = DeadLetter.of("interactions", 0, 7, b"c1", b"x" * 5000, "RecordTooLarge", "too big")
>>> dl.original_size, dl.original_truncated
(5000, True)
"""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class SegmentRef(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: int = Field(description="Stable segment id; -1 while the model warms up.")
    name: str


ChangeReason = Literal["event", "inactivity", "model_update", "erase"]
ChangeKind = Literal["segment", "stage"]
# Lifecycle stages (models.segments.lifecycle decides them).
StageName = Literal["prospect", "new", "active", "at_risk", "lapsed", "won_back"]


class CustomerValue(BaseModel):
    """Churn risk and predicted value from the model version's Buy-Till-You-Die fit (BG/NBD and
    Gamma-Gamma on the learner's customer sample); present for customers who bought."""

    model_config = ConfigDict(frozen=True)

    p_alive: float = Field(ge=0, le=1, description="Probability the customer is still a customer.")
    churn_risk: float = Field(ge=0, le=1, description="1 - p_alive.")
    purchases_90d: float = Field(ge=0, description="Expected purchase days in the next 90 days.")
    spend_per_purchase: float = Field(ge=0, description="Expected spend per purchase, event currency.")
    value_365d: float = Field(
        ge=0, description="Predicted value of the next 365 days (CLV, undiscounted), event currency."
    )


class SegmentChange(BaseModel):
    """A customer's segment or lifecycle stage changed (topic ``segments.changes``, key =
    customer_id).

    ``kind`` "segment": ``previous`` -> ``current`` (the stage unchanged); ``kind`` "stage":
    ``previous_stage`` -> ``stage`` (``previous`` and ``current`` both the segment held, None
    before the first). Every change carries the whole picture (segment, stage, scores), so the
    newest change per customer (``segments.current``) says all downstream needs.

    Deterministic: the same input log gives the same ``change_id`` and payload; the wall-clock
    emit time travels as the Kafka header ``emitted_at``.
    """

    model_config = ConfigDict(frozen=True)

    change_id: str
    customer_id: str
    seq: int = Field(ge=1, description="Per-customer sequence number of changes.")
    previous: SegmentRef | None
    current: SegmentRef | None = Field(
        description="None after an erase, and for a stage change before the first segment."
    )
    kind: ChangeKind = "segment"
    stage: StageName | None = Field(None, description="The lifecycle stage (None after an erase).")
    previous_stage: StageName | None = None
    membership: dict[str, float] = Field(default_factory=dict, description="segment id -> probability")
    confidence: float = Field(ge=0, le=1)
    outlier: bool = False
    reason: ChangeReason
    explanation: str
    rfm: RFMScore | None = None
    value: CustomerValue | None = None
    model_version: int
    event_time: datetime
    source_topic: str
    source_partition: int
    source_offset: int


class RFMScore(BaseModel):
    model_config = ConfigDict(frozen=True)

    r: int = Field(ge=1, le=5)
    f: int = Field(ge=1, le=5)
    m: int = Field(ge=1, le=5)
    group: str


# A dead letter carries at most this much of the original record: the whole record may be as
# large as the broker accepts (megabytes), and its dead letter must always fit the dead-letter
# topic, whatever the record.
DEAD_LETTER_ORIGINAL_BYTES = 4096


class DeadLetter(BaseModel):
    """A record that could not be processed (topic ``interactions.dlq``).

    Bounded whatever the record: ``original`` holds at most the first
    ``DEAD_LETTER_ORIGINAL_BYTES`` of it, ``original_size`` and ``original_sha256`` identify the
    whole; the source coordinates say where to read it again.
    """

    model_config = ConfigDict(frozen=True)

    source_topic: str
    source_partition: int
    source_offset: int
    key: str | None = Field(
        description="The record key (UTF-8, invalid bytes replaced), at most 128 characters."
    )
    original: str = Field(description="The original bytes (at most the first 4096), base64.")
    original_size: int = Field(ge=0, description="Size of the whole original record value in bytes.")
    original_sha256: str = Field(description="SHA-256 of the whole original record value, hex.")
    original_truncated: bool = Field(description="True when `original` holds only a prefix.")
    error_class: str
    reason: str = Field(max_length=1000)

    @classmethod
    def of(
        cls,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        error_class: str,
        reason: str,
    ) -> DeadLetter:
        """The dead letter of one record: a bounded prefix of it, its size and its hash."""
        body = value or b""
        head = body[:DEAD_LETTER_ORIGINAL_BYTES]
        return cls(
            source_topic=topic,
            source_partition=partition,
            source_offset=offset,
            key=key.decode("utf-8", "replace")[:128] if key is not None else None,
            original=base64.b64encode(head).decode(),
            original_size=len(body),
            original_sha256=hashlib.sha256(body).hexdigest(),
            original_truncated=len(head) < len(body),
            error_class=error_class,
            reason=reason[:1000],
        )


SegmentChange.model_rebuild()
