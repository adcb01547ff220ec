"""Per-partition customer state: the store protocol, Redis (Lua scripts) and in-memory stores,
and the ordered background I/O the pipeline writes through."""

from stream.state.memory_store import MemoryFeatureStore
from stream.state.ordered_io import MAX_UNWRITTEN_BATCHES, Loading, OrderedIO
from stream.state.protocol import (
    DEFAULT_BUCKETS,
    PartitionView,
    PartitionWrite,
    StateStore,
    bucket_of,
    model_conflict,
    topic_changed,
)
from stream.state.redis_store import (
    LISTPACK_CONFIG,
    REDIS_DOWN,
    REDIS_ERRORS,
    REDIS_REFUSED,
    FeatureStore,
    connect,
)

__all__ = [
    "DEFAULT_BUCKETS",
    "LISTPACK_CONFIG",
    "MAX_UNWRITTEN_BATCHES",
    "REDIS_DOWN",
    "REDIS_ERRORS",
    "REDIS_REFUSED",
    "FeatureStore",
    "Loading",
    "MemoryFeatureStore",
    "OrderedIO",
    "PartitionView",
    "PartitionWrite",
    "StateStore",
    "bucket_of",
    "connect",
    "model_conflict",
    "topic_changed",
]
