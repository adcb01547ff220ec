"""Issue #22's lifecycle and flapping goals, scored on what the pipeline published.

Not a speed benchmark. Each log is replayed through the service's BatchProcessor (in memory, one
partition, the shipped settings unless ``--set``), then scored from the published changes and
the final states:

- stage flaps: returns to a lifecycle stage left less than 30 days before, per customer-month
  (goal: under 1%);
- segment flaps: the same for behavioural segments, per customer-year (goal: under 5%);
- truly lapsed: customers with 10+ purchases and none in the last 90 days of the log; the share
  that end ``at_risk`` or ``lapsed`` (goal: at least 80%);
- steady: customers with a purchase in each of the log's last four 90-day windows (and, for the
  rhythm scenario, the generator's steady customers); the share that end ``active`` (goal: at
  least 90%).

Logs: the generator's ``rhythm`` scenario (a year), its stationary scenario (120 days) and the
real CDNOW log (18 months, ../shared/data/cdnow or --cdnow).

    .venv/bin/python benchmarks/lifecycle_goals.py [--seeds 1,2] [--set lifecycle.at_risk_spread=2]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from prometheus_client import CollectorRegistry  # noqa: E402

from models.features import CustomerState  # noqa: E402
from models.segments.engine import SegmentEngine  # noqa: E402
from models.segments.lifecycle import stage_name  # noqa: E402
from models.segments.scoring import customer_months, segment_flaps, stage_flaps  # noqa: E402
from models.sim import generate, rhythm_truth  # noqa: E402
from models.sim.cdnow import cdnow_events  # noqa: E402
from stream.config import load  # noqa: E402
from stream.io.sinks.collect import CollectSink  # noqa: E402
from stream.ops.evaluate import log_records  # noqa: E402
from stream.runtime.engines import engine_params  # noqa: E402
from stream.runtime.metrics import Metrics  # noqa: E402
from stream.runtime.pipeline import BatchProcessor  # noqa: E402
from stream.state import MemoryFeatureStore  # noqa: E402

DAY = 86400
START = datetime(2025, 1, 1, tzinfo=UTC)  # a year-long log ends before today's wall clock


def logs(seeds: list[int], cdnow: Path) -> Iterator[tuple[str, list[tuple[bytes, bytes]], set[str] | None]]:
    for seed in seeds:
        g = generate(1000, 365, seed=seed, scenario="rhythm", start=START)
        truth = rhythm_truth(1000, 365, seed=seed, start=START)
        steady = {c for c, t in truth.customers.items() if t.kind == "steady"}
        yield f"rhythm seed {seed}", [(r.key, r.value) for r in g.records], steady
    for seed in seeds:
        g = generate(600, 120, seed=seed, start=START)
        yield f"stationary seed {seed}", [(r.key, r.value) for r in g.records], None
    if cdnow.exists():
        with cdnow.open() as f:
            yield "cdnow", [(r.key, r.value) for r in cdnow_events(f)], None


def score(name: str, pairs: list[tuple[bytes, bytes]], true_steady: set[str] | None, overrides: Any) -> str:
    settings = load(overrides={"topics": {"partitions": 1}, **overrides})
    records = log_records(name, pairs)
    engine = SegmentEngine(engine_params(settings), feature_params=settings.features.params())
    sink = CollectSink(engine)
    store = MemoryFeatureStore()
    processor = BatchProcessor(settings, store, engine, sink, Metrics(CollectorRegistry()))
    started = time.perf_counter()
    for lo in range(0, len(records), 2000):
        processor.process(records[lo : lo + 2000])
    processor.close()
    seconds = time.perf_counter() - started
    states = {cid: CustomerState.unpack(blob) for _, cid, blob in store.scan_customers(1)}
    end = float(store.watermark(0))
    months = customer_months({c: float(s.first_ts) for c, s in states.items()}, end)
    stage = {c: stage_name(s.stage) for c, s in states.items()}
    lapsed = [c for c, s in states.items() if s.purchases >= 10 and s.last_purchase_ts < end - 90 * DAY]
    caught = sum(stage[c] in ("at_risk", "lapsed") for c in lapsed)
    # Steady by the log: a purchase in each of the last four 90-day windows.
    windows = [(end - (k + 1) * 90 * DAY, end - k * 90 * DAY) for k in range(4)]
    bought: dict[str, set[int]] = {}
    for _, value in pairs:
        event = json.loads(value)
        if event.get("type") == "purchase":
            t = datetime.fromisoformat(event["ts"]).timestamp()
            for k, (since, until) in enumerate(windows):
                if since < t <= until:
                    bought.setdefault(event["customer_id"], set()).add(k)
    by_log = [c for c in states if len(bought.get(c, ())) == 4]
    active_log = sum(stage[c] == "active" for c in by_log)
    line = (
        f"{name:<20} {len(states):>6} cust"
        f"  stage flaps {sum(stage_flaps(sink.changes).values()) / months:6.2%}/cust-month"
        f"  segment flaps {12 * sum(segment_flaps(sink.changes).values()) / months:6.2%}/cust-year"
        f"  truly lapsed caught {caught}/{len(lapsed)} ({caught / max(len(lapsed), 1):.0%})"
        f"  steady (log) active {active_log}/{len(by_log)} ({active_log / max(len(by_log), 1):.0%})"
    )
    if true_steady is not None:
        ok = sum(stage.get(c) == "active" for c in true_steady)
        line += f"  steady (truth) active {ok}/{len(true_steady)} ({ok / max(len(true_steady), 1):.0%})"
    return line + f"  [{seconds:.0f} s]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="1", help="comma-separated generator seeds")
    ap.add_argument("--cdnow", type=Path, default=ROOT.parent / "shared/data/cdnow/CDNOW_master.txt")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    args = ap.parse_args()
    overrides: dict[str, dict[str, Any]] = {}
    for item in args.set:
        key, _, value = item.partition("=")
        section, _, name = key.partition(".")
        overrides.setdefault(section, {})[name] = yaml.safe_load(value)
    print(f"overrides: {overrides or 'none (shipped settings)'}")
    for name, pairs, steady in logs([int(s) for s in args.seeds.split(",")], args.cdnow):
        print(score(name, pairs, steady, overrides), flush=True)


if __name__ == "__main__":
    main()
