"""The engine's knobs: one frozen value per model configuration."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from models.segments.catalog import model_names
from models.segments.decide import Hysteresis

__all__ = ["DAY", "EngineParams"]

DAY = 86400.0


@dataclass(frozen=True)
class EngineParams:
    """Every knob of the engine (frozen: one value per model configuration).

    The defaults are the shipped settings' (``stream.config.ModelSettings``; a test holds them
    equal): ``EngineParams()`` is the engine ``segstream run`` builds with no settings changed.
    The knobs without a setting (``gate``, ``drift``, ``n_super``, ``n_init``...) are the
    engine's own."""

    n_segments: int = 8
    max_micro: int = 150
    half_life_days: float = 21.0
    update_every: int = 2000
    update_days: float = 0.0  # and at most this much event time between versions (0: rows only)
    warmup_vectors: int = 2000
    warmup_days: float = 21.0  # event-time span the first version waits for (behaviour needs history)
    margin: float = 0.55
    min_dwell_days: float = 21.0
    # The margin narrows after the dwell, in a straight line, to `margin_floor` at
    # `margin_relax_days` in the segment (models.segments.decide.Hysteresis.margin_after); a floor at or
    # above `margin` keeps the margin as it is.
    margin_floor: float = 0.2
    margin_relax_days: float = 120.0
    # A segment given in a customer's first `first_look_days` of history is provisional
    # (models.segments.decide.Hysteresis.target): one move by `margin_floor` once that history exists.
    first_look_days: float = 7.0
    # Re-scoring (models.segments.decide.clearly_elsewhere): each time a partition's watermark
    # passes a multiple of `rescore_every_days` (0: never), its customers whose best segment is
    # `rescore_margin` closer than their own (a wider margin than the hysteresis') move, at most
    # `rescore_max_share` of its segmented customers, the clearest first.
    rescore_every_days: float = 7.0
    rescore_margin: float = 0.7
    rescore_max_share: float = 0.01
    outlier_quantile: float = 0.99
    gate: float = 0.5
    drift: float = 0.25
    model: str = "microclusters"
    seed: int = 42
    feature_weights: tuple[tuple[str, float], ...] = ()
    n_super: int = 3
    n_init: int = 10  # k-means++ restarts of the macro step (a third of them on warm versions)
    restart_gain: float = 0.05
    # Opt-in: a row with recency r days (an inactivity re-scoring) counts max(1, quiet_weight * r)
    # times, for the quiet days it stands for, so the model's population is closer to a snapshot
    # of the customers (0: every learned row counts once). Measured on the 600-customer logs,
    # 0.5 lowers SSQ/k-means 1.34 -> 1.13 and raises ARI 0.63 -> 0.67 but lowers id agreement
    # 0.89 -> 0.70 and raises flapping 0.2% -> 1-4%: not the default.
    quiet_weight: float = 0.0
    # Fit each version on a sample of the customers as they are at the version's event time
    # (the latest state of the `population` customers with the smallest key hashes, aged to the
    # version's time) instead of on the micro-clusters of the event stream; 0 turns it off.
    # A warm version moves its centroids `population_step` of the way to the sample's fit.
    population: int = 2048
    population_step: float = 0.5
    population_restart_gain: float = 0.2  # a restart must cut the sample's SSQ by this share
    # D > 0: `population_step` is the share moved per D days of event time instead of per
    # version (a version dt days after the last moves 1 - (1 - step) ** (dt / D)), so the
    # centroids' smoothing does not depend on how often versions come.
    population_step_days: float = 0.0
    # Learning from several sources (partitions, see SegmentEngine.align_sources): rows wait
    # until every source's clock is past them by this much, then are learned in event-time order,
    # so versions do not depend on how the sources' records interleave (None: arrival order).
    align_lateness_days: float | None = 2.0
    # A segment's name changes when its claims have failed this many versions running and one
    # candidate has held as long (models.segments.naming; a refuted name changes at once).
    rename_versions: int = 3

    @cached_property
    def hysteresis(self) -> Hysteresis:
        """What holds a customer in its segment, from these knobs (built once: the evaluation
        decides per row; checkpoints hold the fields only)."""
        return Hysteresis(
            self.margin, self.min_dwell_days, self.margin_floor, self.margin_relax_days, self.first_look_days
        )

    def __post_init__(self) -> None:
        if self.model not in model_names():
            raise ValueError(f"unknown model {self.model!r}; choose one of {model_names()}")
        if self.n_segments < 1 or self.update_every < 1 or self.warmup_vectors < 1:
            raise ValueError("n_segments, update_every and warmup_vectors must be >= 1")
        if not 0.0 <= self.margin < 1.0:
            raise ValueError("margin must be in [0, 1)")
        if not 0.0 <= self.margin_floor < 1.0 or self.margin_relax_days < 0 or self.first_look_days < 0:
            raise ValueError("margin_floor must be in [0, 1), margin_relax_days and first_look_days >= 0")
        if not self.margin < self.rescore_margin < 1.0:
            raise ValueError("rescore_margin must be in (margin, 1)")
        if self.rescore_every_days < 0 or not 0.0 <= self.rescore_max_share <= 1.0:
            raise ValueError("rescore_every_days must be >= 0 and rescore_max_share in [0, 1]")
        if self.rename_versions < 1:
            raise ValueError("rename_versions must be >= 1")
        if self.population < 0 or not 0.0 < self.population_step <= 1.0:
            raise ValueError("population must be >= 0 and population_step in (0, 1]")
