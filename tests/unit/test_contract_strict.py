"""The strict input contract, held by property tests: the fast decoder and InteractionEvent decide alike.

Three properties over JSON objects generated around the contract (valid events and their mutations):

1. whatever ``decode_fast`` accepts, InteractionEvent accepts, with the same fields and event second;
2. whatever InteractionEvent rejects gets a non-empty, printable, one-line reason under 1000
   characters from ``describe_validation_error`` (it becomes the dead letter's reason);
3. the lax inputs the contract used to take (a boolean or a string amount, currency on a page
   view, an epoch or digit-string ``ts``) are rejected by both.

Besides, ``ts``, ``amount``/``discount`` and the monetary rule are checked against small oracles
written here from the contract's words, and the published JSON Schema against the model on the
monetary rule. Hypothesis runs derandomized (same examples on every run, no example database),
so CI is deterministic.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from models.contracts import EventType, InteractionEvent, decode_fast, describe_validation_error
from models.sim import generate

ROOT = Path(__file__).resolve().parents[2]
BASE: dict[str, Any] = {
    "event_id": "e-1",
    "customer_id": "c000001",
    "ts": "2026-03-01T10:00:00Z",
    "channel": "web",
    "type": "page_view",
}
PURCHASE = {**BASE, "type": "purchase", "amount": 25.5, "currency": "EUR"}
FIELDS = (
    *("event_id", "customer_id", "channel", "type", "amount", "currency"),
    *("category", "campaign_id", "discount", "properties"),
)
TS_MIN = datetime(2000, 1, 1, tzinfo=UTC)
TS_MAX = datetime(2100, 1, 1, tzinfo=UTC)
MONETARY = {"purchase", "refund"}

PROPERTY = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=300,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def dumps(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def typed(v: Any) -> Any:
    """``v`` with the type of every value (True == 1 == 1.0 in Python, not on the wire)."""
    if isinstance(v, dict):
        return {k: typed(x) for k, x in v.items()}
    return type(v), v


def decide(value: bytes) -> InteractionEvent | str:
    """The contract's decision: the event, or the reason of a rejection (checked to be one line)."""
    try:
        return InteractionEvent.model_validate_json(value)
    except ValidationError as e:
        reason = describe_validation_error(e)
    assert reason, value
    assert len(reason) < 1000, (len(reason), value)
    assert reason.isprintable(), f"a reason must be one printable line: {reason!r}"
    assert len(reason.splitlines()) == 1, reason
    return reason


def check(value: bytes) -> InteractionEvent | str:
    """Properties 1 and 2 on one record; returns the contract's decision."""
    decision = decide(value)
    fast = decode_fast(value)
    if fast is None:
        return decision
    assert isinstance(decision, InteractionEvent), (
        f"decode_fast accepted what InteractionEvent rejects ({decision}): {value!r}"
    )
    event, second = fast
    assert second == int(decision.ts.timestamp()), value
    assert datetime.fromisoformat(event.ts) == decision.ts, value
    assert datetime.fromisoformat(event.ts).utcoffset() == decision.ts.utcoffset(), value
    for name in FIELDS:
        fast_v, model_v = getattr(event, name), getattr(decision, name)
        assert typed(fast_v) == typed(model_v), (name, fast_v, model_v, value)
    return decision


# ----------------------------------------------------------------------------- strategies
ID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:@-"
valid_ids = st.text(st.sampled_from(ID_CHARS), min_size=1, max_size=64)
# Look-alikes and invisibles: Cyrillic/Greek letters, fullwidth digits, the Kelvin sign, a
# ligature, dotted/dotless i, zero-width and bidi controls, line/paragraph separators, NBSP, BOM.
TRICKY_CHARS = "сеоаОΑΚ０１ＡK\ufb01İı\u200b\u200d\u202e\u2028\u2029\u00a0\ufeff\u0301\x00\x1f\x7f\n\r\t é"
weird_ids = st.one_of(
    st.just(""),
    st.text(st.sampled_from(ID_CHARS), min_size=65, max_size=80),
    st.builds(
        lambda a, c, b: a + c + b,
        st.text(st.sampled_from(ID_CHARS), max_size=8),
        st.sampled_from(TRICKY_CHARS) | st.just("\ud800"),
        st.text(st.sampled_from(ID_CHARS), max_size=8),
    ),
    st.text(max_size=20),
    st.just("c" * 20_000),
)

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -0.0, 1e308, -1e308, 10**400, 1_000_000, 1_000_000.0000001, 5e-324]),
    st.text(max_size=20),
    st.sampled_from(["", "12.5", "1767348000", "true", "null", "NaN", "EUR", "web", "purchase"]),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


