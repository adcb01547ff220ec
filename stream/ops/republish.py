"""``segstream recover --republish``: an output topic was deleted (and maybe created again).

What downstream read from it is gone; what the namespace can give back, it publishes again:

- the model topic (compacted: the newest version): the model checkpoint in Redis, as the learner
  published it;
- the current-segments topic (compacted: each customer's newest change): rebuilt from the changes
  topic, the newest change of each customer (an erase leaves its tombstone). Customers whose newest
  change is no longer there (the changes topic was recreated too, or retention deleted it) are
  counted: their record comes with their next change;
- then it records the topics' ids, so that `segstream run` goes on.

The changes, model-events and dead-letter topics are histories: what was on them is not in Redis.
The changes topic is read twice (to find each customer's newest change, then to copy it), so
memory holds a position per customer, not the payloads.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from stream.config import Settings
from stream.errors import SegstreamError
from stream.io.kafka import make_admin, make_producer, partition_for_key, scan_topic
from stream.runtime.integrity import topic_ids

log = logging.getLogger(__name__)


@dataclass
class RepublishReport:
    namespace: str
    applied: bool  # False for a dry run
    topics: dict[str, str] = field(default_factory=dict)  # output topic -> its id now
    changed: list[str] = field(default_factory=list)  # topics whose id is not the recorded one
    model_version: int | None = None  # the version published again (None: no checkpoint)
    current_records: int = 0  # records written to the current-segments topic
    customers_without_change: int = 0  # customers with changes in Redis whose newest is gone

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def _newest_changes(settings: Settings, topic: str) -> dict[bytes, tuple[int, int, int]]:
    """Each customer's newest change on ``topic``: key -> (seq, partition, offset)."""
    newest: dict[bytes, tuple[int, int, int]] = {}
    for partition, msg in scan_topic(settings, topic):
        if msg.key is None or msg.value is None:
            continue
        seq = int(json.loads(msg.value)["seq"])
        if seq >= newest.get(msg.key, (0, 0, 0))[0]:
            newest[msg.key] = (seq, partition, msg.offset)
    return newest


def republish(settings: Settings, dry_run: bool = False) -> RepublishReport:
    from stream.io.sinks import open_sink
    from stream.ops.recover import refuse_active_group
    from stream.runtime.engines import load_engine
    from stream.state import FeatureStore

    s, t = settings, settings.topics
    store = FeatureStore(s.redis.url.get_secret_value(), s.redis.namespace, cluster=s.redis.cluster).start()
    admin = make_admin(s)
    try:
        if not dry_run:
            refuse_active_group(admin, s.kafka.group_id)
        names = list(t.outputs().values())
        current = topic_ids(admin, names)
        recorded = store.output_topics()
        report = RepublishReport(s.redis.namespace, applied=not dry_run, topics=current)
        report.changed = [n for n in names if recorded.get(n) and recorded[n] != current[n]]
        missing = [n for n in names if not current[n]]
        if missing:
            raise SegstreamError(f"output topics {missing} do not exist: run `segstream topics create` first")
        version = store.model_version()
        report.model_version = version or None  # a warm-up checkpoint (0) is no model to publish
        newest = _newest_changes(s, t.out("changes"))
        report.current_records = len(newest)
        report.customers_without_change = _without_newest_change(store, s.topics.partitions, newest)
        if dry_run:
            return report
        if version:
            from models.segments.published import published_model

            engine = load_engine(s, store)
            sink = open_sink(s)
            try:
                sink.model_snapshot(published_model(engine), engine.snapshot(waiting=None))
                sink.flush()
            finally:
                sink.close()
        _copy_newest(s, t.out("changes"), t.out("current"), newest)
        store.record_output_topics(current)
        log.info(
            "recover --republish: model version %s, %d current records", report.model_version, len(newest)
        )
        return report
    finally:
        admin.close()
        store.close()


def _without_newest_change(store: Any, partitions: int, newest: dict[bytes, tuple[int, int, int]]) -> int:
    """Customers who have had a change (a seq) whose newest is not on the changes topic."""
    from models.features import CustomerState

    return sum(
        1
        for _, c, blob in store.scan_customers(partitions)
        if CustomerState.unpack(blob).seq > 0 and c.encode() not in newest
    )


def _copy_newest(
    settings: Settings, changes: str, current: str, newest: dict[bytes, tuple[int, int, int]]
) -> None:
    """Write each customer's newest change onto the current-segments topic (its tombstone after
    an erase), with its headers, to the partition the service would use."""
    chosen = {(p, off) for _, p, off in newest.values()}
    producer = make_producer(settings)
    try:
        n = len(producer.partitions_for(current))
        futures = []
        for partition, m in scan_topic(settings, changes):
            if (partition, m.offset) not in chosen:
                continue
            erased = json.loads(m.value).get("reason") == "erase"
            futures.append(
                producer.send(
                    current,
                    key=m.key,
                    value=None if erased else m.value,
                    headers=list(m.headers or []),
                    partition=partition_for_key(m.key, n),
                )
            )
        producer.flush()
        for f in futures:
            f.get(timeout=60)
    finally:
        producer.close(timeout=10)
