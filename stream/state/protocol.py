"""What the pipeline needs of a feature store, one partition at a time, and the errors of a write
that must not happen (:class:`StateStore`; implemented by :mod:`~stream.state.redis_store` and
:mod:`~stream.state.memory_store`, held to one contract by ``tests/contract``)."""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from stream.errors import ModelConflict, StateLost, TopicChanged

DEFAULT_BUCKETS = 2048  # per partition: ~120 customers per bucket at 1M customers on 4 partitions


def bucket_of(customer_id: str, buckets: int) -> int:
    """The bucket of a customer within its partition: stable across processes and versions."""
    return zlib.crc32(customer_id.encode()) % buckets


@dataclass
class PartitionView:
    partition: int
    applied_offset: int  # -1 when nothing applied yet
    watermark: int
    states: dict[str, bytes | None]
    due: list[tuple[int, str]] = field(default_factory=list)  # (due_ts, customer_id), sorted
    clock: str = ""  # PartitionClock.pack() of the partition
    topic_id: str = ""  # the input topic the state was built from ("" = none recorded)


@dataclass
class PartitionWrite:
    partition: int
    expected_offset: int
    new_offset: int
    watermark: int
    states: dict[str, bytes]  # b"" deletes
    due: dict[str, int]  # customer -> due ts (0 removes)
    segment_deltas: dict[int, int]
    clock: str | None = None  # None: unchanged
    # The input topic's id: the write fails (TopicChanged) if the state was built from another
    # topic of the same name; recorded with the first write. "": not checked (a replay of files).
    topic_id: str = ""
    # The batch's outputs of this partition, encoded (stream.io.sinks.outbox): stored in the same
    # atomic step as the state, published once it landed, deleted once acknowledged; a restart
    # publishes what is left (docs/decisions/0026-outputs-from-an-outbox-written-with-the-state.md).
    outbox: bytes = b""
    # The same outputs as the sink takes them, handed to it once the write landed (not stored).
    outputs: tuple[Any, ...] = ()
    # A learner's rows of the batch (stream.state.learnlog), stored in the same step under
    # ``learned_name`` until a model checkpoint no longer needs them ("": none).
    learned: bytes = b""
    learned_name: str = ""


class StateStore(Protocol):
    """What the pipeline needs of a feature store (Redis in production, memory for evaluation)."""

    def load(self, p: int, customer_ids: list[str], due_until: int) -> PartitionView: ...
    def commit(self, w: PartitionWrite) -> int | None: ...
    def outbox(self, p: int) -> list[tuple[int, bytes]]: ...
    def clear_outbox(self, entries: dict[int, list[int]]) -> None: ...
    def learn_entries(self, p: int, after: str = "") -> list[tuple[str, bytes]]: ...
    def trim_learned(self, p: int, below: str) -> None: ...
    def save_model(
        self,
        snapshot: bytes,
        version: int,
        after: int | None = None,
        unpublished: bytes = b"",
        kept: bytes = b"",
        built_after: str = "",
    ) -> None: ...
    def log_rows(
        self, p: int, expected_offset: int, first: int, name: str, blob: bytes, through: int, clock: int
    ) -> int: ...
    def logged(self, p: int) -> tuple[int, int]: ...
    def merge_state(self) -> tuple[str, dict[int, str]]: ...
    def kept_version(self, version: int) -> bytes | None: ...
    def set_merged(self, position: str, forget: Iterable[int] = ()) -> None: ...
    def unpublished_model_events(self) -> list[tuple[int, bytes]]: ...
    def clear_unpublished(self, version: int) -> None: ...
    def model_version(self) -> int: ...
    def load_model(self) -> tuple[int, bytes] | None: ...
    def erased_keys(self, partitions: int) -> dict[int, set[int]]: ...
    def clear_erased(self, erased: dict[int, set[int]]) -> None: ...
    def segment_counts(self, partitions: int | Iterable[int]) -> dict[int, int]: ...
    def unplaced(self, p: int) -> int: ...
    def partition_states(self, p: int) -> Iterator[tuple[str, bytes]]: ...
    def applied_offset(self, p: int) -> int: ...
    def watermark(self, p: int) -> int: ...
    def topic_id(self, p: int) -> str: ...
    def take_census(self, partitions: int) -> None: ...
    def output_topics(self) -> dict[str, str]: ...
    def record_output_topics(self, ids: dict[str, str]) -> None: ...


def topic_changed(p: int, stored: str, current: str) -> TopicChanged:
    """The error of a write onto a partition whose state another topic of that name built."""
    return TopicChanged(
        f"partition {p}: the namespace's state was built from input topic id {stored}, but the topic "
        f"is now {current}: it was deleted and created again, and its offsets started over"
    )


def keys_lost(namespace: str, p: int, what: str) -> StateLost:
    """The error of a load that found a key of the partition gone or short of what was written
    (its key census): computed on what is left, its customers would start over as new ones."""
    return StateLost(
        f"namespace {namespace!r}, partition {p}: Redis lost {what}, by a DEL, an eviction or a "
        "failover to a replica that missed writes; nothing was applied on top of it. Rebuild with "
        "`segstream replay --from-offset 0 --namespace NEW`"
    )


def model_conflict(version: int, after: int | None, stored: int) -> ModelConflict | StateLost:
    """The error of a learner whose next version does not follow the namespace's checkpoint: a
    newer stored version is another learner's; an older one means the checkpoint went back."""
    if after is not None and stored < after:
        return StateLost(
            f"model version {version} was not published: the namespace's model checkpoint went back "
            f"from version {after} to {stored} (Redis lost writes: a restart without fsync, a failover "
            "to a lagging replica?); rebuild with `segstream replay --from-offset 0 --namespace NEW`, "
            "or take the stored version with `segstream recover --resume`"
        )
    return ModelConflict(
        f"model version {version} was not published: the namespace holds version {stored}, "
        f"not {after}, so another learner writes it; run exactly one instance with model.role "
        "learner (the others: follower)"
    )
