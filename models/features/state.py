"""Per-customer state: the event-time update, the dedupe window and the compact packing.

The state keeps exponentially decayed sums referenced to ``ref_ts`` (the newest event time the
customer has seen). A newer event decays the sums forward and adds its weight; a late event adds
its weight already decayed to ``ref_ts``. Both give the same sums, so a late event within the
allowed lateness yields the state that in-order arrival would have given (up to float rounding).

>>> p = FeatureParams()
>>> s = CustomerState.new()
>>> apply_event(s, p, Fact(ts=1_767_225_600, kind="purchase", channel="web", amount=40.0,
...                        promo=False, event_hash=1), )
True
>>> s.purchases, s.spend, CustomerState.unpack(s.pack()) == s
(1, 40.0, True)
"""

from __future__ import annotations

import math
import struct
import zlib
from bisect import insort
from dataclasses import dataclass, field
from functools import cached_property
from typing import Final

from models.contracts import EventType, InteractionEvent

DAY: Final = 86400.0
NEVER_PURCHASED_DAYS: Final = 730.0  # recency cap and the value for "never purchased"

# Decayed sums, in storage order. Each belongs to one half-life group.
CHANNEL_GROUPS: Final = ("web", "app", "email", "store", "social", "other")
KIND_GROUPS: Final = ("browse", "cart", "engage", "support")
DECAYED: Final = (
    "spend_d",
    "purchases_d",
    *(f"ch_{c}" for c in CHANNEL_GROUPS),
    *(f"kind_{k}" for k in KIND_GROUPS),
    "act_short",
    "act_long",
)
_D = {name: i for i, name in enumerate(DECAYED)}
_CHANNEL_SLOT = {c: _D[f"ch_{c}"] for c in CHANNEL_GROUPS}
_KIND_SLOT = {k: _D[f"kind_{k}"] for k in KIND_GROUPS}
_CHANNEL_GROUP_OF = {
    "web": "web",
    "app": "app",
    "push": "app",
    "email": "email",
    "sms": "email",
    "store": "store",
    "social": "social",
}


@dataclass(frozen=True)
class FeatureParams:
    monetary_half_life_days: float = 90.0
    channel_half_life_days: float = 90.0
    short_half_life_days: float = 7.0
    long_half_life_days: float = 60.0

    @cached_property
    def group_half_lives(self) -> tuple[float, float, float, float]:
        """Half-lives in seconds of the four decay groups: monetary, channel, short, long."""
        return (
            self.monetary_half_life_days * DAY,
            self.channel_half_life_days * DAY,
            self.short_half_life_days * DAY,
            self.long_half_life_days * DAY,
        )


@dataclass(frozen=True, slots=True)
class Fact:
    """What the feature math needs of one validated event (decoupled from the wire model)."""

    ts: int  # event time, whole seconds since the epoch
    kind: str  # browse | cart | engage | support | purchase | refund
    channel: str
    amount: float
    promo: bool
    event_hash: int  # 32-bit hash of event_id, for the dedupe window
    is_add_to_cart: bool = False


def fact_of(event: InteractionEvent) -> Fact:
    """The facts the feature math needs from a validated event."""
    return Fact(
        ts=int(event.ts_seconds),
        kind=event.kind,
        channel=event.channel.value,
        amount=event.amount or 0.0,
        promo=event.is_promo,
        event_hash=zlib.crc32(event.event_id.encode()),
        is_add_to_cart=event.type is EventType.ADD_TO_CART,
    )


DEDUPE_WINDOW: Final = 6  # newest (ts, event hash) pairs kept per customer
DAY_SLOTS: Final = 8  # newest distinct purchase days, and active days, kept per customer (rhythm)

