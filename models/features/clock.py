"""A partition's event-time watermark that no single customer can move.

The watermark decides which quiet customers are re-scored for inactivity (and how far the model's
learner has got in a partition). The newest event time of the partition would let one record
decide it for everybody: one customer whose clock is off, or who sends events from a test
harness dated next month, would re-score every other customer of the partition as months
quiet. So the watermark is the newest event time that at least ``k`` distinct customers have
reached: the ``k``-th largest of the customers' newest event times (it never goes back). Until
``k`` customers have been seen there is none (0): a partition's first record, dated 2000 or a
day before a replayed log's future, decides nothing for the others.

Lateness is not judged against it: each record is judged against its own customer's newest
event (the pipeline), so a quiet period of any length, or a customer ahead of the others, costs
no other customer a record.

>>> c = PartitionClock(k=2)
>>> c.observe("a", 100), c.observe("b", 90)  # no watermark before two customers
(0, 90)
>>> c.observe("a", 10_000)  # one customer far ahead: the watermark waits for a second one
90
>>> c.observe("b", 200), c.observe("c", 300)
(200, 300)
>>> PartitionClock.unpack(c.pack(), k=2, value=c.value).top == c.top
True
"""

from __future__ import annotations

from bisect import insort

__all__ = ["PartitionClock"]


class PartitionClock:
    """The ``k`` customers with the newest event times (ids and times) and the watermark."""

    __slots__ = ("k", "top", "value")

    def __init__(self, k: int = 3, top: list[tuple[int, str]] | None = None, value: int = 0) -> None:
        if k < 1:
            raise ValueError("k must be at least 1")
        self.k = k
        self.top: list[tuple[int, str]] = sorted(top or [])[-k:]  # (newest ts, customer), ascending
        self.value = value

    def observe(self, customer: str, ts: int) -> int:
        """Take one accepted event; returns the watermark."""
        top = self.top
        if len(top) >= self.k and ts <= top[0][0]:
            return self.value  # older than the k-th newest customer: changes nothing
        for j, (seen, who) in enumerate(top):
            if who == customer:
                if ts <= seen:
                    return self.value
                del top[j]
                break
        else:
            if len(top) >= self.k:
                del top[0]
        insort(top, (ts, customer))  # sorted by (time, customer): ties too, so packing round-trips
        if len(top) >= self.k and top[0][0] > self.value:
            self.value = top[0][0]
        return self.value

    def pack(self) -> str:
        """``"<ts> <customer> ..."``: customer ids never contain spaces (the input contract)."""
        return " ".join(f"{ts} {who}" for ts, who in self.top)

    @classmethod
    def unpack(cls, text: str, k: int, value: int = 0) -> PartitionClock:
        parts = text.split()
        top = [(int(parts[i]), parts[i + 1]) for i in range(0, len(parts) - 1, 2)]
        return cls(k, top, value)
