"""`segstream report` at scale against the local stack (not a test): build time and file size.

Fills a scratch namespace with ``--customers`` synthetic customers (packed ``CustomerState``s from
a mixture of behaviours, written through ``FeatureStore.commit`` as the pipeline writes them),
a model snapshot from an engine trained on the same rows (each customer's stored segment is its
assignment), and scratch changes and model-events topics: every customer's changes over the
days of history (a first assignment, then moves, ending in its stored segment), and the model's
births, renames and a split. Then times ``stream.ops.report.build.build`` (gather: the store
and both topics; render; write) ``--repeats`` times and prints the medians and the file size.
Scratch keys and topics are deleted at the end.

    .venv/bin/python benchmarks/bench_report.py [--customers 100000] [--repeats 3] [--keep FILE]

Goals (issue #25): under 30 s and under 10 MB at 100,000 customers.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
import uuid
from pathlib import Path

import numpy as np
import redis

from models.features import DAY, FEATURE_NAMES, CustomerState, Fact, FeatureParams, apply_event, evaluate_many
from models.features import snapshot as feature_snapshot
from models.segments.engine import EngineParams, SegmentEngine
from stream.config import Settings, load
from stream.io.kafka import ensure_topics, make_admin, make_producer, partition_for_key
from stream.ops.report.build import build, render
from stream.ops.report.gather import gather
from stream.state import FeatureStore, PartitionWrite

PARTITIONS = 4
END = 1_777_593_600  # 2026-05-01: the watermark
HISTORY_DAYS = 120
# Behaviours the customers are drawn from: (weight, events, kind weights, channel weights, days
# active before the end [lo, hi], promo share). Enough variety for the engine to find segments.
KINDS = ("browse", "engage", "cart", "purchase", "support", "refund")
CHANNELS = ("web", "app", "email", "store", "social", "ads")
MIXTURE = (
    (0.15, (20, 60), (4, 2, 2, 3, 0.2, 0.1), (4, 3, 2, 1, 0.5, 0.5), (0, 5), 0.1),  # loyal buyers
    (0.20, (6, 20), (3, 3, 1, 1, 0.1, 0.1), (2, 1, 4, 0.2, 1, 1), (0, 20), 0.9),  # promo-driven
    (0.20, (5, 25), (5, 1, 1, 0.0, 0.1, 0.0), (5, 2, 1, 0.1, 1, 1), (0, 15), 0.0),  # browsers
    (0.15, (10, 30), (3, 2, 1, 2, 0.2, 0.1), (3, 1, 2, 1, 0.5, 0.5), (30, 90), 0.3),  # declining
    (0.10, (2, 8), (3, 1, 1, 1, 0.1, 0.0), (3, 2, 1, 0.5, 1, 1), (0, 10), 0.2),  # new
    (0.20, (8, 30), (2, 1, 1, 2, 0.3, 0.1), (1, 0.5, 1, 6, 0.3, 0.2), (0, 10), 0.2),  # store-centric
)


def cid(i: int) -> str:
    return f"c{i:07d}"


def synthetic_state(rng: random.Random, params: FeatureParams) -> CustomerState:
    weights = [m[0] for m in MIXTURE]
    _, (elo, ehi), kinds, channels, (qlo, qhi), promo = rng.choices(MIXTURE, weights)[0]
    s = CustomerState.new()
    n = rng.randint(elo, ehi)
    last = END - rng.uniform(qlo, qhi) * DAY
    first = last - rng.uniform(0.2, 1.0) * (HISTORY_DAYS - qhi) * DAY
    for k, ts in enumerate(sorted(rng.uniform(first, last) for _ in range(n))):
        kind = rng.choices(KINDS, kinds)[0]
        apply_event(
            s,
            params,
            Fact(
                ts=int(ts),
                kind=kind,
                channel=rng.choices(CHANNELS, channels)[0],
                amount=round(rng.lognormvariate(3.8, 0.6), 2) if kind in ("purchase", "refund") else 0.0,
                promo=rng.random() < promo,
                event_hash=rng.getrandbits(32) ^ k,
            ),
        )
    return s


def fill_store(store: FeatureStore, states: list[CustomerState]) -> None:
    """Customers through FeatureStore.commit, 5,000 per partition and call (the real layout)."""
    offsets = [-1] * PARTITIONS
    pending: list[dict[str, CustomerState]] = [{} for _ in range(PARTITIONS)]

    def flush(p: int) -> None:
        batch = pending[p]
        deltas: dict[int, int] = {}
        for s in batch.values():
            deltas[s.segment] = deltas.get(s.segment, 0) + 1
        store.commit(
            PartitionWrite(
                partition=p,
                expected_offset=offsets[p],
                new_offset=offsets[p] + 1,
                watermark=END,
                states={c: s.pack() for c, s in batch.items()},
                due={},
                segment_deltas=deltas,
            )
        )
        offsets[p] += 1
        pending[p] = {}

    for i, s in enumerate(states):
        c = cid(i)
        p = partition_for_key(c.encode(), PARTITIONS)
        pending[p][c] = s
        if len(pending[p]) >= 5000:
            flush(p)
    for p in range(PARTITIONS):
        if pending[p]:
            flush(p)
    store.save_meta("bench.interactions", PARTITIONS)


def iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def produce_history(
    settings: Settings, engine: SegmentEngine, states: list[CustomerState], rng: random.Random
) -> int:
    """Each customer's changes: a first assignment, up to two moves, the last into its segment."""
    names = engine.live_names()
    ids = sorted(names)
    producer = make_producer(settings, linger_ms=50)
    topic = settings.topics.out("changes")
    n = 0
    for i, s in enumerate(states):
        c = cid(i)
        path = [rng.choice(ids) for _ in range(rng.choice((0, 0, 1, 2)))] + [s.segment]
        times = sorted(rng.uniform(s.first_ts, max(s.last_ts, s.first_ts + 1)) for _ in path)
        prev: int | None = None
        for seq, (sid, t) in enumerate(zip(path, times, strict=True), 1):
            change = {
                "change_id": uuid.uuid4().hex,
                "customer_id": c,
                "seq": seq,
                "previous": None if prev is None else {"id": prev, "name": names[prev]},
                "current": {"id": sid, "name": names[sid]},
                "membership": {str(sid): 0.91, str(ids[0]): 0.09},
                "confidence": 0.91,
                "outlier": False,
                "reason": "event",
                "explanation": f"closest to {names[sid]}: recency 3 days (typical of it: 5 days)",
                "rfm": {"r": 4, "f": 3, "m": 3, "group": "Potential Loyalist"},
                "model_version": engine.version,
                "event_time": iso(t),
                "source_topic": "bench.interactions",
                "source_partition": 0,
                "source_offset": n,
            }
            producer.send(topic, key=c.encode(), value=json.dumps(change, separators=(",", ":")).encode())
            prev = sid
            n += 1
    events_topic = settings.topics.out("model_events")
    t0 = END - (HISTORY_DAYS - 21) * DAY
    for sid in ids:
        ev = {"kind": "birth", "version": 1, "segment_id": sid, "related_ids": [], "detail": "new segment",
              "event_time": iso(t0)}  # fmt: skip
        producer.send(events_topic, key=b"model", value=json.dumps(ev).encode())
    for k, sid in enumerate(ids[:3]):
        detail = f"renamed {'Segment ' + str(sid)!r} -> {names[sid]!r}"
        ev = {"kind": "drift", "version": 3 + k, "segment_id": sid, "related_ids": [], "detail": detail,
              "event_time": iso(t0 + (10 + 5 * k) * DAY)}  # fmt: skip
        producer.send(events_topic, key=b"model", value=json.dumps(ev).encode())
    producer.flush(timeout=300)
    producer.close()
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--redis-url", default="redis://localhost:16379/0")
    ap.add_argument("--bootstrap", default="localhost:19092")
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", type=Path, help="also copy the last report here")
    args = ap.parse_args()

    ns = "bench" + uuid.uuid4().hex[:8]
    settings = load(
        None,
        {
            "kafka": {"bootstrap_servers": args.bootstrap},
            "redis": {"url": args.redis_url, "namespace": ns},
            "topics": {"interactions": f"{ns}.interactions", "suffix": f".{ns}"},
        },
    )
    rng = random.Random(args.seed)
    params = settings.features.params()
    t0 = time.perf_counter()
    states = [synthetic_state(rng, params) for _ in range(args.customers)]
    snaps = np.array([feature_snapshot(s) for s in states])
    raw = evaluate_many(snaps, params, np.full(len(states), float(END)))
    engine = SegmentEngine(EngineParams(population=0, warmup_days=0), FEATURE_NAMES, params)
    order = np.argsort([s.last_ts for s in states], kind="stable")  # rows in event-time order
    engine.process(raw[order], np.array([float(states[i].last_ts) for i in order]))
    for s, sid in zip(states, engine.assign(raw).segment_ids.tolist(), strict=True):
        s.segment, s.segment_since, s.seq = int(sid), s.last_ts, 1
    print(f"{args.customers:,} synthetic customers, model version {engine.version} with "
          f"{len(engine.live_names())} segments, in {time.perf_counter() - t0:.1f} s")  # fmt: skip

    store = FeatureStore(args.redis_url, ns).start()
    created: list[str] = []
    try:
        t0 = time.perf_counter()
        fill_store(store, states)
        store.save_model(engine.snapshot(), engine.version)
        created = ensure_topics(
            settings, only=[settings.topics.out("changes"), settings.topics.out("model_events")]
        )
        changes = produce_history(settings, engine, states, rng)
        print(f"namespace {ns} filled, {changes:,} changes produced, in {time.perf_counter() - t0:.1f} s")
        out = Path(f"/tmp/{ns}-report.html")
        times: list[float] = []
        size = 0
        for k in range(args.repeats):
            r = build(settings, store, PARTITIONS, out, currency="EUR")
            times.append(r.seconds)
            size = r.bytes
            print(f"  build {k + 1}: {r.seconds:.2f} s, {r.bytes / 1e6:.2f} MB, {len(r.charts)} charts, "
                  f"{r.map_points:,} customers on the map, {r.changes:,} changes")  # fmt: skip
        # Where the time goes, once: reading (store + topics) against computing and drawing.
        t1 = time.perf_counter()
        inputs = gather(settings, store, PARTITIONS, "EUR")
        t2 = time.perf_counter()
        render(inputs)
        t3 = time.perf_counter()
        print(f"  split: gather {t2 - t1:.2f} s (store and topics), render {t3 - t2:.2f} s")
        load1, load5, _ = os.getloadavg()
        med = statistics.median(times)
        print(
            f"report at {args.customers:,} customers: median {med:.2f} s over {args.repeats} "
            f"{[round(x, 2) for x in times]} (goal < 30 s: {'met' if med < 30 else 'missed'}); "
            f"file {size / 1e6:.2f} MB = {size:,} B (goal < 10 MB: {'met' if size < 10e6 else 'missed'}); "
            f"load average {load1:.2f} / {load5:.2f}"
        )
        if args.keep:
            args.keep.write_bytes(out.read_bytes())
        out.unlink(missing_ok=True)
    finally:
        client = redis.Redis.from_url(args.redis_url)
        batch = list(client.scan_iter(match=f"{ns}:*", count=1000))
        for i in range(0, len(batch), 500):
            client.delete(*batch[i : i + 500])
        client.close()
        store.close()
        if created:
            admin = make_admin(settings)
            try:
                admin.delete_topics(created)
            finally:
                admin.close()


if __name__ == "__main__":
    main()
