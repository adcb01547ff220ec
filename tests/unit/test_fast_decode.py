"""The pipeline's fast decoder agrees with the InteractionEvent contract.

``decode_fast`` may decline a record (the pipeline then asks InteractionEvent), but whatever it
accepts InteractionEvent must accept too, with the same fields and the same event second.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from models.contracts import DeadLetter, DecodedEvent, InteractionEvent, decode_fast
from models.segments.engine import SegmentEngine
from models.sim import generate
from models.sim.cdnow import cdnow_events
from stream.config import load
from stream.io.kafka import SourceRecord
from stream.io.sinks.collect import CollectSink
from stream.runtime.engines import engine_params
from stream.runtime.metrics import Metrics
from stream.runtime.pipeline import BatchProcessor
from stream.state import MemoryFeatureStore

CDNOW = Path(__file__).resolve().parent.parent / "data" / "cdnow" / "CDNOW_master.txt"
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


def slow(value: bytes) -> InteractionEvent | None:
    try:
        return InteractionEvent.model_validate_json(value)
    except ValidationError:
        return None


def check_agrees(value: bytes) -> bool:
    """Asserts the fast path accepts nothing the contract rejects; returns whether it accepted."""
    fast = decode_fast(value)
    if fast is None:
        return False
    event, second = fast
    model = slow(value)
    assert model is not None, f"decode_fast accepted what InteractionEvent rejects: {value!r}"
    assert second == int(model.ts.timestamp()), value
    assert datetime.fromisoformat(event.ts) == model.ts, value
    assert datetime.fromisoformat(event.ts).utcoffset() == model.ts.utcoffset(), value
    for name in FIELDS:
        assert getattr(event, name) == getattr(model, name), (name, value)
    return True


def dumps(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def test_generated_events_take_the_fast_path_and_broken_ones_never_do() -> None:
    log = generate(300, 30, seed=11, malformed_fraction=0.05)
    accepted = 0
    for r in log.records:
        took = check_agrees(r.value)
        if r.malformed:
            assert not took, r.value
        else:
            assert took, f"a valid generated event left the fast path: {r.value!r}"
            accepted += 1
    assert accepted > 10_000


def test_cdnow_events_take_the_fast_path() -> None:
    with CDNOW.open() as f:
        records = cdnow_events(f)
    assert all(check_agrees(r.value) for r in records[::5])


def test_the_slow_path_gives_the_same_event() -> None:
    value = dumps({**PURCHASE, "category": "music", "properties": {"cds": 2, "gift": True, "note": None}})
    model = slow(value)
    assert model is not None
    fast = decode_fast(value)
    assert fast is not None and fast[0] == DecodedEvent.of(model).__replace__(ts=fast[0].ts)


# Each: a change to a valid event, and whether the fast path must accept it (True), must leave it
# to InteractionEvent (None: valid, unusual shape) or must reject it (False: invalid).
EDGE_CASES: list[tuple[dict[str, Any], bool | None]] = [
    ({}, True),
    ({"ts": "2026-03-01T10:00:00.123456+05:30"}, True),
    ({"ts": "2026-03-01T10:00:00-00:00"}, True),
    ({"ts": "2000-01-01T00:00:00Z"}, True),
    ({"ts": "2100-01-01T00:00:00Z"}, True),
    ({"ts": "2099-12-31T23:00:00-01:00"}, True),
    ({"ts": "2099-12-31T23:00:01-01:00"}, False),
    ({"ts": "2100-01-01T00:00:00.000001Z"}, False),
    ({"ts": "1999-12-31T23:59:59Z"}, False),
    ({"ts": "2000-01-01T00:30:00+01:00"}, False),
    ({"ts": "2026-03-01T10:00:00.9999999Z"}, None),  # 7 digits: pydantic truncates, others round
    ({"ts": "2026-03-01t10:00:00z"}, None),
    ({"ts": "2026-03-01 10:00:00Z"}, False),  # RFC 3339's note allows the space; the contract does not
    ({"ts": "2026-03-01T10:00Z"}, False),
    ({"ts": "2026-03-01T10:00:00"}, False),
    ({"ts": "2026-03-01"}, False),
    ({"ts": "20260301T100000Z"}, False),
    ({"ts": "2026-03-01T10:00:60Z"}, False),
    ({"ts": "2026-03-01T24:00:00Z"}, False),
    ({"ts": "2026-02-30T10:00:00Z"}, False),
    ({"ts": "2026-03-01T10:00:00+24:00"}, False),
    ({"ts": "2026-03-01T10:00:00+05:60"}, False),
    ({"ts": "2026-03-01T10:00:00+0530"}, False),
    ({"ts": "２０２６-03-01T10:00:00Z"}, False),
    ({"ts": 1772359200}, False),
    ({"ts": "1772359200"}, False),
    ({"ts": None}, False),
    ({"customer_id": ""}, False),
    ({"customer_id": "c" * 64}, True),
    ({"customer_id": "c" * 65}, False),
    ({"customer_id": "a.b:c@d_e-f"}, True),
    ({"customer_id": "c 1"}, False),
    ({"customer_id": "c1\n"}, False),
    ({"customer_id": "cü"}, False),
    ({"customer_id": 17}, False),
    ({"customer_id": None}, False),
    ({"event_id": "e/1"}, False),
    ({"campaign_id": "cmp-1"}, True),
    ({"campaign_id": ""}, False),
    ({"campaign_id": None}, None),  # a null hides a field given twice: the slow path,
    ({"channel": "fax"}, False),
    ({"channel": "WEB"}, False),
    ({"type": "purchase"}, False),
    ({"amount": 1.0}, False),
    ({"unknown": 1}, False),
    ({"properties": None}, None),  # a null hides a field given twice: the slow path,
    ({"properties": {"a": 1, "b": 1.5, "c": True, "d": None, "e": "x"}}, True),
    ({"properties": {f"k{i}": i for i in range(33)}}, False),
    ({"properties": {"k": "x" * 257}}, False),
    ({"properties": {"k" * 257: 1}}, False),
    ({"properties": {"k": "é"}}, None),
    ({"properties": {"k": [1]}}, False),
    ({"properties": {"k": 10**30}}, None),  # past 64 bits: the contract reads a float,
    ({"category": "c" * 64}, True),
    ({"category": "c" * 65}, False),
    ({"category": "Électronique"}, None),
    ({"discount": 0}, True),
    ({"discount": -0.01}, False),
    ({"discount": 1_000_000.01}, False),
    ({"discount": True}, False),
    ({"discount": "5"}, False),
    ({"currency": "EUR"}, False),
    ({"currency": None}, None),  # a null hides a field given twice: the slow path,
    ({**PURCHASE}, True),
    ({**PURCHASE, "amount": 0}, True),
    ({**PURCHASE, "amount": 1_000_000}, True),
    ({**PURCHASE, "amount": -0.0}, True),
    ({**PURCHASE, "amount": -1}, False),
    ({**PURCHASE, "amount": True}, False),
    ({**PURCHASE, "amount": "25.5"}, False),
    ({**PURCHASE, "amount": 1e400}, False),
    ({**PURCHASE, "currency": "eur"}, False),
    ({**PURCHASE, "currency": "EURO"}, False),
    ({**PURCHASE, "currency": "ÉUR"}, False),
    ({**PURCHASE, "currency": None}, False),
    ({**PURCHASE, "type": "refund"}, True),
]


@pytest.mark.parametrize(("change", "expected"), EDGE_CASES)
def test_edge_cases(change: dict[str, Any], expected: bool | None) -> None:
    value = dumps({**BASE, **change})
    accepted = check_agrees(value)
    model = slow(value)
    if expected is True:
        assert accepted
    elif expected is None:
        assert not accepted and model is not None, "valid, and left to InteractionEvent"
    else:
        assert not accepted and model is None


@pytest.mark.parametrize(
    "value",
    [
        # A field given twice: both parsers keep the last value; the pipeline refuses the record.
        dumps(BASE).replace(b'"customer_id"', b'"customer_id":"bad id","customer_id"'),
        dumps(BASE).replace(b'"customer_id":"c000001"', b'"customer_id":"c1","customer_id":"bad id"'),
        dumps(BASE) + b" \n\t",
        dumps(BASE) + b"x",
        dumps(BASE) + b"{}",
        b" " + dumps(BASE),
        b"[" + dumps(BASE) + b"]",
        dumps(BASE).replace(b'"c000001"', b'"c\\u0030"'),
        dumps(BASE).replace(b'"c000001"', b'"c\\ud800"'),
        dumps({**BASE, "category": "x"}).replace(b'"x"', b'"\\ud800"'),
        dumps({**BASE, "category": "x"}).replace(b'"x"', b'"\\u0000"'),
        dumps({**BASE, "category": "x"}).replace(b'"x"', b'"\xff"'),
        dumps({**PURCHASE}).replace(b"25.5", b"NaN"),
        dumps({**PURCHASE}).replace(b"25.5", b"Infinity"),
        dumps({**PURCHASE}).replace(b"25.5", b"2.55e1"),
        dumps({**PURCHASE}).replace(b"25.5", b"025.5"),
        b"",
        b"null",
        b"{}",
    ],
)
def test_json_level_edge_cases(value: bytes) -> None:
    check_agrees(value)


def _mutations() -> st.SearchStrategy[bytes]:
    any_json = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=80),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
        max_leaves=6,
    )
    near_ts = st.from_regex(
        r"[0-9 ]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2})?(\.[0-9]{0,9})?"
        r"(Z|z|[+-][0-9]{2}:?[0-9]{2})?",
        fullmatch=True,
    )
    field = st.sampled_from([*FIELDS, "ts", "extra"])
    tokens = st.sampled_from(["web", "purchase", "refund", "EUR", "c1", "", "-", 0, -0.0, 1e6])
    value = any_json | near_ts | tokens
    edits = st.lists(st.tuples(field, value | st.just(...)), min_size=1, max_size=4)

    def apply(base: dict[str, Any], changes: list[tuple[str, Any]]) -> bytes:
        out = dict(base)
        for name, v in changes:
            if v is ...:
                out.pop(name, None)
            else:
                out[name] = v
        return json.dumps(out).encode()

    return st.builds(apply, st.sampled_from([BASE, PURCHASE]), edits)


@settings(max_examples=3000, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutations())
def test_fuzzed_events_agree(value: bytes) -> None:
    check_agrees(value)


def test_dead_letter_reasons_do_not_depend_on_the_decoder() -> None:
    """A late event's reason names its time the same way, whichever path decoded it."""

    class Sink(CollectSink):
        def __init__(self, engine: SegmentEngine) -> None:
            super().__init__(engine)
            self.dead: list[DeadLetter] = []

        def dead_letter(self, dl: DeadLetter) -> None:
            self.dead.append(dl)

    s = load()
    engine = SegmentEngine(engine_params(s))
    sink = Sink(engine)
    processor = BatchProcessor(s, MemoryFeatureStore(), engine, sink, Metrics(CollectorRegistry()))
    late_fast = dumps({**BASE, "event_id": "e-2", "ts": "2026-02-01T10:00:00Z"})
    late_slow = dumps({**BASE, "event_id": "e-3", "ts": "2026-02-01t10:00:00+00:00"})  # 't': slow path
    assert decode_fast(late_fast) is not None and decode_fast(late_slow) is None
    values = [dumps(BASE), late_fast, late_slow]
    processor.process([SourceRecord("in", 0, i, b"c000001", v) for i, v in enumerate(values)])
    processor.close()
    assert [d.error_class for d in sink.dead] == ["LateEvent", "LateEvent"]
    assert sink.dead[0].reason == sink.dead[1].reason
    assert sink.dead[0].reason.startswith("event time 2026-02-01T10:00:00+00:00 is 672.0 h behind")


