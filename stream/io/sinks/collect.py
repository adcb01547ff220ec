"""Outputs kept in memory (evaluation, tests): the changes and model events as objects."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from models.contracts import DeadLetter, PublishedModel, SegmentChange
from models.segments.engine import SegmentEngine

__all__ = ["CollectSink"]


@dataclass
class CollectSink:
    engine: SegmentEngine
    changes: list[SegmentChange] = field(default_factory=list)
    model_events: list[dict[str, Any]] = field(default_factory=list)
    snapshots: list[bytes] = field(default_factory=list)
    published: list[PublishedModel] = field(default_factory=list)  # without their checkpoints

    def change(self, change: SegmentChange) -> None:
        self.changes.append(change)

    def dead_letter(self, dl: DeadLetter) -> None:
        pass

    def model_event(self, payload: dict[str, Any]) -> None:
        self.model_events.append(payload)

    def model_snapshot(self, model: PublishedModel, snapshot: bytes) -> None:
        self.snapshots.append(snapshot)
        self.published.append(model)

    def flush(self, timeout: float = 60.0) -> None:
        pass
