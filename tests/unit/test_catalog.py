"""A clustering model registered in one place (models/segments/catalog.py) is selectable in the
settings, the CLI and `evaluate`: nothing else lists models."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from river import cluster

from models.segments.catalog import CATALOG, ModelSpec, register
from models.segments.river_models import RiverAdapter
from models.sim import generate
from stream.cli import main
from stream.config import load
from stream.errors import ConfigError
from stream.io.logfiles import write_lines
from stream.ops.evaluate import evaluate_log, log_records, params_for
from stream.runtime.engines import engine_params

NAME = "tiny_kmeans"


@pytest.fixture
def tiny() -> Iterator[ModelSpec]:
    spec = register(
        ModelSpec(
            NAME,
            "River KMeans with a short memory (a test's model)",
            lambda k, seed, *_: RiverAdapter(
                NAME, cluster.KMeans(n_clusters=k, halflife=0.1, seed=seed), True
            ),
            in_evaluate=False,
        )
    )
    yield spec
    del CATALOG[NAME]


def test_an_unknown_model_is_refused_by_the_settings() -> None:
    with pytest.raises(ConfigError, match=f"unknown model '{NAME}'"):
        load(overrides={"model": {"model": NAME}})


def test_a_registered_model_is_selectable_everywhere(
    tiny: ModelSpec, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load(
        overrides={"model": {"model": NAME, "warmup_days": 0, "warmup_vectors": 300, "update_every": 300}}
    )
    assert settings.model.model == NAME
    log = generate(120, 30, seed=4)
    records = log_records("log", ((r.key, r.value) for r in log.records))
    (report,) = evaluate_log(records, settings, params_for(engine_params(settings), [NAME]))
    assert report.model == NAME and report.versions >= 1 and report.customers == 120
    path = tmp_path / "log.jsonl"
    write_lines(path, (r.value for r in log.records))
    for key, value in (("WARMUP_DAYS", "0"), ("WARMUP_VECTORS", "300"), ("UPDATE_EVERY", "300")):
        monkeypatch.setenv(f"SEGSTREAM_MODEL__{key}", value)
    assert main(["evaluate", str(path), "--models", NAME, "--json"]) == 0
    (cli_report,) = json.loads(capsys.readouterr().out)
    assert cli_report["model"] == NAME