@st.composite
def timestamps(draw: st.DrawFn) -> tuple[Any, ...]:
    """The parts of a timestamp and how to write them: a valid one with 0, 1 or 2 parts broken."""
    parts: dict[str, Any] = {
        "year": draw(st.sampled_from([1999, 2000, 2026, 2099, 2100]) | st.integers(1999, 2100)),
        "month": draw(st.integers(1, 12)),
        "day": draw(st.integers(1, 28) | st.sampled_from([29, 30, 31])),  # 29-31: some days do not exist
        "hour": draw(st.integers(0, 23)),
        "minute": draw(st.integers(0, 59)),
        "second": draw(st.integers(0, 59)),
        "fraction": draw(st.sampled_from(["", "", "5", "123", "123456", "1234567", "999999999"])),
        "sep": draw(st.sampled_from(["T", "T", "t"])),
        "offset": draw(st.sampled_from(["Z", "z", "+00:00", "-00:00", "+05:30", "-23:59", "+23:59"])),
    }
    broken = {
        "year": st.sampled_from([0, 1, 1970, 2101, 9999]),
        "month": st.sampled_from([0, 13]),
        "day": st.sampled_from([0, 32]),
        "hour": st.just(24),
        "minute": st.just(60),
        "second": st.sampled_from([60, None]),  # None: no seconds field
        "fraction": st.sampled_from([".", "0" * 12]) | st.text(st.sampled_from("0123456789"), max_size=12),
        "sep": st.sampled_from([" ", "_", "", "TT", "\u2003"]),
        "offset": st.sampled_from(["", "UTC", " Z", "ZZ", "+0100", "+01", "+01:00:00", "Z+01:00"])
        | st.builds(
            lambda sign, h, m: f"{sign}{h:02d}:{m:02d}",
            st.sampled_from("+-"),
            st.integers(0, 25),
            st.integers(0, 60),
        ),
    }
    for name in draw(st.lists(st.sampled_from(sorted(broken)), max_size=2, unique=True)):
        parts[name] = draw(broken[name])
    return tuple(parts[name] for name in broken)


def write_ts(parts: tuple[Any, ...]) -> str:
    year, month, day, hour, minute, second, fraction, sep, offset = parts
    text = f"{year:04d}-{month:02d}-{day:02d}{sep}{hour:02d}:{minute:02d}"
    if second is not None:
        text += f":{second:02d}"
        if fraction:
            text += fraction if fraction == "." else "." + fraction
    return text + offset


_OFFSET = re.compile(r"([+-])([0-9]{2}):([0-9]{2})")


def expected_instant(parts: tuple[Any, ...]) -> datetime | None:
    """The time the contract must read, or None when it must reject (its words, written anew)."""
    year, month, day, hour, minute, second, fraction, sep, offset = parts
    if sep not in ("T", "t") or second is None or fraction == ".":
        return None
    if offset in ("Z", "z"):
        delta = timedelta(0)
    elif m := _OFFSET.fullmatch(offset):
        h, mm = int(m[2]), int(m[3])
        if h > 23 or mm > 59:
            return None
        delta = (1 if m[1] == "+" else -1) * timedelta(hours=h, minutes=mm)
    else:
        return None
    micros = int((fraction + "000000")[:6])  # a longer fraction is truncated
    try:
        local = datetime(year, month, day, hour, minute, second, micros)
    except ValueError:  # no such date or time, incl. second 60 and hour 24
        return None
    # The bounds, compared without leaving datetime's range (year 1 - 9999).
    if local.replace(tzinfo=UTC) - TS_MIN < delta or local.replace(tzinfo=UTC) - TS_MAX > delta:
        return None
    return (local - datetime(2000, 1, 1) - delta) + TS_MIN


