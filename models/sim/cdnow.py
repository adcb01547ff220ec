"""The real CDNOW purchase log (Fader, Hardie & Lee 2005) as interaction events.

The caller opens the file; this module only parses lines, so it stays pure:

>>> lines = [" customer_id  date number_of_cds  dollar_value",
...          " 00002 19970112  5   77.00", " 00001 19970101  1   11.77"]
>>> recs = cdnow_events(lines)
>>> [r.customer_id for r in recs]
['cdnow00001', 'cdnow00002']
>>> recs[0].value[:62]
b'{"amount":11.77,"channel":"web","currency":"USD","customer_id"'

Each data row becomes one ``purchase`` event on channel ``web`` in ``USD``; ``event_id`` is
``cdnow-<row number>`` (1-based data row, header excluded), ``customer_id`` is
``cdnow<zero-padded id>``. The data has no time of day: the events of one day are placed at
12:00:00 UTC + k seconds, k being the row's rank within that day in (customer_id, row) order, so
every event has a distinct, stable time and the log sorts by (ts, customer_id, row). Dates are
shifted by 28 years by default (1997 -> 2025, same weekdays): the event contract rejects
timestamps before 2000.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from models.sim.generator import GeneratedRecord

__all__ = ["CDNOW_YEAR_SHIFT", "CdnowRow", "cdnow_events", "parse_cdnow"]

CDNOW_CURRENCY = "USD"
CDNOW_YEAR_SHIFT = 28  # 1997-1998 -> 2025-2026, same weekdays (see cdnow_events)
CDNOW_PERSONA = "cdnow"  # the ``persona`` of CDNOW records: there is no planted truth


@dataclass(frozen=True)
class CdnowRow:
    row: int  # 1-based data row number in the file
    customer: str  # zero-padded id as in the file, e.g. "00042"
    date: str  # YYYYMMDD
    cds: int
    dollars: float


def parse_cdnow(lines: Iterable[str]) -> list[CdnowRow]:
    """Parse CDNOW_master.txt lines (header and blank lines skipped), in file order."""
    rows: list[CdnowRow] = []
    n = 0
    for lineno, line in enumerate(lines, 1):
        parts = line.split()
        if not parts:
            continue
        if not parts[0].isdigit():
            if n == 0:
                continue  # header
            raise ValueError(f"line {lineno}: not a CDNOW data row: {line.strip()!r}")
        if len(parts) != 4 or not parts[1].isdigit() or len(parts[1]) != 8:
            raise ValueError(f"line {lineno}: expected 'customer_id YYYYMMDD cds dollars'")
        n += 1
        rows.append(CdnowRow(n, parts[0], parts[1], int(parts[2]), float(parts[3])))
    return rows


def cdnow_events(lines: Iterable[str], year_shift: int = CDNOW_YEAR_SHIFT) -> list[GeneratedRecord]:
    """One ``purchase`` record per CDNOW row, sorted by (ts, customer_id, row).

    ``year_shift`` moves every date by that many years (same month and day). The event contract
    only accepts timestamps from 2000 on, and the data is from 1997-1998, so the default of 28
    years (the Gregorian cycle of weekdays and leap years within 1901-2099) maps 1997-01-01 to
    2025-01-01, both Wednesdays: weekdays and the calendar are preserved exactly.

    Records are :class:`~models.sim.generator.GeneratedRecord` (key = customer id bytes, value =
    compact sorted-key JSON of a valid InteractionEvent, ``persona`` = ``"cdnow"``).
    """
    rows = sorted(parse_cdnow(lines), key=lambda r: (r.date, r.customer, r.row))
    out: list[GeneratedRecord] = []
    day = ""
    rank = 0
    noon = 0.0
    for r in rows:
        if r.date != day:
            day, rank = r.date, 0
            date = datetime(int(day[:4]) + year_shift, int(day[4:6]), int(day[6:]), 12, tzinfo=UTC)
            noon, iso_day = date.timestamp(), date.strftime("%Y-%m-%d")
        else:
            rank += 1
            if rank >= 12 * 3600:
                raise ValueError(f"more than {12 * 3600} rows on {day}")
        minutes, seconds = divmod(rank, 60)
        hour, minutes = divmod(minutes, 60)
        cid = f"cdnow{r.customer}"
        # compact sorted-key JSON, byte-identical to json.dumps(..., separators=(",", ":"),
        # sort_keys=True) (tested) and several times faster
        value = (
            f'{{"amount":{r.dollars!r},"channel":"web","currency":"{CDNOW_CURRENCY}",'
            f'"customer_id":"{cid}","event_id":"cdnow-{r.row}","properties":{{"cds":{r.cds}}},'
            f'"ts":"{iso_day}T{12 + hour:02d}:{minutes:02d}:{seconds:02d}Z","type":"purchase"}}'
        ).encode()
        out.append(GeneratedRecord(cid.encode(), value, False, cid, CDNOW_PERSONA, noon + rank))
    return out
