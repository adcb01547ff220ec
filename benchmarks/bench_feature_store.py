"""Feature-store benchmark against the real Redis of the local stack (not a test).

1. Feature-update throughput, events/s, in one run:
   - batch path: per batch of ``--batch`` events, per partition one ``FeatureStore.load`` (one
     Lua call), the pipeline's per-event loop (dedupe, watermark, inactivity schedule), one
     vectorised ``StateBatch.apply`` with a snapshot per event, one ``evaluate_many``, and one
     ``FeatureStore.commit`` (one compare-and-set Lua call); loads and commits on the store's I/O
     thread (``OrderedIO``), as in the pipeline, so Redis works while Python computes;
   - baseline: two round trips per event (HGET the state from its bucket, ``apply_event`` +
     ``evaluate`` + ``schedule_after_event`` on a ``CustomerState``, HSET).
   Both with the cyclic GC paused, as the pipeline runs its batches.
   Medians over ``--repeats``, and their ratio. Optionally a cProfile of the batch path.
2. Redis bytes per customer at ``--memory-customers`` customers: INFO used_memory before/after
   writing realistic packed states + due entries into a scratch namespace through
   ``FeatureStore.commit`` (the real layout: listpack hash buckets, per-bucket due sorted sets and
   the due index), divided by the customer count; the previous layout (a string key per customer
   + one due sorted set per partition) is measured beside it. Scratch namespaces are deleted.
   With ``--redis-cluster`` (``--redis-url`` a cluster node): used_memory of every node before and
   after, summed over the primaries and over the replicas (after they caught up), which primary
   holds each partition, and MEMORY USAGE of sampled buckets.

    .venv/bin/python benchmarks/bench_feature_store.py [--profile] [--skip-memory]
    .venv/bin/python benchmarks/bench_feature_store.py --skip-throughput \
        --redis-url redis://localhost:17001/0 --redis-cluster [--memory-customers N]

Goals on the 2-core dev machine: >= 30k events/s batch, >= 15x the baseline, <= 350 B/customer.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import pstats
import random
import statistics
import time
import uuid
import zlib
from collections.abc import Callable

import numpy as np
import redis
from kafka.partitioner.default import murmur2
from redis.cluster import RedisCluster

from models.features import (
    DAY,
    CustomerState,
    Fact,
    FeatureParams,
    admit,
    apply_event,
    due_after_event,
    evaluate,
    evaluate_many,
    next_due,
    schedule_after_event,
)
from models.features.batch import BatchEvents, StateBatch
from models.features.vector import RHYTHM_WIDTH
from models.segments.lifecycle import History, LifecycleParams, advance, day_thresholds, describe_stage, step
from stream.runtime.engines import tune_runtime
from stream.state import FeatureStore, OrderedIO, PartitionWrite

PARTITIONS = 4
LIFECYCLE = LifecycleParams()
THRESHOLDS = (14.0, 30.0, 60.0, 90.0)
OFFSETS = tuple(int(d * DAY) for d in THRESHOLDS)
START = 1_767_225_600  # 2026-01-01
KINDS = ("browse", "browse", "browse", "engage", "engage", "cart", "purchase", "support", "refund")
CHANNELS = ("web", "web", "app", "email", "store", "social", "ads", "push", "sms")


def cid(i: int) -> str:
    return f"c{i:07d}"


def partition_of(customer: str) -> int:
    return (murmur2(customer.encode()) & 0x7FFFFFFF) % PARTITIONS


class EventSource:
    """Seeded synthetic facts: customers drawn uniformly, event time advancing ~1 s per event."""

    def __init__(self, customers: int, seed: int) -> None:
        self.rng = random.Random(seed)
        self.customers = customers
        self.ts = START
        self.n = 0
        self.pcache = [partition_of(cid(i)) for i in range(customers)]

    def next(self) -> tuple[str, int, Fact]:
        r = self.rng
        i = r.randrange(self.customers)
        self.ts += r.randint(0, 2)
        self.n += 1
        kind = r.choice(KINDS)
        amount = round(r.lognormvariate(3.8, 0.5), 2) if kind in ("purchase", "refund") else 0.0
        fact = Fact(
            ts=self.ts,
            kind=kind,
            channel=r.choice(CHANNELS),
            amount=amount,
            promo=r.random() < 0.3,
            event_hash=zlib.crc32(f"e{self.n}-{i}".encode()),
            is_add_to_cart=kind == "cart" and r.random() < 0.6,
        )
        return cid(i), self.pcache[i], fact


def realistic_state(rng: random.Random, params: FeatureParams, base_ts: int) -> CustomerState:
    s = CustomerState.new()
    ts = base_ts - rng.randint(0, 200) * int(DAY)
    for k in range(rng.randint(3, 40)):
        ts += rng.randint(0, 5 * int(DAY))
        kind = rng.choice(KINDS)
        apply_event(
            s,
            params,
            Fact(
                ts=ts,
                kind=kind,
                channel=rng.choice(CHANNELS),
                amount=round(rng.lognormvariate(3.8, 0.5), 2) if kind in ("purchase", "refund") else 0.0,
                promo=rng.random() < 0.3,
                event_hash=rng.getrandbits(32) ^ k,
            ),
        )
    s.segment = rng.randrange(8)
    s.segment_since = ts
    s.seq = rng.randint(1, 6)
    s.next_due = next_due(s, THRESHOLDS, after_ts=ts)
    return s


# ---------------------------------------------------------------- throughput


def preload(store: FeatureStore, customers: int, params: FeatureParams, seed: int) -> None:
    """Every customer starts with a realistic state (the steady state of a running service)."""
    rng = random.Random(seed)
    templates = [realistic_state(rng, params, START).pack() for _ in range(500)]
    pipe = store.client.pipeline(transaction=False)
    for i in range(customers):
        c = cid(i)
        pipe.hset(store.customer_key(partition_of(c), c), c, templates[i % len(templates)])
        if i % 5000 == 4999:
            pipe.execute()
    pipe.execute()
    store.take_census(PARTITIONS)  # written around the store, as an earlier release's namespace


def run_batch_path(
    store: FeatureStore, src: EventSource, params: FeatureParams, events: int, batch: int
) -> float:
    """The pipeline's feature path (stream/pipeline.py ``_process``): per batch, every partition's
    load submitted to the store's I/O thread (OrderedIO) at once; per partition the per-event loop on
    plain columns (dedupe, watermark, schedule), one vectorised apply with a snapshot per event, one
    evaluation; then the batch's commits submitted; the cyclic GC paused as the pipeline does."""
    done = 0
    pending = iter([src.next() for _ in range(events)])  # drawn before the clock starts
    gc_was = gc.isenabled()
    gc.disable()
    io = OrderedIO(store)
    t0 = time.perf_counter()
    while done < events:
        by_p: dict[int, list[tuple[str, Fact]]] = {}
        for _ in range(batch):
            c, p, f = next(pending)
            by_p.setdefault(p, []).append((c, f))
        parts = sorted(by_p.items())
        loads = [io.load(p, sorted({c for c, _ in evs}), max(f.ts for _, f in evs)) for p, evs in parts]
        io.release()  # the previous batch's commit, behind these loads, as the pipeline does
        writes = []
        for (p, evs), loading in zip(parts, loads, strict=True):
            view = io.view(loading)
            ids = list(view.states)
            index = {c: i for i, c in enumerate(ids)}
            states = StateBatch([view.states[c] for c in ids])
            applied = BatchEvents()
            rows: list[tuple[int, int]] = []
            times: list[float] = []
            due: dict[str, int] = {}
            dirty: set[int] = set()
            last_ts, next_due_of = states.last_ts, states.next_due
            rhythms: list[list[int]] = []
            rhythm_of: dict[int, list[int]] = {}  # as the pipeline: kept until note() changes them
            thresholds_of: dict[int, tuple[int, int, int, int]] = {}
            wm = view.watermark
            for c, f in evs:
                i = index[c]
                if not admit(states.recent(i), f.ts, f.event_hash):
                    continue
                applied.add(i, f.ts, f.kind, f.channel, f.amount, f.promo, f.event_hash, f.is_add_to_cart)
                rows.append((i, applied.applied(i)))
                times.append(float(f.ts))
                dirty.add(i)
                # As the pipeline does: the purchase and active days, the lifecycle stage.
                if states.note(i, f.ts, f.kind == "purchase"):
                    rhythm_of.pop(i, None)
                    thresholds_of.pop(i, None)
                last_ts[i] = max(last_ts[i], f.ts)
                wm = max(wm, f.ts)
                thresholds = thresholds_of.get(i)
                if thresholds is None:
                    pdays, adays = states.days(i)
                    h = History(states.purchase_days[i], 0, pdays, 0, adays)
                    thresholds = thresholds_of[i] = day_thresholds(h, LIFECYCLE)
                stage, since, crossing = step(
                    states.stage[i],
                    states.stage_since[i],
                    f.ts,
                    states.purchase_days[i],
                    states.last_purchase_ts[i],
                    last_ts[i],
                    thresholds,
                    LIFECYCLE.won_back_days * 86400,
                )
                if stage != states.stage[i]:  # the pipeline then describes the change
                    pdays, adays = states.days(i)
                    h = History(states.purchase_days[i], states.last_purchase_ts[i], pdays, last_ts[i], adays)
                    describe_stage(stage, f.ts, h, LIFECYCLE)
                states.stage[i], states.stage_since[i] = stage, since
                rhythm = rhythm_of.get(i)
                if rhythm is None:
                    rhythm = rhythm_of[i] = states.rhythm(i)
                rhythms.append(rhythm)
                d = due_after_event(last_ts[i], next_due_of[i], OFFSETS, wm)
                if crossing and (d == 0 or crossing < d):
                    d = crossing
                if d != next_due_of[i]:  # as the pipeline does
                    next_due_of[i] = due[c] = d
            base = states.apply(params, applied, rows)
            snaps = np.hstack([base, np.array(rhythms, dtype=np.float64).reshape(len(rows), RHYTHM_WIDTH)])
            evaluate_many(snaps, params, np.array(times))  # as the pipeline does
            order = sorted(dirty, key=ids.__getitem__)
            writes.append(
                PartitionWrite(
                    partition=p,
                    expected_offset=view.applied_offset,
                    new_offset=view.applied_offset + len(evs),
                    watermark=wm,
                    states=dict(zip([ids[i] for i in order], states.pack(order), strict=True)),
                    due=due,
                    segment_deltas={},
                )
            )
        io.commit(writes)
        done += batch
    io.close()
    elapsed = time.perf_counter() - t0
    if gc_was:
        gc.enable()
    return done / elapsed


