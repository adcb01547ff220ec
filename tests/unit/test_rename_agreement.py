"""After a segment is renamed, the change stream, `customer` and `export` agree on each customer's
segment name (docs/decisions/0022-names-follow-their-claims.md): a change carries the names of its
model version; a consumer applies the `renamed` model events of later versions; `customer` and
`export` (and the `changes` table, through ``names_now``) read the current name by id.

The real pipeline on an in-memory store, on a small log whose personas shift mid-way, with a
rename after one version of failed claims so that renames happen within 60 days."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from models.contracts import SegmentChange
from models.segments.engine import SegmentEngine
from models.sim import generate
from stream.config import load
from stream.io.sinks.collect import CollectSink
from stream.ops.evaluate import log_records
from stream.ops.export import customer_view, iter_views, names_now
from stream.runtime.engines import engine_params
from stream.state import MemoryFeatureStore
from tests.helpers import replay_in_memory

OVERRIDES = {
    "topics": {"partitions": 1},
    "model": {"update_every": 500, "warmup_vectors": 500, "population_step": 1.0},
}


@pytest.fixture(scope="module")
def replayed() -> tuple[MemoryFeatureStore, SegmentEngine, CollectSink, Any]:
    settings = load(overrides=OVERRIDES)
    generated = generate(200, 60, seed=1, scenario="sudden_shift")
    records = log_records("interactions", ((r.key, r.value) for r in generated.records))
    engine = SegmentEngine(
        replace(engine_params(settings), rename_versions=1), feature_params=settings.features.params()
    )
    store, engine, sink = replay_in_memory(settings, records, 500, engine)
    return store, engine, sink, settings


def follow(change: SegmentChange, renames: list[dict[str, Any]]) -> str:
    """What a consumer of the two topics knows as the name of the change's segment now."""
    assert change.current is not None
    name = change.current.name
    for ev in renames:  # in publication order
        if ev["segment_id"] == change.current.id and ev["version"] > change.model_version:
            assert ev["previous_name"] == name
            name = ev["name"]
    return name


def test_changes_customer_and_export_agree_after_renames(
    replayed: tuple[MemoryFeatureStore, SegmentEngine, CollectSink, Any],
) -> None:
    store, engine, sink, settings = replayed
    renames = [e for e in sink.model_events if e["kind"] == "renamed"]
    assert renames, "the scenario this test is about: segments were renamed"
    assert all(e["name"] and e["previous_name"] and e["name"] in e["detail"] for e in renames)
    latest: dict[str, SegmentChange] = {}
    for c in sink.changes:
        latest[c.customer_id] = c
    exported = {v["customer_id"]: v for v in iter_views(store, 1, settings.features.params())}
    stale = 0
    for cid, change in latest.items():
        assert change.current is not None
        view = exported[cid]
        blob = store.get_states(0, [cid])[0]
        shown = customer_view(0, cid, blob, settings.features.params(), engine, store.watermark(0))
        assert view["segment"] == shown["segment"]  # export and customer
        assert view["segment"]["id"] == change.current.id
        assert follow(change, renames) == view["segment"]["name"]  # the change stream, followed
        table = names_now(change.model_dump(mode="json"), engine.name_of)  # the `changes` table
        assert table["current"]["name"] == view["segment"]["name"]
        stale += change.current.name != view["segment"]["name"]
    assert stale > 0, "no published change was renamed since: the test shows nothing"
    assert engine.currency == "EUR"  # the generator's one currency, seen by the pipeline


def _offline_changes(monkeypatch: pytest.MonkeyPatch, engine: SegmentEngine, published: list[bytes]) -> None:
    """`segstream changes` reading these records as the topic and ``engine`` as the store's model."""
    import stream.cli.common
    import stream.cli.lookups
    import stream.io.kafka

    class Store:
        def load_model(self) -> tuple[int, bytes]:
            return engine.version, engine.snapshot()

    monkeypatch.setattr(stream.io.kafka, "read_latest", lambda *a, **kw: published)
    monkeypatch.setattr(stream.cli.lookups, "open_store", lambda settings: Store())
    monkeypatch.setattr(stream.cli.common.console, "width", 400)


def test_the_changes_table_names_segments_as_customer_does(
    replayed: tuple[MemoryFeatureStore, SegmentEngine, CollectSink, Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from stream.cli import main

    _, engine, sink, _ = replayed
    renamed = next(  # renamed, not retired (a retired segment keeps its last name, marked so)
        c
        for c in reversed(sink.changes)
        if c.current
        and c.current.name != engine.name_of(c.current.id)
        and c.current.id in engine.live_names()
    )
    published = renamed.model_dump_json().encode()
    _offline_changes(monkeypatch, engine, [published])
    assert main(["changes", "--customer", renamed.customer_id]) == 0
    assert renamed.current is not None
    assert f"{engine.name_of(renamed.current.id)} (was {renamed.current.name})" in capsys.readouterr().out
    # --json prints the record as published (a consumer applies the renamed events).
    assert main(["changes", "--json"]) == 0
    assert capsys.readouterr().out.strip() == published.decode()


def test_the_changes_table_shows_a_stage_change_as_stages_not_an_erase(
    replayed: tuple[MemoryFeatureStore, SegmentEngine, CollectSink, Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from stream.cli import main

    _, engine, sink, _ = replayed
    first = next(c for c in sink.changes if c.kind == "stage" and c.current is None)  # before any segment
    placed = next(c for c in sink.changes if c.kind == "stage" and c.current is not None)
    _offline_changes(monkeypatch, engine, [c.model_dump_json().encode() for c in (first, placed)])
    assert main(["changes"]) == 0
    out = capsys.readouterr().out
    assert "(erased)" not in out
    assert f"stage {first.stage}" in out and f"stage {placed.previous_stage}" in out
    # The segment's name now (with "(was ...)" if it was renamed since: the table names as of now).
    assert placed.current is not None and f"(in {engine.name_of(placed.current.id)}" in out