REPEATED = [
    dumps(BASE).replace(b'"customer_id":"c000001"', b'"customer_id":"c000002","customer_id":"c000001"'),
    dumps(BASE).replace(b'"customer_id":"c000001"', b'"customer_id":"c000001","customer_id":"c000001"'),
    dumps(PURCHASE).replace(b'"amount":25.5', b'"amount":999.0,"amount":25.5'),
    dumps({**BASE, "properties": {"a": 1}}).replace(b'"a":1', b'"a":1,"a":2'),
    dumps(BASE).replace(b'"customer_id"', b'"customer\\u005fid":"c000002","customer_id"'),
]


@pytest.mark.parametrize("value", REPEATED)
def test_a_field_given_twice_is_a_dead_letter(value: bytes) -> None:
    """JSON parsers disagree on which of two values of a field counts: such a record is refused
    (the fast path declines it and the pipeline dead-letters it with the field's name)."""
    assert decode_fast(value) is None
    assert slow(value) is not None, "the contract alone takes the last value"
    sink, processor = _processor()
    key = b"c000001"
    processor.process([SourceRecord("in", 0, 0, key, value), SourceRecord("in", 0, 1, key, dumps(BASE))])
    processor.close()
    assert [d.error_class for d in sink.dead] == ["InvalidEvent"]
    assert "given twice in the record" in sink.dead[0].reason


