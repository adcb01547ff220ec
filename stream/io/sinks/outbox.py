"""A batch's outputs as bytes in Redis, written in the same atomic step as the state they describe.

Why: published before the state (the order until session 16), a crash between the two left a
change on the topics that Redis did not hold, and the redo computed it again, maybe with another
model version: one ``change_id`` with two payloads, a ``seq`` published twice. Written with the
state and published after it, every published change is one the state holds, and a restart
publishes the very bytes that were written (docs/decisions/0026).

The encoding is data, never code (no pickle: whoever can write a Redis key must not run code in
the service): a version byte, then per output a header ``>BIIq?`` (kind, key length, value
length, emitted-at ms, tombstone) and the key and value bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

from stream.errors import StateLost

__all__ = ["OutboxError", "decode_outbox", "encode_outbox"]

_FORMAT = 1
_HEADER = struct.Struct(">BIIq?")
_KINDS = ("change", "dead_letter")


class OutboxError(StateLost, ValueError):
    """An outbox entry that is not this format (a foreign or damaged key): the service stops with
    one line rather than publish or skip what it cannot read."""


def encode_outbox(items: Sequence[tuple[str, tuple[Any, ...]]]) -> bytes:
    """``(kind, args)`` as :class:`~stream.io.sinks.base.OutputSink` emits them: a change's
    ``(key, payload, tombstone, emitted_ms)``, a dead letter's ``(key, value)``."""
    parts = [bytes([_FORMAT])]
    for kind, args in items:
        if kind == "change":
            key, value, tombstone, emitted_ms = args
        else:
            key, value = args
            tombstone, emitted_ms = False, 0
        parts += (_HEADER.pack(_KINDS.index(kind), len(key), len(value), emitted_ms, tombstone), key, value)
    return b"".join(parts)


def decode_outbox(blob: bytes) -> list[tuple[str, tuple[Any, ...]]]:
    """The outputs of one entry, in the order they were emitted; :class:`OutboxError` if it is not
    one :func:`encode_outbox` wrote."""
    if not blob or blob[0] != _FORMAT:
        raise OutboxError(f"outbox entry of unknown format {blob[:1]!r}")
    out: list[tuple[str, tuple[Any, ...]]] = []
    at, size = 1, len(blob)
    while at < size:
        if at + _HEADER.size > size:
            raise OutboxError(f"outbox entry truncated at byte {at} of {size}")
        kind, nk, nv, emitted_ms, tombstone = _HEADER.unpack_from(blob, at)
        at += _HEADER.size
        if kind >= len(_KINDS) or at + nk + nv > size:
            raise OutboxError(f"outbox entry damaged at byte {at} of {size}")
        key, value = blob[at : at + nk], blob[at + nk : at + nk + nv]
        at += nk + nv
        if _KINDS[kind] == "change":
            out.append(("change", (key, value, tombstone, emitted_ms)))
        else:
            out.append(("dead_letter", (key, value)))
    return out