def run_per_event(store: FeatureStore, src: EventSource, params: FeatureParams, events: int) -> float:
    client = store.client
    drawn = [src.next() for _ in range(events)]
    gc_was = gc.isenabled()
    gc.disable()
    t0 = time.perf_counter()
    for c, p, f in drawn:
        key = store.customer_key(p, c)
        blob = client.hget(key, c)
        s = CustomerState.unpack(blob) if blob else CustomerState.new()
        if apply_event(s, params, f):
            evaluate(s, params, f.ts)
            h = History(
                s.purchase_days, s.last_purchase_ts, s.purchase_day_list, s.last_ts, s.active_day_list
            )
            s.stage, s.stage_since, _ = advance(s.stage, s.stage_since, f.ts, h, LIFECYCLE)
            schedule_after_event(s, OFFSETS, f.ts)
        client.hset(key, c, s.pack())
    elapsed = time.perf_counter() - t0
    if gc_was:
        gc.enable()
    return events / elapsed


# ---------------------------------------------------------------- memory


def delete_ns(client: redis.Redis | RedisCluster, ns: str) -> None:
    """(On a cluster, scan_iter visits every primary and unlink splits the keys by slot.)"""
    keys: list[bytes] = []
    for k in client.scan_iter(match=f"{ns}:*", count=5000):
        keys.append(k)
        if len(keys) >= 5000:
            client.unlink(*keys)
            keys = []
    if keys:
        client.unlink(*keys)


