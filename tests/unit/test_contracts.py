"""The event contracts: strict validation with readable reasons, and the published schemas in sync."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from models.contracts import InteractionEvent, describe_validation_error, json_schemas

ROOT = Path(__file__).resolve().parents[2]
GOOD = {
    "event_id": "e-1",
    "customer_id": "c000001",
    "ts": "2026-03-01T10:00:00+01:00",
    "channel": "store",
    "type": "purchase",
    "amount": 25.5,
    "currency": "EUR",
}


def test_schemas_in_repo_match_the_models() -> None:
    """schemas/ is what other services validate against: regenerate with `segstream schema --out schemas`."""
    for name, schema in json_schemas().items():
        on_disk = json.loads((ROOT / "schemas" / f"{name}.schema.json").read_text())
        assert on_disk == schema, f"schemas/{name}.schema.json is stale"


def test_valid_event() -> None:
    e = InteractionEvent.model_validate(GOOD)
    assert e.kind == "purchase" and e.ts_seconds == 1772355600.0 and not e.is_promo


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"channel": "fax"}, "channel"),
        ({"type": "teleport"}, "type"),
        ({"ts": "2026-03-01T10:00:00"}, "timezone"),
        ({"ts": "1999-03-01T10:00:00Z"}, "ts: Input should be greater than or equal to 2000-01-01"),
        ({"ts": "2100-03-01T10:00:00Z"}, "ts: Input should be less than or equal to 2100-01-01"),
        ({"amount": -1}, "amount"),
        ({"amount": float("inf")}, "amount"),
        ({"customer_id": "a b"}, "customer_id"),
        ({"customer_id": "x" * 65}, "customer_id"),
        ({"currency": "euro"}, "currency"),
        ({"amount": None}, "needs amount and currency"),
        ({"type": "page_view"}, "amount and currency are only allowed on purchase and refund, not page_view"),
        ({"type": "page_view", "amount": None}, "currency is only allowed on purchase and refund"),
        ({"type": "search", "currency": None}, "amount is only allowed on purchase and refund"),
        ({"amount": True}, "amount: Input should be a valid number (a JSON number"),
        ({"amount": "12.5"}, "amount: Input should be a valid number (a JSON number"),
        ({"discount": False}, "discount: Input should be a valid number (a JSON number"),
        ({"ts": 1767348000}, "ts: Input should be an RFC 3339 date-time string with a timezone"),
        ({"ts": "1767348000"}, "ts: Input should be an RFC 3339 date-time string with a timezone"),
        ({"ts": "2026-03-01 10:00:00Z"}, "ts: Input should be an RFC 3339 date-time string"),
        ({"ts": "2026-02-29T10:00:00Z"}, "ts: Input should be a valid datetime or date, day value"),
        ({"properties": {f"k{i}": i for i in range(40)}}, "at most 32 items"),
        ({"unexpected": 1}, "unexpected"),
    ],
)
def test_invalid_events_name_the_problem(change: dict, needle: str) -> None:
    with pytest.raises(ValidationError) as info:
        InteractionEvent.model_validate({**GOOD, **change})
    assert needle in describe_validation_error(info.value)


def test_invalid_json_is_a_validation_error() -> None:
    with pytest.raises(ValidationError) as info:
        InteractionEvent.model_validate_json(b'{"event_id": "e1", ')
    assert "json" in describe_validation_error(info.value).lower()
