"""The engine's checkpoint: its exact state as data, and back (docs/model-format.md).

A checkpoint is one bytes blob: the magic line ``segstream-engine/2``, the length of a JSON
manifest (8 bytes, big-endian), the manifest, then numpy arrays back to back, each in the ``.npy``
format (``numpy.save(..., allow_pickle=False)``) at the offset the manifest gives. The manifest
holds the structure: plain JSON for numbers, strings, lists and ``None``; tagged objects for the
rest (``{"$tuple": [...]}``, ``{"$dict": [[k, v], ...]}``, ``{"$nd": i}`` for array ``i``,
``{"$obj": "Vectorizer", "ref": n, "state": {...}}`` for an object of segstream's own...).

Reading builds only the classes of :data:`CLASSES`, an explicit allowlist of segstream's own
classes, by ``cls.__new__`` and setting attributes (dataclass fields only for dataclasses); a type
name found in the data is looked up in that dict, never imported. Arrays are read with
``allow_pickle=False``. Anything else, or anything malformed, raises :class:`CheckpointError`, and
so does a checkpoint of the releases that pickled (they are never unpickled).

River's models (the catalog's alternatives to ``microclusters``) keep River objects that have no
such encoding: their checkpoint keeps the engine's versions (it assigns, names and profiles as the
original) but not the learner's state (a :class:`~models.segments.river_models.FrozenLearner`
that refuses to learn); the service runs only models whose learner is checkpointed.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from models.features import FeatureParams
from models.segments.alignment import SourceAligner
from models.segments.btyd import BGNBD, GammaGamma
from models.segments.microclusters import MicroClusterKMeans
from models.segments.naming import SegmentNamer, _Entry
from models.segments.params import EngineParams
from models.segments.population import PopulationSample
from models.segments.registry import ModelEvent, SegmentRegistry
from models.segments.rfm import RFMScorer
from models.segments.river_models import FrozenLearner, MicroAdapter, RiverAdapter
from models.segments.value import ValueModel
from models.segments.vectorize import Vectorizer
from models.segments.version import ModelVersion

__all__ = ["CLASSES", "FORMAT", "MAGIC", "CheckpointError", "dump", "load"]

FORMAT = "segstream-engine/2"
MAGIC = FORMAT.encode() + b"\n"
PICKLED_MAGIC = b"segstream-engine/1\n"  # the releases that pickled the engine's attributes
_REPLAY = "replay the log into a fresh namespace (`segstream replay ... --namespace NEW`)"
E = TypeVar("E")

# The classes a checkpoint may hold, by the name the manifest gives them. The engine's own class
# is the one `load` is called with ("SegmentEngine").
CLASSES: dict[str, type[Any]] = {
    c.__name__: c
    for c in (
        BGNBD,
        EngineParams,
        FeatureParams,
        FrozenLearner,
        GammaGamma,
        MicroAdapter,
        MicroClusterKMeans,
        ModelEvent,
        ModelVersion,
        PopulationSample,
        RFMScorer,
        SegmentNamer,
        SegmentRegistry,
        SourceAligner,
        ValueModel,
        Vectorizer,
        _Entry,
    )
}
# Classes whose state is their own __getstate__ / __setstate__ (a dict of plain values).
_OWN_STATE = (PopulationSample,)
_RNG = "PCG64"  # the one bit generator a checkpoint may hold (numpy's default)


class CheckpointError(ValueError):
    """A checkpoint that cannot be written or read safely; one line, saying what to do."""


def _refused(what: str) -> CheckpointError:
    return CheckpointError(f"model checkpoint refused: {what}; {_REPLAY}")


# -- writing ------------------------------------------------------------------------------------
class _Writer:
    def __init__(self) -> None:
        self.arrays: list[bytes] = []
        self._array_of: dict[int, int] = {}  # id(array) -> index: shared arrays stay shared
        self._ref_of: dict[int, int] = {}  # id(object) -> ref
        self._keep: list[Any] = []  # keeps the ids above alive while writing

    def array(self, a: np.ndarray) -> dict[str, int]:
        i = self._array_of.get(id(a))
        if i is None:
            if a.dtype.hasobject:
                raise CheckpointError("model checkpoint: an array of Python objects has no safe encoding")
            buf = io.BytesIO()
            np.save(buf, a, allow_pickle=False)
            i = self._array_of[id(a)] = len(self.arrays)
            self.arrays.append(buf.getvalue())
            self._keep.append(a)
        return {"$nd": i}

    def value(self, v: Any) -> Any:
        if v is None or isinstance(v, (bool, str)):
            return v
        if isinstance(v, int) and not isinstance(v, np.integer):
            return v
        if isinstance(v, float) and not isinstance(v, np.floating):
            return v if math.isfinite(v) else {"$float": repr(v)}
        if isinstance(v, (np.ndarray, np.generic)):
            # A numpy scalar is a 0-d array: its dtype comes back with it.
            return self.array(v) if isinstance(v, np.ndarray) else {"$scalar": self.array(np.asarray(v))}
        if isinstance(v, list):
            return [self.value(x) for x in v]
        if isinstance(v, tuple):
            return {"$tuple": [self.value(x) for x in v]}
        if isinstance(v, (set, frozenset)):
            items = [self.value(x) for x in _ordered(v)]
            return {"$frozenset" if isinstance(v, frozenset) else "$set": items}
        if isinstance(v, dict):
            return {"$dict": [[self.value(k), self.value(x)] for k, x in v.items()]}
        if isinstance(v, np.random.Generator):
            bits = v.bit_generator
            if type(bits).__name__ != _RNG:
                raise CheckpointError(f"model checkpoint: a {type(bits).__name__} random generator")
            return {"$rng": _RNG, "state": self.value(bits.state)}
        return self.obj(v)

    def obj(self, v: Any) -> Any:
        cls = type(v)
        name = cls.__name__
        if CLASSES.get(name) is not cls:
            raise CheckpointError(f"model checkpoint: {cls.__module__}.{name} has no safe encoding")
        ref = self._ref_of.get(id(v))
        if ref is not None:
            return {"$ref": ref}
        ref = self._ref_of[id(v)] = len(self._ref_of)
        self._keep.append(v)
        if isinstance(v, _OWN_STATE):
            state = v.__getstate__()
        elif dataclasses.is_dataclass(v):
            state = {f.name: getattr(v, f.name) for f in dataclasses.fields(v)}
        else:
            state = vars(v)
        return {"$obj": name, "ref": ref, "state": self.attributes(state)}

    def attributes(self, state: dict[str, Any]) -> dict[str, Any]:
        """Attributes in name order: arrays are numbered in the order the reader meets them."""
        return {k: self.value(state[k]) for k in sorted(state)}


def _ordered(items: set[Any] | frozenset[Any]) -> list[Any]:
    """A set's items in one order whatever its history (same set, same bytes)."""
    try:
        return sorted(items)
    except TypeError:
        return sorted(items, key=repr)


