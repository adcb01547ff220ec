"""A restarted learner learns again what its checkpoint did not hold (the learn log).

The learner checkpoints its model once per version, after the batch's writes landed. Since
session 16 each learner batch's write also stores the rows it took in (stream.state.learnlog),
so after a crash (or a failed batch) the learner restores the checkpoint, gives the rows it names
as waiting their features back, and learns the rows the log holds after the last one it took in:
the versions it builds are the ones it built before the crash, and the model is a function of
the rows, not of where the crash fell. A mixin of :class:`~stream.runtime.pipeline.BatchProcessor`.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from models.segments.engine import ModelEvent, SegmentEngine
from stream.runtime.merge import Place
from stream.state import StateStore
from stream.state.learnlog import LearnLogError, decode_rows, entry_name

__all__ = ["RelearnMixin"]

log = logging.getLogger(__name__)


@dataclass
class _Partition:
    """A partition's learn log, its entries' columns end to end (positions increase)."""

    pos: np.ndarray
    t: np.ndarray
    learn: np.ndarray
    raw: np.ndarray  # the learned rows only
    key: np.ndarray | None
    candidate: np.ndarray | None
    snap: np.ndarray | None  # the candidate rows only
    cuts: list[int]  # where each entry ends

    @classmethod
    def of(cls, entries: list[dict[str, np.ndarray]], width: int) -> _Partition:
        def cat(name: str, empty: np.ndarray) -> np.ndarray:
            parts = [e[name] for e in entries if name in e]
            return np.concatenate(parts) if parts else empty

        sampled = all("key" in e for e in entries)
        return cls(
            pos=cat("pos", np.zeros(0, dtype=np.int64)),
            t=cat("t", np.zeros(0)),
            learn=cat("learn", np.zeros(0, dtype=bool)),
            raw=cat("raw", np.zeros((0, width))),
            key=cat("key", np.zeros(0, dtype=np.uint64)) if sampled else None,
            candidate=cat("candidate", np.zeros(0, dtype=bool)) if sampled else None,
            snap=cat("snap", np.zeros((0, 0))) if sampled else None,
            cuts=list(np.cumsum([len(e["pos"]) for e in entries])),
        )

    def lookup(self, column: str, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The ``raw`` or ``snap`` rows at these positions, and which were found."""
        has = self.learn if column == "raw" else self.candidate
        values = self.raw if column == "raw" else self.snap
        if has is None or values is None or not len(self.pos):
            return np.zeros(0), np.zeros(len(positions), dtype=bool)
        i = np.clip(np.searchsorted(self.pos, positions), 0, len(self.pos) - 1)
        found = (self.pos[i] == positions) & has[i]
        index = np.cumsum(has) - 1
        out = np.zeros((len(positions), values.shape[1]))
        out[found] = values[index[i[found]]]
        return out, found


