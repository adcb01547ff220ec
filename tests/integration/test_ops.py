"""export, status, diff and the replay's refusal, on a replayed namespace."""

from __future__ import annotations

import csv
import io
import json
import pickle
from collections.abc import Callable, Iterator
from pathlib import Path

import jsonschema
import pytest
import redis
from kafka import KafkaAdminClient

from models.features import FEATURE_NAMES
from models.segments.checkpoint import PICKLED_MAGIC
from models.segments.engine import SegmentEngine
from models.segments.lifecycle import STAGES
from models.segments.published import checkpoint_of
from models.sim import generate
from stream.cli import main
from stream.io.logfiles import write_lines
from stream.ops.diff import NamespaceSnapshot, Segment, compare

from .harness import delete_topics, read_topic

CUSTOMERS = 120
MODEL_ENV = {"SEGSTREAM_MODEL__WARMUP_VECTORS": "300", "SEGSTREAM_MODEL__UPDATE_EVERY": "300"}
Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run_cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], settings_env: dict[str, str]
) -> Run:
    for k, v in {**settings_env, **MODEL_ENV}.items():
        monkeypatch.setenv(k, v)

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        rc = main(list(args))
        out, err = capsys.readouterr()
        return rc, out, err

    return run


@pytest.fixture
def replayed(
    tmp_path: Path,
    run_cli: Run,
    namespace: str,
    kafka_admin: KafkaAdminClient,
    topic_names: dict[str, str],
    redis_client: redis.Redis,
) -> Iterator[tuple[Path, dict]]:
    """The test's own namespace, filled by a file replay over 4 partitions."""
    log = generate(CUSTOMERS, 30, 21, malformed_fraction=0.02)
    path = tmp_path / "events.jsonl"
    write_lines(path, (r.value for r in log.records))
    rc, out, err = run_cli("replay", str(path), "--namespace", namespace, "--partitions", "4", "--json")
    assert rc == 0, err
    yield path, json.loads(out)
    delete_topics(kafka_admin, [f"{t}.{namespace}" for k, t in topic_names.items() if k != "interactions"])


