"""Redis feature store: per-partition keys, one read and one atomic Lua write per batch.

Key layout (``ns`` = namespace, ``{p}`` = the partition's hash tag, so that every key a batch
touches lives in one Redis Cluster slot and the same scripts run on Cluster):

- ``ns:{p}:cb:<b>``           hash bucket: customer id -> packed customer state, for the customers
                              of partition p whose ``bucket_of(customer id)`` is b
- ``ns:{p}:db:<b>``           due bucket, sorted set: customer id -> next inactivity re-evaluation
                              time, for the same customers
- ``ns:{p}:due``              sorted set: bucket b -> the earliest time in ``ns:{p}:db:<b>``
- ``ns:{p}:offset``           last applied source offset of partition p
- ``ns:{p}:wm``               event-time watermark of partition p (seconds; see models.features.clock)
- ``ns:{p}:clock``            the customers with the newest event times, which the watermark follows
- ``ns:{p}:topic``            id of the input topic the partition's state was built from
- ``ns:{p}:segcount``         hash: segment id -> customers currently in it (-1: in none yet)
- ``ns:{p}:outbox``           hash: entry number -> a written batch's outputs not yet acknowledged
- ``ns:{p}:learn``            hash: entry name -> a learner's rows of a written batch, until a
                              model checkpoint no longer needs them
- ``ns:{p}:census``           hash: ``cb:<b>`` / ``db:<b>`` / ``learn`` -> entries, and marks of the
                              keys that must exist: each load compares the buckets where it missed
                              a customer (and the marked keys) with it, so a key Redis lost stops
                              the service instead of making its customers new ones; a start checks
                              every key (``take_census.lua``, which also counts a namespace of an
                              earlier release once)
- ``ns:{p}:logged``           a follower's last offset whose rows are in the learn log (ahead of
                              the applied offset while it waits for the learner's merge)
- ``ns:model``                hash: the latest model snapshot; with followers of a merging learner
                              also the recent versions (``v:<n>``), the merge position each was
                              built after (``after:<n>``) and how far the merge got (``merged``);
                              ``ns:meta`` hash (partition count, topic)

Why buckets: a key per customer costs ~130 bytes of key, dict entry and object headers beyond the
state, and a skiplist sorted set ~110 bytes per member. Small hashes and sorted sets are stored as
listpacks (a flat byte array), ~15-25 bytes of overhead per entry. Buckets hold ~100-200
customers at the target scale (``buckets`` per partition, fixed for a namespace: changing it
needs a replay into a fresh namespace). Listpack encoding needs ``hash-max-listpack-value`` >= the
packed state size and ``*-max-listpack-entries`` >= the bucket size: ``start()`` raises them with
CONFIG SET if they are lower (scripts/stack.sh configures them too).

Redis Cluster (``cluster=True``, setting ``redis.cluster``): the same key names and scripts, on
redis-py's cluster client. Every command and script touches one slot: a batch's, an erase's and
``adopt_topic``'s keys carry the partition's hash tag (``load_partition.lua`` builds due bucket
keys of that tag, the same slot as its declared keys, which Redis allows); ``ns:model`` and
``ns:meta`` are single keys, read and written by single-key commands and a one-key script. The
hash tag is the partition number alone, so partition p of every namespace shares a slot.
Pipelines that span partitions are not transactions: the cluster client splits them by node. SCAN
runs on every primary; CONFIG GET/SET on every node the cluster client knows (the primaries, and
the replicas CLUSTER SLOTS listed when it connected; scripts/stack.sh and docker-compose.yml give
every node the listpack limits in its config, so that a replica promoted by a failover has them).
"""

from __future__ import annotations

import logging
import struct
import zlib
from collections.abc import Iterable, Iterator
from importlib import resources
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.exceptions import ClusterDownError, RedisClusterException, SlotNotCoveredError
from redis.retry import Retry

from models.segments.population import customer_key
from stream.errors import ConfigError, ServiceUnavailable, StateConflict
from stream.state.learnlog import entry_name
from stream.state.protocol import (
    DEFAULT_BUCKETS,
    PartitionView,
    PartitionWrite,
    bucket_of,
    keys_lost,
    model_conflict,
    topic_changed,
)

log = logging.getLogger(__name__)

Client = redis.Redis | RedisCluster

