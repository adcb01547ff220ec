"""Issue #22 item 4: how many customers each model version moves, and how many are left behind.

Not a speed benchmark (the scan's own cost is timed separately, ``--scan``). Each log is
replayed through the service's BatchProcessor (in memory, one partition, the shipped settings
unless ``--set``), then scored from the published changes and the final states:

- per model version that moved anyone, the share of customers it moved with reason
  ``model_update`` (median, max; goal: median under 1%);
- published != nearest: the share of customers whose published segment is not the one the final
  version puts nearest to them (what a quiet customer left behind looks like);
- segment flaps per customer-year and all segment changes, for the cost side.

Logs: the generator's ``gradual_drift`` and ``sudden_shift`` scenarios (2,000 customers, 120 days)
and its ``rhythm`` scenario (1,000 customers, 365 days from 2025-01-01).

    .venv/bin/python benchmarks/model_update_moves.py [--seeds 1] [--set model.rescore_margin=0.7]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(os.environ.get("SEGSTREAM_ROOT", Path(__file__).resolve().parents[1]))
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402

from models.segments.engine import SegmentEngine  # noqa: E402
from models.segments.scoring import (  # noqa: E402
    customer_months,
    model_change_shares,
    published_vs_nearest,
    segment_flaps,
)
from models.sim import generate  # noqa: E402
from stream.config import load  # noqa: E402
from stream.io.sinks.collect import CollectSink  # noqa: E402
from stream.ops.evaluate import customer_vectors, log_records  # noqa: E402
from stream.runtime.engines import engine_params  # noqa: E402
from stream.runtime.metrics import Metrics  # noqa: E402
from stream.runtime.pipeline import BatchProcessor  # noqa: E402
from stream.state import MemoryFeatureStore  # noqa: E402

START = datetime(2025, 1, 1, tzinfo=UTC)
LOGS = {
    "gradual_drift": lambda seed: generate(2000, 120, seed, scenario="gradual_drift"),
    "sudden_shift": lambda seed: generate(2000, 120, seed, scenario="sudden_shift"),
    "rhythm": lambda seed: generate(1000, 365, seed, scenario="rhythm", start=START),
}


def run(name: str, seed: int, overrides: dict[str, Any], batch_size: int) -> dict[str, Any]:
    settings = load(overrides={"topics": {"partitions": 1}, **overrides})
    generated = LOGS[name](seed)
    records = log_records("interactions", ((r.key, r.value) for r in generated.records))
    store = MemoryFeatureStore()
    engine = SegmentEngine(engine_params(settings), feature_params=settings.features.params())
    sink = CollectSink(engine)
    processor = BatchProcessor(settings, store, engine, sink, Metrics(CollectorRegistry()))
    started, cpu = time.perf_counter(), time.process_time()
    for lo in range(0, len(records), batch_size):
        processor.process(records[lo : lo + batch_size])
    processor.close()
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    histogram = getattr(processor.metrics, "rescore_seconds", None)  # (None: before the re-scoring)
    rescore = histogram.collect()[0].samples if histogram is not None else []
    ids, raw, held = customer_vectors(store, settings)
    published = np.array([h.segment for h in held])
    nearest = engine.assign(raw).segment_ids
    shares = model_change_shares(sink.changes, len(ids))
    first_seen = {c: float(h.first_ts) for c, h in zip(ids, held, strict=True)}
    months = customer_months(first_seen, float(store.watermark(0)))
    segment_changes = [c for c in sink.changes if c.kind == "segment"]
    return {
        "log": name,
        "seed": seed,
        "events": len(records),
        "customers": len(ids),
        "versions": len(sink.snapshots),
        "segment_changes": len(segment_changes),
        "model_update_changes": sum(c.reason == "model_update" for c in segment_changes),
        "versions_moving": len(shares),
        "model_update_median": float(np.median(shares)) if shares else 0.0,
        "model_update_max": max(shares, default=0.0),
        "published_vs_nearest": published_vs_nearest(published, nearest),
        "segment_flaps_per_year": 12 * sum(segment_flaps(sink.changes).values()) / months if months else 0.0,
        "seconds": round(seconds, 1),
        "cpu_seconds": round(cpu, 1),
        "rescores": int(sum(x.value for x in rescore if x.name.endswith("_count"))),
        "rescore_seconds": round(sum(x.value for x in rescore if x.name.endswith("_sum")), 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="1", help="comma-separated generator seeds")
    ap.add_argument("--logs", default=",".join(LOGS), help="comma-separated: " + ", ".join(LOGS))
    ap.add_argument("--batch-size", type=int, default=2000)
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    args = ap.parse_args()
    overrides: dict[str, Any] = {}
    for item in args.set:
        key, value = item.split("=", 1)
        section, name = key.split(".", 1)
        overrides.setdefault(section, {})[name] = yaml.safe_load(value)
    for seed in (int(s) for s in args.seeds.split(",")):
        for name in args.logs.split(","):
            print(json.dumps(run(name, seed, overrides, args.batch_size)), flush=True)


if __name__ == "__main__":
    main()