def test_export_jsonl_and_csv(  # type: ignore[no-untyped-def]
    run_cli: Run, replayed: tuple[Path, dict], tmp_path: Path, stack, namespace: str, topic_names
) -> None:
    rc, out, err = run_cli("export")
    assert rc == 0, err
    lines = out.splitlines()
    assert len(lines) == CUSTOMERS
    views = [json.loads(line) for line in lines]
    assert len({v["customer_id"] for v in views}) == CUSTOMERS
    assert [v["partition"] for v in views] == sorted(v["partition"] for v in views)
    for v in views:
        assert set(v["features"]) == set(FEATURE_NAMES)
        assert {
            "customer_id",
            "partition",
            "as_of",
            "events",
            "segment",
            "membership",
            "outlier",
            "rfm",
        } <= set(v)
        assert v["model_version"] >= 1
        # RFM describes buyers: none for a customer who never purchased.
        assert (v["rfm"] is None) == (v["features"]["purchases"] == 0)
        if v["rfm"] is not None:
            assert v["rfm"]["group"]
    segmented = [v for v in views if v["segment"] is not None]
    assert segmented, "nobody has a segment"
    assert all(v["segment"]["name"] for v in segmented)
    assert all(abs(sum(v["membership"].values()) - 1) < 0.05 for v in segmented)
    # "nearest" is the model's choice now (closest centroid): a live segment, named.
    live = {int(k) for v in segmented for k in v["membership"]}
    assert all(v["nearest"]["id"] in live and v["nearest"]["name"] for v in segmented)
    assert f"exported {CUSTOMERS} customers" in err

    # Every customer has the lifecycle stage its latest published change carries; buyers have a
    # churn risk and a predicted value (the version has a BTYD fit), the others none.
    published: dict[str, str] = {}
    for _, value in read_topic(stack, f"{topic_names['changes']}.{namespace}"):
        if value is not None:
            c = json.loads(value)
            published[c["customer_id"]] = c["stage"]
    assert {v["customer_id"]: (v["stage"] or {}).get("name") for v in views} == published
    assert {v["stage"]["name"] for v in views} <= set(STAGES)
    assert any(v["value"] is not None for v in views)
    for v in views:
        if v["features"]["purchases"] == 0:
            assert v["value"] is None
        elif v["value"] is not None:
            assert abs(v["value"]["churn_risk"] + v["value"]["p_alive"] - 1) < 1e-3

    # The same through `segstream customer --json`.
    one = views[0]
    rc, out, err = run_cli("customer", one["customer_id"], "--json")
    assert rc == 0, err
    shown = json.loads(out)
    assert shown == one

    target = tmp_path / "out" / "customers.csv"
    rc, _, err = run_cli("export", "--format", "csv", "--out", str(target))
    assert rc == 0, err
    rows = list(csv.DictReader(io.StringIO(target.read_text())))
    assert len(rows) == CUSTOMERS
    header = target.read_text().splitlines()[0].split(",")
    assert header[:6] == ["customer_id", "partition", "as_of", "events", "segment_id", "segment_name"]
    assert set(FEATURE_NAMES) <= set(header)
    by_id = {r["customer_id"]: r for r in rows}
    for v in views:
        r = by_id[v["customer_id"]]
        assert float(r["spend"]) == v["features"]["spend"]
        assert r["segment_id"] == ("" if v["segment"] is None else str(v["segment"]["id"]))
        assert json.loads(r["membership"]) == v["membership"]
        assert r["nearest_id"] == ("" if v["nearest"] is None else str(v["nearest"]["id"]))
        assert r["rfm_group"] == ("" if v["rfm"] is None else v["rfm"]["group"])
        assert r["stage"] == v["stage"]["name"]
        assert r["churn_risk"] == ("" if v["value"] is None else str(v["value"]["churn_risk"]))


def test_status_prints_partitions_and_segments(run_cli: Run, replayed: tuple[Path, dict]) -> None:
    _, summary = replayed
    # No service running: the metrics part degrades to a note.
    rc, out, err = run_cli("status", "--metrics-url", "http://127.0.0.1:9/metrics", "--interval", "0.1")
    assert rc == 0, err
    assert "partitions" in out
    assert "segments" in out
    assert f"model version {summary['model_version']}" in out
    assert "did not answer" in out
    rc, out, err = run_cli("status", "--json", "--metrics-url", "")
    assert rc == 0, err
    doc = json.loads(out)
    assert [p["partition"] for p in doc["partitions"]] == [0, 1, 2, 3]
    assert all(p["applied"] >= 0 and p["watermark"] for p in doc["partitions"])
    assert sum(s["customers"] for s in doc["segments"]) > 0
    assert doc["model"]["version"] == summary["model_version"]


def test_replay_refuses_a_namespace_with_state(
    run_cli: Run, replayed: tuple[Path, dict], namespace: str, redis_client: redis.Redis
) -> None:
    path, summary = replayed
    before = redis_client.get(f"{namespace}:{{0}}:offset")
    rc, out, err = run_cli("replay", str(path), "--namespace", namespace)
    assert rc != 0
    assert err.strip().count("\n") == 0, err  # one line
    assert "already holds state" in err and "--fresh" in err
    assert redis_client.get(f"{namespace}:{{0}}:offset") == before
    # With --fresh it replays from scratch to the same result.
    rc, out, err = run_cli(
        "replay", str(path), "--namespace", namespace, "--partitions", "4", "--fresh", "--json"
    )
    assert rc == 0, err
    again = json.loads(out)
    assert {k: again[k] for k in ("records", "applied", "dead_letters", "changes", "model_version")} == {
        k: summary[k] for k in ("records", "applied", "dead_letters", "changes", "model_version")
    }


