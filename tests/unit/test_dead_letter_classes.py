"""Dead letters by error class in `segstream evaluate` and in the replay summary (issue #20)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from models.sim import generate
from stream.cli import main
from stream.cli.common import dead_letter_text
from stream.config import load
from stream.io.logfiles import write_lines
from stream.ops.evaluate import evaluate_log, log_records, params_for
from stream.ops.replay import ReplaySummary
from stream.runtime.engines import engine_params

SMALL_MODEL = {"warmup_vectors": 300, "update_every": 300}
JSON_KINDS = {"not_json", "truncated_json"}  # the generator's kinds that are not JSON at all


@pytest.fixture(scope="module")
def malformed_log() -> tuple[list[tuple[bytes | None, bytes]], Counter[str]]:
    log = generate(150, 40, 3, malformed_fraction=0.05)
    kinds = Counter(log.malformed_kinds.values())
    return [(r.key, r.value) for r in log.records], kinds


def expected_classes(kinds: Counter[str]) -> dict[str, int]:
    invalid_json = sum(n for k, n in kinds.items() if k in JSON_KINDS)
    return {"InvalidEvent": sum(kinds.values()) - invalid_json, "InvalidJSON": invalid_json}


def test_evaluate_counts_dead_letters_by_class(
    malformed_log: tuple[list[tuple[bytes | None, bytes]], Counter[str]],
) -> None:
    lines, kinds = malformed_log
    settings = load(None, {"model": SMALL_MODEL})
    records = log_records("generated", lines)
    params = params_for(engine_params(settings), ["microclusters", "kmeans"])
    reports = evaluate_log(records, settings, params)
    for r in reports:
        assert r.dead_letters == sum(kinds.values()) > 0
        assert r.dead_letter_classes == expected_classes(kinds)


def test_evaluate_prints_a_dead_letter_column_and_the_classes(
    malformed_log: tuple[list[tuple[bytes | None, bytes]], Counter[str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lines, kinds = malformed_log
    path = tmp_path / "log.jsonl"
    write_lines(path, (value for _, value in lines))
    for k, v in SMALL_MODEL.items():
        monkeypatch.setenv(f"SEGSTREAM_MODEL__{k.upper()}", str(v))
    total, classes = sum(kinds.values()), expected_classes(kinds)

    assert main(["evaluate", str(path), "--models", "microclusters"]) == 0
    out = capsys.readouterr().out
    assert "dead letters" in out.splitlines()[2]  # the table's header row
    assert f"{total:,}" in next(line for line in out.splitlines() if "microclusters" in line)
    by_count = ", ".join(f"{k} {n}" for k, n in sorted(classes.items(), key=lambda kv: -kv[1]))
    assert f"dead letters by class: {by_count}" in out

    assert main(["evaluate", str(path), "--models", "microclusters", "--json"]) == 0
    (report,) = json.loads(capsys.readouterr().out)
    assert report["dead_letters"] == total
    assert report["dead_letter_classes"] == classes


def test_replay_summary_carries_the_classes() -> None:
    summary = ReplaySummary(namespace="ns", source="f", dead_letters=12)
    summary.dead_letter_classes.update({"LateEvent": 5, "InvalidJSON": 7})
    doc = summary.as_dict()
    assert doc["dead_letters"] == 12
    assert doc["dead_letter_classes"] == {"InvalidJSON": 7, "LateEvent": 5}
    assert dead_letter_text(summary.dead_letters, summary.dead_letter_classes) == (
        "12 dead letters (InvalidJSON 7, LateEvent 5)"
    )
    assert dead_letter_text(0, {}) == "0 dead letters"
    assert dead_letter_text(3, {"InvalidJSON": 3}, "dead-lettered") == "3 dead-lettered (InvalidJSON 3)"
