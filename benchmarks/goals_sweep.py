"""#4's accuracy goals over many generated logs at once, for one engine configuration.

Not a speed benchmark. One seed says little here: which k-means optimum an online model settles in
moves with small changes of its path, so a change that helps seed 3 can hurt seed 7. This replays
``generate(customers, days, seed)`` for every stationary seed and each drift scenario (seed 5,
scored on customers active in the last 30 days, as docs/engine.md's table) through
``segstream evaluate``'s pipeline (:func:`stream.ops.evaluate.evaluate_log`), prints one row per log
with each goal it meets or misses, then how many logs meet each goal.

Goals checked (issue #4): stationary SSQ <= 1.05x the offline k-means, ARI >= 0.95x the
reference's, id agreement between consecutive versions >= 0.98 (the minimum), no births or
deaths; a new persona comes as a birth; SSQ within 1.2x after drift; flapping under 1% everywhere.

    .venv/bin/python benchmarks/goals_sweep.py [--seeds 1-11] [--set model.update_days=2 ...]
    .venv/bin/python benchmarks/goals_sweep.py --profiles benchmarks/goal_profiles.yaml

With ``--profiles``, each named profile's overrides are swept in turn and a last table puts them
side by side: the frontier between the goals, one line per configuration.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from models.sim import SCENARIOS, generate  # noqa: E402
from stream.config import load  # noqa: E402
from stream.errors import ConfigError  # noqa: E402
from stream.ops.evaluate import ModelReport, evaluate_log, log_records  # noqa: E402
from stream.runtime.engines import engine_params  # noqa: E402

DRIFT_SEED = 5
DRIFT_WINDOW_DAYS = 30.0


@dataclass(frozen=True)
class Goal:
    name: str
    applies: Callable[[str], bool]  # to which scenario
    met: Callable[[ModelReport], bool]


GOALS = (
    Goal("SSQ <= 1.05x", lambda s: s == "stationary", lambda r: r.ssq_ratio <= 1.05),
    Goal(
        "ARI >= 0.95x ref",
        lambda s: s == "stationary",
        lambda r: r.ari is not None and r.ari >= 0.95 * (r.ari_reference or 0.0),
    ),
    Goal("agreement >= 0.98", lambda s: s == "stationary", lambda r: r.id_agreement >= 0.98),
    Goal("no births/deaths", lambda s: s == "stationary", lambda r: r.births == 0 and r.deaths == 0),
    Goal("new persona born", lambda s: s == "new_persona", lambda r: r.births >= 1),
    Goal("SSQ <= 1.2x (drift)", lambda s: s != "stationary", lambda r: r.ssq_ratio <= 1.2),
    Goal("flapping < 1%", lambda s: True, lambda r: r.flapping < 0.01),
)


def parse_seeds(text: str) -> list[int]:
    seeds: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        seeds.extend(range(int(lo), int(hi or lo) + 1))
    return seeds


def parse_sets(items: list[str]) -> dict[str, Any]:
    """``section.key=value`` pairs (values as YAML) -> nested settings overrides."""
    out: dict[str, Any] = {}
    for item in items:
        path, sep, value = item.partition("=")
        if not sep or "." not in path:
            raise SystemExit(f"--set wants section.key=value, got {item!r}")
        section, key = path.split(".", 1)
        out.setdefault(section, {})[key] = yaml.safe_load(value)
    return out


def run_log(scenario: str, seed: int, args: argparse.Namespace, overrides: dict[str, Any]) -> ModelReport:
    log = generate(args.customers, args.days, seed=seed, scenario=scenario)
    settings = load(overrides={**overrides, "topics": {"partitions": 1}})
    records = log_records("interactions", ((r.key, r.value) for r in log.records))
    window = None if scenario == "stationary" else DRIFT_WINDOW_DAYS
    return evaluate_log(records, settings, [engine_params(settings)], log.truth, window)[0]


def sweep(
    logs: list[tuple[str, int]], args: argparse.Namespace, overrides: dict[str, Any]
) -> tuple[dict[str, list[int]], list[tuple[str, ModelReport]]]:
    """Every log once: prints its row, returns the goals tally (met, applicable) and the reports."""
    print(f"generate({args.customers}, {args.days}, seed), overrides {overrides or 'none'}")
    print("log                    SSQ   ARI (ref)      agree min (med)  b/d   flap   goals missed")
    tally = {g.name: [0, 0] for g in GOALS}
    reports = []
    for scenario, seed in logs:
        r = run_log(scenario, seed, args, overrides)
        reports.append((scenario, r))
        missed = []
        for g in GOALS:
            if g.applies(scenario):
                ok = bool(g.met(r))
                tally[g.name][0] += ok
                tally[g.name][1] += 1
                if not ok:
                    missed.append(g.name)
        ari = f"{r.ari:.3f} ({r.ari_reference:.3f})" if r.ari is not None else "-"
        print(
            f"{scenario + ' ' + str(seed):20s} {r.ssq_ratio:6.3f} {ari:15s} {r.id_agreement:.3f} "
            f"({r.id_agreement_median:.3f})  {r.births}/{r.deaths}  {r.flapping:6.2%}  "
            f"{', '.join(missed) or '-'}",
            flush=True,
        )
    print("goals met:")
    for name, (met, n) in tally.items():
        if n:  # goals no log of this sweep applies to are left out
            print(f"  {name:22s} {met} of {n}")
    return tally, reports


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Nested settings overrides: ``extra`` wins, section by section."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    for section, values in extra.items():
        if isinstance(values, dict) and isinstance(out.get(section), dict):
            out[section].update(values)
        else:
            out[section] = values
    return out


def load_profiles(path: Path) -> dict[str, dict[str, Any]]:
    """A YAML mapping of profile name -> settings overrides (``{}`` or null: the defaults)."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise SystemExit(f"--profiles {path}: {e}") from e
    if not isinstance(data, dict) or not all(isinstance(v, dict | None) for v in data.values()):
        raise SystemExit(f"{path}: expected a mapping of profile name -> settings overrides")
    return {str(name): dict(v or {}) for name, v in data.items()}


