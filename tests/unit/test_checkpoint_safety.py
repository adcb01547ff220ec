"""The checkpoint is data, not code (issue #23, docs/model-format.md): it round-trips exactly
and deterministically, and refuses pickles, unknown types and malformed blobs without running
anything, wherever it comes from (the Redis model key, a record of segments.model)."""

from __future__ import annotations

import base64
import builtins
import io
import json
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models.segments.checkpoint import MAGIC, PICKLED_MAGIC, CheckpointError
from models.segments.engine import DEFAULT_FEATURES, EngineParams, SegmentEngine
from models.segments.published import checkpoint_of
from stream.config import load
from stream.errors import ConfigError
from stream.io.sinks.collect import CollectSink
from stream.runtime.engines import load_engine
from stream.state import MemoryFeatureStore
from tests.helpers import rows_near_segments as rows
from tests.helpers import taught_learner

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def taught() -> tuple[SegmentEngine, CollectSink]:
    return taught_learner()  # type: ignore[return-value]


def one_line(e: BaseException) -> str:
    text = str(e)
    assert "\n" not in text and text, text
    return text


# -- round trip ---------------------------------------------------------------------------------
@pytest.mark.parametrize("waiting", [False, True])
def test_restore_of_a_snapshot_assigns_identically_and_snapshots_to_the_same_bytes(
    taught: tuple[SegmentEngine, CollectSink], waiting: bool
) -> None:
    engine, _ = taught
    blob = engine.snapshot(waiting=waiting)
    assert blob.startswith(MAGIC) and engine.snapshot(waiting=waiting) == blob  # deterministic
    restored = SegmentEngine.restore(blob)
    assert restored.snapshot(waiting=waiting) == blob
    X = rows(engine)
    a, b = engine.assign(X), restored.assign(X)
    for field in ("segment_ids", "membership", "ids", "confidence", "outlier", "distances", "versions"):
        assert np.array_equal(getattr(a, field), getattr(b, field)), field
    assert restored.segments() == engine.segments() and restored.live_names() == engine.live_names()
    assert restored.value_many(X) == engine.value_many(X)
    assert restored.rfm(X[0]) == engine.rfm(X[0])
    assert restored.hierarchy().render() == engine.hierarchy().render()


def test_a_restored_engine_learns_on_as_the_original() -> None:
    params = EngineParams(n_segments=3, warmup_vectors=300, update_every=300, warmup_days=0, population=0)
    raw = np.abs(np.random.default_rng(0).normal(1.0, 0.5, (1200, len(DEFAULT_FEATURES))))
    t = np.arange(1200.0)
    a = SegmentEngine(params)
    a.process(raw[:450], t[:450])  # mid-way between versions: rows pending
    b = SegmentEngine.restore(a.snapshot())
    ra, ea = a.process(raw[450:], t[450:])
    rb, eb = b.process(raw[450:], t[450:])
    assert np.array_equal(ra.segment_ids, rb.segment_ids) and ea == eb
    assert a.snapshot() == b.snapshot()


def test_per_partition_clocks_encode_in_partition_order_whichever_came_first() -> None:
    # Seen in a broker failover: the checkpoint listed the partitions' clocks and fed positions
    # in the order the partitions first delivered, so one model encoded to two byte strings.
    params = EngineParams(n_segments=3, warmup_vectors=300, update_every=300, warmup_days=0, population=0)
    raw = np.abs(np.random.default_rng(0).normal(1.0, 0.5, (40, len(DEFAULT_FEATURES))))
    t = np.arange(40.0)
    engines = []
    for order in ((3, 2), (2, 3)):
        e = SegmentEngine(params)
        for k, source in enumerate(order):
            rows = slice(20 * k, 20 * k + 20)
            list(e.process_chunks(raw[rows], t[rows], sources=np.full(20, source), positions=np.arange(20)))
        assert list(e._source_t) == [2, 3] and list(e.fed) == [2, 3]
        engines.append(e)
    assert SegmentEngine.restore(engines[0].snapshot()).fed == engines[1].fed


def test_a_warming_engine_round_trips() -> None:
    e = SegmentEngine(EngineParams())
    e.process(np.ones((10, len(DEFAULT_FEATURES))), np.arange(10.0))
    assert SegmentEngine.restore(e.snapshot()).snapshot() == e.snapshot()


def test_writing_refuses_what_it_cannot_encode_as_data() -> None:
    e = SegmentEngine(EngineParams())
    e.stowaway = Path("/tmp")  # type: ignore[attr-defined]
    with pytest.raises(CheckpointError, match="PosixPath has no safe encoding"):
        e.snapshot()


