"""Stable segment ids over any model's centroids, and the model events that explain changes.

At every model version the new centroids are matched to the previous ones with a Hungarian
assignment (``scipy.optimize.linear_sum_assignment``) under a distance gate; where the model
reports member overlap (micro-cluster ids shared between the old and the new segments) it
confirms or overrides the distance. Matched ids survive; a split keeps the id on the larger
child; a merge keeps the id of the larger parent; retired ids are never reused. Unmatched new
centroids are births, unmatched old ones deaths, matched ones that moved are drift.

>>> import numpy as np
>>> reg = SegmentRegistry()
>>> ids, events = reg.update(np.array([[0.0, 0.0], [10.0, 0.0]]), np.array([5.0, 5.0]), 1, 0.0)
>>> ids.tolist(), [e.kind for e in events]
([0, 1], ['birth', 'birth'])
>>> ids, events = reg.update(np.array([[10.2, 0.0], [0.1, 0.0]]), np.array([5.0, 5.0]), 2, 1.0)
>>> ids.tolist(), events
([1, 0], [])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = ["EventKind", "ModelEvent", "SegmentRegistry"]

# "renamed": a segment's name changed (models.segments.naming): the one event that says so, with
# the new name and the old, so that a consumer of the changes topic can follow it (the names in a
# change are those of its model version; see docs/decisions/0022-names-follow-their-claims.md).
EventKind = Literal["birth", "death", "split", "merge", "drift", "renamed", "version"]
_BIG = 1e9


@dataclass(frozen=True)
class ModelEvent:
    """A change of the segmentation between two model versions."""

    kind: EventKind
    version: int
    segment_id: int
    related_ids: tuple[int, ...]
    detail: str
    event_time: float
    name: str | None = None  # renamed: the segment's name from this version on
    previous_name: str | None = None  # renamed: its name before


class SegmentRegistry:
    """Keeps ids stable across model versions.

    Parameters
    ----------
    gate
        A new centroid may take an old id only if it lies within ``gate`` times the old
        centroid's distance to its nearest other old centroid (scale-free).
    drift
        A matched centroid that moved more than ``drift`` times that spacing emits a drift event.
    min_overlap
        Share of member weight that makes an unmatched segment a split / merge partner.
    """

    def __init__(self, gate: float = 0.5, drift: float = 0.25, min_overlap: float = 0.3) -> None:
        self.gate = gate
        self.drift = drift
        self.min_overlap = min_overlap
        self.ids = np.zeros(0, dtype=np.int64)
        self.centroids: np.ndarray | None = None
        self.weights = np.zeros(0)
        self.retired: set[int] = set()
        self.next_id = 0
        self._member_of: dict[int, int] = {}  # member uid -> index into self.ids

    def rescale(self, a: np.ndarray, b: np.ndarray) -> None:
        """Follow an affine change of model space ``z' = a * z + b``."""
        if self.centroids is not None:
            self.centroids = a * self.centroids + b

    def _new_id(self) -> int:
        i = self.next_id
        self.next_id += 1
        return i

    def _overlap(
        self, k_new: int, uids: np.ndarray | None, labels: np.ndarray | None, weights: np.ndarray | None
    ) -> np.ndarray | None:
        if uids is None or labels is None or weights is None or not self._member_of:
            return None
        ov = np.zeros((len(self.ids), k_new))
        for u, j, w in zip(uids.tolist(), labels.tolist(), weights.tolist(), strict=True):
            i = self._member_of.get(u)
            if i is not None:
                ov[i, j] += w
        return ov if ov.sum() > 0 else None

    def update(
        self,
        centroids: np.ndarray,
        weights: np.ndarray,
        version: int,
        event_time: float,
        member_uids: np.ndarray | None = None,
        member_labels: np.ndarray | None = None,
        member_weights: np.ndarray | None = None,
    ) -> tuple[np.ndarray, list[ModelEvent]]:
        """Give ids to a new set of centroids; returns (ids aligned with the rows, events)."""
        C = np.asarray(centroids, dtype=np.float64)
        W = np.asarray(weights, dtype=np.float64)
        k = len(C)
        events: list[ModelEvent] = []

        def ev(kind: EventKind, sid: int, related: tuple[int, ...], detail: str) -> None:
            events.append(ModelEvent(kind, version, sid, related, detail, event_time))

        new_ids = np.full(k, -1, dtype=np.int64)
        if self.centroids is None or len(self.ids) == 0:
            for j in range(k):
                new_ids[j] = self._new_id()
                ev("birth", int(new_ids[j]), (), f"new segment of weight {W[j]:.1f}")
        else:
            old = self.centroids
            k_old = len(old)
            D = np.sqrt(np.maximum(((old[:, None, :] - C[None, :, :]) ** 2).sum(-1), 0.0))
            if k_old > 1:
                oo = np.sqrt(((old[:, None, :] - old[None, :, :]) ** 2).sum(-1))
                np.fill_diagonal(oo, np.inf)
                spacing = oo.min(axis=1)
            else:
                spacing = np.full(1, np.inf)
            gate = self.gate * spacing
            ov = self._overlap(k, member_uids, member_labels, member_weights)
            allowed = gate[:, None] >= D
            with np.errstate(divide="ignore", invalid="ignore"):
                cost = np.where(np.isfinite(gate)[:, None], D / gate[:, None], 0.0)
            if ov is not None:
                frac_new = ov / np.maximum(ov.sum(axis=0, keepdims=True), 1e-300)
                frac_old = ov / np.maximum(ov.sum(axis=1, keepdims=True), 1e-300)
                strong = (frac_new >= 0.5) & (frac_old >= 0.5)
                allowed |= strong
                cost = cost - frac_new * frac_old
            cost = np.where(allowed, cost, _BIG)
            from scipy.optimize import linear_sum_assignment  # here: slow to import, only builds need it

            rows, cols = linear_sum_assignment(cost)
            match_old = np.full(k_old, -1)
            match_new = np.full(k, -1)
            for i, j in zip(rows.tolist(), cols.tolist(), strict=True):
                if allowed[i, j]:
                    match_old[i], match_new[j] = j, i
                    new_ids[j] = self.ids[i]
                    if np.isfinite(spacing[i]) and D[i, j] > self.drift * spacing[i]:
                        ev(
                            "drift",
                            int(self.ids[i]),
                            (),
                            f"centroid moved {D[i, j]:.2f} (spacing {spacing[i]:.2f})",
                        )

            # Unmatched new centroids: a split of an old segment, or a birth.
            for j in np.flatnonzero(match_new < 0).tolist():
                parent = -1
                if ov is not None and ov[:, j].sum() > 0:
                    i = int(np.argmax(ov[:, j]))
                    if ov[i, j] / ov[:, j].sum() >= self.min_overlap:
                        parent = i
                elif ov is None:
                    i = int(np.argmin(D[:, j]))
                    if D[i, j] <= 2 * gate[i]:
                        parent = i
                if parent >= 0 and match_old[parent] >= 0:
                    sibling = int(match_old[parent])
                    pid = int(self.ids[parent])
                    child = self._new_id()
                    if W[j] > W[sibling]:  # the id stays on the larger child
                        new_ids[j], new_ids[sibling] = pid, child
                        match_old[parent] = j
                    else:
                        new_ids[j] = child
                    ev("split", pid, (child,), f"segment {pid} split; new segment {child}")
                else:
                    new_ids[j] = self._new_id()
                    ev("birth", int(new_ids[j]), (), f"new segment of weight {W[j]:.1f}")

            # Unmatched old centroids: merged into a new segment, or dead.
            for i in np.flatnonzero(match_old < 0).tolist():
                oid = int(self.ids[i])
                target = -1
                if ov is not None and ov[i].sum() > 0:
                    j = int(np.argmax(ov[i]))
                    if ov[i, j] / ov[i].sum() >= self.min_overlap:
                        target = j
                elif ov is None:
                    j = int(np.argmin(D[i]))
                    if D[i, j] <= 2 * gate[i]:
                        target = j
                if target >= 0:
                    cur = int(new_ids[target])
                    cur_old = np.flatnonzero(self.ids == cur)
                    cur_w = float(self.weights[cur_old[0]]) if len(cur_old) else 0.0
                    if float(self.weights[i]) > cur_w:  # the id of the larger parent survives
                        new_ids[target] = oid
                        kept, gone = oid, cur
                    else:
                        kept, gone = cur, oid
                    ev("merge", kept, (gone,), f"segment {gone} merged into {kept}")
                else:
                    ev("death", oid, (), "segment no longer found")

        self.retired |= set(self.ids.tolist()) - set(new_ids.tolist())
        self.ids = new_ids
        self.centroids = C.copy()
        self.weights = W.copy()
        if member_uids is not None and member_labels is not None:
            self._member_of = dict(zip(member_uids.tolist(), member_labels.tolist(), strict=True))
        return new_ids.copy(), events
