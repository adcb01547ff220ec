"""What a model version says about rows: best segment, soft membership, distances, outliers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.segments.registry import ModelEvent

__all__ = ["Assignment", "AssignmentRow", "Chunk"]


@dataclass(frozen=True)
class AssignmentRow:
    """One customer's assignment: best id, soft membership and distances over the version's ids."""

    segment_id: int
    version: int
    membership: dict[int, float]
    distances: dict[int, float]
    confidence: float
    outlier: bool


@dataclass
class Assignment:
    """Assignments of a batch. Columns of ``membership``/``distances`` follow ``ids``; a column
    whose id did not exist in a row's version has probability 0 and distance ``inf``."""

    segment_ids: np.ndarray
    membership: np.ndarray
    ids: np.ndarray
    confidence: np.ndarray
    outlier: np.ndarray
    distances: np.ndarray
    versions: np.ndarray

    def __len__(self) -> int:
        return len(self.segment_ids)

    def memberships(self, rows: list[int], min_prob: float = 0.005) -> list[dict[str, float]]:
        """The rows' memberships as published: ``{"id": probability}`` by id, rounded to 4
        places, without the ids under ``min_prob`` or not in the row's version (one numpy pass
        for all the rows)."""
        order = np.argsort(self.ids, kind="stable")
        names = [str(sid) for sid in self.ids[order].tolist()]
        probs = self.membership[rows][:, order]
        keep = (np.isfinite(self.distances[rows][:, order]) & (probs >= min_prob)).tolist()
        return [
            {name: round(p, 4) for name, p, k in zip(names, row, kept, strict=True) if k}
            for row, kept in zip(probs.tolist(), keep, strict=True)
        ]

    def rows(self, lo: int, hi: int) -> Assignment:
        """Rows ``lo:hi`` (views of the arrays, the same ids)."""
        return Assignment(
            segment_ids=self.segment_ids[lo:hi],
            membership=self.membership[lo:hi],
            ids=self.ids,
            confidence=self.confidence[lo:hi],
            outlier=self.outlier[lo:hi],
            distances=self.distances[lo:hi],
            versions=self.versions[lo:hi],
        )

    def take(self, index: np.ndarray) -> Assignment:
        """The rows at ``index`` (copies, the same ids)."""
        return Assignment(
            segment_ids=self.segment_ids[index],
            membership=self.membership[index],
            ids=self.ids,
            confidence=self.confidence[index],
            outlier=self.outlier[index],
            distances=self.distances[index],
            versions=self.versions[index],
        )

    def row(self, i: int) -> AssignmentRow:
        ok = np.isfinite(self.distances[i])
        ids = self.ids[ok].tolist()
        return AssignmentRow(
            segment_id=int(self.segment_ids[i]),
            version=int(self.versions[i]),
            membership=dict(zip(ids, self.membership[i, ok].tolist(), strict=True)),
            distances=dict(zip(ids, self.distances[i, ok].tolist(), strict=True)),
            confidence=float(self.confidence[i]),
            outlier=bool(self.outlier[i]),
        )

    @staticmethod
    def concat(parts: list[Assignment]) -> Assignment:
        if len(parts) == 1:
            return parts[0]
        ids = np.array(sorted({int(i) for p in parts for i in p.ids.tolist()}), dtype=np.int64)
        mem, dist = [], []
        for p in parts:
            m = np.zeros((len(p), len(ids)))
            d = np.full((len(p), len(ids)), np.inf)
            cols = np.searchsorted(ids, p.ids)
            m[:, cols] = p.membership
            d[:, cols] = p.distances
            mem.append(m)
            dist.append(d)
        return Assignment(
            segment_ids=np.concatenate([p.segment_ids for p in parts]),
            membership=np.vstack(mem),
            ids=ids,
            confidence=np.concatenate([p.confidence for p in parts]),
            outlier=np.concatenate([p.outlier for p in parts]),
            distances=np.vstack(dist),
            versions=np.concatenate([p.versions for p in parts]),
        )


@dataclass(frozen=True)
class Chunk:
    """Rows ``lo:hi`` of a :meth:`SegmentEngine.process_chunks` call, all assigned by one version."""

    lo: int
    hi: int
    assignment: Assignment
    events_before: list[ModelEvent]  # model events of the build that preceded this chunk