# -- refusals -----------------------------------------------------------------------------------
class _Creates:
    """Unpickling this creates a file (a stand-in for any code a pickle can run)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (builtins.open, (str(self.path), "w"))


def crafted(path: Path, magic: bytes = PICKLED_MAGIC) -> bytes:
    payload = magic + pickle.dumps({"params": _Creates(path)})
    pickle.loads(payload[len(magic) :])["params"].close()  # the payload works: it does create the file
    assert path.exists()
    path.unlink()
    return payload


def test_an_old_pickled_checkpoint_is_refused_without_unpickling(tmp_path: Path) -> None:
    evil = tmp_path / "pwned"
    with pytest.raises(CheckpointError) as e:
        SegmentEngine.restore(crafted(evil))
    assert "older segstream (pickle)" in one_line(e.value) and "fresh namespace" in str(e.value)
    assert not evil.exists()
    for magic in (b"", MAGIC):  # a bare pickle, a pickle behind the new magic line
        with pytest.raises(CheckpointError) as e:
            SegmentEngine.restore(crafted(evil, magic))
        assert "fresh namespace" in one_line(e.value)
        assert not evil.exists()


def test_a_pickle_in_the_redis_model_key_is_refused(tmp_path: Path) -> None:
    evil = tmp_path / "pwned"
    store = MemoryFeatureStore()
    store.save_model(crafted(evil), 3)
    with pytest.raises(ConfigError) as e:
        load_engine(load(), store)
    assert "older segstream (pickle)" in one_line(e.value) and "--namespace NEW" in str(e.value)
    assert not evil.exists()


def test_a_pickle_in_a_model_record_is_refused(tmp_path: Path) -> None:
    evil = tmp_path / "pwned"
    for snapshot in (crafted(evil), crafted(evil, b"")):
        old_record = json.dumps({"version": 3, "snapshot_b64": base64.b64encode(snapshot).decode()})
        with pytest.raises(CheckpointError, match="carries no checkpoint"):
            checkpoint_of(old_record.encode())
        record = json.dumps({"version": 3, "checkpoint_b64": base64.b64encode(snapshot).decode()})
        with pytest.raises(CheckpointError) as e:
            SegmentEngine.restore(checkpoint_of(record.encode()))
        one_line(e.value)
        assert not evil.exists()
    with pytest.raises(CheckpointError, match="not a published model"):
        checkpoint_of(b"\x80\x04not json")


def reframed(blob: bytes, edit: Any) -> bytes:
    """``blob`` with its manifest edited (``edit`` takes and returns the manifest's text)."""
    at = len(MAGIC) + 8
    size = int.from_bytes(blob[len(MAGIC) : at], "big")
    text = edit(blob[at : at + size].decode()).encode()
    return MAGIC + len(text).to_bytes(8, "big") + text + blob[at + size :]


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        (lambda m: m.replace('"$obj":"Vectorizer"', '"$obj":"Popen"', 1), "type 'Popen' is not one"),
        (lambda m: m.replace('"$obj":"Vectorizer"', '"$obj":"subprocess.Popen"', 1), "is not one"),
        (lambda m: m.replace('"$obj":"Vectorizer"', '"$obj":"SegmentEngine"', 1), "is not one"),
        (lambda m: m.replace('"$tuple":', '"$eval":', 1), "unknown tag '$eval'"),
        (lambda m: m.replace('"$rng":"PCG64"', '"$rng":"MT19937"', 1), "random generator"),
        (lambda m: m.replace('{"$nd":0}', '{"$nd":100000}', 1), "out of range"),
        (lambda m: m.replace('"version":', '"__class__":', 1), "attribute name"),
        (lambda m: m[:-9], "malformed checkpoint"),
        (lambda m: m.replace('"format":"segstream-engine/2"', '"format":"x"', 1), "format"),
    ],
)
def test_unknown_types_and_malformed_manifests_are_refused(
    taught: tuple[SegmentEngine, CollectSink], edit: Any, says: str
) -> None:
    blob = reframed(taught[0].snapshot(), edit)
    with pytest.raises(CheckpointError) as e:
        SegmentEngine.restore(blob)
    assert says in one_line(e.value) and "fresh namespace" in str(e.value)


