"""Weighted Ward linkage over segments (or micro-clusters): the hierarchical view.

>>> import numpy as np
>>> C, w = np.array([[0.0], [1.0], [10.0]]), np.array([1.0, 1.0, 2.0])
>>> h = Hierarchy.build(C, w, ["a", "b", "c"], [0, 1, 2])
>>> print(h.render())
* (w=4.0, ward=13.44)
  - [2] c (w=2.0)
  * (w=2.0, ward=1.00)
    - [0] a (w=1.0)
    - [1] b (w=1.0)
>>> h.groups(2)
{0: 0, 1: 0, 2: 2}
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Hierarchy", "ward_linkage"]


def ward_linkage(centroids: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted Ward agglomeration. Returns a scipy-style linkage matrix (k-1, 4):
    ``[a, b, distance, weight]`` with leaves ``0..k-1`` and merged nodes ``k, k+1, ...``.
    The distance is ``sqrt(2 * wa * wb / (wa + wb)) * ||ca - cb||``; ties break on the lowest index.
    """
    C = [np.asarray(c, dtype=np.float64) for c in centroids]
    W = [float(w) for w in weights]
    active = list(range(len(C)))
    out = []
    while len(active) > 1:
        best = (np.inf, -1, -1)
        for ii, a in enumerate(active):
            for b in active[ii + 1 :]:
                wa, wb = max(W[a], 1e-12), max(W[b], 1e-12)
                d = float(np.sqrt(2 * wa * wb / (wa + wb)) * np.linalg.norm(C[a] - C[b]))
                if d < best[0]:
                    best = (d, a, b)
        d, a, b = best
        w = W[a] + W[b]
        C.append((C[a] * W[a] + C[b] * W[b]) / w if w > 0 else (C[a] + C[b]) / 2)
        W.append(w)
        out.append([a, b, d, w])
        active = [x for x in active if x not in (a, b)] + [len(C) - 1]
    return np.array(out, dtype=np.float64).reshape(-1, 4)


@dataclass
class Hierarchy:
    """A dendrogram over segments: ``linkage`` as in scipy, leaves labelled by id and name."""

    ids: list[int]
    names: list[str]
    weights: list[float]
    linkage: np.ndarray

    @classmethod
    def build(cls, centroids: np.ndarray, weights: np.ndarray, names: list[str], ids: list[int]) -> Hierarchy:
        return cls(list(ids), list(names), [float(w) for w in weights], ward_linkage(centroids, weights))

    def groups(self, n_groups: int) -> dict[int, int]:
        """Cut into ``n_groups`` super-segments: segment id -> super-segment id (its smallest member id)."""
        k = len(self.ids)
        members: dict[int, list[int]] = {i: [i] for i in range(k)}
        for step, (a, b, _, _) in enumerate(self.linkage[: max(k - n_groups, 0)]):
            members[k + step] = members.pop(int(a)) + members.pop(int(b))
        out: dict[int, int] = {}
        for leaves in members.values():
            parent = min(self.ids[i] for i in leaves)
            for i in leaves:
                out[self.ids[i]] = parent
        return dict(sorted(out.items()))

    def render(self) -> str:
        """The tree as indented text, root first."""
        k = len(self.ids)
        if k == 0:
            return "(empty)"
        lines: list[str] = []

        def walk(node: int, depth: int) -> None:
            pad = "  " * depth
            if node < k:
                lines.append(f"{pad}- [{self.ids[node]}] {self.names[node]} (w={self.weights[node]:.1f})")
                return
            a, b, d, w = self.linkage[node - k]
            lines.append(f"{pad}* (w={w:.1f}, ward={d:.2f})")
            walk(int(a), depth + 1)
            walk(int(b), depth + 1)

        walk(2 * k - 2 if k > 1 else 0, 0)
        return "\n".join(lines)
