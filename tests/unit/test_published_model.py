"""The published model (topic segments.model) is documented data: it validates against
schemas/published_model.schema.json, carries the engine's checkpoint, and plain Python scores
with it as the engine does (the example of docs/model-format.md, run as written)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest

from models.contracts import PublishedModel
from models.segments.engine import SegmentEngine
from models.segments.published import checkpoint_of, published_model
from stream.io.sinks import OutputSink
from stream.io.sinks.collect import CollectSink
from tests.helpers import rows_near_segments as rows
from tests.helpers import taught_learner

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def taught() -> tuple[SegmentEngine, CollectSink]:
    return taught_learner()  # type: ignore[return-value]


# -- the published model ------------------------------------------------------------------------
class _Captured(OutputSink):
    def __init__(self) -> None:
        self.emitted: list[tuple[Any, ...]] = []

    def _emit(self, kind: str, *args: Any) -> None:
        self.emitted.append((kind, *args))


def test_the_published_record_is_documented_data(taught: tuple[SegmentEngine, CollectSink]) -> None:
    engine, sink = taught
    assert [m.version for m in sink.published] == list(range(1, engine.version + 1))
    out = _Captured()
    out.model_snapshot(published_model(engine), engine.snapshot())
    ((kind, value),) = out.emitted
    assert kind == "model_snapshot"
    doc = json.loads(value)
    schema = json.loads((ROOT / "schemas" / "published_model.schema.json").read_text())
    jsonschema.validate(doc, schema)
    model = PublishedModel.model_validate(doc)
    assert model.version == engine.version and model.feature_names == list(engine.feature_names)
    assert [s.id for s in model.segments] == sorted(engine.live_names())
    assert model.btyd is not None and model.btyd.bgnbd.r == engine.value_model.bgnbd.r  # type: ignore[union-attr]
    # The transform is the engine's model_space, the profiles its segments'.
    t = model.transform
    X = rows(engine, 50)
    shaped = engine.vectorizer.shape(X)
    z = (shaped - np.array(t.mean)) / np.array(t.std) * np.array(t.weight)
    assert np.allclose(z, engine.model_space(X), rtol=0, atol=1e-12)
    assert [s.profile for s in model.segments] == [p.centroid for p in engine.segments()]
    # The checkpoint it carries is the engine.
    assert checkpoint_of(value) == engine.snapshot()


def example_code(doc: str) -> str:
    text = (ROOT / doc).read_text()
    (code,) = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "nearest_segment" in b]
    return code


@pytest.mark.parametrize("doc", ["docs/model-format.md", "README.md"])
def test_the_documented_plain_python_example_scores_like_the_engine(
    taught: tuple[SegmentEngine, CollectSink], doc: str
) -> None:
    engine, _ = taught
    code = example_code(doc)
    assert not re.search(r"^\s*(import|from)\s+(?!json$|math$)", code, re.M), "json and math only"
    out = _Captured()
    out.model_snapshot(published_model(engine), engine.snapshot())
    record_value = out.emitted[0][1]
    X = rows(engine, 60, seed=7)
    X[0, 0] = np.nan  # non-finite values, as the vectoriser takes them
    X[1, 1] = np.inf
    expected = engine.assign(X).segment_ids.tolist()
    got = []
    for row in X.tolist():
        scope: dict[str, Any] = {"record_value": record_value, "feature_row": row, "print": lambda *a: None}
        exec(code, scope)
        got.append(scope["segment"]["id"])
    assert got == expected
    assert len(set(expected)) > 1  # several segments among the vectors
