"""Erase a customer: features, segment, a tombstone on segments.current, an erase change.

``segstream forget CUSTOMER_ID`` publishes an ``erase`` :class:`~models.contracts.SegmentChange`
(previous = the customer's segment, current = None) to ``segments.changes`` and a tombstone to
the compacted ``segments.current``, waits for the broker's acknowledgement, and only then deletes
the customer's state key, its inactivity schedule entry and its place in the partition's segment
counts in one atomic Redis step. Outputs first, state second (as in the pipeline): a crash in
between leaves the customer in Redis, and running the command again republishes the same
``change_id`` before deleting, so an erase is never lost.

The delete is a compare-and-delete on the packed state: if the pipeline changed the customer
between the read and the delete, the command reads again and retries.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from models.contracts import SegmentChange
from models.features import CustomerState
from models.segments.changes import erase_change
from stream.config import Settings
from stream.errors import SegstreamError
from stream.io.kafka import partition_for_key

log = logging.getLogger(__name__)

_MAX_ATTEMPTS = 5


@dataclass(frozen=True)
class EraseResult:
    customer_id: str
    partition: int
    change: SegmentChange


def partition_of(customer_id: str, partitions: int) -> int:
    """The Kafka partition of a customer id (the producer's default murmur2 partitioner)."""
    return partition_for_key(customer_id.encode(), partitions)


def _segment_names(store: Any) -> tuple[int, dict[int, str]]:
    from models.segments.engine import SegmentEngine

    saved = store.load_model()
    if saved is None:
        return 0, {}
    version, blob = saved
    engine = SegmentEngine.restore(blob)
    return version, engine.live_names()


def forget_customer(settings: Settings, store: Any, sink: Any, customer_id: str) -> EraseResult:
    """Publish the erase change and tombstone, then delete the customer's Redis state atomically.

    Raises :class:`SegstreamError` for an unknown customer.
    """
    partitions = int(store.meta().get("partitions", settings.topics.partitions))
    p = partition_of(customer_id, partitions)
    version, names = _segment_names(store)
    for _ in range(_MAX_ATTEMPTS):
        blob, applied = store.state_and_offset(p, customer_id)
        if blob is None:
            raise SegstreamError(
                f"unknown customer {customer_id!r} in namespace {settings.redis.namespace!r}"
            )
        state = CustomerState.unpack(blob)
        change = erase_change(
            customer_id, p, applied, state.segment, state.seq, state.last_ts, version, names
        )
        # Outputs first: a crash before the delete leaves the customer here, and a re-run
        # republishes the same change_id; the reverse order could lose the erase event.
        sink.change(change)
        sink.flush()
        # Compare-and-delete (stream/lua/erase_customer.lua): state, due entry, segment count.
        outcome = store.erase_customer(p, customer_id, blob, state.segment)
        if outcome == 1:
            return EraseResult(customer_id, p, change)
        if outcome == -1:
            # Erased concurrently by another run: the event is published, the state is gone.
            return EraseResult(customer_id, p, change)
        log.info("customer %s changed during the erase (partition %d): retrying", customer_id, p)
    raise SegstreamError(
        f"customer {customer_id!r} kept changing during {_MAX_ATTEMPTS} erase attempts: "
        "is the pipeline still receiving its events?"
    )
