"""What a batch carries between the pipeline's steps: rows, a partition's part, the result."""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from models.features.batch import StateBatch

__all__ = ["WARMUP_CHECKPOINT_SECONDS", "BatchResult", "PartitionBatch", "Row", "iso", "iso_seconds"]


@dataclass(slots=True)
class Row:
    """One row the segment step assigns: a customer's event, or an inactivity re-scoring (a
    threshold of silence or a lifecycle stage's crossing)."""

    customer_id: str
    index: int  # the customer's position in the batch's StateBatch
    applied: int  # the row shows the state after this many of the customer's events in the batch
    at: float
    reason: str  # "event" | "inactivity"
    offset: int
    clock: int = 0  # the partition's watermark once the row was made (0: none yet)
    stage: int = -1  # the customer's lifecycle stage after the row
    # (stage before, stage after, why) when the row changed the stage
    stage_move: tuple[int, int, str] | None = None


@dataclass(slots=True)
class PartitionBatch:
    """One partition's part of a batch, as the segment step sees it."""

    partition: int
    ids: list[str]  # the customers loaded, in StateBatch order
    loaded: dict[str, bytes | None]  # their states as loaded (before the batch)
    states: StateBatch
    rows: list[Row]
    snaps: np.ndarray  # each row's state snapshot
    dirty: set[int]  # StateBatch positions to write
    watermark: int = 0  # the partition's watermark before the batch (0: none yet)


def iso(ts: str) -> str:
    """An event time in the one form dead-letter reasons use, whichever decoder read it."""
    return datetime.fromisoformat(ts).isoformat()


def iso_seconds(ts: float) -> str:
    return datetime.fromtimestamp(int(ts), UTC).isoformat()


@dataclass
class BatchResult:
    offsets: dict[int, int] = field(default_factory=dict)  # partition -> next offset to commit
    watermarks: dict[int, int] = field(default_factory=dict)  # partition -> watermark written
    applied: int = 0
    dead_letters: int = 0
    dead_letter_classes: dict[str, int] = field(default_factory=dict)  # error class -> count
    changes: int = 0
    # Done when the batch's state is in the store: Kafka offsets may be committed from then on.
    durable: Future[None] | None = None


# Event time between two checkpoints of a warming model: what a crash during warm-up can lose.
WARMUP_CHECKPOINT_SECONDS = 86_400