def print_matrix(results: list[tuple[str, dict[str, list[int]], list[tuple[str, ModelReport]]]]) -> None:
    """One line per profile: logs meeting each goal, and the stationary logs' SSQ and agreement."""
    names = [g.name for g in GOALS if results and results[0][1][g.name][1]]
    print(
        "\nprofile".ljust(30)
        + "".join(f" | {n}" for n in names)
        + " | stationary SSQ | agreement min (medians)"
    )
    for profile, tally, reports in results:
        stationary = [r for scenario, r in reports if scenario == "stationary"]
        cells = "".join(f" | {tally[n][0]}/{tally[n][1]}".ljust(len(n) + 3) for n in names)
        spread = ""
        if stationary:
            ssq = [r.ssq_ratio for r in stationary]
            low = [r.id_agreement for r in stationary]
            med = [r.id_agreement_median for r in stationary]
            spread = (
                f" | {min(ssq):.2f}-{max(ssq):.2f} | {min(low):.2f}-{max(low):.2f} "
                f"({min(med):.3f}-{max(med):.3f})"
            )
        print(profile[:29].ljust(29) + cells + spread)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="1-11", help="stationary seeds, e.g. 1-11 or 3,4,6")
    ap.add_argument("--customers", type=int, default=600)
    ap.add_argument("--days", type=int, default=120)
    ap.add_argument("--no-drift", action="store_true", help="stationary logs only")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    ap.add_argument(
        "--profiles",
        type=Path,
        help="YAML: profile name -> settings overrides; sweeps each (over --set) and prints a matrix",
    )
    args = ap.parse_args()
    overrides = parse_sets(args.set)
    logs = [("stationary", s) for s in parse_seeds(args.seeds)]
    if not args.no_drift:
        logs += [(s, DRIFT_SEED) for s in SCENARIOS if s != "stationary"]
    profiles = (
        {"": overrides}
        if args.profiles is None
        else {name: merge(overrides, p) for name, p in load_profiles(args.profiles).items()}
    )
    for name, settings_overrides in profiles.items():  # every one checked before minutes of sweeping
        try:
            load(overrides=settings_overrides)
        except ConfigError as e:
            raise SystemExit(f"profile {name!r}: {e}" if name else str(e)) from e
    if args.profiles is None:
        sweep(logs, args, overrides)
        return 0
    results = []
    for name, settings_overrides in profiles.items():
        print(f"\n== {name}")
        tally, reports = sweep(logs, args, settings_overrides)
        results.append((name, tally, reports))
    print_matrix(results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
