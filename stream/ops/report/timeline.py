"""Segments over event time, rebuilt from the changes topic: sizes per day, flows over a window,
volatility, and the names each segment had. Pure: changes in, numbers out.

Each change says where a customer was (``previous``) and where it went (``current``), so
membership is rebuilt customer by customer in ``seq`` order. A customer's first change read
names the segment it was in before it: a topic trimmed by retention still gives the right sizes
from its first day on.

>>> from stream.ops.report.gather import Change
>>> day = 86400.0
>>> cs = [Change("a", 1, 0.5 * day, None, 1, "A", "event", ""),
...       Change("b", 1, 0.6 * day, None, 1, "A", "event", ""),
...       Change("a", 2, 2.5 * day, 1, 2, "B", "event", "")]
>>> t = rebuild(cs, window_start=1.0 * day)
>>> t.days, t.sizes
(['1970-01-01', '1970-01-02', '1970-01-03'], {1: [2, 2, 1], 2: [0, 0, 1]})
>>> t.flows, t.entered, t.exited
({(1, 1): 1, (1, 2): 1}, {2: 1}, {1: 1})
"""

from __future__ import annotations

import ast
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from stream.ops.report.gather import Change, ModelChange

DAY = 86400.0
NEW = -1  # flows: not in a segment at the window's start (a new customer)
ERASED = -2  # flows: erased within the window
DEFAULT_WINDOW_DAYS = 28.0
_RENAMED = re.compile(r"^renamed (?P<old>'.*'|\".*\") -> (?P<new>'.*'|\".*\")$")


@dataclass
class Timeline:
    days: list[str]  # UTC dates of event time, first to last change
    sizes: dict[int, list[int]]  # segment -> customers in it at the end of each day
    window: tuple[float, float]  # the flows' window, epoch seconds
    flows: dict[tuple[int, int], int]  # (segment at the start, at the end) -> customers; NEW, ERASED
    entered: dict[int, int]  # changes into each segment within the window
    exited: dict[int, int]  # changes out of it
    names: dict[int, list[tuple[float, str]]] = field(default_factory=dict)  # (first seen, name)

    @property
    def window_days(self) -> float:
        return max((self.window[1] - self.window[0]) / DAY, 1e-9)

    def mean_size(self, sid: int) -> float:
        """Average customers in the segment over the days the window covers."""
        row = self.sizes.get(sid)
        if not row or not self.days:
            return 0.0
        day0 = day_start(self.days[0])
        lo = max(int((self.window[0] - day0) // DAY), 0)
        hi = min(int((self.window[1] - day0) // DAY), len(row) - 1)
        return float(np.mean(row[lo : hi + 1])) if hi >= lo else float(row[-1])

    def volatility(self) -> dict[int, float]:
        """(entered + exited) / size per week of the window, for segments with customers."""
        weeks = self.window_days / 7.0
        out = {}
        for sid in sorted(set(self.entered) | set(self.exited) | set(self.sizes)):
            size = self.mean_size(sid)
            if size > 0:
                out[sid] = (self.entered.get(sid, 0) + self.exited.get(sid, 0)) / size / weeks
        return out


def day_start(date: str) -> float:
    return datetime.fromisoformat(date).replace(tzinfo=UTC).timestamp()


def _date(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d")


def rebuild(changes: Iterable[Change], window_start: float | None = None) -> Timeline:
    """The timeline of these changes; flows over [``window_start``, last change] (default: the
    last :data:`DEFAULT_WINDOW_DAYS` days)."""
    by_customer: dict[str, list[Change]] = defaultdict(list)
    for c in changes:
        by_customer[c.customer].append(c)
    if not by_customer:
        return Timeline([], {}, (0.0, 0.0), {}, {}, {})
    t_lo = min(c.t for cs in by_customer.values() for c in cs)
    t_hi = max(c.t for cs in by_customer.values() for c in cs)
    day0 = day_start(_date(t_lo))
    n_days = int((t_hi - day0) // DAY) + 1
    ws = t_hi - DEFAULT_WINDOW_DAYS * DAY if window_start is None else window_start
    ws = min(max(ws, t_lo), t_hi)
    deltas: dict[int, np.ndarray] = {}
    flows: Counter[tuple[int, int]] = Counter()
    entered: Counter[int] = Counter()
    exited: Counter[int] = Counter()
    names: dict[int, dict[str, float]] = defaultdict(dict)

    def add(sid: int, day: int, n: int) -> None:
        row = deltas.get(sid)
        if row is None:
            row = deltas[sid] = np.zeros(n_days, dtype=np.int64)
        row[day] += n

    for cid in sorted(by_customer):
        cs = sorted(by_customer[cid], key=lambda c: (c.seq, c.t))
        first = cs[0]
        if first.previous is not None:
            add(first.previous, 0, 1)  # in it since before the first change read
        at_start = first.previous if first.t >= ws else None
        for c in cs:
            day = int((c.t - day0) // DAY)
            if c.previous is not None:
                add(c.previous, day, -1)
            if c.current is not None:
                add(c.current, day, 1)
                seen = names[c.current]
                if c.current_name not in seen or c.t < seen[c.current_name]:
                    seen[c.current_name] = c.t
            if c.t < ws:
                at_start = c.current
            else:
                if c.current is not None:
                    entered[c.current] += 1
                if c.previous is not None:
                    exited[c.previous] += 1
        last = cs[-1].current
        start = NEW if at_start is None else at_start
        end = ERASED if last is None else last
        if not (start == NEW and end == ERASED):
            flows[(start, end)] += 1
    sizes = {sid: np.cumsum(row).tolist() for sid, row in sorted(deltas.items())}
    return Timeline(
        days=[_date(day0 + i * DAY) for i in range(n_days)],
        sizes=sizes,
        window=(ws, t_hi),
        flows=dict(sorted(flows.items())),
        entered=dict(sorted(entered.items())),
        exited=dict(sorted(exited.items())),
        names={sid: sorted((t, n) for n, t in seen.items()) for sid, seen in sorted(names.items())},
    )


@dataclass(frozen=True)
class Rename:
    segment: int
    t: float
    old: str
    new: str


def renames(events: Iterable[ModelChange]) -> list[Rename]:
    """The renames among model events (drift events whose detail is ``renamed 'a' -> 'b'``, the
    names written as Python literals)."""
    out = []
    for e in events:
        m = _RENAMED.match(e.detail) if e.kind == "drift" else None
        if m is not None:
            out.append(Rename(e.segment, e.t, ast.literal_eval(m["old"]), ast.literal_eval(m["new"])))
    return sorted(out, key=lambda r: (r.t, r.segment))
