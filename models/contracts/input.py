"""The input contract: one omnichannel interaction event (topic ``interactions``, key = customer_id).

Validation is strict and explicit so that a bad record is rejected with a reason that names the
problem (it then goes to the dead-letter topic) and never reaches the feature state.
:class:`InteractionEvent` is the contract and the only source of dead-letter reasons;
:func:`decode_fast` is the pipeline's fast path over a strict subset of it.

>>> e = InteractionEvent.model_validate_json(
...     '{"event_id": "e1", "customer_id": "c1", "ts": "2026-01-02T10:00:00Z",'
...     ' "channel": "web", "type": "purchase", "amount": 12.5, "currency": "EUR"}')
>>> e.kind, e.ts_seconds
('purchase', 1767348000.0)
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from enum import StrEnum
from functools import cached_property
from typing import Annotated, Any

import msgspec
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

MAX_EVENT_BYTES = 16 * 1024
MAX_PROPERTIES = 32
_ID_PATTERN = r"^[A-Za-z0-9_.:@\-]{1,64}$"
_TS_MIN = datetime(2000, 1, 1, tzinfo=UTC)
_TS_MAX = datetime(2100, 1, 1, tzinfo=UTC)
_MAX_STR = 256
_MAX_MONEY = 1_000_000
# A property's integer fits a signed 64-bit integer: what consumers in other languages can hold
# (an unbounded one decoded as a Python int of any length).
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class Channel(StrEnum):
    WEB = "web"
    APP = "app"
    EMAIL = "email"
    SMS = "sms"
    PUSH = "push"
    SOCIAL = "social"
    STORE = "store"
    ADS = "ads"
    CALL_CENTER = "call_center"


class EventType(StrEnum):
    PAGE_VIEW = "page_view"
    PRODUCT_VIEW = "product_view"
    SEARCH = "search"
    ADD_TO_CART = "add_to_cart"
    CHECKOUT = "checkout"
    PURCHASE = "purchase"
    REFUND = "refund"
    EMAIL_OPEN = "email_open"
    EMAIL_CLICK = "email_click"
    PUSH_OPEN = "push_open"
    APP_OPEN = "app_open"
    SOCIAL_ENGAGE = "social_engage"
    AD_CLICK = "ad_click"
    STORE_VISIT = "store_visit"
    SUPPORT_CONTACT = "support_contact"


# The kind of an interaction groups event types into the behavioural families the features use.
KIND_OF_TYPE: dict[EventType, str] = {
    EventType.PAGE_VIEW: "browse",
    EventType.PRODUCT_VIEW: "browse",
    EventType.SEARCH: "browse",
    EventType.ADD_TO_CART: "cart",
    EventType.CHECKOUT: "cart",
    EventType.PURCHASE: "purchase",
    EventType.REFUND: "refund",
    EventType.EMAIL_OPEN: "engage",
    EventType.EMAIL_CLICK: "engage",
    EventType.PUSH_OPEN: "engage",
    EventType.APP_OPEN: "engage",
    EventType.SOCIAL_ENGAGE: "engage",
    EventType.AD_CLICK: "engage",
    EventType.STORE_VISIT: "browse",
    EventType.SUPPORT_CONTACT: "support",
}

MONETARY_TYPES = frozenset({EventType.PURCHASE, EventType.REFUND})


# Checked by pydantic-core (Rust), not by a Python callback: validation is on the hot path.
Identifier = Annotated[str, StringConstraints(pattern=_ID_PATTERN)]

# RFC 3339 ``date-time`` (section 5.6), the ABNF production JSON Schema's ``format: date-time``
# names: 'T' or 't' between date and time (not the space the RFC's note allows "for
# readability"), seconds 00-59 (no leap second), any fraction (truncated to microseconds), 'Z',
# 'z' or a +HH:MM / -HH:MM offset. pydantic's own datetime parsing alone also takes epoch numbers,
# digit strings, a space, a missing seconds field and +HHMM offsets.
_RFC3339_PATTERN = (
    r"^[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])[Tt]"
    r"(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]+)?"
    r"(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])$"
)


class _RFC3339String:
    """Accept a datetime only from a JSON string of RFC 3339 shape, then parse it as usual.

    A chain of two pydantic-core validators (the shape, then the datetime with its bounds), so
    it stays in Rust: it adds ~0.3 us per event to a ~2.3 us slow path, where a Python validator
    added ~0.55 us. A day the month does not have (2026-02-30) passes the shape, fails the parse.
    """

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        shape = core_schema.custom_error_schema(
            core_schema.str_schema(pattern=_RFC3339_PATTERN, strict=True),
            custom_error_type="rfc3339_datetime",
            custom_error_message="Input should be an RFC 3339 date-time string with a timezone",
        )
        return core_schema.chain_schema([shape, handler(source)])

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        out = handler(schema)  # the first step of the chain: a string with the pattern
        out["format"] = "date-time"
        return out


# The monetary rule in the published JSON Schema too (the model checks it in _money).
_MONEY_RULE: dict[str, Any] = {
    "if": {"properties": {"type": {"enum": ["purchase", "refund"]}}},
    "then": {
        "required": ["amount", "currency"],
        "properties": {"amount": {"type": "number"}, "currency": {"type": "string"}},
    },
    "else": {"properties": {"amount": {"type": "null"}, "currency": {"type": "null"}}},
}


def _money(description: str) -> Any:
    """An optional amount of money: strict, so a JSON number (an integer is fine), never a
    boolean or a numeric string; finite, non-negative and bounded."""
    return Field(default=None, strict=True, ge=0, le=_MAX_MONEY, allow_inf_nan=False, description=description)


class InteractionEvent(BaseModel):
    """One omnichannel interaction of one customer (topic ``interactions``, key = customer_id)."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, str_max_length=_MAX_STR, json_schema_extra=_MONEY_RULE
    )

    event_id: Identifier
    customer_id: Identifier
    # Checked in pydantic-core: the RFC 3339 shape, a timezone, 2000-01-01 .. 2100-01-01.
    ts: Annotated[AwareDatetime, Field(ge=_TS_MIN, le=_TS_MAX), _RFC3339String()] = Field(
        description=(
            "Event time: a string, RFC 3339 date-time with a timezone, e.g. 2026-01-02T10:00:00Z or "
            "2026-01-02T11:00:00.250+01:00. 'T' or 't' between date and time (not a space), seconds "
            "00-59, an optional fraction (truncated to microseconds), 'Z', 'z' or a +HH:MM / -HH:MM "
            "offset; within 2000-01-01T00:00:00Z .. 2100-01-01T00:00:00Z. Epoch numbers and digit "
            "strings are rejected."
        )
    )
    channel: Channel
    type: EventType
    amount: float | None = _money("A JSON number, on purchases and refunds only (required there).")
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] | None = Field(
        default=None, description="Three capital letters (ISO 4217), on purchases and refunds only."
    )
    category: Annotated[str, Field(max_length=64)] | None = None
    campaign_id: Identifier | None = None
    discount: float | None = _money("A JSON number (the money off), on any type.")
    # NaN and Infinity are not JSON, but pydantic's parser reads the tokens: a property value
    # is a finite number, and an integer a 64-bit one.
    properties: (
        dict[
            str,
            str
            | Annotated[int, Field(ge=_INT64_MIN, le=_INT64_MAX)]
            | Annotated[float, Field(allow_inf_nan=False)]
            | bool
            | None,
        ]
        | None
    ) = Field(default=None, max_length=MAX_PROPERTIES)

    @model_validator(mode="after")
    def _money(self) -> InteractionEvent:
        if self.type in MONETARY_TYPES:
            if self.amount is None or self.currency is None:
                raise ValueError(f"{self.type.value} needs amount and currency")
        elif self.amount is not None or self.currency is not None:
            present = [name for name in ("amount", "currency") if getattr(self, name) is not None]
            what = " and ".join(present) + (" is" if len(present) == 1 else " are")
            raise ValueError(f"{what} only allowed on purchase and refund, not {self.type.value}")
        return self

    @cached_property
    def ts_seconds(self) -> float:
        return self.ts.timestamp()

    @property
    def kind(self) -> str:
        return KIND_OF_TYPE[self.type]

    @property
    def is_promo(self) -> bool:
        return self.campaign_id is not None or bool(self.discount)


