"""Fingerprint what the pipeline publishes for a seeded log: for "behaviour unchanged" refactors.

Replays a generated log (four partitions, fed one after the other in batches, as
``segstream replay`` does) through the real batch pipeline on the in-memory store, with a sink
that serializes every output exactly as the Kafka sink does, then prints a SHA-256 per output
stream (changes, the compacted current topic, model events, dead letters) and of the export,
plus counts. Run it before and after a change: equal lines, equal outputs.

    .venv/bin/python scripts/fingerprint.py [--customers 600] [--days 90] [--seed 7]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from prometheus_client import CollectorRegistry  # noqa: E402

from models.sim import generate  # noqa: E402
from stream.config import load  # noqa: E402
from stream.io.kafka import SourceRecord, partition_for_key  # noqa: E402
from stream.io.sinks import OutputSink  # noqa: E402
from stream.ops.export import iter_views, write_jsonl  # noqa: E402
from stream.runtime.engines import new_engine  # noqa: E402
from stream.runtime.metrics import Metrics  # noqa: E402
from stream.runtime.pipeline import BatchProcessor  # noqa: E402
from stream.state import MemoryFeatureStore  # noqa: E402

PARTITIONS = 4


class Capture(OutputSink):
    """Every output as the bytes the Kafka sink would send (the emit time header left out)."""

    def __init__(self) -> None:
        self.streams: dict[str, list[bytes]] = {"changes": [], "model_events": [], "dead_letters": []}
        self.current: dict[bytes, bytes | None] = {}

    def _emit(self, kind: str, *args: Any) -> None:
        if kind == "change":
            key, payload, erased, _emitted_ms = args
            self.streams["changes"].append(key + b"\t" + payload)
            self.current[key] = None if erased else payload
        elif kind == "dead_letter":
            key, value = args
            self.streams["dead_letters"].append(key + b"\t" + value)
        elif kind == "model_event":
            self.streams["model_events"].append(args[0])

    def flush(self, timeout: float = 60.0) -> None:
        pass

    def close(self) -> None:
        pass


def digest(lines: list[bytes]) -> str:
    return hashlib.sha256(b"\n".join(lines)).hexdigest()[:16]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--customers", type=int, default=600)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--batch", type=int, default=2000)
    args = ap.parse_args()
    settings = load()
    log = generate(args.customers, args.days, args.seed, malformed_fraction=0.01).records
    by_partition: list[list[SourceRecord]] = [[] for _ in range(PARTITIONS)]
    for r in log:
        p = partition_for_key(r.key, PARTITIONS)
        by_partition[p].append(SourceRecord("interactions", p, len(by_partition[p]), r.key, r.value))
    store = MemoryFeatureStore()
    engine = new_engine(settings)
    sink = Capture()
    processor = BatchProcessor(settings, store, engine, sink, Metrics(CollectorRegistry()))
    for records in by_partition:
        for lo in range(0, len(records), args.batch):
            processor.process(records[lo : lo + args.batch])
    processor.close()
    store.save_model(engine.snapshot(), engine.version)  # export reads the model as it would from Redis
    export = io.StringIO()
    n = write_jsonl(iter_views(store, PARTITIONS, settings.features.params()), export)
    settings_json = json.dumps(settings.masked(), sort_keys=True).encode()
    current = [k + b"\t" + v for k, v in sorted(sink.current.items()) if v is not None]
    print(f"settings      {digest([settings_json])}")
    for name, lines in sink.streams.items():
        print(f"{name:13} {digest(lines)}  {len(lines)}")
    print(f"{'current':13} {digest(current)}  {len(current)}")
    print(f"{'export':13} {digest(export.getvalue().encode().splitlines())}  {n}")
    print(f"{'model':13} version {engine.version}, {len(engine.live_names())} segments")


if __name__ == "__main__":
    main()
