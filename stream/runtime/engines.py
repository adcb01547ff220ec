"""The segment engine a process runs: built from the settings, or restored from the namespace's
checkpoint (the CLI, replays, evaluation and benchmarks build engines here, not in the service)."""

from __future__ import annotations

import gc
import logging
import sys
from dataclasses import fields, replace
from typing import TypeVar

from models.features import FEATURE_NAMES
from models.segments.catalog import CATALOG
from models.segments.checkpoint import CheckpointError
from models.segments.engine import EngineParams, SegmentEngine
from models.segments.river_models import FrozenLearner
from stream.config import Settings
from stream.errors import ConfigError
from stream.state import StateStore

T = TypeVar("T")
log = logging.getLogger(__name__)


def engine_params(settings: Settings) -> EngineParams:
    m = settings.model
    return EngineParams(
        model=m.model,
        n_segments=m.n_segments,
        max_micro=m.max_micro,
        half_life_days=m.half_life_days,
        update_every=m.update_every,
        update_days=m.update_days,
        warmup_vectors=m.warmup_vectors,
        warmup_days=m.warmup_days,
        margin=m.margin,
        min_dwell_days=m.min_dwell_days,
        margin_floor=m.margin_floor,
        margin_relax_days=m.margin_relax_days,
        first_look_days=m.first_look_days,
        rescore_every_days=m.rescore_every_days,
        rescore_margin=m.rescore_margin,
        rescore_max_share=m.rescore_max_share,
        outlier_quantile=m.outlier_quantile,
        seed=m.seed,
        population=m.population,
        population_step=m.population_step,
        population_step_days=m.population_step_days,
        feature_weights=m.feature_weights,
        align_lateness_days=align_lateness_days(settings),
    )


def align_lateness_days(settings: Settings) -> float | None:
    """How long a learner's rows wait for its other partitions (None: no waiting); a partition's
    rows come at most the allowed lateness behind its watermark, so that long is enough."""
    return settings.features.allowed_lateness_hours / 24 if settings.model.align_partitions else None


def tune_runtime() -> None:
    """Interpreter settings for a long-running batch loop (the service and replays).

    Each batch allocates hundreds of thousands of short-lived objects; with the default
    thresholds the collector rescans the long-lived heap (model, clients) many times per batch.
    Freeze what start-up built and collect young objects less often (-25% per event).
    The store's I/O thread (OrderedIO) needs the GIL for a moment after each Redis reply; with the
    default 5 ms switch interval it waits behind the computing thread that long, and the next
    batch's loads with it (bench_feature_store: 25.6k -> 28k events/s at 0.5 ms).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)
    sys.setswitchinterval(0.0005)


def load_engine(settings: Settings, store: StateStore) -> SegmentEngine:
    """The checkpointed model if the namespace has one (ids and version survive), else a new one."""
    if not CATALOG[settings.model.model].checkpointed:
        # Its learner's state would die with the process: a restart would learn from nothing.
        raise ConfigError(
            f"model {settings.model.model!r} keeps River objects, which have no safe checkpoint: "
            "the service runs the checkpointed models (microclusters); River's are for `segstream evaluate`"
        )
    saved = store.load_model()
    if saved is not None:
        version, blob = saved
        engine = restore(settings, blob)
        spec = CATALOG.get(engine.params.model)
        if spec is None or not spec.checkpointed or isinstance(engine.model, FrozenLearner):
            raise ConfigError(
                f"namespace {settings.redis.namespace!r} holds a checkpoint of model "
                f"{engine.params.model!r}, whose learner has no safe checkpoint: replay the log into a "
                "fresh namespace (`segstream replay ... --namespace NEW`)"
            )
        if tuple(engine.feature_names) != FEATURE_NAMES:
            raise ConfigError(
                f"namespace {settings.redis.namespace!r} holds a model built on another feature set "
                f"({len(engine.feature_names)} features; this release computes {len(FEATURE_NAMES)}): "
                "replay the log into a fresh namespace (`segstream replay ... --namespace NEW`)"
            )
        # The checkpoint carries the parameters it was built with; the cadence of versions, the
        # alignment of partitions (with --workers they depend on the number of workers) and the
        # re-scoring's knobs (who moves when, not what the model is) are safe to change at any
        # point. (A checkpoint from before the re-scoring takes the defaults of its knobs.)
        m = settings.model
        engine.params = replace(
            engine.params,
            update_every=m.update_every,
            update_days=m.update_days,
            rescore_every_days=m.rescore_every_days,
            rescore_margin=m.rescore_margin,
            rescore_max_share=m.rescore_max_share,
            align_lateness_days=align_lateness_days(settings),
        )
        log.info("restored model version %d of namespace %s", version, settings.redis.namespace)
        if kept := differences(engine.params, engine_params(settings)):
            log.warning(
                "the checkpoint was built with other model settings (%s); it keeps them: replay the "
                "log into a fresh namespace to rebuild with these settings",
                ", ".join(kept),
            )
        # The state's features decay with the settings' half-lives whatever the checkpoint says, so
        # the population sample is aged with them too (a model built on the old ones, features
        # moving to the new ones: a replay gives a model built on the new ones throughout).
        configured = settings.features.params()
        if followed := differences(engine.feature_params, configured):
            log.warning(
                "the checkpoint was built with other feature settings (%s); features follow the "
                "settings from now on: replay the log into a fresh namespace for a model built on them",
                ", ".join(followed),
            )
            engine.feature_params = configured
        return engine
    return new_engine(settings)


def restore(settings: Settings, blob: bytes) -> SegmentEngine:
    """The engine of the namespace's checkpoint; a ConfigError (one line: replay into a fresh
    namespace) for anything but a safe checkpoint (models.segments.checkpoint: never unpickled)."""
    try:
        return SegmentEngine.restore(blob)
    except CheckpointError as e:
        raise ConfigError(f"namespace {settings.redis.namespace!r}: {e}") from None


def differences(restored: T, configured: T) -> list[str]:
    """The fields of a restored checkpoint's parameters (a dataclass) that the settings set
    otherwise."""
    return [
        f"{f.name}: {getattr(restored, f.name)!r} (settings: {getattr(configured, f.name)!r})"
        for f in fields(type(restored))  # type: ignore[arg-type]
        if getattr(restored, f.name) != getattr(configured, f.name)
    ]


def new_engine(settings: Settings) -> SegmentEngine:
    return SegmentEngine(engine_params(settings), feature_params=settings.features.params())
