"""Segments of two segmentations matched by their members, not by their raw ids.

Two namespaces (production and a what-if replay) number their segments independently: segment 3
of one may hold the customers of segment 5 of the other. Comparing raw ids then counts every
customer as moved. The match here is the one-to-one pairing that keeps the most customers
together: a Hungarian assignment (``scipy.optimize.linear_sum_assignment``) on the member-overlap
matrix. Ties prefer equal ids, so two identical segmentations match id to id. A pair that shares
no customer is no match (an extra segment on one side has none), and "no segment" (-1) pairs only
with itself.

>>> m = match_segments({(1, 7): 40, (1, 8): 2, (2, 8): 30, (3, 7): 5})
>>> m.pairs, m.agreed, m.total
({1: 7, 2: 8}, 70, 77)
>>> round(m.agreement, 3), m.partner_of_b(8), m.partner_of_b(9)
(0.909, 2, None)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

NO_SEGMENT = -1
# Less than one customer: it only decides between assignments that keep as many customers.
_SAME_ID_BONUS = 0.5


@dataclass(frozen=True)
class Matching:
    """A one-to-one pairing of A's segments with B's (``pairs``: A id -> B id)."""

    pairs: dict[int, int]
    overlap: dict[int, int]  # A id -> customers the pair shares
    agreed: int  # customers in a matched pair (the same segment up to renumbering)
    total: int  # customers in both segmentations

    @property
    def agreement(self) -> float:
        """Share of the customers in both that stay together (1.0 when there is nobody)."""
        return self.agreed / self.total if self.total else 1.0

    @property
    def renumbered(self) -> bool:
        """Some matched pair has two different ids."""
        return any(a != b for a, b in self.pairs.items())

    def partner_of_b(self, b: int) -> int | None:
        return next((a for a, bb in self.pairs.items() if bb == b), None)

    def same(self, a: int, b: int) -> bool:
        """Whether a customer in A's segment ``a`` and B's ``b`` stayed in the same segment."""
        return self.pairs.get(a) == b


def match_segments(confusion: Mapping[tuple[int, int], int]) -> Matching:
    """The pairing of A's and B's segments (the keys of ``confusion``: (A id, B id) -> customers
    in both) that keeps the most customers together."""
    a_ids = sorted({a for a, _ in confusion if a != NO_SEGMENT})
    b_ids = sorted({b for _, b in confusion if b != NO_SEGMENT})
    pairs: dict[int, int] = {}
    overlap: dict[int, int] = {}
    if a_ids and b_ids:
        m = np.zeros((len(a_ids), len(b_ids)))
        for i, a in enumerate(a_ids):
            for j, b in enumerate(b_ids):
                m[i, j] = confusion.get((a, b), 0) + (_SAME_ID_BONUS if a == b else 0.0)
        from scipy.optimize import linear_sum_assignment  # here: slow to import, one command needs it

        rows, cols = linear_sum_assignment(m, maximize=True)
        for i, j in zip(rows.tolist(), cols.tolist(), strict=True):
            n = int(confusion.get((a_ids[i], b_ids[j]), 0))
            if n > 0:
                pairs[a_ids[i]] = b_ids[j]
                overlap[a_ids[i]] = n
    if confusion.get((NO_SEGMENT, NO_SEGMENT), 0):
        pairs[NO_SEGMENT] = NO_SEGMENT
        overlap[NO_SEGMENT] = int(confusion[(NO_SEGMENT, NO_SEGMENT)])
    return Matching(
        pairs=dict(sorted(pairs.items())),
        overlap=dict(sorted(overlap.items())),
        agreed=sum(overlap.values()),
        total=int(sum(confusion.values())),
    )
