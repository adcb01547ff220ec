"""The real CDNOW purchase log mapped to interaction events."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from models.contracts import InteractionEvent
from models.sim import GeneratedRecord
from models.sim.cdnow import cdnow_events, parse_cdnow

DATA = Path(__file__).resolve().parent.parent / "data" / "cdnow" / "CDNOW_master.txt"


@pytest.fixture(scope="module")
def records() -> list[GeneratedRecord]:
    with DATA.open() as f:
        return cdnow_events(f)


def test_counts(records: list[GeneratedRecord]) -> None:
    assert len(records) == 69_659
    assert len({r.customer_id for r in records}) == 23_570
    assert len({r.ts for r in records}) == len(records)  # distinct, stable times


def test_every_event_validates(records: list[GeneratedRecord]) -> None:
    zero = 0
    for r in records:
        ev = InteractionEvent.model_validate_json(r.value)
        assert ev.type == "purchase" and ev.channel == "web" and ev.currency == "USD"
        assert ev.customer_id == r.customer_id and r.key == r.customer_id.encode()
        assert ev.ts_seconds == r.ts and not r.malformed
        assert ev.properties is not None and int(ev.properties["cds"] or 0) >= 1
        zero += ev.amount == 0
    assert zero == 80  # zero-dollar rows are valid purchases


def test_canonical_json_ids_and_order(records: list[GeneratedRecord]) -> None:
    for r in records[::7]:  # hand-written JSON == json.dumps (a sample keeps the test fast)
        assert r.value == json.dumps(json.loads(r.value), separators=(",", ":"), sort_keys=True).encode()
    row_re = re.compile(rb'"event_id":"cdnow-(\d+)"')
    keys = [(r.ts, r.customer_id, int(row_re.search(r.value).group(1))) for r in records]  # type: ignore[union-attr]
    assert {k[2] for k in keys} == set(range(1, 69_660))  # event ids cdnow-<row>, unique
    assert keys == sorted(keys)  # sorted by (ts, customer_id, row)
    day = [(int(k[0]) // 86400, k[1], k[2]) for k in keys]
    assert day == sorted(day)  # within a day: by customer, then row


def test_first_and_last_dates(records: list[GeneratedRecord]) -> None:
    first = datetime.fromtimestamp(records[0].ts, UTC)
    last = datetime.fromtimestamp(records[-1].ts, UTC)
    # shifted by 28 years (the contract rejects timestamps before 2000), weekdays preserved
    assert first == datetime(2025, 1, 1, 12, tzinfo=UTC)
    assert last.date() == datetime(2026, 6, 30).date()
    assert first.weekday() == datetime(1997, 1, 1).weekday()
    assert last.hour == 12
    assert json.loads(records[0].value)["customer_id"] == "cdnow00001"


def test_row_mapping_small() -> None:
    lines = [
        " customer_id  date number_of_cds  dollar_value",
        " 00002 19970112  5   77.00",
        "",
        " 00001 19970112  1   0.00",
        " 00001 19970101  2   11.77",
    ]
    recs = cdnow_events(lines)
    got = [json.loads(r.value) for r in recs]
    assert [(e["customer_id"], e["ts"], e["event_id"], e["amount"]) for e in got] == [
        ("cdnow00001", "2025-01-01T12:00:00Z", "cdnow-3", 11.77),
        ("cdnow00001", "2025-01-12T12:00:00Z", "cdnow-2", 0.0),
        ("cdnow00002", "2025-01-12T12:00:01Z", "cdnow-1", 77.0),
    ]
    assert got[2]["properties"] == {"cds": 5}


def test_unshifted_dates_are_rejected_by_the_contract() -> None:
    (rec,) = cdnow_events([" 00001 19970101  2   11.77"], year_shift=0)
    assert json.loads(rec.value)["ts"] == "1997-01-01T12:00:00Z"
    with pytest.raises(ValidationError, match="greater than or equal to 2000-01-01"):
        InteractionEvent.model_validate_json(rec.value)


def test_bad_row_raises() -> None:
    with pytest.raises(ValueError, match="line 2"):
        parse_cdnow(["00001 19970101 1 1.0", "00002 1997-01-01 1 2.0"])
    with pytest.raises(ValueError, match="not a CDNOW data row"):
        parse_cdnow(["00001 19970101 1 1.0", "garbage"])
