"""The learner's rows of a batch, as bytes in Redis beside the state they came from.

Why: the model is checkpointed once per version, and rows wait in the learner for slower
partitions; a crash used to lose what was learned since the checkpoint and every row still
waiting, so the model after a restart depended on where the crash fell. Each partition's write
now carries the rows the learner took in (``ns:{p}:learn``, in the same atomic step as the
state); a restarted learner restores its checkpoint, gets its waiting rows back from here and
learns again what came after it (docs/decisions/0027).

Encoding: data only (read with ``numpy.frombuffer`` of declared numeric dtypes, never pickle):
a magic, a JSON header of column names, dtypes and shapes, then the columns' bytes.
"""

from __future__ import annotations

import json
import math

import numpy as np

from stream.errors import StateLost

__all__ = ["LearnLogError", "decode_rows", "encode_rows", "entry_name", "offset_of", "position", "rows_after"]

_MAGIC = b"SSLEARN1"
_DTYPES = {"<i8", "<f8", "<u8", "|b1"}
_COLUMNS = {"pos", "t", "learn", "key", "raw", "candidate", "snap"}
# A row's position: its record's offset, then its place among the rows of that record (an
# event's row, then the quiet customers it made due).
_ROW_BITS = 20


class LearnLogError(StateLost, ValueError):
    """A learn-log entry that is not this format (a foreign or damaged key): the learner stops
    with one line rather than learn from what it cannot read."""


def position(offset: int, k: int) -> int:
    return (offset << _ROW_BITS) | k


def offset_of(pos: int) -> int:
    """The offset of the record a row at this position came from."""
    return pos >> _ROW_BITS


def entry_name(last_position: int) -> str:
    """An entry's field name: its last row's position, zero-padded so names sort by it."""
    return f"{last_position:020d}"


def encode_rows(columns: dict[str, np.ndarray]) -> bytes:
    """Named numeric columns (``pos``, ``t``, ``learn``, ``key``, ``raw`` of the learned rows,
    ``candidate`` and ``snap`` of the rows the customer sample could take)."""
    header, body = [], []
    for name in sorted(columns):
        a = np.ascontiguousarray(columns[name])
        if a.dtype.str not in _DTYPES or name not in _COLUMNS:
            raise ValueError(f"learn-log column {name!r} of dtype {a.dtype.str}")
        header.append([name, a.dtype.str, list(a.shape)])
        body.append(a.tobytes())
    text = json.dumps(header, separators=(",", ":")).encode()
    return b"".join([_MAGIC, len(text).to_bytes(4, "big"), text, *body])


def decode_rows(blob: bytes) -> dict[str, np.ndarray]:
    """The columns of one entry; :class:`LearnLogError` if it is not one :func:`encode_rows` wrote."""
    if not blob.startswith(_MAGIC):
        raise LearnLogError(f"learn-log entry of unknown format {blob[:8]!r}")
    try:
        at = len(_MAGIC) + 4
        size = int.from_bytes(blob[len(_MAGIC) : at], "big")
        header = json.loads(blob[at : at + size])
        at += size
        out: dict[str, np.ndarray] = {}
        for name, dtype, shape in header:
            if (
                name not in _COLUMNS
                or dtype not in _DTYPES
                or not all(type(n) is int and n >= 0 for n in shape)
            ):
                raise LearnLogError(f"learn-log column {str(name)[:20]!r} of dtype {str(dtype)[:8]}")
            n = math.prod(shape) * np.dtype(dtype).itemsize
            if at + n > len(blob):
                raise LearnLogError("learn-log entry truncated")
            out[name] = np.frombuffer(blob, dtype=dtype, count=math.prod(shape), offset=at).reshape(shape)
            at += n
    except LearnLogError:
        raise
    except Exception as e:  # malformed JSON or header: one line
        raise LearnLogError(f"malformed learn-log entry ({type(e).__name__})") from None
    if at != len(blob):
        raise LearnLogError("learn-log entry longer than its header says")
    return out


def rows_after(columns: dict[str, np.ndarray], last_position: int) -> dict[str, np.ndarray] | None:
    """The rows of an entry's columns after ``last_position`` (None: none): ``raw`` holds the
    learned rows only and ``snap`` the candidate rows only, so they are cut by those masks."""
    keep = columns["pos"] > last_position
    if not keep.any():
        return None
    out = {}
    for name, values in columns.items():
        if name == "raw":
            out[name] = values[keep[columns["learn"]]]
        elif name == "snap":
            out[name] = values[keep[columns["candidate"]]]
        else:
            out[name] = values[keep]
    return out