# Packed layout (little-endian, no padding), format byte 2:
#   B format, 9I first_ts last_ts last_purchase_ts ref_ts events purchases refunds
#   promo_purchases carts, h segment, 2I segment_since seq, 2d spend refunded,
#   2I next_due last_learned, 14d decayed sums,
#   I first_purchase_ts, 2H purchase_days active_days, b stage, I stage_since,
#   8H newest purchase days, 8H newest active days (days since 1970, ascending, 0 = empty slot),
#   then k <= DEDUPE_WINDOW pairs 2I (ts, hash).
# Format 1 (the same without the block of the rhythm and the stage) is still read.
# One precompiled struct per window length k: pack and unpack are one C call each.
_FORMAT: Final = 2
_V1_FMT: Final = f"<B9IhII2dII{len(DECAYED)}d"
_BASE_FMT: Final = _V1_FMT + f"I2HbI{2 * DAY_SLOTS}H"
_LAYOUTS: Final = tuple(struct.Struct(_BASE_FMT + "II" * k) for k in range(DEDUPE_WINDOW + 1))
_V1_LAYOUTS: Final = tuple(struct.Struct(_V1_FMT + "II" * k) for k in range(DEDUPE_WINDOW + 1))
_BASE_SIZE: Final = _LAYOUTS[0].size
_V1_SIZE: Final = _V1_LAYOUTS[0].size
_DEC_LO: Final = 17  # index of the first decayed sum in the unpacked tuple
_RHYTHM_LO: Final = _DEC_LO + len(DECAYED)  # first_purchase_ts, then the rest of the block
_DAYS_LO: Final = _RHYTHM_LO + 5
_PAIRS_LO: Final = _DAYS_LO + 2 * DAY_SLOTS
_MAX_U16: Final = 0xFFFF


@dataclass(slots=True)
class CustomerState:
    first_ts: int = 0
    last_ts: int = 0
    last_purchase_ts: int = 0
    ref_ts: int = 0
    events: int = 0
    purchases: int = 0
    refunds: int = 0
    promo_purchases: int = 0
    carts: int = 0
    spend: float = 0.0
    refunded: float = 0.0
    decayed: list[float] = field(default_factory=lambda: [0.0] * len(DECAYED))
    # Newest (ts, hash) pairs, kept sorted: the set depends only on which events were seen,
    # not on their arrival order, so shuffled logs give equal states.
    recent: list[tuple[int, int]] = field(default_factory=list)
    # Segment bookkeeping, written in the same atomic step as the features.
    segment: int = -1
    segment_since: int = 0
    seq: int = 0
    # Event time the inactivity schedule next looks at this customer (0 = never): at or before
    # the next threshold crossing, see schedule_after_event.
    next_due: int = 0
    last_learned: int = 0  # event time the model last learned from this customer
    # The customer's rhythm: its first purchase, how many distinct days it bought and was active
    # on, and the newest of those days (a set: the order events arrive in does not matter).
    first_purchase_ts: int = 0
    purchase_days: int = 0
    active_days: int = 0
    purchase_day_list: list[int] = field(default_factory=list)
    active_day_list: list[int] = field(default_factory=list)
    # Lifecycle stage (index into models.segments.lifecycle.STAGES, -1 none) and since when.
    stage: int = -1
    stage_since: int = 0

    @classmethod
    def new(cls) -> CustomerState:
        return cls()

    # ---- compact binary form: 228 + 8 per dedupe pair (<= 276) bytes, format byte first ----
    def pack(self) -> bytes:
        recent = self.recent
        return _LAYOUTS[len(recent)].pack(
            _FORMAT,
            self.first_ts,
            self.last_ts,
            self.last_purchase_ts,
            self.ref_ts,
            self.events,
            self.purchases,
            self.refunds,
            self.promo_purchases,
            self.carts,
            self.segment,
            self.segment_since,
            self.seq,
            self.spend,
            self.refunded,
            self.next_due,
            self.last_learned,
            *self.decayed,
            self.first_purchase_ts,
            self.purchase_days,
            self.active_days,
            self.stage,
            self.stage_since,
            *_slots(self.purchase_day_list),
            *_slots(self.active_day_list),
            *[x for pair in recent for x in pair],
        )

    @classmethod
    def unpack(cls, data: bytes) -> CustomerState:
        if data and data[0] == 1:
            return cls._unpack_v1(data)
        k, rest = divmod(len(data) - _BASE_SIZE, 8)
        if not data or data[0] != _FORMAT or rest or not 0 <= k <= DEDUPE_WINDOW:
            raise ValueError("unknown customer state format")
        t = _LAYOUTS[k].unpack(data)
        pairs = iter(t[_PAIRS_LO:])
        state = cls._from_v1_fields(t, list(zip(pairs, pairs, strict=True)))
        state.first_purchase_ts, state.purchase_days, state.active_days, state.stage, state.stage_since = t[
            _RHYTHM_LO:_DAYS_LO
        ]
        state.purchase_day_list = [d for d in t[_DAYS_LO : _DAYS_LO + DAY_SLOTS] if d]
        state.active_day_list = [d for d in t[_DAYS_LO + DAY_SLOTS : _PAIRS_LO] if d]
        return state

    @classmethod
    def _unpack_v1(cls, data: bytes) -> CustomerState:
        """A state written before the rhythm was kept: no days, purchases counted as days."""
        k, rest = divmod(len(data) - _V1_SIZE, 8)
        if rest or not 0 <= k <= DEDUPE_WINDOW:
            raise ValueError("unknown customer state format")
        t = _V1_LAYOUTS[k].unpack(data)
        pairs = iter(t[_DEC_LO + len(DECAYED) :])
        state = cls._from_v1_fields(t, list(zip(pairs, pairs, strict=True)))
        state.purchase_days = min(state.purchases, _MAX_U16)
        return state

    @classmethod
    def _from_v1_fields(cls, t: tuple, recent: list[tuple[int, int]]) -> CustomerState:
        return cls(
            t[1],
            t[2],
            t[3],
            t[4],
            t[5],
            t[6],
            t[7],
            t[8],
            t[9],
            t[13],
            t[14],
            list(t[_DEC_LO : _DEC_LO + len(DECAYED)]),
            recent,
            t[10],
            t[11],
            t[12],
            t[15],
            t[16],
        )