class RelearnMixin:
    store: StateStore
    engine: SegmentEngine
    owned: frozenset[int] | None
    _merge: bool
    _queued_version: int
    _ghosts: dict[int, dict[str, np.ndarray]]
    _pulled: dict[int, int]
    _remote_bound: dict[int, int]
    _remote_written: dict[int, int]
    _ghost_go: dict[int, int]
    _remote_drained: frozenset[int]
    remote: frozenset[int]

    if TYPE_CHECKING:  # OutputsMixin's

        def _publish_model_events(
            self, events: list[ModelEvent], built_after: Place | None = None
        ) -> None: ...

    def relearn(self, partitions: Iterable[int]) -> tuple[int, int]:
        """Learn again from the learn log of these partitions what the engine's checkpoint did
        not hold; returns (rows learned again, waiting rows whose features were gone)."""
        engine = self.engine
        self.forget_rows_ahead()
        width = len(engine.feature_names)
        logs: dict[int, _Partition] = {}
        partitions = list(partitions)
        # Watermarks before the logs: another instance may write meanwhile, and a bound must not
        # be newer than the rows read.
        watermarks = {p: self.store.watermark(p) for p in partitions}
        for p in partitions:
            try:
                entries = [decode_rows(blob) for _, blob in self.store.learn_entries(p)]
            except LearnLogError as e:
                raise LearnLogError(
                    f"partition {p}: the learner's learn log cannot be read ({e}); rebuild with "
                    "`segstream replay --from-offset 0 --namespace NEW`"
                ) from None
            if entries:
                logs[p] = _Partition.of(entries, width)

        def rows(column: str, sources: np.ndarray, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            found = np.zeros(len(positions), dtype=bool)
            out: np.ndarray | None = None
            for s in np.unique(sources).tolist():
                if s not in logs:
                    continue
                at = sources == s
                values, hit = logs[s].lookup(column, positions[at])
                if out is None and len(values):
                    out = np.zeros((len(positions), values.shape[1]))
                if out is not None and hit.any():
                    out[np.flatnonzero(at)[hit]] = values[hit]
                found[np.flatnonzero(at)[hit]] = True
            return (out if out is not None else np.zeros(0)), found

        lost = engine.refill(rows)
        fed = dict(getattr(engine, "fed", {}))
        queues: dict[int, list[tuple[int, int]]] = {}  # per partition, its entries' rows not taken in
        for p, part in logs.items():
            lo = 0
            for hi in part.cuts:
                start = lo + int(np.searchsorted(part.pos[lo:hi], fed.get(p, -1), side="right"))
                if start < hi:
                    queues.setdefault(p, []).append((start, hi))
                lo = hi
        if not queues:
            log.debug("nothing to learn again: the learn logs hold only rows the checkpoint has (%s)", fed)
            return 0, lost
        if self._merge and len(set(fed) | set(logs) | set(self.owned or ())) > 1:
            # The learner's merge: one stream by (time, partition, position), learned up to what
            # a partition may still deliver; the rest waits for its place in the live merge.
            pieces = [_piece(logs[p], p, lo, hi, width) for p, spans in queues.items() for lo, hi in spans]
            merged = _merged(pieces)
            bounds = {q: watermarks.get(q, 0) for q in set(partitions) | set(fed) | set(logs)}
            safe = _before_every_partition(merged, bounds)
            learned = self._learn_again([{k: v[:safe] for k, v in merged.items()}], merged=True)
            self._ghosts = _by_source({k: v[safe:] for k, v in merged.items()})
        else:
            # Earlier releases (the engine's alignment): rows wait for every partition the learner
            # reads or has read, as before the crash, fed piece by piece as a live read mixed them;
            # the checkpoint's sources too: a start may relearn before any partition is assigned
            # to it, and a catch-up's first checkpoints have fed and logged a single partition
            # (from those alone the engine would learn every waiting row at once, in that
            # partition's order).
            read = set(fed) | set(logs) | set(self.owned or ()) | engine.aligned_sources
            engine.align_sources(read, ())
            pieces = [_piece(logs[p], p, lo, hi, width) for p, lo, hi in _in_time_order(queues, logs)]
            learned = sum(self._learn_again([piece], merged=False) for piece in pieces)
        log.info(
            "learned %d rows again from the learn log (model version %d now), %d wait for their "
            "place among the partitions' next rows; %d waiting rows lost",
            learned,
            engine.version,
            sum(len(g["t"]) for g in self._ghosts.values()),
            lost,
        )
        return learned, lost

    def forget_rows_ahead(self) -> None:
        """Forget the learn-log rows taken in ahead of the engine (pulled from other instances'
        partitions, or waiting for their place in the merge): for an engine put back to the
        stored checkpoint, which :meth:`relearn` reads them again for. Learned before that, they
        built versions on the old checkpoint whose saves, queued behind the batch, landed after
        the relearn's (seen in the zombie test with learn_all_partitions: "went back from
        version 2 to 0")."""
        self._queued_version = self.engine.version
        self._ghosts, self._pulled, self._remote_bound, self._ghost_go = {}, {}, {}, {}

    def pull_remote(self, drained: Iterable[int]) -> int:
        """The learner takes the rows other instances wrote to the learn logs of their partitions
        (``remote``) since it last looked, to learn them at their place in the merge; ``drained``:
        those read to their end (they bound nothing). Returns how many rows it took."""
        self._remote_drained = frozenset(drained) & self.remote
        width = len(self.engine.feature_names)
        fed = getattr(self.engine, "fed", {})
        taken = 0
        for q in sorted(self.remote):
            # First: the entries read next hold every row below it. A follower logs its rows
            # (and its next row's clock) before it writes their batch, and waits for this merge.
            written = self.store.watermark(q)
            bound = max(written, self.store.logged(q)[1])
            ghost = self._ghosts.get(q)
            last = max(fed.get(q, -1), self._pulled.get(q, -1), int(ghost["pos"][-1]) if ghost else -1)
            try:
                entries = [
                    decode_rows(blob) for _, blob in self.store.learn_entries(q, after=entry_name(last))
                ]
            except LearnLogError as e:
                raise LearnLogError(f"partition {q}: its learn log cannot be read ({e})") from None
            self._remote_written[q] = written
            self._remote_bound[q] = max(bound, self._remote_bound.get(q, 0))
            part = _Partition.of(entries, width) if entries else None
            if part is None or not len(part.pos) or part.pos[-1] <= last:
                continue
            self._remote_bound[q] = max(bound, int(part.t[-1]))
            lo = int(np.searchsorted(part.pos, last, side="right"))
            piece = _piece(part, q, lo, len(part.pos), width)
            self._ghosts[q] = _concat([ghost, piece]) if ghost else piece
            self._pulled[q] = int(part.pos[-1])
            taken += len(part.pos) - lo
        return taken

    def _learn_again(self, pieces: list[dict[str, np.ndarray]], merged: bool) -> int:
        """Feed learn-log rows to the engine, publishing the versions they build; ``merged``:
        the pieces are first merged by (time, partition, position), the learner's merge
        (stream.runtime.merge), and nothing waits in the engine."""
        cat = _merged(pieces) if merged else _concat(pieces)
        if merged:
            self.engine.align_sources(None)
        engine = self.engine
        chunks = engine.process_chunks(
            cat["raw"], cat["t"], cat["learn"], cat.get("key"), cat.get("snap"), cat["source"], cat["pos"]
        )
        n = len(cat["t"])

        def place(i: int) -> Place | None:  # in the merge's order only
            return (
                (int(cat["t"][i]), int(cat["source"][i]), int(cat["pos"][i])) if merged and i >= 0 else None
            )

        for chunk in chunks:
            self._publish_model_events(chunk.events_before, place(chunk.lo - 1))
        self._publish_model_events(engine.trailing_events, place(n - 1))
        return n


def _before_every_partition(merged: dict[str, np.ndarray], bounds: dict[int, int]) -> int:
    """How many of the merged learn-log rows come before every row a partition can still
    deliver: its next rows' clocks are at least its written watermark (``bounds``). A crash
    between two partitions' writes of one batch leaves the rows of those written in the log and
    the others' to be read again; these come before some of the former in the merge's order."""
    t, source = merged["t"], merged["source"]
    safe = np.ones(len(t), dtype=bool)
    for q, w in bounds.items():
        safe &= (source == q) | (t < w) | ((t == w) & (source < q))
    return len(t) if safe.all() else int(np.argmin(safe))


def _concat(pieces: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    common = set.intersection(*(set(piece) for piece in pieces))  # a sample's columns: all or none
    return {k: np.concatenate([piece[k] for piece in pieces]) for k in common}


def _merged(pieces: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The pieces' rows as one stream in the learner's merge order: (time, partition, position)."""
    cat = _concat(pieces)
    order = np.lexsort((cat["pos"], cat["source"], cat["t"]))
    return {k: v[order] for k, v in cat.items()}


def _by_source(rows: dict[str, np.ndarray]) -> dict[int, dict[str, np.ndarray]]:
    """Merged rows split back into each partition's (its order is kept)."""
    source = rows["source"]
    return {int(p): {k: v[source == p] for k, v in rows.items()} for p in np.unique(source).tolist()}


def _piece(part: _Partition, p: int, lo: int, hi: int, width: int) -> dict[str, np.ndarray]:
    """Rows ``lo:hi`` of a partition's learn log as the engine takes them (features of the rows
    not learned are zeros: nobody reads them)."""
    n = hi - lo
    learn = part.learn[lo:hi]
    raw = np.zeros((n, width))
    raw[learn] = part.raw[int(part.learn[:lo].sum()) : int(part.learn[:hi].sum())]
    out = {
        "pos": part.pos[lo:hi],
        "t": part.t[lo:hi],
        "learn": learn,
        "raw": raw,
        "source": np.full(n, p, dtype=np.int64),
    }
    if part.key is not None and part.candidate is not None and part.snap is not None:
        cand = part.candidate[lo:hi]
        snaps = np.zeros((n, part.snap.shape[1]))
        snaps[cand] = part.snap[int(part.candidate[:lo].sum()) : int(part.candidate[:hi].sum())]
        out |= {"key": part.key[lo:hi], "snap": snaps}
    return out


def _in_time_order(
    queues: dict[int, list[tuple[int, int]]], logs: dict[int, _Partition]
) -> Iterator[tuple[int, int, int]]:
    """The partitions' pieces, each partition's in its own order (the rows' arrival order must
    stay), the partitions merged by each next piece's earliest time, as a live read mixes them."""
    heads = [(float(logs[p].t[lo:hi].min()), p, 0) for p, ((lo, hi), *_) in queues.items()]
    heapq.heapify(heads)
    while heads:
        _, p, i = heapq.heappop(heads)
        lo, hi = queues[p][i]
        yield p, lo, hi
        if i + 1 < len(queues[p]):
            nlo, nhi = queues[p][i + 1]
            heapq.heappush(heads, (float(logs[p].t[nlo:nhi].min()), p, i + 1))
