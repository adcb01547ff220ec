"""Seeded, realistic omnichannel demo events with planted personas and drift scenarios.

Every customer is given one planted persona (behaviour parameters: session rate, channel mix,
purchase funnel, basket size, promo response, time-of-day pattern, activity trend...), and the
generator draws their interactions over ``days`` days. The result is a list of Kafka-ready
records (key = customer id, value = compact JSON of an :class:`~models.contracts.InteractionEvent`)
sorted by event time, plus the ground truth ``customer_id -> persona``. Same arguments, same bytes.

>>> log = generate(customers=50, days=30, seed=7)
>>> rec = log.records[0]
>>> rec.key == rec.customer_id.encode() and not rec.malformed
True
>>> sorted(set(log.truth.values()))[:2]
['browser_no_purchase', 'declining_engagement']
>>> log2 = generate(customers=50, days=30, seed=7)
>>> [r.value for r in log2.records] == [r.value for r in log.records]
True

Scenarios (for drift tests of the clustering engine), see :data:`SCENARIOS`:

- ``stationary``: personas keep their behaviour for the whole period.
- ``gradual_drift``: ``high_value_loyal`` customers' session rate and basket size decline
  linearly over the period (to ~40% and ~50% at the end); truth stays ``high_value_loyal``.
- ``sudden_shift``: at mid-period ``promo_driven_occasional`` customers switch to
  ``app_converted_promo`` (app heavy, more frequent, higher spend); truth is the new persona.
- ``new_persona``: ``mobile_impulse`` customers (app only, night owls, small frequent baskets)
  appear only in the second half (their first event is after mid-period).
- ``persona_disappears``: ``browser_no_purchase`` customers stop entirely at mid-period; truth
  keeps their persona (they are the segment that dies).
- ``rhythm``: a grocery purchase log of shoppers with a purchase rhythm (``twice_weekly``,
  ``weekly``, ``fortnightly``, ``monthly``; :data:`~models.sim.personas.RHYTHM_PERSONA_ORDER`):
  same-day repeat baskets, store closures, a December peak, customers who pause for two weeks
  and come back, customers who lapse for good (:mod:`~models.sim.rhythm`). ``persona_weights``
  name rhythm personas here. :func:`rhythm_truth` tells each customer's kind (steady, pauser,
  lapser), its stop and pauses, and the closures and peaks.

The ground truth is the persona each customer has at the end of the period.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, NamedTuple

import numpy as np

from models.sim.personas import (
    CATEGORIES,
    CHANNELS,
    CURRENCY,
    DEFAULT_START,
    PERSONA_ORDER,
    TYPE_INDEX,
    TYPES,
)
from models.sim.rhythm import (
    NEVER,
    RHYTHM_KINDS,
    RHYTHM_NAMES,
    assign_rhythm_personas,
    plan_rhythm,
    simulate_rhythm,
)
from models.sim.simulate import (
    Simulation,
    assign_personas,
    check_args,
    persona_weights_for,
    plan_phases,
    simulate,
)

MALFORMED_KINDS = (
    "not_json",
    "truncated_json",
    "missing_customer_id",
    "unknown_channel",
    "negative_amount",
    "nan_amount",
    "naive_timestamp",
    "oversize_properties",
    "bad_id_charset",
    "purchase_without_amount",
)


class GeneratedRecord(NamedTuple):
    """One Kafka record: ``key``/``value`` as bytes, plus provenance for tests and truth."""

    key: bytes
    value: bytes
    malformed: bool
    customer_id: str
    persona: str
    ts: float  # event time, epoch seconds


@dataclass
class GeneratedLog:
    records: list[GeneratedRecord]
    truth: dict[str, str]  # customer_id -> persona at the end of the period
    malformed_kinds: dict[int, str] = field(default_factory=dict)  # record index -> kind


class RhythmCustomer(NamedTuple):
    """One customer of the ``rhythm`` scenario, as planned (times in epoch seconds)."""

    persona: str  # twice_weekly | weekly | fortnightly | monthly
    kind: str  # steady | pauser | lapser
    stop_ts: float | None  # lapsers: from here on no purchase, visit or refund (emails fade)
    pauses: tuple[tuple[float, float], ...]  # pausers: [start, end) without shopping, 1 or 2


@dataclass(frozen=True)
class RhythmTruth:
    """What a lifecycle check needs to know about a ``rhythm`` log (times in epoch seconds)."""

    customers: dict[str, RhythmCustomer]
    closures: tuple[tuple[float, float], ...]  # [start, end): every store closed, online open
    peaks: tuple[tuple[float, float], ...]  # [start, end): December, more trips, bigger baskets
    start_ts: float
    end_ts: float

    def lapsed(self, quiet_days: float = 90.0) -> list[str]:
        """The lapsers that stopped at least ``quiet_days`` before the end (sorted ids)."""
        last = self.end_ts - quiet_days * 86400.0
        return sorted(c for c, r in self.customers.items() if r.stop_ts is not None and r.stop_ts <= last)


def customer_id(i: int) -> str:
    """The id of customer number ``i`` (1-based): ``c000123``."""
    return f"c{i:06d}"


# ----------------------------------------------------------------------------- encoding


def _dumps(obj: dict[str, object]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def _malformed(kind: str, event: dict[str, object], ordinal: int) -> bytes:
    """A broken version of ``event`` of the given kind (never a valid InteractionEvent)."""
    e = dict(event)
    if kind == "not_json":
        return b"\x00\x9fnot json <event " + str(ordinal).encode() + b">"
    if kind == "truncated_json":
        raw = _dumps(e)
        return raw[: max(1, len(raw) // 2)]
    if kind == "missing_customer_id":
        e.pop("customer_id", None)
    elif kind == "unknown_channel":
        e["channel"] = "carrier_pigeon"
    elif kind in ("negative_amount", "nan_amount", "purchase_without_amount"):
        e.pop("category", None)
        e.update(type="purchase", currency=CURRENCY)
        if kind == "negative_amount":
            e["amount"] = -abs(float(e.get("amount") or 12.5))  # type: ignore[arg-type]
        elif kind == "nan_amount":
            e["amount"] = float("nan")  # json.dumps writes the token NaN
        else:
            e.pop("amount", None)
    elif kind == "naive_timestamp":
        e["ts"] = str(e["ts"]).rstrip("Z")
    elif kind == "oversize_properties":
        e["properties"] = {"blob": "x" * 20_000}
    elif kind == "bad_id_charset":
        e["customer_id"] = f"{e['customer_id']} / ü!"
    return _dumps(e)


def _records(
    rng: np.random.Generator, sim: Simulation, seed: int, malformed_fraction: float
) -> Iterator[tuple[GeneratedRecord, str | None]]:
    n = sim.n
    n_bad = round(malformed_fraction * n)
    bad_kind: dict[int, str] = {}
    if n_bad:
        which = rng.choice(n, n_bad, replace=False)
        kinds = rng.permutation(np.arange(n_bad) % len(MALFORMED_KINDS))
        bad_kind = {int(w): MALFORMED_KINDS[int(k)] for w, k in zip(which, kinds, strict=True)}

    ids = [customer_id(i + 1) for i in range(sim.customers)]
    keys = [s.encode() for s in ids]
    names = sim.persona_names
    ts_str = np.datetime_as_string(sim.t_ms.astype("datetime64[ms]"), unit="ms").tolist()
    chans, types = CHANNELS, TYPES
    monetary = {TYPE_INDEX["purchase"], TYPE_INDEX["refund"]}
    isnan = math.isnan
    cust_l = sim.cust.tolist()
    t_l = sim.t_ms.tolist()
    chan_l = sim.chan.tolist()
    typ_l = sim.typ.tolist()
    amt_l = sim.amount.tolist()
    disc_l = sim.discount.tolist()
    cat_l = sim.cat.tolist()
    camp_l = sim.campaign.tolist()
    items_l = sim.items.tolist()
    store_l = sim.store.tolist()
    pers_l = sim.persona.tolist()
    for k in range(n):
        c = cust_l[k]
        ty = typ_l[k]
        # Hand-written compact JSON with sorted keys: byte-identical to
        # json.dumps(event, separators=(",", ":"), sort_keys=True) (all strings are plain
        # ASCII, floats use repr like json does), and ~4x faster. Tested against json.dumps.
        parts = []
        money = ty in monetary
        if money:
            parts.append(f'"amount":{amt_l[k]!r}')
        if camp_l[k] >= 0:
            parts.append(f'"campaign_id":"cmp-w{camp_l[k]:02d}"')
        if cat_l[k] >= 0:
            parts.append(f'"category":"{CATEGORIES[cat_l[k]]}"')
        parts.append(f'"channel":"{chans[chan_l[k]]}"')
        if money:
            parts.append(f'"currency":"{CURRENCY}"')
        parts.append(f'"customer_id":"{ids[c]}"')
        d = disc_l[k]
        if not isnan(d):
            parts.append(f'"discount":{d!r}')
        parts.append(f'"event_id":"g{seed}-{k}"')
        it, st = items_l[k], store_l[k]
        if it >= 0 and st >= 0:
            parts.append(f'"properties":{{"items":{it},"store_id":"st{st:03d}"}}')
        elif it >= 0:
            parts.append(f'"properties":{{"items":{it}}}')
        elif st >= 0:
            parts.append(f'"properties":{{"store_id":"st{st:03d}"}}')
        parts.append(f'"ts":"{ts_str[k]}Z","type":"{types[ty]}"')
        text = "{" + ",".join(parts) + "}"
        kind = bad_kind.get(k)
        value = text.encode() if kind is None else _malformed(kind, json.loads(text), k)
        yield (
            GeneratedRecord(keys[c], value, kind is not None, ids[c], names[pers_l[k]], t_l[k] / 1000.0),
            kind,
        )


def _simulate(
    customers: int,
    days: int,
    seed: int,
    start: datetime,
    scenario: str,
    persona_weights: Mapping[str, float] | None,
) -> tuple[np.random.Generator, Simulation]:
    if scenario == "rhythm":
        return simulate_rhythm(customers, days, seed, start, persona_weights)
    return simulate(customers, days, seed, start, scenario, persona_weights)


# ----------------------------------------------------------------------------- public API


def generate(
    customers: int,
    days: int,
    seed: int,
    start: datetime = DEFAULT_START,
    scenario: str = "stationary",
    malformed_fraction: float = 0.0,
    persona_weights: Mapping[str, float] | None = None,
) -> GeneratedLog:
    """Generate a seeded event log: records sorted by event time, and the ground truth.

    ``persona_weights`` maps persona names (keys of :data:`PERSONAS`) to relative weights
    (default :data:`DEFAULT_PERSONA_WEIGHTS`); customers are split in exact proportion.
    ``malformed_fraction`` of the records (chosen by the seeded RNG) are replaced by malformed
    ones (kinds in :data:`MALFORMED_KINDS`, recorded in ``GeneratedLog.malformed_kinds``).
    """
    check_args(customers, days, scenario, malformed_fraction, start)
    rng, sim = _simulate(customers, days, seed, start, scenario, persona_weights)
    records: list[GeneratedRecord] = []
    kinds: dict[int, str] = {}
    for k, (rec, kind) in enumerate(_records(rng, sim, seed, malformed_fraction)):
        records.append(rec)
        if kind is not None:
            kinds[k] = kind
    names = sim.persona_names
    truth = {customer_id(i + 1): names[p] for i, p in enumerate(sim.truth_idx.tolist())}
    return GeneratedLog(records=records, truth=truth, malformed_kinds=kinds)


def iter_records(
    customers: int,
    days: int,
    seed: int,
    start: datetime = DEFAULT_START,
    scenario: str = "stationary",
    malformed_fraction: float = 0.0,
    persona_weights: Mapping[str, float] | None = None,
) -> Iterator[GeneratedRecord]:
    """The records of :func:`generate` with the same arguments, encoded lazily one by one.

    The simulation itself is columnar (~60 bytes per event); only the JSON is produced lazily.
    Get the ground truth with :func:`ground_truth`.
    """
    check_args(customers, days, scenario, malformed_fraction, start)
    rng, sim = _simulate(customers, days, seed, start, scenario, persona_weights)
    for rec, _kind in _records(rng, sim, seed, malformed_fraction):
        yield rec


def ground_truth(
    customers: int,
    seed: int,
    scenario: str = "stationary",
    persona_weights: Mapping[str, float] | None = None,
) -> dict[str, str]:
    """``customer_id -> persona at the end`` of :func:`generate` with the same arguments (cheap)."""
    check_args(customers, 1, scenario, 0.0, DEFAULT_START)
    rng = np.random.default_rng(seed)
    if scenario == "rhythm":
        idx = assign_rhythm_personas(rng, customers, persona_weights)
        return {customer_id(i + 1): RHYTHM_NAMES[p] for i, p in enumerate(idx.tolist())}
    assigned = assign_personas(rng, customers, persona_weights_for(scenario, persona_weights))
    _phases_list, truth = plan_phases(rng, assigned, scenario)
    names = [p.name for p in PERSONA_ORDER]
    return {customer_id(i + 1): names[p] for i, p in enumerate(truth.tolist())}


def rhythm_truth(
    customers: int,
    days: int,
    seed: int,
    start: datetime = DEFAULT_START,
    persona_weights: Mapping[str, float] | None = None,
) -> RhythmTruth:
    """The plan behind ``generate(customers, days, seed, start, scenario="rhythm")`` (cheap: no
    events). A pauser's pauses leave 2.5 periods to come back before the end; where the log is
    too short for that, the customer is ``steady``. A lapser stops at 30-85% of the period, so in
    a year-long log most of them (:meth:`RhythmTruth.lapsed`) are quiet for the last 90 days.
    """
    check_args(customers, days, "rhythm", 0.0, start)
    plan = plan_rhythm(np.random.default_rng(seed), customers, days, start, persona_weights)
    cal = plan.cal
    t0 = cal.origin_ms / 1000.0

    def ts(day: int) -> float:
        return t0 + day * 86400.0

    start_ts = start.timestamp()
    end_ts = start_ts + days * 86400.0

    def clip(spans: tuple[tuple[int, int], ...]) -> tuple[tuple[float, float], ...]:
        return tuple((max(ts(a), start_ts), min(ts(b), end_ts)) for a, b in spans)

    out: dict[str, RhythmCustomer] = {}
    rows = zip(
        plan.persona.tolist(),
        plan.kind.tolist(),
        plan.stop_day.tolist(),
        plan.pause_start.tolist(),
        plan.pause_len.tolist(),
        strict=True,
    )
    for i, (persona, kind, stop, starts, lengths) in enumerate(rows):
        pauses = tuple((ts(a), ts(a + n)) for a, n in zip(starts, lengths, strict=True) if a != NEVER)
        out[customer_id(i + 1)] = RhythmCustomer(
            RHYTHM_NAMES[persona], RHYTHM_KINDS[kind], None if stop == NEVER else ts(stop), pauses
        )
    return RhythmTruth(out, clip(cal.closures), clip(cal.peaks), start_ts, end_ts)


def write_truth_csv(truth: Mapping[str, str], fileobj: IO[str]) -> None:
    """Write ``customer_id,persona`` rows (with a header, sorted by customer id) to a text file."""
    fileobj.write("customer_id,persona\n")
    for cid in sorted(truth):
        fileobj.write(f"{cid},{truth[cid]}\n")