def used_memory(client: redis.Redis) -> int:
    """used_memory once the previous case's UNLINKs are freed (lazyfree runs in the background)."""
    deadline = time.monotonic() + 60
    while True:
        time.sleep(0.2)
        info = client.info("memory")
        if int(info.get("lazyfree_pending_objects", 0)) == 0 or time.monotonic() > deadline:
            time.sleep(0.5)
            return int(client.info("memory")["used_memory"])


def cluster_memory(client: RedisCluster) -> dict[str, tuple[str, int]]:
    """Every cluster node's used_memory (name -> (role, bytes)), once the primaries' replicas have
    caught up with them and the lazyfree of earlier UNLINKs is done on every node."""
    deadline = time.monotonic() + 60
    nodes = client.get_nodes()
    while time.monotonic() < deadline:
        time.sleep(0.2)
        behind = False
        for node in nodes:
            if node.server_type == "primary":
                rep = client.info("replication", target_nodes=node)
                head = int(rep["master_repl_offset"])
                behind |= any(
                    int(v["offset"]) < head
                    for k, v in rep.items()
                    if k.startswith("slave") and isinstance(v, dict)
                )
            behind |= int(client.info("memory", target_nodes=node).get("lazyfree_pending_objects", 0)) > 0
        if not behind:
            break
    time.sleep(0.5)
    return {
        node.name: (str(node.server_type), int(client.info("memory", target_nodes=node)["used_memory"]))
        for node in nodes
    }


