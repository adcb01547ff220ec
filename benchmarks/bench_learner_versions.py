"""What one model version costs the learner, by population sample size (not a test).

The learner is one process (worker 0 of ``segstream run``, or the one instance with
``model.role: learner``): every ``model.update_every`` learned rows it builds a version, fitting
k-means on the ``model.population`` customers of its sample (aged to the version's time), the
value model and the names. This times ``SegmentEngine.process`` in population mode over a
customer stream (``bench_clustering.customer_stream``: well-formed states of ``4 x population``
customers, at least 20,000, so the sample fills), per sample size:

- rows/s through ``process`` (assign + learn + versions), as the learner sees it;
- ms per version: the median time inside ``SegmentEngine._build`` over the versions built on a
  full sample (full/all: how many of the versions that was);
- the checkpoint's size at the end (what the learner writes at each version, followers read).

Medians over ``--repeats``; the load average is printed (other work on the machine skews it).

    .venv/bin/python benchmarks/bench_learner_versions.py [--populations 2048,8192,16384] [--n 40000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_clustering import customer_stream

from models.segments.engine import SegmentEngine
from models.segments.params import EngineParams
from stream.runtime.engines import tune_runtime


def one_run(population: int, stream: tuple[Any, ...], chunk: int) -> tuple[float, float, int, int, int]:
    """(rows/s, ms per version, versions on a full sample, all versions, checkpoint bytes) of one
    pass; the checkpoint is ``SegmentEngine.snapshot()`` at the end, what the learner
    writes to Redis at each version and every follower reads."""
    raw, times, keys, snaps = stream
    engine = SegmentEngine(EngineParams(population=population))
    build = engine._build
    spent: list[float] = []
    filled: list[int] = []

    def timed_build() -> Any:
        t = time.perf_counter()
        out = build()
        spent.append(time.perf_counter() - t)
        filled.append(len(engine.population) if engine.population is not None else 0)
        return out

    engine._build = timed_build  # type: ignore[method-assign]
    n = len(raw)
    t0 = time.perf_counter()
    for i in range(0, n, chunk):
        sl = slice(i, i + chunk)
        engine.process(raw[sl], times[sl], None, keys[sl], snaps[sl])
    took = time.perf_counter() - t0
    # Versions built on a full sample only (the first ones, while it fills, are cheaper).
    full = [x for x, f in zip(spent, filled, strict=True) if f >= population]
    per = statistics.median(full) * 1000 if full else float("nan")
    del engine._build  # the timing wrapper is no engine state: the checkpoint refuses functions
    return n / took, per, len(full), len(spent), len(engine.snapshot())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--populations", default="2048,8192,16384")
    ap.add_argument("--n", type=int, default=40_000, help="rows per pass")
    ap.add_argument("--chunk", type=int, default=1000, help="rows per process() call (a batch)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    tune_runtime()
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; {args.n:,} rows per pass")
    print(
        f"  {'population':>10s} {'customers':>9s} {'rows/s':>8s} {'ms/version':>10s} {'full/all':>8s}"
        "  per repeat"
    )
    for pop in (int(p) for p in args.populations.split(",")):
        customers = max(20_000, 4 * pop)
        stream = customer_stream(args.n, customers=customers)
        runs = [one_run(pop, stream, args.chunk) for _ in range(args.repeats)]
        rates = [r[0] for r in runs]
        per = [r[1] for r in runs]
        print(
            f"  {pop:10,d} {customers:9,d} {statistics.median(rates):8,.0f} {statistics.median(per):10.1f} "
            f"{f'{runs[0][2]}/{runs[0][3]}':>8s}  rows/s {[round(x) for x in rates]}, "
            f"ms/version {[round(x, 1) for x in per]}; checkpoint {runs[0][4]:,} B"
        )
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
