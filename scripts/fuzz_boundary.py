"""Fuzz the input boundary: N hostile records (models/sim/hostile.py) mixed into a valid log,
through the real batch pipeline on the in-memory store, as ``segstream replay`` feeds it.

Prints the dead letters by hostile kind and error class, every record whose dead letter had a
class it should not get (or that was not dead-lettered at all, or crashed the pipeline), and
whether the valid customers' states equal those of the valid log alone. Exit 1 on any finding.
tests/integration/test_hostile_input.py runs 10,000 of them through the service, Kafka and Redis.

    .venv/bin/python scripts/fuzz_boundary.py --records 200000 --seed 7 [--customers 500 --days 60]
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from prometheus_client import CollectorRegistry  # noqa: E402

from models.contracts import DeadLetter  # noqa: E402
from models.segments.engine import SegmentEngine  # noqa: E402
from models.sim import generate  # noqa: E402
from models.sim.hostile import HostileRecord, hostile_records, mix  # noqa: E402
from stream.config import load  # noqa: E402
from stream.io.kafka import SourceRecord, partition_for_key  # noqa: E402
from stream.io.sinks.collect import CollectSink  # noqa: E402
from stream.runtime.engines import engine_params  # noqa: E402
from stream.runtime.metrics import Metrics  # noqa: E402
from stream.runtime.pipeline import BatchProcessor  # noqa: E402
from stream.state import MemoryFeatureStore  # noqa: E402

PARTITIONS = 4
BATCH = 2000


class _Sink(CollectSink):
    def __init__(self, engine: SegmentEngine) -> None:
        super().__init__(engine)
        self.dead: list[DeadLetter] = []

    def dead_letter(self, dl: DeadLetter) -> None:
        self.dead.append(dl)


def run(records: list[tuple[bytes | None, bytes | None]]) -> tuple[dict[str, bytes], list[DeadLetter]]:
    """States and dead letters of the records, four partitions fed in batches like a replay."""
    s = load()
    engine = SegmentEngine(engine_params(s))
    sink = _Sink(engine)
    store = MemoryFeatureStore()
    processor = BatchProcessor(s, store, engine, sink, Metrics(CollectorRegistry()))
    parts: dict[int, list[SourceRecord]] = {p: [] for p in range(PARTITIONS)}
    for key, value in records:
        p = partition_for_key(key, PARTITIONS)
        parts[p].append(SourceRecord("interactions", p, len(parts[p]), key, value))
    for p in range(PARTITIONS):
        for i in range(0, len(parts[p]), BATCH):
            processor.process(parts[p][i : i + BATCH])
    processor.drain()
    processor.close()
    return {c: blob for _, c, blob in store.scan_customers(PARTITIONS)}, sink.dead


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=100_000, help="hostile records")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--customers", type=int, default=500, help="customers of the valid log")
    ap.add_argument("--days", type=int, default=60, help="days of the valid log")
    args = ap.parse_args()

    began = time.monotonic()
    log = generate(customers=args.customers, days=args.days, seed=args.seed)
    hostile = hostile_records(args.records, seed=args.seed, customers=sorted(log.truth))
    mixed = mix(log.records, hostile, seed=args.seed)
    made = time.monotonic() - began
    print(
        f"{len(log.records):,} valid + {len(hostile):,} hostile records (seed {args.seed}), "
        f"made in {made:.1f} s"
    )

    clean, clean_dead = run([(r.key, r.value) for r in log.records])
    began = time.monotonic()
    try:
        states, dead = run([(r.key, r.value) for r in mixed])
    except Exception:
        print("CRASH: the pipeline raised on the mixed log:")
        traceback.print_exc()
        return 1
    took = time.monotonic() - began

    by_sha: dict[str, list[HostileRecord]] = {}
    for h in hostile:
        by_sha.setdefault(DeadLetter.of("", 0, 0, h.key, h.value, "", "").original_sha256, []).append(h)
    table: Counter[tuple[str, str]] = Counter()
    findings: list[str] = []
    for d in dead:
        candidates = by_sha.get(d.original_sha256)
        if not candidates:
            findings.append(f"a dead letter of no hostile record: {d.error_class} {d.reason[:120]}")
            continue
        # Records with the same bytes (an empty value and none) share a hash: take one that fits.
        fits = [i for i, c in enumerate(candidates) if d.error_class in c.expect]
        h = candidates.pop(fits[-1] if fits else -1)
        table[h.kind, d.error_class] += 1
        if d.error_class not in h.expect:
            findings.append(f"{h.kind} -> {d.error_class} (expected {sorted(h.expect)}): {d.reason[:160]}")
    missed = [h for left in by_sha.values() for h in left]
    findings += [f"{h.kind}: not dead-lettered (accepted?): {(h.value or b'')[:120]!r}" for h in missed]
    if clean_dead:
        findings.append(f"the valid log alone had {len(clean_dead)} dead letters")
    differ = sorted(c for c in set(clean) | set(states) if clean.get(c) != states.get(c))
    if differ:
        findings.append(f"{len(differ)} valid customers' states differ, first: {differ[:5]}")

    print(f"\nthe mixed log ({len(mixed):,} records) through the pipeline: {took:.1f} s")
    print(f"\n{'kind':<18} {'error class':<15} {'records':>8}")
    for (kind, cls), n in sorted(table.items()):
        print(f"{kind:<18} {cls:<15} {n:>8,}")
    print(
        "\nby error class: "
        + ", ".join(f"{c} {n:,}" for c, n in sorted(Counter(d.error_class for d in dead).items()))
    )
    print(f"valid customers' states equal to the valid log's alone: {not differ} ({len(clean):,} customers)")
    if findings:
        print(f"\n{len(findings)} findings:")
        for f in findings[:50]:
            print(f"  {f}")
        return 1
    print("no findings")
    return 0


if __name__ == "__main__":
    sys.exit(main())
