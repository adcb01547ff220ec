"""The engine's checkpoint: its exact state as bytes, and back.

Today a pickle of the engine's attributes behind a magic line: restore only checkpoints this
service wrote (Redis and the ``segments.model`` topic must be trusted). A documented data format
replaces it (issue #23).
"""

from __future__ import annotations

import pickle
from typing import Any, TypeVar

import numpy as np

from models.features import FeatureParams
from models.segments.value import ValueModel

__all__ = ["dump", "load"]

MAGIC = b"segstream-engine/1\n"
E = TypeVar("E")


def dump(engine: Any, waiting: bool = False) -> bytes:
    """The engine's state. Rows waiting for other partitions (``align_sources``) are left out
    unless ``waiting``: during a catch-up read they can be weeks of rows, tens of megabytes, too
    much for every version's checkpoint and Kafka record. A graceful shutdown keeps them; a crash
    loses them, as it loses the rows learned since the last version."""
    state = engine.__dict__
    if not waiting and engine._aligner is not None:
        state = {**state, "_aligner": None}
    return MAGIC + pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)


def load(cls: type[E], data: bytes) -> E:
    if not data.startswith(MAGIC):
        raise ValueError("not a segstream engine snapshot")
    state: dict[str, Any] = pickle.loads(data[len(MAGIC) :])
    engine: Any = cls.__new__(cls)
    # Attributes newer than some snapshots written by earlier releases.
    engine.retired_names = {}
    engine.feature_params = FeatureParams()
    engine.population = None
    engine._version_t = -np.inf
    engine._population_centroids = None
    engine._population_t = -np.inf
    engine._source_t = {}
    engine._align_sources = frozenset()
    engine._align_drained = frozenset()
    engine._aligner = None
    engine.currencies = frozenset()
    engine._population_rng = np.random.default_rng(state["params"].seed)
    engine.value_model = ValueModel(state["feature_names"])
    engine.__dict__.update(state)
    return engine
