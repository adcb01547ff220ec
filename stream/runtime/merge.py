"""Which rows of a batch come before anything a partition can still deliver (the learner's merge).

A learner that reads several partitions processes their rows in one order, whatever order the
polls return them in: by the partition's clock at the row (its watermark, which never goes
back), then the partition, then the row's place in it. A row is processed (assigned, then
learned) only once no partition can still deliver a row before it: every partition not read to
its end has passed it. Each row is then assigned by the version built from exactly the rows
before it in that order, so the published segments are a function of the log, not of the polls
(issue #23 item 3; docs/decisions/0028-the-learner-merges-its-partitions.md).

A partition's rows in a batch come in its order with non-decreasing clocks, so "the rows that may
go now" is a prefix of each. Holding a partition's tail back lets it deliver that tail later, so
it bounds the others by its first row held: :func:`safe_prefix` iterates until no bound moves.

>>> import numpy as np
>>> clocks = {0: np.array([10, 20, 30]), 1: np.array([15, 25])}
>>> safe_prefix(clocks, before={0: 5, 1: 5}, waiting={0, 1})  # 1 has passed 25, 0 may send 26
{0: 2, 1: 2}
>>> safe_prefix(clocks, before={0: 5, 1: 5}, waiting={0})  # 1 read to its end
{0: 3, 1: 2}
"""

from __future__ import annotations

import bisect
from collections.abc import Collection, Mapping

import numpy as np

__all__ = ["Place", "decode_place", "encode_place", "merge_order", "safe_prefix", "version_at"]

# A row's place in the merge: (the partition's clock at it, the partition, its position).
Place = tuple[int, int, int]


def encode_place(place: Place) -> str:
    return " ".join(map(str, place))


def decode_place(text: str | bytes) -> Place:
    c, p, pos = (int(x) for x in (text.decode() if isinstance(text, bytes) else text).split())
    return c, p, pos


def version_at(place: Place, built_after: list[tuple[Place, int]]) -> int:
    """The version that assigns the row at ``place``: the newest built after a row before it
    (``built_after``: (place, version) sorted by place; 0 when none was).

    >>> version_at((5, 1, 0), [((3, 0, 7), 1), ((5, 1, 0), 2), ((9, 0, 1), 3)])  # it built 2
    1
    """
    k = bisect.bisect_left(built_after, (place, -1))
    return built_after[k - 1][1] if k else 0


def safe_prefix(
    clocks: Mapping[int, np.ndarray], before: Mapping[int, int], waiting: Collection[int]
) -> dict[int, int]:
    """How many of each partition's rows (``clocks[p]``: the clock at each, non-decreasing) come,
    in (clock, partition) order, before every row a partition can still deliver.

    ``before[q]``: q's clock before this batch's rows (for every partition in ``waiting`` or in
    ``clocks``); ``waiting``: partitions that may deliver rows after these (not read to their
    end), bounded by their last clock (their later rows' clocks are at least that). A partition
    whose tail is held back bounds the others by its first row held. A row of ``p`` at clock
    ``c`` goes iff ``(c, p)`` is below every other partition's bound ``(b, q)``."""
    n = {p: len(c) for p, c in clocks.items()}
    while True:
        bound: list[tuple[int, int]] = []
        for q in set(waiting) | set(clocks):
            c = clocks.get(q)
            if c is not None and n[q] < len(c):
                bound.append((int(c[n[q]]), q))  # its first row held back
            elif q in waiting:
                bound.append((int(c[-1]) if c is not None and len(c) else int(before[q]), q))
        bound.sort()
        changed = False
        for p, c in clocks.items():
            limit = next((b for b in bound if b[1] != p), None)
            if limit is None:
                continue
            lc, lq = limit
            k = int(np.searchsorted(c, lc, side="right" if p < lq else "left"))
            if k < n[p]:
                n[p] = k
                changed = True
        if not changed:
            return n


def merge_order(clocks: Mapping[int, np.ndarray]) -> np.ndarray:
    """The partition of each row of the merged stream: the rows by clock, then partition, then
    place in the partition (``np.flatnonzero(result == p)`` are p's rows' places, in its order)."""
    if not clocks:
        return np.zeros(0, dtype=np.int64)
    part = np.concatenate([np.full(len(c), p, dtype=np.int64) for p, c in clocks.items()])
    index = np.concatenate([np.arange(len(c), dtype=np.int64) for c in clocks.values()])
    clock = np.concatenate([np.asarray(c, dtype=np.int64) for c in clocks.values()])
    return part[np.lexsort((index, part, clock))]