def test_replay_usage_errors(run_cli: Run, tmp_path: Path) -> None:
    rc, _, err = run_cli("replay", "--namespace", "x1")
    assert rc == 2 and "give FILES" in err
    rc, _, err = run_cli("replay", str(tmp_path / "missing.jsonl"), "--namespace", "x1")
    assert rc == 1 and "log file not found" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("kafka:\n  group_id: x\n")
    rc, _, err = run_cli("replay", str(bad), "--namespace", "x1", "--model-config", str(bad))
    assert rc == 1 and "model" in err


def test_compare_is_pure() -> None:
    seg = {1: Segment(1, "Loyal", {"spend": 100.0}), 2: Segment(2, "Dormant", {"spend": 5.0})}
    a = NamespaceSnapshot("a", 3, seg, {"c1": (1, b"x"), "c2": (2, b"y"), "c3": (1, b"z")})
    assert compare(a, a).identical
    b_seg = {1: Segment(1, "Loyal", {"spend": 120.0}), 2: Segment(2, "Dormant", {"spend": 5.0})}
    b = NamespaceSnapshot("b", 4, b_seg, {"c1": (1, b"x"), "c2": (1, b"Y"), "c4": (2, b"w")})
    r = compare(a, b)
    assert not r.identical
    assert (r.in_both, r.only_a, r.only_b, r.changed_segment, r.changed_state) == (2, 1, 1, 1, 1)
    assert r.confusion == {(1, 1): 1, (2, 1): 1}
    assert r.model_differs
    by_a = {s.a_id: s for s in r.segments}
    assert by_a[1].b_id == 1 and by_a[1].centroid_delta == {"spend": 20.0}
    assert by_a[2].b_id == 1 and by_a[2].overlap == 1
    doc = r.as_dict()
    assert doc["samples"]["only_a"] == ["c3"] and doc["samples"]["only_b"] == ["c4"]
    json.dumps(doc)


class _Creates:
    """Unpickling this creates a file (a stand-in for any code a pickle can run)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple:
        return (open, (str(self.path), "w"))


def test_the_model_on_kafka_is_data_and_a_pickle_in_redis_runs_nothing(  # type: ignore[no-untyped-def]
    run_cli: Run,
    replayed: tuple[Path, dict],
    tmp_path: Path,
    stack,
    namespace: str,
    topic_names,
    redis_client: redis.Redis,
) -> None:
    """docs/model-format.md: the newest segments.model record validates against its schema and
    carries the checkpoint Redis holds; a pickle written to the Redis model key is refused by
    every command that reads the model, in one line, without being unpickled."""
    _, summary = replayed
    records = read_topic(stack, f"{topic_names['model']}.{namespace}", partitions=1)
    key, value = records[-1]
    assert key == b"model" and value is not None
    doc = json.loads(value)
    schema = json.loads((Path(__file__).parents[2] / "schemas" / "published_model.schema.json").read_text())
    jsonschema.validate(doc, schema)
    assert doc["version"] == summary["model_version"] and doc["segments"]
    # The record's checkpoint is the version as built; Redis holds it as the replay ended (the
    # same version, with the rows learned since).
    published = SegmentEngine.restore(checkpoint_of(value))
    stored = SegmentEngine.restore(redis_client.hget(f"{namespace}:model", "snapshot"))  # type: ignore[arg-type]
    assert published.version == stored.version == doc["version"]
    assert published.segments() == stored.segments()

    evil = tmp_path / "pwned"
    payload = PICKLED_MAGIC + pickle.dumps(_Creates(evil))
    redis_client.hset(f"{namespace}:model", "snapshot", payload)
    for command in (["segments"], ["status", "--metrics-url", ""], ["export"]):
        rc, out, err = run_cli(*command)
        assert rc == 1, (command, out, err)
        assert err.strip().count("\n") == 0 and "older segstream (pickle)" in err, (command, err)
        assert not evil.exists()
