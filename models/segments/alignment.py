"""Learning from several partitions in event-time order, whatever order their records arrive in.

One process that reads several Kafka partitions sees their records interleaved however the polls
return them. A model that learns in arrival order then depends on that interleaving: which rows
are in a version, and how old every sampled customer looks at its time. Two replays of one log
could end in different segmentations (measured: 313 and 526 of 1,500 customers in the same
segment for three interleavings of the same log).

:class:`SourceAligner` holds the rows to learn until every source (partition) has passed them, as a
Flink job aligns its inputs on watermarks: a row is released once its event time is below the
smallest source clock less the allowed lateness, and released rows are learned in
(event time, source, arrival within the source) order. A partition's later rows cannot come
earlier than its clock less the lateness (the pipeline dead-letters them), so the released order,
and with it every model version, depends only on each partition's own records.

Rows wait in named queues (the engine keeps the rows it learns from apart from the customer
snapshots its sample takes, which are wider and rarer); all queues share one order.

A source read to its end (the caller knows: its position is at the broker's end offset) is not
waited for: it has nothing to deliver. Two bounds keep a stuck partition from stalling the model
all the same: a source more than ``max_skew`` behind the newest holds the others back by at most
that much, and at most ``max_held`` rows wait per queue (the oldest are released beyond that;
:attr:`SourceAligner.forced` counts them, as their order is then no longer guaranteed).

>>> import numpy as np
>>> a = SourceAligner(("rows",), lateness=0.0, max_skew=100.0, max_held=1000)
>>> a.add(np.array([5.0, 7.0]), np.array([0, 0]), {"rows": {"x": np.array([1, 2])}})
>>> a.add(np.array([6.0]), np.array([1]), {"rows": {"x": np.array([3])}})
>>> a.release({0: 7.0, 1: 6.0}, {0, 1})
>>> a.ready["rows"]["x"].tolist(), a.held_rows()
([1], 2)
>>> a.release({0: 7.0, 1: 9.0}, {0, 1})
>>> a.ready["rows"]["x"].tolist()
[1, 3]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np

__all__ = ["SourceAligner"]

Columns = dict[str, np.ndarray]
_ORDER = ("t", "source", "seq")  # the columns every queued row has, and the order key


def _concat(parts: Sequence[Columns]) -> Columns:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


# The columns a checkpoint leaves out (SourceAligner.light), per queue, and how a part tells its
# queue: a sample row has a key.
HEAVY = ("raw", "snap")
_QUEUE_COLUMNS = {"learn": ("raw",), "sample": ("snap",)}


def _queue_of(part: Columns) -> str:
    return "sample" if "key" in part else "learn"


class SourceAligner:
    """Rows waiting for every source's clock (held), then released in order (``ready``).

    Each queue's rows are named column arrays; ``t``, ``source`` and ``seq`` are added to them.
    """

    def __init__(self, queues: Sequence[str], lateness: float, max_skew: float, max_held: int) -> None:
        self.lateness = lateness
        self.max_skew = max_skew
        self.max_held = max_held
        self._held: dict[str, list[Columns]] = {q: [] for q in queues}
        self.ready: dict[str, Columns] = {q: {} for q in queues}
        self._seq: dict[int, int] = {}  # rows received per source: the tie-break within a source
        self.forced = 0  # rows released past the bounds, out of order

    def light(self) -> SourceAligner:
        """A copy without the rows' heavy columns (``raw``, ``snap``): each row is named by its
        ``source`` and ``pos``, for a checkpoint whose rows someone else keeps (:meth:`refill`)."""
        out = SourceAligner.__new__(SourceAligner)
        out.__dict__.update(self.__dict__)
        strip = lambda part: {k: v for k, v in part.items() if k not in HEAVY}  # noqa: E731
        out._held = {q: [strip(p) for p in parts] for q, parts in self._held.items()}
        out.ready = {q: strip(r) if r else {} for q, r in self.ready.items()}
        out._seq = dict(self._seq)
        out.stripped = True
        return out

    def refill(self, rows: Callable[[str, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]) -> int:
        """Put the heavy columns back into a :meth:`light` copy: ``rows(column, sources,
        positions)`` returns the values and which rows it found; the others are dropped (their
        keeper lost them). Returns how many rows were dropped."""
        if not getattr(self, "stripped", False):
            return 0
        dropped = 0

        def fill(part: Columns) -> Columns:
            nonlocal dropped
            if not part:
                return part
            heavy = [c for c in HEAVY if c in _QUEUE_COLUMNS.get(_queue_of(part), ())]
            for column in heavy:
                values, found = rows(column, part["source"], part["pos"])
                if not found.all():
                    dropped += int((~found).sum())
                    part = {k: v[found] for k, v in part.items()}
                    values = values[found] if len(values) == len(found) else values[:0]
                part = {**part, column: values}
            return part

        self._held = {
            q: [f for f in (fill(p) for p in parts) if len(f["t"])] for q, parts in self._held.items()
        }
        self.ready = {q: (f if (f := fill(r)) and len(f["t"]) else {}) for q, r in self.ready.items()}
        self.stripped = False
        return dropped

    def floor(self) -> dict[int, int]:
        """Per source, the smallest ``pos`` among the rows held or ready (rows without one: none)."""
        out: dict[int, int] = {}
        parts = [p for ps in self._held.values() for p in ps] + [r for r in self.ready.values() if r]
        for part in parts:
            if "pos" not in part or not len(part["pos"]):
                continue
            for s in np.unique(part["source"]).tolist():
                at = part["pos"][part["source"] == s]
                lo = int(at[at >= 0].min()) if (at >= 0).any() else None
                if lo is not None:
                    out[s] = min(out.get(s, lo), lo)
        return out

    def held_rows(self) -> int:
        return sum(len(h["t"]) for parts in self._held.values() for h in parts)

    def ready_rows(self) -> int:
        return sum(len(r["t"]) for r in self.ready.values() if r)

    def __len__(self) -> int:
        return self.held_rows() + self.ready_rows()

    def add(
        self,
        t: np.ndarray,
        source: np.ndarray,
        rows: dict[str, Columns],
        masks: dict[str, np.ndarray] | None = None,
    ) -> None:
        """Rows in arrival order: every queue's columns have one entry per row of ``t``, and
        ``masks`` (per queue, default all) say which of them the queue keeps."""
        if len(t) == 0:
            return
        t = np.asarray(t, dtype=np.float64)
        source = np.asarray(source, dtype=np.int64)
        seq = np.empty(len(t), dtype=np.int64)
        for s in np.unique(source).tolist():
            at = source == s
            start = self._seq.get(s, 0)
            seq[at] = np.arange(start, start + int(at.sum()))
            self._seq[s] = start + int(at.sum())
        for queue, columns in rows.items():
            keep = None if masks is None else masks.get(queue)
            part = {**columns, "t": t, "source": source, "seq": seq}
            if keep is not None:
                if not keep.any():
                    continue
                part = {k: v[keep] for k, v in part.items()}
            self._held[queue].append(part)

    def threshold(self, clock: dict[int, float], waiting: Iterable[int]) -> float:
        """Event time below which none of the ``waiting`` sources can deliver a row any more
        (within the bounds); +inf when none is waited for (every source read to its end)."""
        waiting = list(waiting)
        if not waiting:
            return np.inf
        floor = max(clock.values(), default=-np.inf) - self.max_skew
        return min(max(clock.get(s, -np.inf), floor) for s in waiting) - self.lateness

    def release(self, clock: dict[int, float], waiting: Iterable[int] = ()) -> None:
        """Move the rows the ``waiting`` sources have all passed to ``ready``, sorted (with no
        source waited for, every row)."""
        if getattr(self, "stripped", False):  # nobody gave the rows back: they are lost
            self.refill(lambda column, sources, positions: (np.zeros(0), np.zeros(len(sources), dtype=bool)))
        cut = self.threshold(clock, waiting)
        for queue, parts in self._held.items():
            if parts:
                self._release(queue, parts, cut)

    def _release(self, queue: str, parts: list[Columns], cut: float) -> None:
        # Most calls release a little of many waiting rows: parts with nothing to release stay
        # as they are (no copy), and they are merged only now and then.
        out: list[Columns] = []
        kept: list[Columns] = []
        for part in parts:
            below = part["t"] < cut
            if not below.any():
                kept.append(part)
                continue
            out.append({k: v[below] for k, v in part.items()})
            if not below.all():
                kept.append({k: v[~below] for k, v in part.items()})
        waiting = sum(len(p["t"]) for p in kept)
        if waiting > self.max_held:  # too many waiting: release the oldest
            held = _concat(kept)
            t = held["t"]
            bound = np.partition(t, waiting - self.max_held - 1)[waiting - self.max_held - 1]
            forced = t <= bound
            self.forced += int(forced.sum())
            out.append({k: v[forced] for k, v in held.items()})
            kept = [{k: v[~forced] for k, v in held.items()}] if not forced.all() else []
        if len(kept) > 64:
            kept = [_concat(kept)]
        self._held[queue] = kept
        if not out:
            return
        released = _concat(out)
        order = np.lexsort((released["seq"], released["source"], released["t"]))
        released = {k: v[order] for k, v in released.items()}
        ready = self.ready[queue]
        self.ready[queue] = _concat([ready, released]) if ready else released

    def count_through(self, queue: str, t: float, source: int, seq: int) -> int:
        """How many of the queue's ready rows come at or before the row (t, source, seq)."""
        ready = self.ready[queue]
        if not ready:
            return 0
        rt, rs, rq = ready["t"], ready["source"], ready["seq"]
        before = (rt < t) | ((rt == t) & ((rs < source) | ((rs == source) & (rq <= seq))))
        return int(before.sum())

    def take(self, queue: str, n: int | None = None) -> Columns:
        """The first ``n`` ready rows of a queue (all by default), removed."""
        ready = self.ready[queue]
        if not ready:
            return {}
        n = len(ready["t"]) if n is None else n
        head = {k: v[:n] for k, v in ready.items()}
        rest = {k: v[n:] for k, v in ready.items()}
        self.ready[queue] = rest if len(rest["t"]) else {}
        return head

    def drop(self, queue: str, column: str, values: set[int]) -> int:
        """Forget a queue's rows whose ``column`` holds one of ``values`` (erased customers)."""
        dropped = 0
        parts = [*self._held[queue], self.ready[queue]] if self.ready[queue] else list(self._held[queue])
        kept = []
        for part in parts:
            wanted = np.fromiter(values, dtype=part[column].dtype, count=len(values))
            gone = np.isin(part[column], wanted)
            dropped += int(gone.sum())
            kept.append({k: v[~gone] for k, v in part.items()})
        if self.ready[queue]:
            last = kept.pop()
            self.ready[queue] = last if len(last["t"]) else {}
        self._held[queue] = [h for h in kept if len(h["t"])]
        return dropped