def dump(engine: Any, waiting: bool | None = False) -> bytes:
    """The engine's state. Rows waiting for other partitions (``align_sources``) are kept
    without their feature columns when ``waiting`` is False (named by source and position: during
    a catch-up read they can be weeks of rows, tens of megabytes, too much for every version's
    checkpoint); the service's learn log gives them back on restore (``SegmentEngine.refill``).
    ``waiting`` None leaves them out altogether (the published model's copy: a Kafka record,
    read by nobody who learns); True keeps them whole."""
    state = dict(engine.__dict__)
    if waiting is None:
        state["_aligner"] = None
    elif not waiting and state.get("_aligner") is not None:
        state["_aligner"] = state["_aligner"].light()
    if isinstance(state.get("model"), RiverAdapter):
        state["model"] = FrozenLearner(state["model"].name)  # River's state stays in this process
    w = _Writer()
    body = w.attributes(state)
    offsets, at = [], 0
    for a in w.arrays:
        offsets.append([at, len(a)])
        at += len(a)
    manifest = {"format": FORMAT, "engine": body, "arrays": offsets}
    text = json.dumps(manifest, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()
    return b"".join([MAGIC, len(text).to_bytes(8, "big"), text, *w.arrays])


# -- reading ------------------------------------------------------------------------------------
class _Reader:
    def __init__(self, arrays: list[np.ndarray]) -> None:
        self.arrays = arrays
        self.refs: dict[int, Any] = {}

    def value(self, v: Any) -> Any:
        if v is None or isinstance(v, (bool, str, int, float)):
            return v
        if isinstance(v, list):
            return [self.value(x) for x in v]
        if not isinstance(v, dict) or len(v) == 0:
            raise _refused(f"unexpected {type(v).__name__} in the manifest")
        tag = min(v)
        reader = _TAGS.get(tag)
        if reader is None or set(v) != _KEYS.get(tag, {tag}):
            raise _refused(f"unknown tag {str(tag)[:40]!r} in the manifest")
        return reader(self, v)

    def nd(self, v: dict[str, Any]) -> np.ndarray:
        i = v["$nd"]
        if type(i) is not int or not 0 <= i < len(self.arrays):
            raise _refused("an array index out of range")
        return self.arrays[i]

    def obj(self, v: dict[str, Any]) -> Any:
        name, ref, state = v["$obj"], v["ref"], v["state"]
        cls = CLASSES.get(name) if isinstance(name, str) else None
        if cls is None:
            raise _refused(f"type {str(name)[:60]!r} is not one segstream's checkpoints may hold")
        if type(ref) is not int or ref in self.refs or not isinstance(state, dict):
            raise _refused(f"a malformed {name}")
        out: Any = object.__new__(cls)
        self.refs[ref] = out
        values = {k: self.value(x) for k, x in state.items()}
        _set_state(out, values, name)
        return out

    def ref(self, v: dict[str, Any]) -> Any:
        if v["$ref"] not in self.refs:
            raise _refused("a reference to an object not read yet")
        return self.refs[v["$ref"]]

    def rng(self, v: dict[str, Any]) -> np.random.Generator:
        if v["$rng"] != _RNG:
            raise _refused(f"a {str(v['$rng'])[:40]!r} random generator")
        g = np.random.Generator(np.random.PCG64())
        g.bit_generator.state = self.value(v["state"])
        return g

    def float_(self, v: dict[str, Any]) -> float:
        if v["$float"] not in ("inf", "-inf", "nan"):
            raise _refused("a malformed float")
        return float(v["$float"])

    def scalar(self, v: dict[str, Any]) -> Any:
        a = self.value(v["$scalar"])
        if not isinstance(a, np.ndarray) or a.ndim != 0:
            raise _refused("a malformed scalar")
        return a[()]

    def seq(self, v: dict[str, Any]) -> Any:
        ((tag, items),) = v.items()
        if not isinstance(items, list):
            raise _refused(f"a malformed {tag}")
        values = [self.value(x) for x in items]
        return {"$tuple": tuple, "$set": set, "$frozenset": frozenset}[tag](values)

    def dict_(self, v: dict[str, Any]) -> dict[Any, Any]:
        pairs = v["$dict"]
        if not isinstance(pairs, list) or not all(isinstance(p, list) and len(p) == 2 for p in pairs):
            raise _refused("a malformed dict")
        return {self.value(k): self.value(x) for k, x in pairs}


_TAGS: dict[str, Callable[[_Reader, dict[str, Any]], Any]] = {
    "$nd": _Reader.nd,
    "$obj": _Reader.obj,
    "$ref": _Reader.ref,
    "$rng": _Reader.rng,
    "$float": _Reader.float_,
    "$scalar": _Reader.scalar,
    "$tuple": _Reader.seq,
    "$set": _Reader.seq,
    "$frozenset": _Reader.seq,
    "$dict": _Reader.dict_,
}
_KEYS = {"$obj": {"$obj", "ref", "state"}, "$rng": {"$rng", "state"}}


def _set_state(out: Any, values: dict[str, Any], name: str) -> None:
    if not all(isinstance(k, str) and k.isidentifier() and not k.startswith("__") for k in values):
        raise _refused(f"a {name} with a malformed attribute name")
    if isinstance(out, _OWN_STATE):
        out.__setstate__(values)
    elif dataclasses.is_dataclass(out):
        fields = {f.name for f in dataclasses.fields(out)}
        if set(values) != fields:  # written by another release: name what differs
            missing, extra = sorted(fields - set(values)), sorted(set(values) - fields)
            raise _refused(f"a {name} from another release (without {missing}, with {extra})")
        for k, x in values.items():
            object.__setattr__(out, k, x)  # frozen dataclasses too
        if hasattr(out, "__post_init__"):  # its own checks (EngineParams': a known model...)
            out.__post_init__()
    else:
        out.__dict__.update(values)


def load(cls: type[E], data: bytes) -> E:
    """The engine ``data`` holds (a :class:`CheckpointError` if it is not a safe checkpoint)."""
    data = bytes(data)
    if data.startswith(PICKLED_MAGIC):
        raise CheckpointError(
            "model checkpoint refused: written by an older segstream (pickle), which this release "
            f"never unpickles; {_REPLAY}"
        )
    if not data.startswith(MAGIC):
        raise _refused(f"not a {FORMAT} checkpoint (starts {data[:20]!r})")
    try:
        at = len(MAGIC) + 8
        size = int.from_bytes(data[len(MAGIC) : at], "big")
        manifest = json.loads(data[at : at + size], parse_constant=_no_constant)
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise _refused("a manifest without its format")
        arrays = []
        base = at + size
        for lo, n in manifest["arrays"]:
            if type(lo) is not int or type(n) is not int or lo < 0 or n < 0 or base + lo + n > len(data):
                raise _refused("an array outside the checkpoint")
            arrays.append(_array(data[base + lo : base + lo + n]))
        reader = _Reader(arrays)
        body = manifest["engine"]
        if not isinstance(body, dict):
            raise _refused("a manifest without the engine")
        state = {k: reader.value(v) for k, v in body.items()}
        engine: Any = cls.__new__(cls)
        _set_state(engine, state, cls.__name__)
    except CheckpointError:
        raise
    except Exception as e:  # malformed data of any kind: one line, never a half-read engine
        detail = str(e).splitlines()[0][:120] if str(e) else ""
        raise _refused(f"malformed checkpoint ({type(e).__name__}: {detail})") from None
    return engine


def _array(npy: bytes) -> np.ndarray:
    """One .npy, its header checked against its size first (a header may not claim more data
    than there is: numpy would allocate it before finding out)."""
    f = io.BytesIO(npy)
    version = np.lib.format.read_magic(f)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, _, dtype = read(f)
    if dtype.hasobject:
        raise _refused("an array of Python objects (it would be unpickled)")
    if math.prod(shape) * dtype.itemsize != len(npy) - f.tell():
        raise _refused("an array whose header does not match its data")
    return np.load(io.BytesIO(npy), allow_pickle=False)


def _no_constant(name: str) -> float:
    raise _refused(f"a bare {name} in the manifest")
