"""Redis feature store: per-partition keys, one read and one atomic Lua write per batch.

Key layout (``ns`` = namespace, ``{p}`` = the partition's hash tag, so that every key a batch
touches lives in one Redis Cluster slot and the same script runs on Cluster):

- ``ns:{p}:c:<customer_id>``  packed customer state (features + segment bookkeeping)
- ``ns:{p}:offset``           last applied source offset of partition p
- ``ns:{p}:wm``               event-time watermark of partition p (seconds)
- ``ns:{p}:due``              sorted set: customer -> next inactivity re-evaluation time
- ``ns:{p}:segcount``         hash: segment id -> customers currently in it
- ``ns:model``                latest model snapshot; ``ns:meta`` hash (partition count, topic)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Protocol

import redis

from stream.errors import ServiceUnavailable, StateConflict

log = logging.getLogger(__name__)


@dataclass
class PartitionView:
    partition: int
    applied_offset: int  # -1 when nothing applied yet
    watermark: int
    states: dict[str, bytes | None]
    due: list[tuple[int, str]] = field(default_factory=list)  # (due_ts, customer_id), sorted


@dataclass
class PartitionWrite:
    partition: int
    expected_offset: int
    new_offset: int
    watermark: int
    states: dict[str, bytes]  # b"" deletes
    due: dict[str, int]  # customer -> due ts (0 removes)
    segment_deltas: dict[int, int]


class StateStore(Protocol):
    """What the pipeline needs of a feature store (Redis in production, memory for evaluation)."""

    def load(self, p: int, customer_ids: list[str], due_until: int) -> PartitionView: ...
    def commit(self, w: PartitionWrite) -> None: ...
    def save_model(self, snapshot: bytes, version: int) -> None: ...


class FeatureStore:
    """Reads and atomically writes per-partition feature state. Connect with ``start()``."""

    def __init__(self, url: str, namespace: str) -> None:
        self._url = url
        self.ns = namespace
        self._client: redis.Redis | None = None
        self._commit: Any = None

    # ---- lifecycle ----
    def start(self) -> FeatureStore:
        try:
            self._client = redis.Redis.from_url(self._url, decode_responses=False, socket_timeout=30)
            self._client.ping()
        except redis.RedisError as e:
            raise ServiceUnavailable(f"Redis at {_host_of(self._url)} did not answer: {e}") from e
        script = resources.files("stream").joinpath("lua/commit_partition.lua").read_text()
        self._commit = self._client.register_script(script)
        return self

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    @property
    def client(self) -> redis.Redis:
        if self._client is None:
            raise RuntimeError("FeatureStore.start() was not called")
        return self._client

    # ---- keys ----
    def _tag(self, p: int) -> str:
        return f"{self.ns}:{{{p}}}"

    def customer_key(self, p: int, customer_id: str) -> str:
        return f"{self._tag(p)}:c:{customer_id}"

    def offset_key(self, p: int) -> str:
        return f"{self._tag(p)}:offset"

    def watermark_key(self, p: int) -> str:
        return f"{self._tag(p)}:wm"

    def due_key(self, p: int) -> str:
        return f"{self._tag(p)}:due"

    def segcount_key(self, p: int) -> str:
        return f"{self._tag(p)}:segcount"

    @property
    def model_key(self) -> str:
        return f"{self.ns}:model"

    @property
    def meta_key(self) -> str:
        return f"{self.ns}:meta"

    # ---- batch path ----
    def load(self, p: int, customer_ids: list[str], due_until: int) -> PartitionView:
        """One round trip: applied offset, watermark, states, due re-evaluations up to ``due_until``."""
        pipe = self.client.pipeline(transaction=False)
        pipe.get(self.offset_key(p))
        pipe.get(self.watermark_key(p))
        pipe.zrangebyscore(self.due_key(p), 1, due_until, withscores=True)
        if customer_ids:
            pipe.mget([self.customer_key(p, c) for c in customer_ids])
        res = pipe.execute()
        blobs = res[3] if customer_ids else []
        due = sorted((int(score), member.decode()) for member, score in res[2])
        states = dict(zip(customer_ids, blobs, strict=True))
        # Customers that are only due (no event this batch) need their state too.
        missing = [c for _, c in due if c not in states]
        if missing:
            states.update(
                zip(missing, self.client.mget([self.customer_key(p, c) for c in missing]), strict=True)
            )
        return PartitionView(
            partition=p,
            applied_offset=int(res[0]) if res[0] is not None else -1,
            watermark=int(res[1]) if res[1] is not None else 0,
            states=states,
            due=due,
        )

    def commit(self, w: PartitionWrite) -> None:
        """Write the batch atomically iff the partition's applied offset is still ``expected_offset``."""
        p = w.partition
        cids = list(w.states)
        keys = [self.offset_key(p), self.watermark_key(p), self.due_key(p), self.segcount_key(p)]
        keys += [self.customer_key(p, c) for c in cids]
        args: list[Any] = [
            "" if w.expected_offset < 0 else str(w.expected_offset),
            str(w.new_offset),
            str(w.watermark),
            len(cids),
        ]
        args += [w.states[c] for c in cids]
        args.append(len(w.due))
        for c, ts in w.due.items():
            args += [c, str(ts)]
        args.append(len(w.segment_deltas))
        for seg, delta in sorted(w.segment_deltas.items()):
            args += [str(seg), str(delta)]
        ok, current = self._commit(keys=keys, args=args)
        if not ok:
            raise StateConflict(
                f"partition {p}: applied offset is {current!r}, batch expected {w.expected_offset}"
            )

    # ---- look-ups and admin ----
    def applied_offset(self, p: int) -> int:
        v = self.client.get(self.offset_key(p))
        return int(v) if v is not None else -1

    def watermark(self, p: int) -> int:
        v = self.client.get(self.watermark_key(p))
        return int(v) if v is not None else 0

    def get_state(self, p: int, customer_id: str) -> bytes | None:
        v = self.client.get(self.customer_key(p, customer_id))
        return bytes(v) if v is not None else None

    def segment_counts(self, partitions: int) -> dict[int, int]:
        pipe = self.client.pipeline(transaction=False)
        for p in range(partitions):
            pipe.hgetall(self.segcount_key(p))
        counts: dict[int, int] = {}
        for h in pipe.execute():
            for k, v in h.items():
                counts[int(k)] = counts.get(int(k), 0) + int(v)
        return counts

    def save_model(self, snapshot: bytes, version: int) -> None:
        self.client.hset(self.model_key, mapping={"version": version, "snapshot": snapshot})

    def load_model(self) -> tuple[int, bytes] | None:
        h = self.client.hgetall(self.model_key)
        if not h:
            return None
        return int(h[b"version"]), bytes(h[b"snapshot"])

    def save_meta(self, topic: str, partitions: int) -> None:
        self.client.hset(self.meta_key, mapping={"topic": topic, "partitions": partitions})

    def meta(self) -> dict[str, str]:
        return {k.decode(): v.decode() for k, v in self.client.hgetall(self.meta_key).items()}

    def scan_customers(self, partitions: int) -> Any:
        """Yield (partition, customer_id, packed state) for every customer of the namespace."""
        for p in range(partitions):
            prefix = f"{self._tag(p)}:c:"
            keys: list[bytes] = []
            for key in self.client.scan_iter(match=f"{prefix}*", count=1000):
                keys.append(key)
                if len(keys) >= 500:
                    yield from self._fetch(p, prefix, keys)
                    keys = []
            if keys:
                yield from self._fetch(p, prefix, keys)

    def _fetch(self, p: int, prefix: str, keys: list[bytes]) -> Any:
        for key, blob in zip(keys, self.client.mget(keys), strict=True):
            if blob is not None:
                yield p, key.decode()[len(prefix) :], bytes(blob)


