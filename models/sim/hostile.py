"""Hostile records for the input boundary: seeded, pure, each with the dead-letter classes it may
get. Mixed into a valid log (:func:`mix`), none of them may change a valid customer's state.

Every kind in :data:`HOSTILE_KINDS` breaks the contract one way (random bytes, truncated or
deeply nested JSON, megabyte strings, NaN/Infinity/1e308 amounts, wrong types, a field given
twice, control characters and homoglyphs in ids, times in 1970, 9999 or 2099, keys that disagree
with the body...), and carries headers of some kind (none, empty, binary, null, repeated, large,
many): headers are not part of the contract and must decide nothing. Most use the ids of real
customers, so a hostile record that got through would change a state the tests compare.

>>> recs = hostile_records(50, seed=1, customers=["c000001", "c000002"])
>>> len(recs), recs == hostile_records(50, seed=1, customers=["c000001", "c000002"])
(50, True)
>>> all(r.expect for r in recs)
True
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from models.sim.generator import GeneratedRecord

Headers = tuple[tuple[str, bytes], ...]  # what kafka-python sends (no null values)
_Made = tuple[bytes | None, bytes | None, frozenset[str]]  # key, value, expected classes

# The service's defaults these expectations follow (kafka.max_record_bytes; an event dated more
# than features.max_future_hours after the wall clock is a FutureEvent).
MAX_RECORD_BYTES = 64 * 1024
MEGABYTE_STRING = 1_000_000  # under the broker's default 1 MiB message limit with the envelope

INVALID = frozenset({"InvalidEvent"})
NOT_JSON = frozenset({"InvalidJSON"})
JSON_OR_EVENT = frozenset({"InvalidJSON", "InvalidEvent"})


@dataclass(frozen=True)
class HostileRecord:
    """One record to produce, and what its dead letter may say."""

    key: bytes | None
    value: bytes | None
    headers: Headers
    kind: str
    expect: frozenset[str]  # the error classes its dead letter may carry


@dataclass(frozen=True)
class MixedRecord:
    """A record of a mixed log: a valid one (``hostile`` None) or a hostile one."""

    key: bytes | None
    value: bytes | None
    headers: Headers
    hostile: HostileRecord | None


class _Maker:
    """The draws every kind shares: a customer, a valid event of theirs, headers."""

    def __init__(self, rng: random.Random, customers: Sequence[str], start: datetime) -> None:
        self.rng = rng
        self.customers = list(customers) or ["c000001"]
        self.start = start
        self.n = 0

    def customer(self) -> str:
        return self.rng.choice(self.customers)

    def ts(self) -> str:
        t = self.start + timedelta(seconds=self.rng.randrange(0, 90 * 86400))
        return t.strftime("%Y-%m-%dT%H:%M:%SZ")

    def event(self, cid: str | None = None, **changes: object) -> dict[str, object]:
        self.n += 1
        e: dict[str, object] = {
            "event_id": f"hostile-{self.n}",
            "customer_id": cid if cid is not None else self.customer(),
            "ts": self.ts(),
            "channel": self.rng.choice(["web", "app", "store", "email"]),
            "type": "page_view",
        }
        if self.rng.random() < 0.5:
            e.update(type="purchase", amount=round(self.rng.uniform(1, 300), 2), currency="EUR")
        e.update(changes)
        return e


def _dumps(e: object) -> bytes:
    # Raw UTF-8 for non-ASCII (as many producers write it); control characters stay escaped.
    return json.dumps(e, separators=(",", ":"), ensure_ascii=False, allow_nan=True).encode()


def _headers(rng: random.Random, big: bool = True) -> Headers:
    """Headers of some kind; none of them means anything to segstream."""
    choice = rng.randrange(9)
    if choice == 0:
        return ()
    if choice == 1:
        return (("", b""),)
    if choice == 2:
        return (("customer_id", b"c999999"), ("key", b"someone-else"), ("content-type", b"text/plain"))
    if choice == 3:
        return (("bin", bytes(rng.randrange(256) for _ in range(64))), ("empty", b""))
    if choice == 4:
        return tuple(("dup", str(i).encode()) for i in range(5))
    if choice == 5:
        return (("\x00\n\u202e\u0441", "\u0441\u200b".encode()), ("emoji-\U0001f600", b"\xff\xfe"))
    if choice == 6 and big:
        return (("large", b"h" * 16_384),)
    if choice == 7:
        return tuple((f"h{i}", b"x") for i in range(100))
    return (("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),)


# ----------------------------------------------------------------------------- the kinds
# Each returns (key, value, expected classes). ``m`` draws customers, events and numbers.


def _random_bytes(m: _Maker) -> _Made:
    body = bytes(m.rng.randrange(256) for _ in range(m.rng.randrange(0, 600)))
    return m.customer().encode(), body, JSON_OR_EVENT


def _empty(m: _Maker) -> _Made:
    value = m.rng.choice([None, b"", b" ", b"\n", b"\x00"])
    return m.customer().encode(), value, frozenset({"EmptyRecord"}) if value is None else NOT_JSON


def _truncated(m: _Maker) -> _Made:
    e = m.event()
    raw = _dumps(e)
    return str(e["customer_id"]).encode(), raw[: m.rng.randrange(1, len(raw) - 1)], NOT_JSON


def _deep(m: _Maker) -> _Made:
    e = m.event()
    depth = m.rng.choice([300, 1_000, 10_000, 30_000, 100_000])  # at most 600 KB: under 1 MiB
    opener, closer = m.rng.choice([(b"[", b"]"), (b'{"a":', b"}")])
    nested = opener * depth + b"1" + closer * depth
    where = m.rng.randrange(3)
    if where == 0:  # the whole record
        value = nested
    elif where == 1:  # a property
        value = _dumps(e)[:-1] + b',"properties":{"p":' + nested + b"}}"
    else:  # an unknown field before the rest
        value = b'{"x":' + nested + b"," + _dumps(e)[1:]
    expect = frozenset({"RecordTooLarge"}) if len(value) > MAX_RECORD_BYTES else NOT_JSON
    return str(e["customer_id"]).encode(), value, expect


def _megabyte(m: _Maker) -> _Made:
    field = m.rng.choice(["customer_id", "category", "event_id", "properties", "unknown"])
    char = m.rng.choice("xé\u0441")
    blob = char * (MEGABYTE_STRING // len(char.encode()))
    cid = m.customer()
    e = m.event(cid)
    if field == "properties":
        e["properties"] = {"blob": blob}
    elif field == "unknown":
        e["comment"] = blob
    else:
        e[field] = blob
    return cid.encode(), _dumps(e), frozenset({"RecordTooLarge"})


def _long_strings(m: _Maker) -> _Made:
    """Strings past their bound in a record under the size limit."""
    cid = m.customer()
    field, blob = m.rng.choice(
        [
            ("category", "k" * 65),
            ("category", "k" * 50_000),
            ("event_id", "e" * 65),
            ("campaign_id", "c" * 300),
            ("properties", {"p": "v" * 257}),
            ("properties", {"k" * 257: 1}),
            ("properties", {f"k{i}": i for i in range(33)}),
        ]
    )
    return cid.encode(), _dumps(m.event(cid, **{field: blob})), INVALID


def _bad_numbers(m: _Maker) -> _Made:
    cid = m.customer()
    e = m.event(cid, type="purchase", amount=1.0, currency="EUR")
    token = m.rng.choice(
        [
            *(b"NaN", b"Infinity", b"-Infinity", b"1e308", b"1e309", b"-1e308", b"-0.01", b"1000000.01"),
            *(b'"12.5"', b"true", b"null", b"[1]", b'{"v":1}', b"1" + b"0" * 400),
        ]
    )
    field = m.rng.choice(["amount", "discount", "property"])
    raw = _dumps(e)
    if field == "amount":
        value = raw.replace(b'"amount":1.0', b'"amount":' + token)
    elif field == "discount":
        if token == b"null":
            token = b"-1"  # a null discount is no discount: valid
        value = raw[:-1] + b',"discount":' + token + b"}"
    else:
        if token not in (b"NaN", b"Infinity", b"-Infinity", b"1e309", b"[1]", b'{"v":1}'):
            token = b"NaN"  # the other tokens are valid property values
        value = raw[:-1] + b',"properties":{"p":' + token + b"}}"
    # A 400-digit integer is out of range for the parser: not JSON it can read.
    return cid.encode(), value, JSON_OR_EVENT if b"0" * 400 in token else INVALID


def _wrong_types(m: _Maker) -> _Made:
    cid = m.customer()
    e = m.event(cid)
    field, wrong = m.rng.choice(
        [
            ("customer_id", 123),
            ("customer_id", None),
            ("customer_id", [cid]),
            ("customer_id", {"id": cid}),
            ("event_id", True),
            ("ts", 1767225600),
            ("ts", "1767225600"),
            ("ts", None),
            ("channel", 1),
            ("channel", "carrier_pigeon"),
            ("type", ["page_view"]),
            ("type", "PAGE_VIEW"),
            ("properties", ["a", "b"]),
            ("properties", "a=b"),
            ("properties", {"nested": {"a": 1}}),
            ("currency", "eur"),
            ("category", 7),
        ]
    )
    e[field] = wrong
    if m.rng.random() < 0.15:  # or not an object at all
        return cid.encode(), m.rng.choice([b"[]", b"null", b"42", b'"event"', b"true", b"[{}]"]), INVALID
    return cid.encode(), _dumps(e), INVALID


def _repeated_field(m: _Maker) -> _Made:
    cid, other = m.customer(), m.customer()
    raw = _dumps(m.event(cid))
    field = m.rng.choice(["customer_id", "ts", "event_id", "type", "amount"])
    extra = {
        "customer_id": f'"customer_id":"{other}",',
        "ts": '"ts":"2026-01-01T00:00:00Z",',
        "event_id": '"event_id":"hostile-dup",',
        "type": '"type":"refund",',
        "amount": '"amount":999999.0,',
    }[field]
    # Before the real field (first-wins parsers read the extra one) or after (last-wins do).
    if m.rng.random() < 0.5:
        value = b"{" + extra.encode() + raw[1:]
    else:
        value = raw[:-1] + b"," + extra.encode()[:-1] + b"}"
    return cid.encode(), value, INVALID


_HOMOGLYPHS = {"c": "\u0441", "0": "\u041e", "1": "\u0406", "e": "\u0435"}  # Cyrillic look-alikes


def _odd_ids(m: _Maker) -> _Made:
    cid = m.customer()
    how = m.rng.randrange(6)
    if how == 0:
        bad = cid[:1] + m.rng.choice(["\x00", "\n", "\r", "\t", "\x1b[31m", "\x7f"]) + cid[1:]
    elif how == 1:
        bad = "".join(_HOMOGLYPHS.get(ch, ch) if m.rng.random() < 0.5 else ch for ch in cid)
        if bad == cid:
            bad = "\u0441" + cid[1:]
    elif how == 2:
        bad = cid + m.rng.choice(["\u200b", "\u202e", "\ufeff", "\u00a0", " "])
    elif how == 3:
        bad = "".join(chr(ord(ch) + 0xFEE0) if ch.isdigit() else ch for ch in cid)  # fullwidth digits
    elif how == 4:
        bad = m.rng.choice(["", "x" * 65, "../../etc/passwd", "c000001;DROP", "{0}", "%s%n"])
    else:
        bad = cid.upper() if cid != cid.upper() else cid + "\u0301"  # a combining accent
    field = m.rng.choice(["customer_id", "event_id", "campaign_id"])
    e = m.event(cid, **{field: bad})
    key = bad.encode("utf-8", "surrogatepass") if field == "customer_id" else cid.encode()
    # Upper case is a valid id: a different customer whose key matches; skip to another kind.
    if bad.isascii() and all(ch.isalnum() or ch in "_.:@-" for ch in bad) and 0 < len(bad) <= 64:
        return _repeated_field(m)
    return key, _dumps(e), INVALID


def _times(m: _Maker) -> _Made:
    cid = m.customer()
    ts = m.rng.choice(
        [
            "1970-01-01T00:00:00Z",
            "1999-12-31T23:59:59Z",
            "9999-12-31T23:59:59Z",
            "0000-01-01T00:00:00Z",
            "2100-01-01T00:00:01Z",
            "2026-02-30T10:00:00Z",
            "2026-01-01T24:00:00Z",
            "2026-01-01T10:00:60Z",
            "2026-01-01 10:00:00Z",
            "2026-01-01T10:00:00",
            "2026-01-01T10:00:00+2400",
            "",
        ]
    )
    return cid.encode(), _dumps(m.event(cid, ts=ts)), INVALID


def _future(m: _Maker) -> _Made:
    """Valid in every field, dated 2099: ahead of any wall clock this test runs under."""
    cid = m.customer()
    ts = m.rng.choice(["2099-06-01T00:00:00Z", "2100-01-01T00:00:00Z", "2099-12-31T23:59:59+01:00"])
    return cid.encode(), _dumps(m.event(cid, ts=ts)), frozenset({"FutureEvent"})


def _keys(m: _Maker) -> _Made:
    cid = m.customer()
    value = _dumps(m.event(cid))
    how = m.rng.randrange(6)
    if how == 0:
        return None, value, frozenset({"MissingKey"})
    other = m.customer()
    key = m.rng.choice(
        [
            (other if other != cid else cid + "x").encode(),
            b"",
            cid.encode() + b"\x00",
            b"\xff\xfe" + cid.encode(),
            cid.upper().encode() if cid != cid.upper() else b"X" + cid.encode(),
            b"k" * 10_000,
        ]
    )
    return key, value, frozenset({"KeyMismatch"})


HOSTILE_KINDS: dict[str, tuple[float, Callable[[_Maker], _Made]]] = {
    # kind: (weight, maker). Megabyte records are few: each costs a megabyte on the broker.
    "random_bytes": (10, _random_bytes),
    "empty": (2, _empty),
    "truncated_json": (8, _truncated),
    "deep_nesting": (4, _deep),
    "megabyte_string": (0.3, _megabyte),
    "long_strings": (6, _long_strings),
    "bad_numbers": (10, _bad_numbers),
    "wrong_types": (10, _wrong_types),
    "repeated_field": (8, _repeated_field),
    "odd_ids": (10, _odd_ids),
    "times": (8, _times),
    "future": (4, _future),
    "keys": (8, _keys),
}


def hostile_records(
    n: int,
    seed: int,
    customers: Sequence[str],
    start: datetime = datetime(2026, 1, 1, tzinfo=UTC),
    kinds: Sequence[str] | None = None,
) -> list[HostileRecord]:
    """``n`` hostile records, drawn by ``seed``; ``customers``: the ids they mostly use (the
    valid log's, so that one accepted by mistake shows in a state)."""
    rng = random.Random(seed)
    m = _Maker(rng, customers, start)
    names = list(kinds) if kinds is not None else list(HOSTILE_KINDS)
    weights = [HOSTILE_KINDS[k][0] for k in names]
    out: list[HostileRecord] = []
    for kind in rng.choices(names, weights, k=n):
        key, value, expect = HOSTILE_KINDS[kind][1](m)
        big = value is not None and len(value) > MAX_RECORD_BYTES
        out.append(HostileRecord(key, value, _headers(rng, big=not big), kind, expect))
    return out


def mix(
    valid: Sequence[GeneratedRecord], hostile: Sequence[HostileRecord], seed: int, header_share: float = 0.1
) -> list[MixedRecord]:
    """The valid records in their order, with the hostile ones at seeded places between them;
    ``header_share`` of the valid records carry headers too (which must change nothing)."""
    rng = random.Random(seed)
    places = sorted(rng.randrange(len(valid) + 1) for _ in hostile)
    out: list[MixedRecord] = []
    h = 0
    for i, r in enumerate(valid):
        while h < len(hostile) and places[h] == i:
            out.append(_mixed(hostile[h]))
            h += 1
        headers = _headers(rng) if rng.random() < header_share else ()
        out.append(MixedRecord(r.key, r.value, headers, None))
    out.extend(_mixed(x) for x in hostile[h:])
    return out


def _mixed(x: HostileRecord) -> MixedRecord:
    return MixedRecord(x.key, x.value, x.headers, x)