def measure_cluster_memory(redis_url: str, n: int, params: FeatureParams) -> None:
    """As ``measure_memory``'s real layout, on a Redis Cluster: used_memory per node before and after,
    summed over the primaries and over the replicas; MEMORY USAGE of sampled buckets beside it."""
    rng = random.Random(7)
    states = [realistic_state(rng, params, START) for _ in range(2000)]
    sizes = [len(s.pack()) for s in states]
    print(f"packed state: {statistics.mean(sizes):.0f} B mean, {max(sizes)} B max")
    ns = "benchmem" + uuid.uuid4().hex[:8]
    store = FeatureStore(redis_url, ns, cluster=True).start()
    client = store.client
    assert isinstance(client, RedisCluster)
    try:
        before = cluster_memory(client)
        t0 = time.perf_counter()
        load_real_layout(store, n, states)
        took = time.perf_counter() - t0
        after = cluster_memory(client)
        print(f"  real layout on a Redis Cluster, {n:,} customers (load {took:.0f}s):")
        for name in sorted(after):
            role, used = after[name]
            print(f"    {name:18s} {role:8s} used_memory {before[name][1]:>13,} -> {used:>13,} B")
        for role, label in (("primary", "primaries"), ("replica", "replicas")):
            delta = sum(after[k][1] - before[k][1] for k in after if after[k][0] == role)
            print(f"    sum over {label:9s}: +{delta:,} B = {delta / n:.1f} B/customer")
        for p in range(PARTITIONS):
            node = client.get_node_from_key(store.bucket_key(p, 0))
            print(f"    partition {p}: slot {client.keyslot(store.bucket_key(p, 0))}, primary {node.name}")
        # MEMORY USAGE (exact, SAMPLES 0) of every 64th bucket and its due set, per customer in them.
        used = held = 0
        for p in range(PARTITIONS):
            for b in range(0, store.buckets, 64):
                for key in (store.bucket_key(p, b), store.due_bucket_key(p, b)):
                    used += int(client.memory_usage(key, samples=0) or 0)
                held += int(client.hlen(store.bucket_key(p, b)))
        print(
            f"    MEMORY USAGE of {PARTITIONS * len(range(0, store.buckets, 64))} sampled buckets + their "
            f"due sets: {used:,} B for {held:,} customers = {used / max(held, 1):.1f} B/customer "
            "(keys only: no due index, allocator overhead or replication buffers)"
        )
        b = store.bucket_key(0, 0)
        print(
            f"    bucket 0 of partition 0: {client.hlen(b)} customers, "
            f"encoding {client.object('encoding', b)!r}"
        )
    finally:
        delete_ns(client, ns)
        store.close()


def load_previous_layout(client: redis.Redis, ns: str, n: int, states: list[CustomerState]) -> None:
    """The layout before hash buckets: a string key per customer, one due zset per partition."""
    pipe = client.pipeline(transaction=False)
    for i in range(n):
        c = cid(i)
        p = partition_of(c)
        s = states[i % len(states)]
        pipe.set(f"{ns}:{{{p}}}:c:{c}", s.pack())
        if s.next_due:
            pipe.zadd(f"{ns}:{{{p}}}:due", {c: s.next_due})
        if i % 10000 == 9999:
            pipe.execute()
    pipe.execute()


def load_real_layout(store: FeatureStore, n: int, states: list[CustomerState]) -> None:
    """Customers written through FeatureStore.commit, 5,000 per partition and call."""
    offsets = [-1] * PARTITIONS
    pending: list[dict[str, CustomerState]] = [{} for _ in range(PARTITIONS)]

    def flush(p: int) -> None:
        batch = pending[p]
        store.commit(
            PartitionWrite(
                partition=p,
                expected_offset=offsets[p],
                new_offset=offsets[p] + 1,
                watermark=START,
                states={c: s.pack() for c, s in batch.items()},
                due={c: s.next_due for c, s in batch.items() if s.next_due},
                segment_deltas={},
            )
        )
        offsets[p] += 1
        pending[p] = {}

    for i in range(n):
        c = cid(i)
        p = partition_of(c)
        pending[p][c] = states[i % len(states)]
        if len(pending[p]) >= 5000:
            flush(p)
    for p in range(PARTITIONS):
        if pending[p]:
            flush(p)


