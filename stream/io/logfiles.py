"""Event log files: JSONL (optionally gzip), one raw event per line, as produced to Kafka."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from stream.errors import SegstreamError


def open_text(path: Path, mode: str = "rt") -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, mode, encoding="utf-8")  # type: ignore[return-value]
    return path.open(mode, encoding="utf-8")


def write_lines(path: Path, values: Iterable[bytes]) -> int:
    """Write raw record values, one per line; returns the count."""
    n = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with open_text(path, "wt") as f:
        for v in values:
            text = v.decode("utf-8", "replace")
            if "\n" in text:
                raise SegstreamError("a record value contains a newline and cannot be stored as JSONL")
            f.write(text)
            f.write("\n")
            n += 1
    return n


def key_of(value: bytes) -> bytes | None:
    """The partitioning key (customer_id) of a raw event, or None when it cannot be read."""
    try:
        obj = json.loads(value)
    except (ValueError, UnicodeDecodeError):
        return None
    cid = obj.get("customer_id") if isinstance(obj, dict) else None
    return cid.encode() if isinstance(cid, str) else None


def read_lines(path: Path) -> Iterator[tuple[bytes | None, bytes]]:
    """Yield (key, value) per non-empty line of a JSONL(.gz) log."""
    if not path.exists():
        raise SegstreamError(f"log file not found: {path}")
    with open_text(path) as f:
        for raw in f:
            line = raw.rstrip("\n")
            if not line:
                continue
            value = line.encode()
            yield key_of(value), value