def _host_of(url: str) -> str:
    rest = url.split("://", 1)[-1]
    return rest.rsplit("@", 1)[-1]


class MemoryFeatureStore:
    """The FeatureStore contract in process memory: for `segstream evaluate` and notebooks.

    It passes the same contract tests as the Redis store (tests/integration/test_feature_store.py).
    """

    def __init__(self, namespace: str = "memory") -> None:
        self.ns = namespace
        self._offsets: dict[int, int] = {}
        self._watermarks: dict[int, int] = {}
        self._states: dict[int, dict[str, bytes]] = {}
        self._due: dict[int, dict[str, int]] = {}
        self._segcounts: dict[int, dict[int, int]] = {}
        self._model: tuple[int, bytes] | None = None
        self._meta: dict[str, str] = {}

    def start(self) -> MemoryFeatureStore:
        return self

    def close(self) -> None:
        pass

    def load(self, p: int, customer_ids: list[str], due_until: int) -> PartitionView:
        states = self._states.get(p, {})
        due = sorted((ts, c) for c, ts in self._due.get(p, {}).items() if 1 <= ts <= due_until)
        wanted = list(customer_ids) + [c for _, c in due if c not in set(customer_ids)]
        return PartitionView(
            partition=p,
            applied_offset=self._offsets.get(p, -1),
            watermark=self._watermarks.get(p, 0),
            states={c: states.get(c) for c in wanted},
            due=due,
        )

    def commit(self, w: PartitionWrite) -> None:
        p = w.partition
        current = self._offsets.get(p, -1)
        if current != w.expected_offset:
            raise StateConflict(
                f"partition {p}: applied offset is {current}, batch expected {w.expected_offset}"
            )
        states = self._states.setdefault(p, {})
        for c, blob in w.states.items():
            if blob:
                states[c] = blob
            else:
                states.pop(c, None)
        due = self._due.setdefault(p, {})
        for c, ts in w.due.items():
            if ts:
                due[c] = ts
            else:
                due.pop(c, None)
        counts = self._segcounts.setdefault(p, {})
        for seg, delta in w.segment_deltas.items():
            counts[seg] = counts.get(seg, 0) + delta
            if counts[seg] <= 0:
                del counts[seg]
        self._watermarks[p] = w.watermark
        self._offsets[p] = w.new_offset

    def applied_offset(self, p: int) -> int:
        return self._offsets.get(p, -1)

    def watermark(self, p: int) -> int:
        return self._watermarks.get(p, 0)

    def get_state(self, p: int, customer_id: str) -> bytes | None:
        return self._states.get(p, {}).get(customer_id)

    def segment_counts(self, partitions: int) -> dict[int, int]:
        out: dict[int, int] = {}
        for p in range(partitions):
            for seg, n in self._segcounts.get(p, {}).items():
                out[seg] = out.get(seg, 0) + n
        return out

    def save_model(self, snapshot: bytes, version: int) -> None:
        self._model = (version, snapshot)

    def load_model(self) -> tuple[int, bytes] | None:
        return self._model

    def save_meta(self, topic: str, partitions: int) -> None:
        self._meta = {"topic": topic, "partitions": str(partitions)}

    def meta(self) -> dict[str, str]:
        return dict(self._meta)

    def scan_customers(self, partitions: int) -> Any:
        for p in range(partitions):
            for c, blob in sorted(self._states.get(p, {}).items()):
                yield p, c, blob