def measure_memory(redis_url: str, n: int, params: FeatureParams, previous: bool) -> list[tuple[str, float]]:
    rng = random.Random(7)
    states = [realistic_state(rng, params, START) for _ in range(2000)]
    sizes = [len(s.pack()) for s in states]
    print(f"packed state: {statistics.mean(sizes):.0f} B mean, {max(sizes)} B max")
    results = []
    cases = [("real layout: listpack hash buckets + due buckets + due index", False)]
    if previous:
        cases.append(("previous layout: string per customer + due zset per partition", True))
    for label, prev in cases:
        ns = "benchmem" + uuid.uuid4().hex[:8]
        store = FeatureStore(redis_url, ns).start()  # also raises the listpack limits if needed
        client = store.client
        try:
            before = used_memory(client)
            t0 = time.perf_counter()
            if prev:
                load_previous_layout(client, ns, n, states)
            else:
                load_real_layout(store, n, states)
            after = used_memory(client)
            per = (after - before) / n
            results.append((label, per))
            print(f"  {label:62s} {per:7.1f} B/customer  (load {time.perf_counter() - t0:.0f}s)")
            if not prev:
                b = store.bucket_key(0, 0)
                d = store.due_bucket_key(0, 0)
                print(
                    f"    {store.buckets} buckets per partition; bucket 0: {client.hlen(b)} customers, "
                    f"encoding {client.object('encoding', b)!r}; its due set: {client.zcard(d)} entries, "
                    f"encoding {client.object('encoding', d)!r}; "
                    f"due index {client.zcard(store.due_key(0)) - 1} buckets (+ its never-due member)"
                )
        finally:
            delete_ns(client, ns)
            store.close()
    return results


# ---------------------------------------------------------------- main


def median_of(fn: Callable[[], float], repeats: int) -> tuple[float, list[float]]:
    xs = [fn() for _ in range(repeats)]
    return statistics.median(xs), xs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--redis-url", default="redis://localhost:16379/0")
    ap.add_argument(
        "--redis-cluster",
        action="store_true",
        help="--redis-url is a Redis Cluster node (scripts/stack.sh start --cluster: "
        "redis://localhost:17001/0): memory per node, summed over primaries and replicas",
    )
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=2000)
    ap.add_argument("--batch-events", type=int, default=40_000, help="events per batch-path repeat")
    ap.add_argument("--baseline-events", type=int, default=4_000, help="events per baseline repeat")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--memory-customers", type=int, default=1_000_000)
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--previous-layout", action="store_true", help="also measure the pre-bucket layout")
    ap.add_argument("--profile", action="store_true", help="cProfile one batch-path repeat")
    args = ap.parse_args()

    params = FeatureParams()
    tune_runtime()  # the service's interpreter settings (GC thresholds, GIL switch interval)
    ns = "bench" + uuid.uuid4().hex[:8]
    store = FeatureStore(args.redis_url, ns, cluster=args.redis_cluster).start()
    client = store.client
    try:
        if not args.skip_throughput:
            t0 = time.perf_counter()
            preload(store, args.customers, params, seed=1)
            print(
                f"preloaded {args.customers:,} customers in {time.perf_counter() - t0:.1f}s (namespace {ns})"
            )
            src = EventSource(args.customers, seed=2)
            run_batch_path(store, src, params, args.batch * 2, args.batch)  # warm-up
            batch_med, batch_all = median_of(
                lambda: run_batch_path(store, src, params, args.batch_events, args.batch), args.repeats
            )
            base_med, base_all = median_of(
                lambda: run_per_event(store, src, params, args.baseline_events), args.repeats
            )
            print(
                f"batch path (batches of {args.batch}, {args.customers:,} customers): "
                f"median {batch_med:,.0f} events/s  {[round(x) for x in batch_all]}"
            )
            print(
                f"per-event baseline (HGET+HSET): median {base_med:,.0f} events/s  "
                f"{[round(x) for x in base_all]}"
            )
            print(f"ratio: {batch_med / base_med:.1f}x")
            if args.profile:
                prof = cProfile.Profile()
                prof.enable()
                rate = run_batch_path(store, src, params, args.batch_events, args.batch)
                prof.disable()
                s = io.StringIO()
                pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(18)
                print(f"profiled repeat: {rate:,.0f} events/s (under cProfile)")
                print(s.getvalue())
    finally:
        delete_ns(client, ns)
    if not args.skip_memory:
        print(f"memory at {args.memory_customers:,} customers:")
        if args.redis_cluster:
            measure_cluster_memory(args.redis_url, args.memory_customers, params)
        else:
            measure_memory(args.redis_url, args.memory_customers, params, args.previous_layout)
    store.close()


if __name__ == "__main__":
    main()