def _slots(days: list[int]) -> list[int]:
    """A day list as its DAY_SLOTS packed slots: ascending, empty slots (0) first."""
    return [0] * (DAY_SLOTS - len(days)) + days


def note_day(days: list[int], day: int) -> bool:
    """Remember ``day`` in a customer's newest distinct days (sorted, at most DAY_SLOTS); True when
    it enters them (a day not seen before). A day older than a full window is not counted: it
    cannot be told from a day seen before, and noting an event twice must change nothing (within
    the allowed lateness it cannot happen: a full window spans more than two days)."""
    if day in days:
        return False
    if len(days) < DAY_SLOTS:
        insort(days, day)
        return True
    if day > days[0]:
        insort(days, day)
        del days[0]
        return True
    return False


def note_event_day(state: CustomerState, ts: int, purchase: bool) -> None:
    """The rhythm's part of an event (idempotent: noting the same event twice changes nothing)."""
    day = ts // 86400
    if note_day(state.active_day_list, day):
        state.active_days = min(state.active_days + 1, _MAX_U16)
    if purchase:
        if note_day(state.purchase_day_list, day):
            state.purchase_days = min(state.purchase_days + 1, _MAX_U16)
        if state.first_purchase_ts == 0 or ts < state.first_purchase_ts:
            state.first_purchase_ts = ts


# Decay group of every slot in DECAYED order (index into FeatureParams.group_half_lives).
_GROUP: Final = (0, 0, *([1] * len(CHANNEL_GROUPS)), *([1] * len(KIND_GROUPS)), 2, 3)
assert _GROUP == (0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 3) and len(DECAYED) == 14  # apply_event unrolls it
_SPEND: Final = _D["spend_d"]
_PURCHASES: Final = _D["purchases_d"]
_ACT_SHORT: Final = _D["act_short"]
_ACT_LONG: Final = _D["act_long"]
_OTHER_SLOT: Final = _CHANNEL_SLOT["other"]
_SLOT_OF_CHANNEL: Final = {ch: _CHANNEL_SLOT[g] for ch, g in _CHANNEL_GROUP_OF.items()}


def apply_event(state: CustomerState, params: FeatureParams, fact: Fact) -> bool:
    """Apply one event to the state in place. Returns False for a duplicate (state unchanged)."""
    return apply_values(
        state,
        params,
        fact.ts,
        fact.kind,
        fact.channel,
        fact.amount,
        fact.promo,
        fact.event_hash,
        fact.is_add_to_cart,
    )


def admit(recent: list[tuple[int, int]], ts: int, h: int) -> bool:
    """The dedupe window: False if event hash ``h`` is in ``recent`` (a duplicate), else remember
    ``(ts, h)`` and return True. ``recent`` keeps the newest DEDUPE_WINDOW pairs, sorted; an event
    older than the whole full window is treated as new (beyond the window) and not remembered."""
    for pair in recent:
        if pair[1] == h:
            return False
    key = (ts, h)
    if len(recent) < DEDUPE_WINDOW:
        insort(recent, key)
    elif key > recent[0]:
        insort(recent, key)
        del recent[0]
    return True


