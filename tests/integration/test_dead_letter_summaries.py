"""`segstream replay` reports its dead letters by error class (issue #20), in JSON and in its line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaAdminClient

from models.sim import generate
from stream.cli import main
from stream.io.logfiles import write_lines

from .harness import delete_topics

JSON_KINDS = {"not_json", "truncated_json"}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, settings_env: dict[str, str]) -> dict[str, str]:
    for k, v in settings_env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("SEGSTREAM_MODEL__WARMUP_VECTORS", "300")
    return settings_env


@pytest.fixture
def replay_topics(
    env: dict[str, str], namespace: str, topic_names: dict[str, str], kafka_admin: KafkaAdminClient
) -> Iterator[None]:
    yield
    delete_topics(kafka_admin, [f"{t}.{namespace}" for k, t in topic_names.items() if k != "interactions"])


def test_replay_counts_dead_letters_by_class(
    replay_topics: None, namespace: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = generate(100, 30, 11, malformed_fraction=0.05)
    path = tmp_path / "events.jsonl"
    write_lines(path, (r.value for r in log.records))
    kinds = list(log.malformed_kinds.values())
    invalid_json = sum(k in JSON_KINDS for k in kinds)
    expected = {"InvalidEvent": len(kinds) - invalid_json, "InvalidJSON": invalid_json}

    assert main(["replay", str(path), "--namespace", namespace, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["dead_letters"] == len(kinds) > 0
    assert summary["dead_letter_classes"] == expected

    assert main(["replay", str(path), "--namespace", namespace, "--fresh"]) == 0
    line = capsys.readouterr().out
    by_class = ", ".join(f"{k} {n}" for k, n in sorted(expected.items(), key=lambda kv: (-kv[1], kv[0])))
    assert f"{len(kinds)} dead letters ({by_class})" in " ".join(line.split()), line