# Transient: Redis went away or is failing over; a caller waits until it answers and resumes from
# the applied offsets (stream/runtime/service.py). A dropped connection or a timeout on a single
# server; on a cluster also CLUSTERDOWN (a master failed and no replica took over yet, or nodes
# still disagree), a slot no node serves yet, and a topology refresh that reached no node. Other
# Redis errors (a script error, a full memory, a wrong password: redis-py's authentication errors
# are ConnectionErrors too) are not transient.
REDIS_DOWN = (
    redis.ConnectionError,
    redis.TimeoutError,
    ClusterDownError,
    SlotNotCoveredError,
    redis.exceptions.RedisClusterUnreachableError,  # type: ignore[attr-defined]  # newer than types-redis
)
REDIS_REFUSED = (redis.AuthenticationError, redis.exceptions.AuthorizationError)
# Every error of a Redis client: redis-py's cluster client raises some that are no RedisError.
REDIS_ERRORS = (redis.RedisError, RedisClusterException)

# Redis settings that keep the buckets in listpack encoding (the packed state is <= 276 bytes).
LISTPACK_CONFIG = {
    "hash-max-listpack-value": 512,
    "hash-max-listpack-entries": 1024,
    "zset-max-listpack-entries": 1024,
}


def _pack_u16(values: list[int]) -> bytes:
    """Big-endian 16-bit integers: the batch scripts read their per-customer headers with
    string.byte, one Lua call per customer instead of one Redis argument per field."""
    if values and not 0 <= min(values) <= max(values) <= 0xFFFF:
        raise ValueError("a key index, customer id or state is longer than 65535")
    return struct.pack(f">{len(values)}H", *values)