# ----------------------------------------------------------------------------- the hot path
# pydantic validation cost ~3 us per event, the largest single cost of a consuming worker. The
# pipeline decodes with msgspec first, into a plain struct, and checks by hand a strict subset
# of what InteractionEvent accepts: the shape producers send (ASCII strings, RFC 3339 times with
# 'T' and at most 6 fractional digits). Whatever that path cannot vouch for goes to
# InteractionEvent, which stays the contract and the only source of dead-letter reasons.
# tests/unit/test_fast_decode.py checks both agree on valid, broken and fuzzed events.

_ID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:@-"
_TS_SHAPE = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?"
    r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
)


class DecodedEvent(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """A validated interaction event as the pipeline reads it (``ts`` as sent, RFC 3339)."""

    event_id: str
    customer_id: str
    ts: str
    channel: Channel
    type: EventType
    amount: float | None = None
    currency: str | None = None
    category: str | None = None
    campaign_id: str | None = None
    discount: float | None = None
    properties: dict[str, str | int | float | bool | None] | None = None

    @classmethod
    def of(cls, event: InteractionEvent) -> DecodedEvent:
        """The same event, from one InteractionEvent validated (the slow path)."""
        return cls(
            event_id=event.event_id,
            customer_id=event.customer_id,
            ts=event.ts.isoformat(),
            channel=event.channel,
            type=event.type,
            amount=event.amount,
            currency=event.currency,
            category=event.category,
            campaign_id=event.campaign_id,
            discount=event.discount,
            properties=event.properties,
        )


_decode_struct = msgspec.json.Decoder(DecodedEvent).decode
# The quotes of the five required fields: their keys and their string values.
_QUOTES_BASE = 5 * 4
_parse_ts = datetime.fromisoformat


def decode_fast(value: bytes) -> tuple[DecodedEvent, int] | None:
    """The event and its time in whole seconds, or None when only InteractionEvent can decide
    (an invalid event, or a valid one of a shape this path does not check)."""
    try:
        e = _decode_struct(value)
    except (msgspec.DecodeError, ValueError):  # ValueError: bytes that are not UTF-8
        return None
    if not _TS_SHAPE.fullmatch(e.ts):
        return None
    properties = e.properties
    # Every key and string value of the record has two quotes: any other count (a field given
    # twice, a null, an escaped quote) is left to the slow path, which finds repeated fields.
    quotes = _QUOTES_BASE
    if properties is not None:
        if len(properties) > MAX_PROPERTIES:
            return None
        quotes += 2 + 2 * len(properties)
        for k, v in properties.items():
            if len(k) > _MAX_STR or not k.isascii():
                return None
            if isinstance(v, str):
                if len(v) > _MAX_STR or not v.isascii():
                    return None
                quotes += 2
            elif type(v) is int and not _INT64_MIN <= v <= _INT64_MAX:
                return None
    campaign = e.campaign_id
    ids = e.event_id + e.customer_id if campaign is None else e.event_id + e.customer_id + campaign
    # strip() leaves nothing iff every character is allowed
    if ids.strip(_ID_CHARS) or not (0 < len(e.event_id) <= 64 and 0 < len(e.customer_id) <= 64):
        return None
    if campaign is not None and not 0 < len(campaign) <= 64:
        return None
    amount, currency, category, discount = e.amount, e.currency, e.category, e.discount
    if amount is not None:
        quotes += 2
    if currency is not None:
        quotes += 4
    if category is not None:
        quotes += 4
    if campaign is not None:
        quotes += 4
    if discount is not None:
        quotes += 2
    if value.count(b'"') != quotes:
        return None
    if e.type in MONETARY_TYPES:
        if amount is None or currency is None:
            return None
    elif amount is not None or currency is not None:
        return None
    if amount is not None and not 0 <= amount <= _MAX_MONEY:  # NaN fails too
        return None
    if discount is not None and not 0 <= discount <= _MAX_MONEY:
        return None
    if currency is not None and not (
        len(currency) == 3 and currency.isascii() and currency.isupper() and currency.isalpha()
    ):
        return None
    if category is not None and not (len(category) <= 64 and category.isascii()):
        return None
    try:
        ts = _parse_ts(e.ts)
    except ValueError:
        return None
    if not _TS_MIN <= ts <= _TS_MAX:
        return None
    return e, int(ts.timestamp())


def _no_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: set[str] = set()
    for k, _ in pairs:
        if k in seen:
            raise _Repeated(k)
        seen.add(k)
    return dict(pairs)


class _Repeated(Exception):
    pass


def repeated_field(value: bytes) -> str | None:
    """The reason a record the contract validated is refused all the same: a field (or a
    ``properties`` key) given twice, else None.

    JSON parsers disagree on such a record (pydantic's and msgspec's keep the last value, others
    the first or refuse it), so a consumer downstream could read another customer or amount than
    the one segstream applied. Only for validated records: their nesting and size are bounded,
    so the standard library's parser is safe to run on them."""
    try:
        json.loads(value, object_pairs_hook=_no_repeats)
    except _Repeated as e:
        return f"{_loc_part(str(e.args[0]))}: given twice in the record; a field may appear once"
    except (ValueError, RecursionError) as e:
        return f"record: not strict JSON ({_printable(str(e))[:200]})"
    return None


# pydantic-core's own wording, with what to send instead where it does not say.
_HINTS = {
    "rfc3339_datetime": ", e.g. 2026-01-02T10:00:00Z or 2026-01-02T11:00:00.5+01:00",
    "datetime_from_date_parsing": " (RFC 3339, e.g. 2026-01-02T10:00:00Z)",
}
_FIELD_HINTS = {  # (field, error type): where the hint holds for that field only
    ("amount", "float_type"): " (a JSON number, not a string or a boolean)",
    ("discount", "float_type"): " (a JSON number, not a string or a boolean)",
}
_LOC_PART_MAX = 64


def _printable(text: str) -> str:
    """``text`` with every non-printable character (newlines, controls, U+2028...) escaped."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _loc_part(part: str | int) -> str:
    # Field names come from the record (an unknown field, a properties key): bounded, printable.
    s = _printable(str(part))
    return s if len(s) <= _LOC_PART_MAX else s[: _LOC_PART_MAX - 3] + "..."


def describe_validation_error(err: ValidationError) -> str:
    """A readable one-line reason: ``field: message; field: message`` (at most 500 characters,
    printable whatever the record: names taken from it are escaped and bounded)."""
    parts = []
    for e in err.errors(include_url=False):
        loc = ".".join(_loc_part(p) for p in e["loc"]) or "record"
        hint = _FIELD_HINTS.get((loc, e["type"])) or _HINTS.get(e["type"], "")
        parts.append(f"{loc}: {_printable(e['msg'])}{hint}")
    return "; ".join(parts)[:500]
