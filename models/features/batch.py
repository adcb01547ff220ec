"""The states of a batch's customers as numpy columns: the batch path of the feature math.

:class:`~models.features.CustomerState` applies one event at a time in Python; unpacking,
applying, snapshotting and packing cost ~15 us per event, more than Redis's side of a batch.
:class:`StateBatch` decodes the batch's packed states into columns with one ``frombuffer`` and
applies the events in rounds: round r holds every customer's r-th event of the batch, so no
customer appears twice in a round and each round is a few dozen array operations. Every number
goes through the same floating-point operations in the same order as
:func:`~models.features.apply_values` (decay factors come from ``math.exp2``, as there), so the
packed result is byte-identical to the one-event-at-a-time path; a property test checks it.

What depends on stream order across customers (dead letters, the watermark, duplicate checks,
the inactivity schedule, which rows are assigned) stays in the caller's per-event loop, on the
plain-Python columns this class exposes (``last_ts``, ``next_due``, ``segment``... and the
dedupe window from :meth:`StateBatch.recent`); those are written back by :meth:`StateBatch.pack`.

>>> from models.features import CustomerState, FeatureParams, apply_values
>>> b = StateBatch([None, None])
>>> ev = BatchEvents()
>>> ev.add(0, 1_767_225_600, "purchase", "web", 40.0, False, 7, False)
0
>>> ev.add(0, 1_767_229_200, "browse", "app", 0.0, False, 8, False)
1
>>> ev.add(1, 1_767_225_600, "browse", "store", 0.0, False, 9, False)
0
>>> snaps = b.apply(FeatureParams(), ev, [(0, 2), (1, 1)])
>>> s = CustomerState.new()
>>> _ = apply_values(s, FeatureParams(), 1_767_225_600, "purchase", "web", 40.0, False, 7, False)
>>> _ = apply_values(s, FeatureParams(), 1_767_229_200, "browse", "app", 0.0, False, 8, False)
>>> b.pack([0])[0] == s.pack()
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

import numpy as np

from models.features.state import (
    _BASE_SIZE,
    _D,
    _FORMAT,
    _GROUP,
    _KIND_SLOT,
    _LAYOUTS,
    _OTHER_SLOT,
    _SLOT_OF_CHANNEL,
    CHANNEL_GROUPS,
    DAY_SLOTS,
    DECAYED,
    DEDUPE_WINDOW,
    CustomerState,
    FeatureParams,
    apply_values,
    note_day,
)
from models.features.vector import BASE_SNAPSHOT_WIDTH, snapshot

RECORD: Final = _LAYOUTS[DEDUPE_WINDOW].size  # a packed state with a full dedupe window
_N_INTS: Final = 9  # first_ts last_ts last_purchase_ts ref_ts events purchases refunds promo carts
_FIRST, _LAST, _LAST_PURCHASE, _REF, _EVENTS, _PURCHASES, _REFUNDS, _PROMO, _CARTS = range(_N_INTS)
# The packed layout of models.features (format byte 2) as a numpy record, window padded to full
# (fields in storage order, no padding: the offsets follow the struct format).
_DTYPE: Final = np.dtype(
    [
        ("fmt", "u1"),
        ("ints", "<u4", (_N_INTS,)),
        ("segment", "<i2"),
        ("segment_since", "<u4"),
        ("seq", "<u4"),
        ("spend", "<f8"),
        ("refunded", "<f8"),
        ("next_due", "<u4"),
        ("last_learned", "<u4"),
        ("dec", "<f8", (len(DECAYED),)),
        ("first_purchase_ts", "<u4"),
        ("purchase_days", "<u2"),
        ("active_days", "<u2"),
        ("stage", "i1"),
        ("stage_since", "<u4"),
        ("pdays", "<u2", (DAY_SLOTS,)),
        ("adays", "<u2", (DAY_SLOTS,)),
        ("pairs", "<u4", (2 * DEDUPE_WINDOW,)),
    ]
)
assert _DTYPE.itemsize == RECORD and RECORD - _DTYPE["pairs"].itemsize == _BASE_SIZE
_EMPTY_RECORD: Final = CustomerState.new().pack().ljust(RECORD, b"\0")  # a new customer
_NO_PAIR_INT: Final = 2**64 - 1  # an empty dedupe slot: sorts after every (ts, hash) key
_NO_PAIR: Final = np.uint64(_NO_PAIR_INT)
_LOW32: Final = np.uint64(0xFFFFFFFF)
MIN_ROUND: Final = 24  # smaller rounds run through apply_values, one event at a time

# Event kinds as small codes, and what each code does to the decayed sums.
KIND_CODES: Final = {"browse": 0, "cart": 1, "engage": 2, "support": 3, "purchase": 4, "refund": 5}
_PURCHASE, _REFUND = KIND_CODES["purchase"], KIND_CODES["refund"]
_KIND_NAMES: Final = sorted(KIND_CODES, key=KIND_CODES.__getitem__)
_KIND_SLOT_OF_CODE: Final = np.array([_KIND_SLOT.get(k, -1) for k in _KIND_NAMES])
# A channel name for each channel slot: apply_values maps it back to the same slot.
_CHANNEL_OF_SLOT: Final = {_SLOT_OF_CHANNEL.get(c, _OTHER_SLOT): c for c in CHANNEL_GROUPS}
_SPEND, _PURCHASES_D = _D["spend_d"], _D["purchases_d"]
_ACT_SHORT, _ACT_LONG = _D["act_short"], _D["act_long"]
_GROUP_OF_SUM: Final = np.array(_GROUP)  # decay group (column of _factors) of each decayed sum


class BatchEvents:
    """A batch's admitted events in stream order; ``add`` returns the event's round (how many of
    the customer's events came before it in the batch)."""

    __slots__ = ("_count", "rows")

    def __init__(self) -> None:
        # Per event: customer, ts, kind code, channel slot, amount, promo, hash, add-to-cart, round.
        self.rows: list[tuple[int, int, int, int, float, bool, int, bool, int]] = []
        self._count: dict[int, int] = {}

    def add(
        self, i: int, ts: int, kind: str, channel: str, amount: float, promo: bool, h: int, cart: bool
    ) -> int:
        r = self._count.get(i, 0)
        self._count[i] = r + 1
        self.rows.append(
            (i, ts, KIND_CODES[kind], _SLOT_OF_CHANNEL.get(channel, _OTHER_SLOT), amount, promo, h, cart, r)
        )
        return r

    def applied(self, i: int) -> int:
        """How many of customer ``i``'s events were added so far."""
        return self._count.get(i, 0)

    def __len__(self) -> int:
        return len(self.rows)


class StateBatch:
    """The states of ``len(blobs)`` customers (packed bytes, ``None`` or ``b""`` for new ones)."""

    def __init__(self, blobs: Sequence[bytes | None]) -> None:
        # A state written before the rhythm was kept (format 1) is upgraded on the way in.
        blobs = [CustomerState.unpack(b).pack() if b and b[0] == 1 else b for b in blobs]
        sizes = np.fromiter((len(b) if b else RECORD for b in blobs), dtype=np.intp, count=len(blobs))
        if ((sizes < _BASE_SIZE) | (sizes > RECORD) | ((sizes - _BASE_SIZE) % 8 != 0)).any():
            raise ValueError("unknown customer state format")
        parts = [b.ljust(RECORD, b"\0") if b else _EMPTY_RECORD for b in blobs]
        rec = np.frombuffer(b"".join(parts), dtype=_DTYPE).copy()
        if (rec["fmt"] != _FORMAT).any():
            raise ValueError("unknown customer state format")
        self._rec = rec
        self.ints = rec["ints"].astype(np.int64)
        self.spend = rec["spend"].astype(np.float64)
        self.refunded = rec["refunded"].astype(np.float64)
        self.dec = rec["dec"].astype(np.float64)
        pairs = rec["pairs"].astype(np.uint64)
        ts, h = pairs[:, 0::2], pairs[:, 1::2]
        self.keys = np.where(ts == 0, _NO_PAIR, (ts << np.uint64(32)) | h)  # sorted, empties last
        # Plain-Python columns for the caller's per-event loop, written back by pack().
        self.last_ts: list[int] = rec["ints"][:, _LAST].tolist()
        self.last_purchase_ts: list[int] = rec["ints"][:, _LAST_PURCHASE].tolist()
        self.next_due: list[int] = rec["next_due"].tolist()
        self.segment: list[int] = rec["segment"].tolist()
        self.segment_since: list[int] = rec["segment_since"].tolist()
        self.seq: list[int] = rec["seq"].tolist()
        self.last_learned: list[int] = rec["last_learned"].tolist()
        self.first_purchase_ts: list[int] = rec["first_purchase_ts"].tolist()
        self.purchase_days: list[int] = rec["purchase_days"].tolist()
        self.active_days: list[int] = rec["active_days"].tolist()
        self.stage: list[int] = rec["stage"].tolist()
        self.stage_since: list[int] = rec["stage_since"].tolist()
        self._recent: dict[int, list[tuple[int, int]]] = {}
        self._days: dict[int, tuple[list[int], list[int]]] = {}

    @property
    def first_seen(self) -> np.ndarray:
        """Each customer's first event time (a view: it follows the events applied)."""
        return self.ints[:, _FIRST]

    def days(self, i: int) -> tuple[list[int], list[int]]:
        """Customer ``i``'s newest purchase days and active days (live lists, as note() keeps them)."""
        lists = self._days.get(i)
        if lists is None:
            rec = self._rec[i]
            lists = self._days[i] = (
                [d for d in rec["pdays"].tolist() if d],
                [d for d in rec["adays"].tolist() if d],
            )
        return lists

    def note(self, i: int, ts: int, purchase: bool) -> bool:
        """The rhythm's part of an admitted event (models.features.note_event_day on the columns):
        the caller notes each event in stream order, so each row sees the days before it. False
        when the rhythm columns (:meth:`rhythm`: day lists, day counts, first purchase) did not
        change: most events repeat a day already noted, and a caller may keep what it derived."""
        pdays, adays = self.days(i)
        day = ts // 86400
        changed = False
        if note_day(adays, day):
            self.active_days[i] = min(self.active_days[i] + 1, 0xFFFF)
            changed = True
        if purchase:
            if note_day(pdays, day):
                self.purchase_days[i] = min(self.purchase_days[i] + 1, 0xFFFF)
                changed = True
            if self.first_purchase_ts[i] == 0 or ts < self.first_purchase_ts[i]:
                self.first_purchase_ts[i] = ts
                changed = True
            self.last_purchase_ts[i] = max(self.last_purchase_ts[i], ts)
        return changed

    def rhythm(self, i: int) -> list[int]:
        """Customer ``i``'s rhythm columns of a snapshot, as they are now (see RHYTHM_WIDTH)."""
        pdays, adays = self.days(i)
        zeros = [0] * DAY_SLOTS
        return [
            self.first_purchase_ts[i],
            self.purchase_days[i],
            self.active_days[i],
            *(zeros[len(pdays) :] + pdays),
            *(zeros[len(adays) :] + adays),
        ]

    def recent(self, i: int) -> list[tuple[int, int]]:
        """Customer ``i``'s dedupe window as :func:`models.features.admit` keeps it (a live copy
        for the caller's duplicate checks; the packed window comes from :meth:`apply`)."""
        window = self._recent.get(i)
        if window is None:
            window = self._recent[i] = self._window(i)
        return window

    def _window(self, i: int) -> list[tuple[int, int]]:
        """Customer ``i``'s (ts, hash) pairs as the columns hold them now, in admit()'s form."""
        return [(k >> 32, k & 0xFFFFFFFF) for k in self.keys[i].tolist() if k != _NO_PAIR_INT]

    def apply(
        self,
        params: FeatureParams,
        events: BatchEvents,
        rows: Sequence[tuple[int, int]],
        min_round: int = MIN_ROUND,
    ) -> np.ndarray:
        """Apply ``events`` and return the snapshot's counters and sums (the first
        ``BASE_SNAPSHOT_WIDTH`` columns of :func:`models.features.snapshot`; the rhythm columns
        are the caller's, noted per event with :meth:`note`) of each ``(customer, n)`` in ``rows``:
        customer's state after its first n events of the batch.
        Rounds of fewer than ``min_round`` events run one event at a time (same result)."""
        out = np.empty((len(rows), BASE_SNAPSHOT_WIDTH))
        if not rows and not len(events):
            return out
        row_cust = np.fromiter((r[0] for r in rows), dtype=np.intp, count=len(rows))
        row_n = np.fromiter((r[1] for r in rows), dtype=np.intp, count=len(rows))
        self._capture(out, row_cust, row_n, 0)
        if not len(events):
            return out
        columns = list(zip(*events.rows, strict=True))
        cust = np.array(columns[0], dtype=np.intp)
        ts = np.array(columns[1], dtype=np.int64)
        kind = np.array(columns[2], dtype=np.intp)
        channel = np.array(columns[3], dtype=np.intp)
        amount = np.array(columns[4], dtype=np.float64)
        promo = np.array(columns[5], dtype=bool)
        h = np.array(columns[6], dtype=np.uint64)
        cart = np.array(columns[7], dtype=bool)
        rnd = np.array(columns[8], dtype=np.intp)
        order = np.argsort(rnd, kind="stable")
        bounds = np.searchsorted(rnd[order], np.arange(int(rnd.max()) + 2))
        halves = params.group_half_lives
        for r in range(len(bounds) - 1):
            e = order[bounds[r] : bounds[r + 1]]
            if len(e) < min_round:
                # Few customers left with more events (a busy customer can have hundreds in a
                # batch): numpy's per-call cost would dominate, so the rest go event by event.
                tail = order[bounds[r] :]
                arrays = (cust, ts, kind, channel, amount, promo, h, cart)
                self._apply_tail(params, r, [a[tail].tolist() for a in arrays], out, row_cust, row_n)
                break
            self._apply_round(halves, cust[e], ts[e], kind[e], channel[e], amount[e], promo[e], h[e], cart[e])
            self._capture(out, row_cust, row_n, r + 1)
        return out

    def _apply_tail(
        self,
        params: FeatureParams,
        r: int,
        columns: list[list],
        out: np.ndarray,
        row_cust: np.ndarray,
        row_n: np.ndarray,
    ) -> None:
        """Rounds r and later with apply_values on CustomerState objects (the reference path)."""
        sel = np.flatnonzero(row_n > r)
        wanted: dict[tuple[int, int], list[int]] = {}
        for k, i, n in zip(sel.tolist(), row_cust[sel].tolist(), row_n[sel].tolist(), strict=True):
            wanted.setdefault((i, n), []).append(k)
        states: dict[int, CustomerState] = {}
        applied: dict[int, int] = {}
        for i, ts, kind, channel, amount, promo, h, cart in zip(*columns, strict=True):
            state = states.get(i)
            if state is None:
                state = states[i] = self._state(i)
            name, channel_name = _KIND_NAMES[kind], _CHANNEL_OF_SLOT[channel]
            if not apply_values(state, params, ts, name, channel_name, amount, promo, h, cart):
                raise AssertionError("an event admitted by the caller was a duplicate here")
            n = applied[i] = applied.get(i, r) + 1
            for k in wanted.get((i, n), ()):
                out[k] = snapshot(state)[:BASE_SNAPSHOT_WIDTH]
        for i, state in states.items():
            self._store_state(i, state)

    def _state(self, i: int) -> CustomerState:
        v = self.ints[i].tolist()
        pdays, adays = self.days(i)
        return CustomerState(
            first_ts=v[_FIRST],
            last_ts=v[_LAST],
            last_purchase_ts=v[_LAST_PURCHASE],
            ref_ts=v[_REF],
            events=v[_EVENTS],
            purchases=v[_PURCHASES],
            refunds=v[_REFUNDS],
            promo_purchases=v[_PROMO],
            carts=v[_CARTS],
            spend=float(self.spend[i]),
            refunded=float(self.refunded[i]),
            decayed=self.dec[i].tolist(),
            recent=self._window(i),
            first_purchase_ts=self.first_purchase_ts[i],
            purchase_days=self.purchase_days[i],
            active_days=self.active_days[i],
            purchase_day_list=list(pdays),
            active_day_list=list(adays),
        )

    def _store_state(self, i: int, s: CustomerState) -> None:
        self.ints[i] = (
            s.first_ts,
            s.last_ts,
            s.last_purchase_ts,
            s.ref_ts,
            s.events,
            s.purchases,
            s.refunds,
            s.promo_purchases,
            s.carts,
        )
        self.spend[i] = s.spend
        self.refunded[i] = s.refunded
        self.dec[i] = s.decayed
        keys = [(t << 32) | h for t, h in s.recent]
        self.keys[i] = keys + [_NO_PAIR_INT] * (DEDUPE_WINDOW - len(keys))
        # The rhythm as the caller noted it (apply_values notes it again: the same days).
        self.first_purchase_ts[i] = s.first_purchase_ts
        self.purchase_days[i] = s.purchase_days
        self.active_days[i] = s.active_days
        self.last_purchase_ts[i] = s.last_purchase_ts
        self._days[i] = (s.purchase_day_list, s.active_day_list)

    def _capture(self, out: np.ndarray, row_cust: np.ndarray, row_n: np.ndarray, n: int) -> None:
        sel = np.flatnonzero(row_n == n)
        if not len(sel):
            return
        i = row_cust[sel]
        out[sel, :_N_INTS] = self.ints[i]
        out[sel, _N_INTS] = self.spend[i]
        out[sel, _N_INTS + 1] = self.refunded[i]
        out[sel, _N_INTS + 2 :] = self.dec[i]

    def _apply_round(
        self,
        halves: tuple[float, float, float, float],
        i: np.ndarray,
        t: np.ndarray,
        kind: np.ndarray,
        channel: np.ndarray,
        amount: np.ndarray,
        promo: np.ndarray,
        h: np.ndarray,
        cart: np.ndarray,
    ) -> None:
        """One event for each of distinct customers ``i``: apply_values' arithmetic, by columns."""
        ints, dec = self.ints, self.dec
        seen = ints[i, _EVENTS]
        ref = ints[i, _REF]
        new = seen == 0
        newer = ~new & (t > ref)
        late = ~new & (t < ref)
        if new.any():
            ni, nt = i[new], t[new]
            ints[ni, _FIRST] = nt
            ints[ni, _LAST] = nt
            ints[ni, _REF] = nt
        if newer.any():
            wi, wt = i[newer], t[newer]
            g = _factors(-(wt - ref[newer]), halves)
            dec[wi] = dec[wi] * g[:, _GROUP_OF_SUM]  # each sum times its decay group's factor
            ints[wi, _REF] = wt
            ints[wi, _LAST] = wt
        # The event's weight per decay group: 1 in order, already decayed to ref_ts when late.
        w = np.ones((len(i), 4))
        if late.any():
            li = np.flatnonzero(late)
            w[li] = _factors(-(ref[li] - t[li]), halves)
            ints[i[li], _FIRST] = np.minimum(ints[i[li], _FIRST], t[li])
        ints[i, _EVENTS] += 1
        dec[i, channel] += w[:, 1]
        dec[i, _ACT_SHORT] += w[:, 2]
        dec[i, _ACT_LONG] += w[:, 3]
        ks = _KIND_SLOT_OF_CODE[kind]
        has_kind = ks >= 0
        dec[i[has_kind], ks[has_kind]] += w[has_kind, 1]
        bought = np.flatnonzero(kind == _PURCHASE)
        if len(bought):
            bi, ba = i[bought], amount[bought]
            dec[bi, _SPEND] += ba * w[bought, 0]
            dec[bi, _PURCHASES_D] += w[bought, 0]
            ints[bi, _PURCHASES] += 1
            self.spend[bi] += ba
            ints[bi[promo[bought]], _PROMO] += 1
            ints[bi, _LAST_PURCHASE] = np.maximum(ints[bi, _LAST_PURCHASE], t[bought])
        refund = np.flatnonzero(kind == _REFUND)
        if len(refund):
            fi, fa = i[refund], amount[refund]
            dec[fi, _SPEND] -= fa * w[refund, 0]
            ints[fi, _REFUNDS] += 1
            self.refunded[fi] += fa
        ints[i[cart], _CARTS] += 1
        # Dedupe window: insert (ts, hash) in order, keep the newest DEDUPE_WINDOW (admit()).
        keys = self.keys[i]
        merged = np.sort(
            np.concatenate([keys, ((t.astype(np.uint64) << np.uint64(32)) | h)[:, None]], axis=1)
        )
        full = keys[:, -1] != _NO_PAIR
        self.keys[i] = np.where(full[:, None], merged[:, 1:], merged[:, :-1])

    def pack(self, which: Sequence[int]) -> list[bytes]:
        """The packed states (models.features format) of customers ``which``."""
        rec = self._rec
        rec["ints"] = self.ints
        rec["spend"] = self.spend
        rec["refunded"] = self.refunded
        rec["dec"] = self.dec
        rec["segment"] = self.segment
        rec["segment_since"] = self.segment_since
        rec["seq"] = self.seq
        rec["next_due"] = self.next_due
        rec["last_learned"] = self.last_learned
        rec["first_purchase_ts"] = self.first_purchase_ts
        rec["purchase_days"] = self.purchase_days
        rec["active_days"] = self.active_days
        rec["stage"] = self.stage
        rec["stage_since"] = self.stage_since
        for i, (pdays, adays) in self._days.items():
            rec["pdays"][i] = [0] * (DAY_SLOTS - len(pdays)) + pdays
            rec["adays"][i] = [0] * (DAY_SLOTS - len(adays)) + adays
        keys = self.keys
        present = keys != _NO_PAIR
        pairs = np.zeros((len(rec), 2 * DEDUPE_WINDOW), dtype=np.uint64)
        pairs[:, 0::2] = np.where(present, keys >> np.uint64(32), 0)
        pairs[:, 1::2] = np.where(present, keys & _LOW32, 0)
        rec["pairs"] = pairs
        size = (_BASE_SIZE + 8 * present.sum(axis=1)).tolist()
        buf = rec.tobytes()
        return [buf[j * RECORD : j * RECORD + size[j]] for j in which]


def _factors(dt: np.ndarray, halves: tuple[float, float, float, float]) -> np.ndarray:
    """``exp2(dt / half_life)`` per decay group, by ``math.exp2`` as apply_values computes it
    (numpy's exp2 may differ in the last bit on some CPUs, and the two paths must agree)."""
    x = dt.astype(np.float64)
    out = np.empty((len(x), 4))
    for j, half in enumerate(halves):
        out[:, j] = list(map(math.exp2, (x / half).tolist()))
    return out