class FeatureStore:
    """Reads and atomically writes per-partition feature state. Connect with ``start()``."""

    def __init__(
        self, url: str, namespace: str, buckets: int = DEFAULT_BUCKETS, cluster: bool = False
    ) -> None:
        self._url = url
        self.ns = namespace
        self.buckets = buckets
        self.cluster = cluster
        # One server (and its replicas) applies and replicates writes in the order made: what a
        # crash or a failover loses is a suffix of them. A cluster's masters replicate each on
        # its own: a failover can lose a write to one and keep a later one to another.
        self.writes_in_order = not cluster
        self._client: Client | None = None
        self._commit: Any = None
        self._load: Any = None
        self._erase: Any = None
        self._save_model: Any = None
        self._take_census: Any = None
        self._trim: Any = None
        self._log_rows: Any = None

    # ---- lifecycle ----
    def start(self, connect_timeout: float = 5.0) -> FeatureStore:
        """Connect; ServiceUnavailable if Redis does not answer a PING within ``connect_timeout``
        seconds (the settings' ``redis.connect_timeout_seconds``)."""
        try:
            # The first PING on a connection of its own with a short read timeout: a server that
            # accepts connections but does not answer (paused, overloaded) fails the command in
            # seconds rather than after the working client's 30 s read timeout. (A cluster: every
            # primary answers it.)
            probe = connect(self._url, self.cluster, connect_timeout, connect_timeout)
            try:
                if isinstance(probe, RedisCluster):
                    probe.ping(target_nodes=RedisCluster.PRIMARIES)
                else:
                    probe.ping()
                    self._refuse_a_cluster_node(probe)
            finally:
                probe.close()
            self._client = connect(self._url, self.cluster, 30, connect_timeout)
        except REDIS_ERRORS as e:
            # redis-py's words for a server without cluster support, met by the cluster client.
            if self.cluster and "cluster mode is not enabled" in str(e).lower():
                raise ConfigError(
                    f"Redis at {_host_of(self._url)} is not a Redis Cluster node but redis.cluster is "
                    "true: set it false (SEGSTREAM_REDIS__CLUSTER=false)"
                ) from e
            refused = isinstance(e, (*REDIS_REFUSED, redis.ResponseError))
            what = "refused the connection" if refused else f"did not answer within {connect_timeout:g} s"
            if isinstance(e, ClusterDownError):
                what = "is down (a failover under way?)"
            kind = "Redis Cluster" if self.cluster else "Redis"
            raise ServiceUnavailable(f"{kind} at {_host_of(self._url)} {what}: {e}") from e
        self._ensure_listpack_config()
        self._refuse_eviction()
        lua = resources.files("stream.state").joinpath("lua")
        client: Any = self._client  # (types-redis gives RedisCluster no register_script)
        self._commit = client.register_script(lua.joinpath("commit_partition.lua").read_text())
        self._load = client.register_script(lua.joinpath("load_partition.lua").read_text())
        self._erase = client.register_script(lua.joinpath("erase_customer.lua").read_text())
        self._save_model = client.register_script(lua.joinpath("save_model.lua").read_text())
        self._take_census = client.register_script(lua.joinpath("take_census.lua").read_text())
        self._trim = client.register_script(lua.joinpath("trim_learned.lua").read_text())
        self._log_rows = client.register_script(lua.joinpath("log_rows.lua").read_text())
        return self

    def _refuse_a_cluster_node(self, client: redis.Redis) -> None:
        """A node of a Redis Cluster taken for a single Redis would answer every batch of a
        partition it does not serve with MOVED: stop at the start with the setting to change.
        (A server that does not grant INFO is not checked.)"""
        try:
            enabled = client.info("cluster").get("cluster_enabled")
        except redis.ResponseError:
            return
        if enabled in (1, "1"):
            raise ConfigError(
                f"Redis at {_host_of(self._url)} is a node of a Redis Cluster but redis.cluster is false: "
                "set it true (SEGSTREAM_REDIS__CLUSTER=true)"
            )

    @classmethod
    def from_client(cls, client: Client, namespace: str, buckets: int = DEFAULT_BUCKETS) -> FeatureStore:
        """A store on an existing connection, for look-ups (tests, notebooks): no scripts loaded."""
        store = cls("", namespace, buckets, cluster=isinstance(client, RedisCluster))
        store._client = client
        return store

    def _servers(self) -> list[dict[str, Any]]:
        """Keyword arguments that send a server command to each server: one for a single Redis,
        one per node the cluster client knows (it would send CONFIG to one node only)."""
        client = self.client
        if isinstance(client, RedisCluster):
            return [{"target_nodes": node} for node in client.get_nodes()]
        return [{}]

    def _ensure_listpack_config(self) -> None:
        """Raise the listpack limits the bucket layout needs; warn if CONFIG is not allowed."""
        client = self.client
        try:
            for target in self._servers():
                current = client.config_get("*-max-listpack-*", **target)
                for name, wanted in LISTPACK_CONFIG.items():
                    have = current.get(name, current.get(name.encode()))
                    if have is None or int(have) < wanted:
                        client.config_set(name, wanted, **target)
        except REDIS_ERRORS as e:
            log.warning(
                "could not check or raise Redis listpack limits (%s): %s; buckets may use the "
                "hashtable/skiplist encodings and memory per customer will be higher",
                ", ".join(f"{k} {v}" for k, v in LISTPACK_CONFIG.items()),
                e,
            )

    def _refuse_eviction(self) -> None:
        """A Redis that evicts keys under memory pressure (``allkeys-*``) would drop customers'
        states and offsets silently; ``noeviction`` fails the write instead, which stops the
        service with the error. (``volatile-*`` evicts only keys with a TTL: segstream sets none.)"""
        for target in self._servers():
            try:
                policy = self.client.config_get("maxmemory-policy", **target)
            except REDIS_ERRORS as e:
                log.warning(
                    "could not check Redis's maxmemory-policy (%s): make sure it does not evict keys", e
                )
                return
            value = policy.get("maxmemory-policy", policy.get(b"maxmemory-policy", b""))
            value = value.decode() if isinstance(value, bytes) else str(value)
            if value.startswith("allkeys-"):
                node = target["target_nodes"].name if target else _host_of(self._url)
                raise ConfigError(
                    f"Redis at {node} evicts keys under memory pressure (maxmemory-policy "
                    f"{value}): customers' states would be lost silently; set maxmemory-policy noeviction"
                )

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    @property
    def client(self) -> Client:
        if self._client is None:
            raise RuntimeError("FeatureStore.start() was not called")
        return self._client

    # ---- keys ----
    def _tag(self, p: int) -> str:
        return f"{self.ns}:{{{p}}}"

    def bucket_of(self, customer_id: str) -> int:
        return bucket_of(customer_id, self.buckets)

    def bucket_key(self, p: int, bucket: int) -> str:
        """The hash holding the states of bucket ``bucket`` of partition ``p``."""
        return f"{self._tag(p)}:cb:{bucket}"

    def due_bucket_key(self, p: int, bucket: int) -> str:
        """The sorted set of the due times of bucket ``bucket`` of partition ``p``."""
        return f"{self._tag(p)}:db:{bucket}"

    def customer_key(self, p: int, customer_id: str) -> str:
        """The key holding the customer's state: a hash bucket, whose field is the customer id."""
        return self.bucket_key(p, self.bucket_of(customer_id))

    def offset_key(self, p: int) -> str:
        return f"{self._tag(p)}:offset"

    def watermark_key(self, p: int) -> str:
        return f"{self._tag(p)}:wm"

    def topic_key(self, p: int) -> str:
        """The id of the input topic partition ``p``'s state was built from."""
        return f"{self._tag(p)}:topic"

    def due_key(self, p: int) -> str:
        """The partition's due index: bucket -> its earliest due time."""
        return f"{self._tag(p)}:due"

    def segcount_key(self, p: int) -> str:
        return f"{self._tag(p)}:segcount"

    def census_key(self, p: int) -> str:
        """The partition's key census: each bucket's entry count, and which keys must exist."""
        return f"{self._tag(p)}:census"

    def erased_key(self, p: int) -> str:
        """The set of sample keys of the partition's erased customers, until the learner drops them."""
        return f"{self._tag(p)}:erased"

    @property
    def model_key(self) -> str:
        return f"{self.ns}:model"

    @property
    def meta_key(self) -> str:
        return f"{self.ns}:meta"

    # ---- batch path ----
    def load(self, p: int, customer_ids: list[str], due_until: int) -> PartitionView:
        """One round trip: applied offset, watermark, states, due re-evaluations up to ``due_until``."""
        tag = self._tag(p)
        keys = [
            f"{tag}:offset",
            f"{tag}:wm",
            f"{tag}:due",
            f"{tag}:clock",
            f"{tag}:topic",
            f"{tag}:census",
            f"{tag}:outbox",
            f"{tag}:learn",
        ]
        index: dict[int, int] = {}
        head: list[int] = []  # per customer: its bucket key's index in KEYS, its id's length
        ids: list[bytes] = []
        nb = self.buckets
        crc32 = zlib.crc32
        for c in customer_ids:
            cb = c.encode()
            b = crc32(cb) % nb
            ki = index.get(b)
            if ki is None:
                keys.append(f"{tag}:cb:{b}")
                ki = index[b] = len(keys)
            head += (ki, len(cb))
            ids.append(cb)
        args = [due_until, f"{tag}:cb:", f"{tag}:db:", _pack_u16(head), b"".join(ids)]
        offset, wm, blobs, due_flat, extra, clock, topic, lost = self._load(keys=keys, args=args)
        if lost is not None:
            raise keys_lost(self.ns, p, lost.decode())
        states: dict[str, bytes | None] = dict(zip(customer_ids, blobs, strict=True))
        # Customers that are only due (no event this batch) come with their state too.
        for i in range(0, len(extra), 2):
            states[extra[i].decode()] = extra[i + 1]
        due = sorted((int(float(due_flat[i + 1])), due_flat[i].decode()) for i in range(0, len(due_flat), 2))
        return PartitionView(
            partition=p,
            applied_offset=int(offset) if offset is not None else -1,
            watermark=int(wm) if wm is not None else 0,
            states=states,
            due=due,
            clock=clock.decode() if clock is not None else "",
            topic_id=topic.decode() if topic is not None else "",
        )

    def commit(self, w: PartitionWrite) -> int | None:
        """Write the batch atomically iff the partition's applied offset is still ``expected_offset``;
        returns the number of its outbox entry (None: it had no outputs)."""
        p = w.partition
        tag = self._tag(p)
        keys = [
            f"{tag}:offset",
            f"{tag}:wm",
            f"{tag}:due",
            f"{tag}:segcount",
            f"{tag}:clock",
            f"{tag}:topic",
            f"{tag}:outbox",
            f"{tag}:learn",
            f"{tag}:census",
        ]
        index: dict[str, int] = {}
        nb = self.buckets
        crc32 = zlib.crc32
        bucket: dict[str, int] = {}  # customer -> bucket, hashed once
        args: list[Any] = [
            "" if w.expected_offset < 0 else str(w.expected_offset),
            str(w.new_offset),
            str(w.watermark),
            "=" if w.clock is None else w.clock,
            w.topic_id,
            len(w.states),
        ]
        head: list[int] = []  # per customer: its bucket key's index in KEYS, id length, state length
        body: list[bytes] = []
        for c, blob in w.states.items():
            cb = c.encode()
            b = bucket[c] = crc32(cb) % nb
            key = f"{tag}:cb:{b}"
            ki = index.get(key)
            if ki is None:
                keys.append(key)
                ki = index[key] = len(keys)
            head += (ki, len(cb), len(blob))
            body += (cb, blob)
        args += (_pack_u16(head), b"".join(body))
        args.append(len(w.due))
        for c, ts in w.due.items():
            known = bucket.get(c)
            b = crc32(c.encode()) % nb if known is None else known
            key = f"{tag}:db:{b}"
            ki = index.get(key)
            if ki is None:
                keys.append(key)
                ki = index[key] = len(keys)
            args += (ki, b, c, ts)
        args.append(len(w.segment_deltas))
        for seg, delta in sorted(w.segment_deltas.items()):
            args += [str(seg), str(delta)]
        args += (w.outbox, w.learned_name, w.learned)
        ok, current, *entry = self._commit(keys=keys, args=args)
        if ok == 2:
            raise topic_changed(p, current.decode(), w.topic_id)
        if not ok:
            raise StateConflict(
                f"partition {p}: applied offset is {current!r}, batch expected {w.expected_offset}"
            )
        return int(entry[0]) or None

    def outbox_key(self, p: int) -> str:
        return f"{self._tag(p)}:outbox"

    def outbox(self, p: int) -> list[tuple[int, bytes]]:
        """Partition ``p``'s written outputs not yet known to be acknowledged, oldest first."""
        entries = self.client.hgetall(self.outbox_key(p))
        return sorted((int(k), bytes(v)) for k, v in entries.items() if k != b"n")

    def clear_outbox(self, entries: dict[int, list[int]]) -> None:
        """Forget acknowledged outbox entries (partition -> entry numbers)."""
        pipe = self.client.pipeline(transaction=False)
        for p, numbers in entries.items():
            if numbers:
                pipe.hdel(self.outbox_key(p), *map(str, numbers))
        pipe.execute()

    def learn_key(self, p: int) -> str:
        return f"{self._tag(p)}:learn"

    def learn_entries(self, p: int, after: str = "") -> list[tuple[str, bytes]]:
        """Partition ``p``'s learn-log entries (the rows of its written batches), in order; with
        ``after``, only those named after it (read by name first: a learner polls them)."""
        if not after:
            return sorted((k.decode(), bytes(v)) for k, v in self.client.hgetall(self.learn_key(p)).items())
        names = sorted(k for k in self.client.hkeys(self.learn_key(p)) if k.decode() > after)
        values = self.client.hmget(self.learn_key(p), names) if names else []
        return [(k.decode(), bytes(v)) for k, v in zip(names, values, strict=True) if v is not None]

    def logged_key(self, p: int) -> str:
        return f"{self._tag(p)}:logged"

    def log_rows(
        self, p: int, expected_offset: int, first: int, name: str, blob: bytes, through: int, clock: int
    ) -> int:
        """A follower's rows of a batch (positions ``first`` .. the entry ``name``'s) into
        partition ``p``'s learn log ahead of the batch's write, with ``through`` (its last offset)
        and ``clock`` (its next row's clock is at least that) as logged (:meth:`logged`). Returns
        -1 when done (also when a redo finds them logged), else the last position logged
        already: the caller sends the rows after it. StateConflict when another instance applied
        past ``expected_offset``."""
        reply = self._log_rows(
            keys=[self.offset_key(p), self.learn_key(p), self.census_key(p), self.logged_key(p)],
            args=[
                "" if expected_offset < 0 else expected_offset,
                entry_name(first),
                name,
                blob,
                through,
                clock,
            ],
        )
        if int(reply[0]) == 0:
            raise StateConflict(
                f"partition {p}: applied offset is {int(reply[1])}, batch expected {expected_offset}"
            )
        return int(reply[1]) if int(reply[0]) == 2 else -1

    def logged(self, p: int) -> tuple[int, int]:
        """The last offset of partition ``p`` whose rows a follower logged (-1: none), and the
        clock its next rows are at least (0: none)."""
        v = self.client.get(self.logged_key(p))
        if v is None:
            return -1, 0
        offset, clock = v.split()
        return int(offset), int(clock)

    def trim_learned(self, p: int, below: str) -> None:
        """Forget partition ``p``'s learn-log entries named before ``below`` (a checkpoint has them)."""
        names = [k for k in self.client.hkeys(self.learn_key(p)) if k.decode() < below]
        if names:
            self._trim(keys=[self.learn_key(p), self.census_key(p)], args=names)

    # ---- look-ups and admin ----
    def applied_offset(self, p: int) -> int:
        v = self.client.get(self.offset_key(p))
        return int(v) if v is not None else -1

    def watermark(self, p: int) -> int:
        v = self.client.get(self.watermark_key(p))
        return int(v) if v is not None else 0

    def topic_id(self, p: int) -> str:
        """The id of the input topic partition ``p``'s state was built from ("" = none recorded)."""
        v = self.client.get(self.topic_key(p))
        return v.decode() if v is not None else ""

    def adopt_topic(self, p: int, topic_id: str, applied: int) -> None:
        """Record that partition ``p``'s state goes on from ``applied`` (-1: nothing) of the topic
        ``topic_id`` (``segstream recover --adopt-topic``); its customers' states are kept."""
        tag = self._tag(p)
        pipe = self.client.pipeline(transaction=True)  # one hash tag: one slot on Redis Cluster
        if applied >= 0:
            pipe.set(f"{tag}:offset", applied)
        else:
            pipe.delete(f"{tag}:offset")
        if topic_id:
            pipe.set(f"{tag}:topic", topic_id)
            pipe.hset(f"{tag}:census", "topic", 1)
        else:
            pipe.delete(f"{tag}:topic")
            pipe.hdel(f"{tag}:census", "topic")
        pipe.execute()

    def get_state(self, p: int, customer_id: str) -> bytes | None:
        v = self.client.hget(self.customer_key(p, customer_id), customer_id)
        return bytes(v) if v is not None else None

    def get_states(self, p: int, customer_ids: list[str]) -> list[bytes | None]:
        """Packed states of customers of partition ``p`` (None for unknown ones), in one round trip."""
        pipe = self.client.pipeline(transaction=False)
        for c in customer_ids:
            pipe.hget(self.customer_key(p, c), c)
        return [bytes(v) if v is not None else None for v in pipe.execute()]

    def due_of(self, p: int, customer_id: str) -> int:
        """The customer's scheduled re-evaluation time (0 = none)."""
        v = self.client.zscore(self.due_bucket_key(p, self.bucket_of(customer_id)), customer_id)
        return int(v) if v is not None else 0

    def state_and_offset(self, p: int, customer_id: str) -> tuple[bytes | None, int]:
        """The customer's packed state and the partition's applied offset, read together."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hget(self.customer_key(p, customer_id), customer_id)
        pipe.get(self.offset_key(p))
        blob, applied = pipe.execute()
        return (bytes(blob) if blob is not None else None), (int(applied) if applied is not None else -1)

    def erase_customer(self, p: int, customer_id: str, expected: bytes, segment: int) -> int:
        """Compare-and-delete the customer's state, due entry and segment count in one step.

        Returns 1 when erased, 0 when the state is no longer ``expected``, -1 when already gone.
        """
        b = self.bucket_of(customer_id)
        keys = [
            self.bucket_key(p, b),
            self.due_bucket_key(p, b),
            self.due_key(p),
            self.segcount_key(p),
            self.erased_key(p),
            self.census_key(p),
        ]
        seg = str(segment)  # -1 too: the unplaced are counted
        return int(self._erase(keys=keys, args=[expected, customer_id, seg, b, customer_key(customer_id)]))

    def erased_keys(self, partitions: int) -> dict[int, set[int]]:
        """Sample keys of customers erased since the learner last dropped them, per partition."""
        pipe = self.client.pipeline(transaction=False)
        for p in range(partitions):
            pipe.smembers(self.erased_key(p))
        return {p: {int(k) for k in keys} for p, keys in enumerate(pipe.execute()) if keys}

    def clear_erased(self, erased: dict[int, set[int]]) -> None:
        """Forget erasures the model's checkpoint no longer holds (an erasure made since stays)."""
        pipe = self.client.pipeline(transaction=False)
        for p, keys in erased.items():
            pipe.srem(self.erased_key(p), *keys)
        pipe.execute()

    def segment_counts(self, partitions: int | Iterable[int]) -> dict[int, int]:
        """Customers per segment over the partitions (a count: all of 0..n-1)."""
        pipe = self.client.pipeline(transaction=False)
        for p in range(partitions) if isinstance(partitions, int) else partitions:
            pipe.hgetall(self.segcount_key(p))
        counts: dict[int, int] = {}
        for h in pipe.execute():
            for k, v in h.items():
                if int(k) >= 0:  # -1 counts the customers no version placed yet (unplaced)
                    counts[int(k)] = counts.get(int(k), 0) + int(v)
        return counts

    def unplaced(self, p: int) -> int:
        """Partition ``p``'s customers without a segment (read before the first version)."""
        v = self.client.hget(self.segcount_key(p), "-1")
        return int(v) if v is not None else 0

    def save_model(
        self,
        snapshot: bytes,
        version: int,
        after: int | None = None,
        unpublished: bytes = b"",
        kept: bytes = b"",
        built_after: str = "",
    ) -> None:
        """Checkpoint ``version``. With ``after`` (the version this learner wrote or loaded last),
        only if the store still holds that one: a second learner fails instead of overwriting.
        ``unpublished``: the version's model events (JSON), kept until :meth:`clear_unpublished`.
        ``kept`` and ``built_after``: the version as followers assign with it and the merge
        position it was built after, kept in the version history (:meth:`merge_state`)."""
        stored = self._save_model(
            keys=[self.model_key],
            args=[version, snapshot, "" if after is None else after, unpublished, kept, built_after],
        )
        if stored is not None:
            raise model_conflict(version, after, int(stored))

    def unpublished_model_events(self) -> list[tuple[int, bytes]]:
        """Model events saved with their version but not known to be acknowledged, oldest first."""
        fields = [f for f in self.client.hkeys(self.model_key) if f.startswith(b"unpublished:")]
        if not fields:
            return []
        pipe = self.client.pipeline(transaction=False)  # HGETs: the commands the ACL grants
        for f in fields:
            pipe.hget(self.model_key, f)
        values = pipe.execute()
        return sorted((int(f.split(b":", 1)[1]), bytes(v)) for f, v in zip(fields, values, strict=True) if v)

    def clear_unpublished(self, version: int) -> None:
        self.client.hdel(self.model_key, f"unpublished:{version}")

    def model_version(self) -> int:
        """The checkpointed model's version (0: none yet): one small read, for followers."""
        v = self.client.hget(self.model_key, "version")
        return int(v) if v is not None else 0

    def load_model(self) -> tuple[int, bytes] | None:
        version, snapshot = self.client.hmget(self.model_key, ["version", "snapshot"])
        if version is None or snapshot is None:
            return None
        return int(version), bytes(snapshot)

    def merge_state(self) -> tuple[str, dict[int, str]]:
        """How far the learner's merge got (\"\" = nowhere yet) and the merge position each kept
        version was built after: read in that order, so every version built before the position
        read is listed."""
        merged = self.client.hget(self.model_key, "merged")
        names = [k for k in self.client.hkeys(self.model_key) if k.startswith(b"after:")]
        values = self.client.hmget(self.model_key, names) if names else []
        kept = {int(k[6:]): v.decode() for k, v in zip(names, values, strict=True) if v is not None}
        return (merged.decode() if merged is not None else ""), kept

    def kept_version(self, version: int) -> bytes | None:
        """A version of the history as followers assign with it (None: not kept)."""
        v = self.client.hget(self.model_key, f"v:{version}")
        return bytes(v) if v is not None else None

    def set_merged(self, position: str, forget: Iterable[int] = ()) -> None:
        """Record how far the learner's merge got, and forget the kept versions no follower
        can need any more."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hset(self.model_key, "merged", position)
        fields = [f for v in forget for f in (f"v:{v}", f"after:{v}")]
        if fields:
            pipe.hdel(self.model_key, *fields)
        pipe.execute()

    def save_meta(self, topic: str, partitions: int) -> None:
        self.client.hset(self.meta_key, mapping={"topic": topic, "partitions": partitions})

    def take_census(self, partitions: int) -> None:
        """Before any batch: check every partition's key census against every key of the
        partition (a key lost where no batch will look, too), and count it for a namespace an
        earlier release wrote (once). Raises StateLost naming the first key lost."""
        for p, what in self._census(partitions, check_only=False):
            raise keys_lost(self.ns, p, what)
        self.client.hset(self.meta_key, "census", "1")

    def census_problems(self, partitions: int) -> list[tuple[int, str]]:
        """The keys each partition lost, by its census (read only: ``segstream status``)."""
        return self._census(partitions, check_only=True)

    def _census(self, partitions: int, check_only: bool) -> list[tuple[int, str]]:
        kept = self.client.hget(self.meta_key, "census") == b"1"
        lost = []
        for p in range(partitions):
            tag = self._tag(p)
            names = ("offset", "census", "due", "outbox", "clock", "topic", "learn", "wm")
            args = [f"{tag}:cb:", f"{tag}:db:", self.buckets, "1" if kept else "0"]
            found = self._take_census(
                keys=[f"{tag}:{k}" for k in names], args=[*args, "check" if check_only else ""]
            )
            if found[0] == 0:
                lost.append((p, found[1].decode()))
                if not check_only:
                    break
        return lost

    def meta(self) -> dict[str, str]:
        return {k.decode(): v.decode() for k, v in self.client.hgetall(self.meta_key).items()}

    def output_topics(self) -> dict[str, str]:
        """The ids of the output topics this namespace published to (topic name -> id)."""
        return {k[4:]: v for k, v in self.meta().items() if k.startswith("out:")}

    def record_output_topics(self, ids: dict[str, str]) -> None:
        """Record the output topics' ids: a later start or poll that finds another id stops."""
        old = [f"out:{name}" for name in self.output_topics()]
        pipe = self.client.pipeline(transaction=True)
        if old:
            pipe.hdel(self.meta_key, *old)
        pipe.hset(self.meta_key, mapping={f"out:{name}": tid for name, tid in ids.items()})
        pipe.execute()

    def scan_customers(self, partitions: int) -> Iterator[tuple[int, str, bytes]]:
        """Yield (partition, customer_id, packed state) for every customer of the namespace."""
        for p in range(partitions):
            for c, blob in self.partition_states(p):
                yield p, c, blob

    def partition_states(self, p: int) -> Iterator[tuple[str, bytes]]:
        """Yield (customer_id, packed state) for every customer of partition ``p``, a hundred
        buckets per round trip (memory stays flat however many customers the partition has)."""
        keys = list(self.client.scan_iter(match=_escape(f"{self._tag(p)}:cb:") + "*", count=1000))
        for i in range(0, len(keys), 100):
            pipe = self.client.pipeline(transaction=False)
            for key in keys[i : i + 100]:
                pipe.hgetall(key)
            for h in pipe.execute():
                for c, blob in h.items():
                    yield c.decode(), bytes(blob)

    def customer_ids(self, p: int) -> list[str]:
        """Every customer id of partition ``p``, sorted."""
        keys = list(self.client.scan_iter(match=_escape(f"{self._tag(p)}:cb:") + "*", count=1000))
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.hkeys(key)
        return sorted(c.decode() for fields in pipe.execute() for c in fields)


def connect(url: str, cluster: bool, timeout: float, connect_timeout: float) -> Client:
    """A client of the Redis at ``url``, or of the Redis Cluster ``url`` is a node of.

    No client-side retries: a script re-sent after a lost reply would fail its own compare-and-set.
    The service loop redoes batches from the applied offsets instead (on a cluster too: a command
    that meets a failover fails with one of REDIS_DOWN, and the cluster client refreshes its map
    of slots before its next command)."""
    if cluster:
        return RedisCluster.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=connect_timeout, retry=Retry(NoBackoff(), 0)
        )
    return redis.Redis.from_url(
        url,
        decode_responses=False,
        socket_timeout=timeout,
        socket_connect_timeout=connect_timeout,
        retry=Retry(NoBackoff(), 0),
    )


def _escape(pattern: str) -> str:
    """Escape glob characters: the partition hash tag's braces are literal, '[' would not be."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in pattern)


def _host_of(url: str) -> str:
    """host:port/db of a Redis URL: never its user and password, nor its query (TLS options)."""
    rest = url.split("://", 1)[-1]
    return rest.rsplit("@", 1)[-1].split("?", 1)[0]
