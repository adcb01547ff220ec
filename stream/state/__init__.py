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
from stream.state.redis_store import LISTPACK_CONFIG, FeatureStore

__all__ = [
    "DEFAULT_BUCKETS",
    "LISTPACK_CONFIG",
    "MAX_UNWRITTEN_BATCHES",
    "FeatureStore",
    "Loading",
    "MemoryFeatureStore",
    "OrderedIO",
    "PartitionView",
    "PartitionWrite",
    "StateStore",
    "bucket_of",
    "model_conflict",
    "topic_changed",
]
