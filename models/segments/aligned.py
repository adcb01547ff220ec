"""The engine learning from several sources (partitions) in event-time order.

A mixin of :class:`~models.segments.engine.SegmentEngine`: rows wait in a
:class:`~models.segments.alignment.SourceAligner` until every source not read to its end has
passed them, then are learned in (event time, source, arrival) order, one version at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np

from models.segments.alignment import SourceAligner
from models.segments.assignment import Assignment, Chunk
from models.segments.params import DAY, EngineParams
from models.segments.population import PopulationSample
from models.segments.registry import ModelEvent

__all__ = ["ALIGN_MAX_HELD", "ALIGN_MAX_SKEW_DAYS", "AlignedLearning"]

# Bounds of the event-time alignment of sources, for a partition neither progressing nor known to
# be read to its end: it holds the others back by at most this much event time, and at most this
# many rows wait per queue (~50 MB of learned rows; SourceAligner). A catch-up read leaves
# partitions far apart in event time: kafka-python shares fetches out by bytes, not by time, and
# reading the crash test's 100-day log left them up to 56 days apart.
ALIGN_MAX_SKEW_DAYS = 90.0
ALIGN_MAX_HELD = 250_000


class AlignedLearning:
    params: EngineParams
    feature_names: tuple[str, ...]
    population: PopulationSample | None
    _aligner: SourceAligner | None
    _align_sources: frozenset[int]
    _align_drained: frozenset[int]
    _source_t: dict[int, float]
    _tick: Callable[[np.ndarray, np.ndarray], None]
    _next_boundary: Callable[[np.ndarray, np.ndarray], tuple[int, bool]]
    _learn_block: Callable[..., None]
    _build_at: Callable[[float], list[ModelEvent]]
    assign: Callable[[np.ndarray], Assignment]

    def align_sources(self, sources: Iterable[int] | None, drained: Iterable[int] = ()) -> None:
        """The sources (partitions) this learner reads, and those of them read to their end.
        With two or more sources and ``align_lateness_days`` set, rows are learned in event-time
        order across them once every source not drained has passed them
        (:class:`~models.segments.alignment.SourceAligner`); otherwise in the order they come."""
        self._align_sources = frozenset(sources or ())
        self._align_drained = frozenset(drained) & self._align_sources

    @property
    def aligned_sources(self) -> frozenset[int]:
        """The sources last given to :meth:`align_sources` (a checkpoint keeps them)."""
        return self._align_sources

    def _aligning(self) -> bool:
        return self.params.align_lateness_days is not None and len(self._align_sources) > 1

    def _hold(
        self,
        raw: np.ndarray,
        times: np.ndarray,
        mask: np.ndarray,
        keys: np.ndarray | None,
        snaps: np.ndarray | None,
        sources: np.ndarray,
        positions: np.ndarray | None = None,
    ) -> None:
        """Keep the rows the model learns from, and those the customer sample may take, until
        every source has passed them."""
        if self._aligner is None:
            self._aligner = SourceAligner(
                ("learn", "sample"),
                (self.params.align_lateness_days or 0.0) * DAY,
                ALIGN_MAX_SKEW_DAYS * DAY,
                ALIGN_MAX_HELD,
            )
        src = np.asarray(sources, dtype=np.int64)
        self._tick(times, src)  # arrival clocks decide what is released
        pos = np.full(len(raw), -1, dtype=np.int64) if positions is None else positions
        rows = {"learn": {"raw": raw, "pos": pos}}
        masks = {"learn": mask}
        if keys is not None and snaps is not None and self.population is not None:
            rows["sample"] = {"key": np.asarray(keys, dtype=np.uint64), "snap": np.asarray(snaps), "pos": pos}
            masks["sample"] = self.population.could_take(keys)
        self._aligner.add(times, src, rows, masks)

    def _learn_ready(self, end: int) -> Iterator[Chunk]:
        """Learn the released rows in order, one version at a time; each build is yielded as an
        empty chunk at ``end`` carrying its events (the rows left stay in the aligner, so a
        snapshot taken meanwhile has them)."""
        aligner = self._aligner
        assert aligner is not None
        while aligner.ready_rows():
            hit, last = False, (np.inf, 0, 0)
            learn = aligner.ready["learn"]
            if learn:
                j, hit = self._next_boundary(learn["t"], np.ones(len(learn["t"]), dtype=bool))
                last = (float(learn["t"][j - 1]), int(learn["source"][j - 1]), int(learn["seq"][j - 1]))
                rows = aligner.take("learn", j)
            else:
                rows = {}
            # The sample's rows up to the same point of the order (all of them without a version).
            snaps = aligner.take("sample", aligner.count_through("sample", *last) if hit else None)
            if rows:
                every = np.ones(len(rows["t"]), dtype=bool)
                self._learn_block(rows["raw"], rows["t"], every, rows["source"], None)
            if snaps and self.population is not None:
                self.population.update(snaps["key"], snaps["snap"], snaps["source"])
                # Not the span: taken up to the release cut, not to a learned row, it would make
                # the warm-up's end depend on when releases happen.
                self._tick(snaps["t"], snaps["source"])
            if hit:
                empty = np.zeros((0, len(self.feature_names)))
                yield Chunk(end, end, self.assign(empty), self._build_at(last[0]))