def test_arrays_of_objects_and_truncated_blobs_are_refused(taught: tuple[SegmentEngine, CollectSink]) -> None:
    blob = taught[0].snapshot()
    for bad in (blob[: len(blob) // 2], blob[: len(MAGIC) + 3], MAGIC):
        with pytest.raises(CheckpointError) as e:
            SegmentEngine.restore(bad)
        one_line(e.value)
    # An .npy of Python objects (np.load would unpickle it with allow_pickle=True) in place of
    # the first array.
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    obj = buf.getvalue()

    at = len(MAGIC) + 8
    arrays = blob[at + int.from_bytes(blob[len(MAGIC) : at], "big") :]

    def first_array(m: str) -> str:
        doc = json.loads(m)
        doc["arrays"][0] = [len(arrays), len(obj)]  # appended after the original arrays
        return json.dumps(doc)

    with pytest.raises(CheckpointError) as e:
        SegmentEngine.restore(reframed(blob, first_array) + obj)
    assert "array of Python objects" in one_line(e.value)


def test_no_pickle_on_any_path_that_reads_redis_or_kafka() -> None:
    """stream/ and models/ never import pickle, marshal, dill, joblib or shelve, nor ask numpy to
    unpickle, except in the two process-internal pipes below (never fed from Redis or Kafka)."""
    allowed = {
        # The parent writes a worker's settings to the child it started, over the child's stdin.
        "stream/runtime/workers.py",
        # The service talks to its own publisher child over a multiprocessing pipe.
        "stream/io/sinks/process.py",
    }
    banned = re.compile(
        r"^\s*(import|from)\s+(pickle|_pickle|cPickle|marshal|dill|joblib|shelve|cloudpickle)\b"
        r"|\bUnpickler\b|\bpickle\.loads?\(|allow_pickle\s*=\s*True|\b__import__\(|\beval\(",
        re.M,
    )
    found = []
    for path in sorted([*ROOT.glob("stream/**/*.py"), *ROOT.glob("models/**/*.py")]):
        rel = path.relative_to(ROOT).as_posix()
        if rel in allowed:
            continue
        for m in banned.finditer(path.read_text()):
            found.append(f"{rel}: {m.group(0).strip()}")
    assert not found, found
    for rel in allowed:  # they still exist, and still use pickle (else drop them from the list)
        assert "pickle" in (ROOT / rel).read_text(), rel
    for path in [*ROOT.glob("stream/**/*.py"), *ROOT.glob("models/**/*.py")]:  # np.load stays safe
        for call in re.findall(r"np\.load\(.*", path.read_text()):
            assert "allow_pickle=False" in call, (path, call)


def test_an_array_header_claiming_more_than_its_data_is_refused(
    taught: tuple[SegmentEngine, CollectSink],
) -> None:
    """numpy would allocate what a header claims before finding the data short."""
    blob = taught[0].snapshot()
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False, "shape": (10**12,)})
    huge = buf.getvalue()
    at = len(MAGIC) + 8
    arrays = blob[at + int.from_bytes(blob[len(MAGIC) : at], "big") :]

    def first_array(m: str) -> str:
        doc = json.loads(m)
        doc["arrays"][0] = [len(arrays), len(huge)]
        return json.dumps(doc)

    with pytest.raises(CheckpointError) as e:
        SegmentEngine.restore(reframed(blob, first_array) + huge)
    assert "header does not match" in one_line(e.value)


def test_parameters_are_checked_as_when_built(taught: tuple[SegmentEngine, CollectSink]) -> None:
    blob = reframed(taught[0].snapshot(), lambda m: m.replace('"model":"microclusters"', '"model":"nope"', 1))
    with pytest.raises(CheckpointError) as e:
        SegmentEngine.restore(blob)
    assert "unknown model 'nope'" in one_line(e.value)


def test_parameters_of_another_release_are_named(taught: tuple[SegmentEngine, CollectSink]) -> None:
    """A checkpoint whose engine parameters are not this release's (one gained or lost since) is
    refused naming the difference, not listing all of them."""
    renamed = '"first_glance_days":'
    blob = reframed(taught[0].snapshot(), lambda m: m.replace('"first_look_days":', renamed, 1))
    with pytest.raises(CheckpointError) as e:
        SegmentEngine.restore(blob)
    line = one_line(e.value)
    assert "another release (without ['first_look_days'], with ['first_glance_days'])" in line
    assert "'margin'" not in line and "fresh namespace" in line


def test_the_service_refuses_a_checkpoint_whose_learner_cannot_learn() -> None:
    e = SegmentEngine(EngineParams(model="kmeans", n_segments=2, warmup_vectors=50, warmup_days=0))
    e.process(np.abs(np.random.default_rng(1).normal(1, 1, (60, len(DEFAULT_FEATURES)))), np.arange(60.0))
    store = MemoryFeatureStore()
    store.save_model(e.snapshot(), e.version)
    with pytest.raises(ConfigError) as err:
        load_engine(load(), store)
    assert "'kmeans', whose learner has no safe checkpoint" in one_line(err.value)
    with pytest.raises(ConfigError, match="River objects"):
        load_engine(load(overrides={"model": {"model": "kmeans"}}), MemoryFeatureStore())