@st.composite
def valid_events(draw: st.DrawFn) -> dict[str, Any]:
    """Valid events of the shape producers send (the fast path's shape)."""
    ty = draw(st.sampled_from([t.value for t in EventType]))
    t = draw(st.datetimes(min_value=datetime(2000, 1, 2), max_value=datetime(2099, 12, 30)))
    offset = draw(st.sampled_from(["Z", "+00:00", "-00:00", "+05:30", "-08:00", "+14:00", "-23:59"]))
    ts = t.isoformat(timespec=draw(st.sampled_from(["seconds", "milliseconds", "microseconds"])))
    event: dict[str, Any] = {
        "event_id": draw(valid_ids),
        "customer_id": draw(valid_ids),
        "ts": ts + offset,
        "channel": draw(st.sampled_from(["web", "app", "email", "sms", "push", "store", "call_center"])),
        "type": ty,
    }
    money = st.integers(0, 1_000_000) | st.floats(0, 1_000_000)
    if ty in MONETARY:
        event["amount"] = draw(money)
        event["currency"] = draw(
            st.text(st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZ"), min_size=3, max_size=3)
        )
    # No top-level nulls and no '"' in strings: the fast path counts the record's quotes to see
    # that no field is given twice, and leaves records with those to InteractionEvent.
    printable = st.characters(min_codepoint=32, max_codepoint=126, blacklist_characters='"')
    optional = {
        "category": st.text(printable, max_size=64),
        "campaign_id": valid_ids,
        "discount": money,
        "properties": st.dictionaries(
            st.text(printable, max_size=10),
            st.none()
            | st.booleans()
            | st.integers(-(2**63), 2**63 - 1)
            | st.floats(allow_nan=False, allow_infinity=False)
            | st.text(printable, max_size=20),
            max_size=5,
        ),
    }
    for name, strategy in optional.items():
        if draw(st.booleans()):
            event[name] = draw(strategy)
    return event


VALID_VALUES: dict[str, list[Any]] = {
    "event_id": ["e-2", "e" * 64, "a.b:c@d_e-f"],
    "customer_id": ["c000002", "C_1", "x" * 64],
    "ts": ["2026-03-01T10:00:00.5+01:00", "2026-03-01t10:00:00z", "2000-01-01T00:00:00Z"],
    "channel": ["app", "call_center"],
    "type": ["purchase", "refund", "search", "store_visit"],
    "amount": [0, 12, 99.99, 1_000_000, None],
    "currency": ["EUR", "USD", None],
    "category": ["books", "", "Électronique", None],
    "campaign_id": ["cmp-1", None],
    "discount": [0, 2.5, 1_000_000, None],
    "properties": [{}, {"items": 2, "gift": True, "note": None, "w": 1.5, "s": "x"}, {"é": "ü"}, None],
}


@st.composite
def records(draw: st.DrawFn) -> bytes:
    """A valid event, then up to three edits, written as JSON text (raw or escaped non-ASCII,
    NaN/Infinity tokens, duplicate keys, invalid UTF-8 from lone surrogates)."""
    event = draw(valid_events() | st.sampled_from([BASE, PURCHASE]))
    pairs = list(event.items())
    names = st.sampled_from([*FIELDS, "ts"])
    invalid = st.one_of(
        json_values,
        weird_ids,
        st.builds(write_ts, timestamps()),
        st.sampled_from(["purchase", "refund", "page_view", "EUR", "eur", "web", 1767348000, "1767348000"]),
        st.sampled_from(["", "x" * 65, "x" * 256, "x" * 257, "EURO", "c 1"]),  # just past a bound
    )

    def value_for(name: str) -> Any:
        # Mostly a value valid for that field alone: the event may stay valid, or break only on
        # a rule across fields (amount or currency on a page view, a purchase without).
        if draw(st.integers(0, 2)):
            return draw(st.sampled_from(VALID_VALUES[name]))
        return draw(invalid)

    for _ in range(draw(st.integers(1, 3))):
        edit = draw(st.sampled_from(["set", "set", "set", "set", "delete", "extra", "duplicate"]))
        if edit == "set":
            name = draw(names)
            pairs = [(k, v) for k, v in pairs if k != name] + [(name, value_for(name))]
        elif edit == "delete":
            name = draw(names)
            pairs = [(k, v) for k, v in pairs if k != name]
        elif edit == "extra":
            extra = st.sampled_from(["Amount", "customer_id ", "\ufeffts", "a\nb", "x" * 300, "ts\u200b"])
            pairs.append((draw(extra | st.text(max_size=10)), draw(json_scalars)))
        else:  # a second occurrence of a key, before or after the first
            name = draw(names)
            pairs.insert(draw(st.integers(0, len(pairs))), (name, value_for(name)))
    ascii_only = draw(st.booleans())
    text = (
        "{"
        + ",".join(
            json.dumps(k, ensure_ascii=ascii_only) + ":" + json.dumps(v, ensure_ascii=ascii_only)
            for k, v in pairs
        )
        + "}"
    )
    return text.encode("utf-8", "surrogatepass")


# ----------------------------------------------------------------------------- properties 1 and 2
@PROPERTY
@given(records())
def test_fast_path_never_accepts_what_the_contract_rejects(value: bytes) -> None:
    check(value)


@settings(PROPERTY, max_examples=200)
@given(valid_events())
def test_valid_events_of_the_producers_shape_take_the_fast_path(event: dict[str, Any]) -> None:
    value = dumps(event)
    assert isinstance(check(value), InteractionEvent), value
    assert decode_fast(value) is not None, (
        f"a valid event of the producers' shape left the fast path: {value!r}"
    )


# Values at and just past every bound, and of every JSON type, for every field: random edits
# reach a given bound rarely, this table reaches each one on every run.
PROBES: list[Any] = [
    *(None, True, False, 0, -0.0, -1, 1.5, 1e308, 10**400, float("nan"), float("inf")),
    *(999_999.99, 1_000_000, 1_000_000.01, 1767348000, "1767348000", "2026-03-01 10:00:00Z"),
    *("", "x" * 64, "x" * 65, "x" * 256, "x" * 257, "EUR", "eur", "EURO", "ÉUR", "E1R"),
    *("c 1", "c\n", "cé", "\u0441", "c/1", "web", "WEB", "purchase", "refund", "search"),
    *([], ["x"], {}, {"a": {"b": 1}}, {"a": [1]}, {"é": "ü"}, {"k": "x" * 256}, {"k": "x" * 257}),
    *({"x" * 256: 1}, {"x" * 257: 1}, {f"k{i}": i for i in range(32)}, {f"k{i}": i for i in range(33)}),
]


@pytest.mark.parametrize("field", [*FIELDS, "ts"])
def test_every_field_at_its_bounds(field: str) -> None:
    for base in (BASE, PURCHASE):
        for value in [*PROBES, *VALID_VALUES[field]]:
            check(dumps({**base, field: value}))
        check(dumps({k: v for k, v in base.items() if k != field}))


def test_generated_events_take_the_fast_path() -> None:
    log = generate(200, 30, 1)
    good = [r.value for r in log.records if not r.malformed]
    assert len(good) > 5000
    assert all(decode_fast(v) is not None for v in good)


# ----------------------------------------------------------------------------- oracles
@settings(PROPERTY, max_examples=400)
@given(timestamps())
def test_ts_is_an_rfc3339_string_with_a_timezone_within_bounds(parts: tuple[Any, ...]) -> None:
    text = write_ts(parts)
    decision = check(dumps({**BASE, "ts": text}))
    expected = expected_instant(parts)
    if expected is None:
        assert isinstance(decision, str), f"accepted {text!r}"
        assert decision.startswith("ts: "), decision
    else:
        assert isinstance(decision, InteractionEvent), f"rejected {text!r}: {decision}"
        assert decision.ts == expected, text


@pytest.mark.parametrize(
    "ts",
    [
        1767348000,
        1767348000.5,
        "1767348000",
        "1767348000.5",
        "",
        "2026-01-02",
        "10:00:00Z",
        "2026-01-02T10:00:00.Z",
        "2026-01-02T10:00:00.123456789012345678901234567890Z",  # accepted: a fraction of any length
        "2026-01-02T10:00:00." + "1" * 300 + "Z",  # rejected: longer than 256 characters
        "+2026-01-02T10:00:00Z",
        "02026-01-02T10:00:00Z",
        "2026-1-2T10:00:00Z",
        "2026-01-02T10:00:00+01",
        "2026-01-02T10:00:00+01:00:00",
        "2026-01-02T10:00:00 +01:00",
        " 2026-01-02T10:00:00Z",
        "2026-01-02T10:00:00Z ",
        "2026-01-02T10:00:00Z\n",
        "2026\u201101\u201102T10:00:00Z",  # non-breaking hyphens
        "2026-01-02T10:00:00\u2212 01:00",
        "２０２６-01-02T10:00:00Z",
        "2026-01-02T10:00:00GMT",
        "Fri, 02 Jan 2026 10:00:00 GMT",
        ["2026-01-02T10:00:00Z"],
        {"ts": "2026-01-02T10:00:00Z"},
        True,
        None,
    ],
)
def test_ts_shapes_outside_rfc3339(ts: Any) -> None:
    decision = check(dumps({**BASE, "ts": ts}))
    accepted = ts == "2026-01-02T10:00:00.123456789012345678901234567890Z"
    assert isinstance(decision, InteractionEvent) is accepted, (ts, decision)


@settings(PROPERTY, max_examples=400)
@given(st.sampled_from(["amount", "discount"]), json_values)
def test_money_is_a_finite_json_number_within_bounds(field: str, value: Any) -> None:
    decision = check(dumps({**PURCHASE, field: value}))
    number = type(value) is int or (type(value) is float and math.isfinite(value))  # not bool
    ok = (number and 0 <= value <= 1_000_000) or (field == "discount" and value is None)
    assert isinstance(decision, InteractionEvent) is ok, (field, value, decision)
    if ok and value is not None:
        assert getattr(decision, field) == value and type(getattr(decision, field)) is float


MONEY_TABLE = [
    (ty.value, amount, currency)
    for ty in EventType
    for amount in ("absent", None, 12.5)
    for currency in ("absent", None, "EUR")
]


def _money_event(ty: str, amount: Any, currency: Any) -> dict[str, Any]:
    event = {**BASE, "type": ty}
    if amount != "absent":
        event["amount"] = amount
    if currency != "absent":
        event["currency"] = currency
    return event


def test_amount_and_currency_only_on_purchases_and_refunds() -> None:
    for ty, amount, currency in MONEY_TABLE:
        decision = check(dumps(_money_event(ty, amount, currency)))
        has = amount == 12.5, currency == "EUR"
        ok = all(has) if ty in MONETARY else not any(has)
        assert isinstance(decision, InteractionEvent) is ok, (ty, amount, currency, decision)
        if not ok and ty not in MONETARY:
            assert "only allowed on purchase and refund" in decision, decision
        elif not ok:
            assert f"{ty} needs amount and currency" in decision, decision


def test_the_published_schema_states_the_monetary_rule() -> None:
    schema = json.loads((ROOT / "schemas" / "interaction_event.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    for ty, amount, currency in MONEY_TABLE:
        event = _money_event(ty, amount, currency)
        model_ok = isinstance(decide(dumps(event)), InteractionEvent)
        assert validator.is_valid(event) is model_ok, event
    for ts in (1767348000, "1767348000", "2026-03-01 10:00:00Z", "2026-03-01T10:00:00+0100"):
        assert not validator.is_valid({**BASE, "ts": ts}), ts
    assert not validator.is_valid({**PURCHASE, "amount": "25.5"})
    assert not validator.is_valid({**PURCHASE, "amount": True})


# ----------------------------------------------------------------------------- property 3
@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ({**PURCHASE, "amount": True}, "amount: Input should be a valid number (a JSON number"),
        ({**PURCHASE, "amount": False}, "amount: Input should be a valid number (a JSON number"),
        ({**PURCHASE, "amount": "12.5"}, "amount: Input should be a valid number (a JSON number"),
        ({**PURCHASE, "amount": "12"}, "amount: Input should be a valid number (a JSON number"),
        ({**BASE, "discount": True}, "discount: Input should be a valid number (a JSON number"),
        ({**BASE, "discount": "12.5"}, "discount: Input should be a valid number (a JSON number"),
        ({**BASE, "currency": "EUR"}, "currency is only allowed on purchase and refund, not page_view"),
        ({**BASE, "type": "checkout", "currency": "EUR"}, "currency is only allowed on purchase and refund"),
        ({**BASE, "amount": 1, "currency": "EUR"}, "amount and currency are only allowed on purchase"),
        ({**BASE, "ts": 1767348000}, "ts: Input should be an RFC 3339 date-time string with a timezone"),
        ({**BASE, "ts": 1767348000.0}, "ts: Input should be an RFC 3339 date-time string with a timezone"),
        ({**BASE, "ts": "1767348000"}, "ts: Input should be an RFC 3339 date-time string with a timezone"),
        ({**BASE, "ts": "2026-03-01 10:00:00Z"}, "ts: Input should be an RFC 3339 date-time string"),
    ],
)
def test_the_formerly_lax_inputs_are_rejected_by_both(event: dict[str, Any], reason: str) -> None:
    value = dumps(event)
    assert decode_fast(value) is None
    decision = decide(value)
    assert isinstance(decision, str) and reason in decision, decision


def test_reasons_stay_one_bounded_line_whatever_the_names_in_the_record() -> None:
    event = {**BASE, "a\nb\u2028c": 1, "x" * 5000: 2, "properties": {"k\r\n": [1]}}
    reason = decide(dumps(event))
    assert isinstance(reason, str)
    assert "properties.k\\r\\n.bool: Input should be a valid boolean" in reason
    assert "a\\nb\\u2028c: Extra inputs are not permitted" in reason
    assert "x" * 61 + "...: Extra inputs are not permitted" in reason