def apply_values(
    state: CustomerState,
    params: FeatureParams,
    ts: int,
    kind: str,
    channel: str,
    amount: float,
    promo: bool,
    h: int,
    is_add_to_cart: bool,
) -> bool:
    """:func:`apply_event` on the fields of a :class:`Fact`, without building one (the hot path)."""
    if not admit(state.recent, ts, h):
        return False
    dec = state.decayed
    late = False
    if state.events == 0:
        state.first_ts = state.last_ts = state.ref_ts = ts
    elif ts > state.ref_ts:
        m, c, s, lg = params.group_half_lives
        dt = -(ts - state.ref_ts)
        g0 = math.exp2(dt / m)
        g1 = math.exp2(dt / c)
        d = dec
        dec[:] = (
            d[0] * g0,
            d[1] * g0,
            d[2] * g1,
            d[3] * g1,
            d[4] * g1,
            d[5] * g1,
            d[6] * g1,
            d[7] * g1,
            d[8] * g1,
            d[9] * g1,
            d[10] * g1,
            d[11] * g1,
            d[12] * math.exp2(dt / s),
            d[13] * math.exp2(dt / lg),
        )
        state.ref_ts = state.last_ts = ts
    elif ts < state.ref_ts:
        late = True
        state.first_ts = min(state.first_ts, ts)
    state.events += 1

    ch = _SLOT_OF_CHANNEL.get(channel, _OTHER_SLOT)
    ks = _KIND_SLOT.get(kind)
    if not late:
        dec[ch] += 1.0
        dec[_ACT_SHORT] += 1.0
        dec[_ACT_LONG] += 1.0
        if ks is not None:
            dec[ks] += 1.0
        if kind == "purchase":
            dec[_SPEND] += amount
            dec[_PURCHASES] += 1.0
        elif kind == "refund":
            dec[_SPEND] -= amount
    else:
        # A late event's weight, already decayed to ref_ts.
        m, c, s, lg = params.group_half_lives
        dt = -(state.ref_ts - ts)
        g1 = math.exp2(dt / c)
        dec[ch] += g1
        dec[_ACT_SHORT] += math.exp2(dt / s)
        dec[_ACT_LONG] += math.exp2(dt / lg)
        if ks is not None:
            dec[ks] += g1
        if kind == "purchase":
            g0 = math.exp2(dt / m)
            dec[_SPEND] += amount * g0
            dec[_PURCHASES] += g0
        elif kind == "refund":
            dec[_SPEND] -= amount * math.exp2(dt / m)
    note_event_day(state, ts, kind == "purchase")
    if is_add_to_cart:
        state.carts += 1
    if kind == "purchase":
        state.purchases += 1
        state.spend += amount
        if promo:
            state.promo_purchases += 1
        state.last_purchase_ts = max(state.last_purchase_ts, ts)
    elif kind == "refund":
        state.refunds += 1
        state.refunded += amount
    return True


# Integer counters and event times of the state, shared by the comparison and the snapshot.
_COUNTERS: Final = (
    "first_ts",
    "last_ts",
    "last_purchase_ts",
    "ref_ts",
    "events",
    "purchases",
    "refunds",
    "promo_purchases",
    "carts",
)
_EXACT_FIELDS: Final = (*_COUNTERS, "next_due")


def feature_differences(a: CustomerState, b: CustomerState, rel: float = 1e-9) -> list[str]:
    """How two states' features differ: integers and the dedupe window exactly, floats to ``rel``
    relative (the segment bookkeeping is not compared). Empty when they agree.

    >>> feature_differences(CustomerState.new(), CustomerState.new())
    []
    """

    def close(x: float, y: float) -> bool:
        return x == y or abs(x - y) <= rel * max(abs(x), abs(y))

    bad = [
        f"{n}: {getattr(a, n)} != {getattr(b, n)}" for n in _EXACT_FIELDS if getattr(a, n) != getattr(b, n)
    ]
    bad += [
        f"{n}: {getattr(a, n)!r} != {getattr(b, n)!r}"
        for n in ("spend", "refunded")
        if not close(getattr(a, n), getattr(b, n))
    ]
    bad += [
        f"{n}: {getattr(a, n)} != {getattr(b, n)}"
        for n in ("first_purchase_ts", "purchase_days", "active_days", "purchase_day_list", "active_day_list")
        if getattr(a, n) != getattr(b, n)
    ]
    bad += [
        f"{DECAYED[i]}: {x!r} != {y!r}"
        for i, (x, y) in enumerate(zip(a.decayed, b.decayed, strict=True))
        if not close(x, y)
    ]
    if sorted(a.recent) != sorted(b.recent):
        bad.append(f"recent: {a.recent} != {b.recent}")
    return bad