@pytest.mark.parametrize("props", [b'{"a":NaN}', b'{"a":Infinity}', b'{"a":-Infinity}', b'{"a":1e309}'])
def test_property_values_are_finite(props: bytes) -> None:
    """NaN and Infinity are not JSON, but pydantic's parser reads the tokens: refused."""
    value = dumps({**BASE, "properties": {"a": 1}}).replace(b'{"a":1}', props)
    assert decode_fast(value) is None
    assert slow(value) is None


def test_property_integers_past_64_bits_are_numbers() -> None:
    """An integer a 64-bit consumer cannot hold is read as the JSON number it is (a float),
    never as a Python int of any length."""
    edge = dumps({**BASE, "properties": {"lo": -(2**63), "hi": 2**63 - 1}})
    assert check_agrees(edge)
    value = dumps({**BASE, "properties": {"a": 10**20}})
    assert decode_fast(value) is None
    event = slow(value)
    assert event is not None and event.properties == {"a": 1e20}
    assert type(event.properties["a"]) is float


def _processor() -> tuple[Any, BatchProcessor]:
    class Sink(CollectSink):
        def __init__(self, engine: SegmentEngine) -> None:
            super().__init__(engine)
            self.dead: list[DeadLetter] = []

        def dead_letter(self, dl: DeadLetter) -> None:
            self.dead.append(dl)

    s = load()
    engine = SegmentEngine(engine_params(s))
    sink = Sink(engine)
    return sink, BatchProcessor(s, MemoryFeatureStore(), engine, sink, Metrics(CollectorRegistry()))
