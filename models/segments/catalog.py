"""The clustering models the engine can run: one entry each, the one place a model is registered.

Settings (``model.model``), the CLI (``segstream evaluate --models``), ``evaluate`` and the tests
read this catalog. A model is a factory of a :class:`~models.segments.river_models.SegmentModel`
(learns model-space rows, summarises itself as centroids, weights and variances); the registry,
names, soft membership and hysteresis on top are the engine's, whatever the model.

>>> "microclusters" in model_names() and "dbstream" in model_names()
True
>>> make_model("kmeans", n_clusters=3, seed=1).supports_rescale
True
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from river import cluster

from models.segments.river_models import MicroAdapter, RiverAdapter, SegmentModel

__all__ = ["CATALOG", "ModelSpec", "make_model", "model_names", "register"]


@dataclass(frozen=True)
class ModelSpec:
    name: str
    summary: str  # one line: what it is (CLI help, docs)
    # (n_clusters, seed, max_micro, half_life seconds, n_init, restart_gain) -> a fresh model
    build: Callable[[int, int, int, float, int, float], SegmentModel]
    in_evaluate: bool = True  # among `segstream evaluate`'s default models (False: too slow)
    # Its learner's state has a safe checkpoint (models.segments.checkpoint): the service can run
    # it. River's models have none: their checkpoints assign but cannot learn (evaluation only).
    checkpointed: bool = False


CATALOG: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    """Add a model: from then on settings, the CLI and ``evaluate`` accept its name."""
    CATALOG[spec.name] = spec
    return spec


def model_names() -> tuple[str, ...]:
    return tuple(CATALOG)


def make_model(
    name: str,
    n_clusters: int,
    seed: int,
    max_micro: int = 150,
    half_life: float = 60 * 86400.0,
    n_init: int = 10,
    restart_gain: float = 0.05,
) -> SegmentModel:
    spec = CATALOG.get(name)
    if spec is None:
        raise ValueError(f"unknown model {name!r}; choose one of {model_names()}")
    return spec.build(n_clusters, seed, max_micro, half_life, n_init, restart_gain)


register(
    ModelSpec(
        "microclusters",
        "decayed micro-clusters with a weighted k-means macro step; versions fitted on a customer "
        "sample (the default)",
        MicroAdapter,
        checkpointed=True,
    )
)
register(
    ModelSpec(
        "kmeans",
        "River KMeans (halflife 0.02)",
        lambda k, seed, *_: RiverAdapter(
            "kmeans", cluster.KMeans(n_clusters=k, halflife=0.02, sigma=1.0, seed=seed), supports_rescale=True
        ),
    )
)
register(
    ModelSpec(
        "streamkmeans",
        "River STREAMKMeans",
        lambda k, seed, *_: RiverAdapter(
            "streamkmeans",
            cluster.STREAMKMeans(chunk_size=50, n_clusters=k, halflife=0.5, sigma=1.0, seed=seed),
        ),
    )
)
register(
    ModelSpec(
        "clustream",
        "River CluStream (~2 ms per event)",
        lambda k, seed, *_: RiverAdapter(
            "clustream",
            cluster.CluStream(n_macro_clusters=k, max_micro_clusters=100, time_gap=500, seed=seed),
        ),
        in_evaluate=False,
    )
)
register(
    ModelSpec(
        "denstream",
        "River DenStream (~2 ms per event; DBSCAN at prediction)",
        lambda k, seed, *_: RiverAdapter(
            "denstream",
            cluster.DenStream(decaying_factor=0.01, beta=0.5, mu=2.5, epsilon=1.5, n_samples_init=500),
        ),
        in_evaluate=False,
    )
)
register(
    ModelSpec(
        "dbstream",
        "River DBSTREAM (density; its own number of clusters)",
        lambda k, seed, *_: RiverAdapter(
            "dbstream", cluster.DBSTREAM(clustering_threshold=2.5, fading_factor=0.001, cleanup_interval=1000)
        ),
    )
)
