"""The CLI's error contract: one line naming the problem, a non-zero exit, never a traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stream.cli import main


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0
    commands = ("run", "generate", "produce", "segments", "customer", "changes", "topics", "schema", "config")
    for cmd in commands:
        assert f"  {cmd} " in out or f"  {cmd}\n" in out, cmd


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["nosuch"], "No such command 'nosuch'"),
        (["generate", "--customers", "x"], "'x' is not a valid integer"),
        (["generate", "--customers", "0", "--out", "f.jsonl"], "--customers"),
        (["generate", "--malformed", "2", "--out", "f.jsonl"], "--malformed"),
        (["generate", "--customers", "5"], "give --out FILE and/or --to-kafka"),
        (["generate", "--scenario", "apocalypse", "--out", "f"], "'apocalypse' is not one of"),
        (["run", "--until-idle", "-1"], "--until-idle"),
        (["customer"], "Missing argument 'CUSTOMER_ID'"),
    ],
)
def test_bad_arguments(capsys: pytest.CaptureFixture[str], args: list[str], needle: str) -> None:
    code, _, err = run(capsys, *args)
    assert code == 2
    assert needle in one_line_error(err)


def test_generate_offers_every_scenario() -> None:
    import click

    from models.sim import SCENARIOS
    from stream.cli.data import generate

    (scenario,) = [p for p in generate.params if p.name == "scenario"]
    assert isinstance(scenario.type, click.Choice)
    assert tuple(scenario.type.choices) == SCENARIOS


def test_missing_config_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "--config", str(tmp_path / "nope.yaml"), "config")
    assert code == 1
    assert "config file not found" in one_line_error(err)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("kafka: [unclosed", "is not valid YAML"),
        ("- a list", "must hold a mapping"),
        ("model:\n  n_segments: 1\n", "model.n_segments: Input should be greater than or equal to 2"),
        ("redis:\n  namespace: 'has space'\n", "redis.namespace"),
        ("kafka:\n  bootstrap: x\n", "kafka.bootstrap: Extra inputs are not permitted"),
        ("features:\n  inactivity_thresholds_days: [30, -1]\n", "thresholds must be positive"),
        ("model:\n  feature_weights: {spend_typo: 2}\n", "unknown features ['spend_typo']"),
        ("model:\n  feature_weights: {spend: -1}\n", "weights of ['spend'] must be between 0 and 100"),
    ],
)
def test_bad_config(capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str, needle: str) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    code, _, err = run(capsys, "--config", str(cfg), "config")
    assert code == 1
    assert needle in one_line_error(err)


def test_bad_environment(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGSTREAM_KAFKA__MAX_POLL_RECORDS", "many")
    code, _, err = run(capsys, "config")
    assert code == 1
    assert "kafka.max_poll_records" in one_line_error(err)


def test_config_masks_secrets(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGSTREAM_REDIS__URL", "redis://app:hunter2@cache:6379/0")
    monkeypatch.setenv("SEGSTREAM_KAFKA__SASL_PASSWORD", "s3cret")
    code, out, _ = run(capsys, "config")
    assert code == 0
    assert "hunter2" not in out and "s3cret" not in out
    assert "redis://app:****@cache:6379/0" in out


def test_flags_override_env_override_file(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("redis:\n  namespace: fromfile\nkafka:\n  group_id: fromfile\nmodel:\n  seed: 5\n")
    monkeypatch.setenv("SEGSTREAM_KAFKA__GROUP_ID", "fromenv")
    monkeypatch.setenv("SEGSTREAM_REDIS__NAMESPACE", "fromenv")
    code, out, _ = run(capsys, "--config", str(cfg), "--namespace", "fromflag", "config")
    assert code == 0
    assert '"namespace": "fromflag"' in out and '"group_id": "fromenv"' in out and '"seed": 5' in out


def test_unreachable_redis_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "--redis-url", "redis://127.0.0.1:1/0", "segments")
    assert code == 1
    assert "Redis at 127.0.0.1:1/0 did not answer" in one_line_error(err)


def test_a_redis_error_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A command Redis refuses (here a full memory) ends in one line naming Redis, not a traceback."""
    import redis

    import stream.cli.lookups

    class FullRedis:
        def __getattr__(self, name: str) -> Any:
            def refuse(*args: Any, **kwargs: Any) -> Any:
                raise redis.ResponseError("OOM command not allowed when used memory > 'maxmemory'.")

            return refuse

    monkeypatch.setattr(stream.cli.lookups, "open_store", lambda settings: FullRedis())
    code, _, err = run(capsys, "segments")
    assert code == 1
    assert one_line_error(err) == (
        "segstream: error: Redis: ResponseError: OOM command not allowed when used memory > 'maxmemory'."
    )


def _deploy_commands() -> list[list[str]]:
    """Every segstream command line of docker-compose.yml and the Dockerfile's default one."""
    import json

    import yaml

    root = Path(__file__).resolve().parents[2]
    compose = yaml.safe_load((root / "docker-compose.yml").read_text())
    out = [
        list(svc["command"])
        for svc in compose["services"].values()
        if svc.get("image") == "segstream:local" and "command" in svc
    ]
    cmd = next(line for line in (root / "Dockerfile").read_text().splitlines() if line.startswith("CMD "))
    out.append(json.loads(cmd[4:]))
    return out


def test_deploy_files_run_commands_that_parse(capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing runs Docker here: parse their command lines (group options before the command)."""
    commands = _deploy_commands()
    assert any("run" in c for c in commands)
    for command in commands:
        assert main([*command, "--help"]) == 0, (command, capsys.readouterr().err)
    assert main(["run", "--config", "config/docker.yaml", "--help"]) == 2  # the mistake this catches


def test_prometheus_scrapes_every_compose_worker() -> None:
    import yaml

    root = Path(__file__).resolve().parents[2]
    (run,) = [c for c in _deploy_commands()[:-1] if "run" in c]
    workers = int(run[run.index("--workers") + 1]) if "--workers" in run else 1
    prom = yaml.safe_load((root / "config" / "prometheus.yml").read_text())
    (job,) = [j for j in prom["scrape_configs"] if j["job_name"] == "segstream"]
    targets = job["static_configs"][0]["targets"]
    assert targets == [f"segstream:{9108 + i}" for i in range(workers)]


def test_the_docker_profile_holds_only_where_the_services_are() -> None:
    """docker-compose runs with config/docker.yaml: a profile holds only its overrides, so a
    Docker user runs the documented model, and a default changed in code reaches Docker too."""
    import yaml

    root = Path(__file__).resolve().parents[2]
    profile = yaml.safe_load((root / "config" / "docker.yaml").read_text())
    keys = {(section, key) for section, values in profile.items() for key in values}
    assert keys == {("kafka", "bootstrap_servers"), ("redis", "url"), ("service", "metrics_host")}


def test_settings_are_the_same_from_any_directory(tmp_path: Path) -> None:
    """No file is read implicitly: `segstream config` prints the same settings from the
    repository's root and from elsewhere, and says where each value came from."""
    import json
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGSTREAM_")}
    env["PYTHONPATH"] = str(root)

    def config(cwd: Path, *args: str) -> str:
        cmd = [sys.executable, "-m", "stream", *args, "config", *(["--sources"] if args else [])]
        res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=True, timeout=60)
        return res.stdout

    here, there = json.loads(config(root)), json.loads(config(tmp_path))
    assert here == there and here["model"]["margin"] == 0.55
    env["SEGSTREAM_MODEL__MARGIN"] = "0.4"
    table = config(tmp_path, "--config", str(root / "config" / "docker.yaml"))
    rows = {line.split()[0]: line for line in table.splitlines() if line.strip() and "." in line.split()[0]}
    assert "file" in rows["kafka.bootstrap_servers"] and "docker.yaml" in rows["kafka.bootstrap_servers"]
    assert "env SEGSTREAM_MODEL__MARGIN" in rows["model.margin"] and "0.4" in rows["model.margin"]
    assert rows["model.min_dwell_days"].split()[-1] == "default"


def test_the_engine_defaults_are_the_shipped_settings() -> None:
    """One set of defaults: the engine built from the shipped settings is EngineParams()."""
    from models.segments.params import EngineParams
    from stream.config import load
    from stream.runtime.engines import engine_params

    assert engine_params(load()) == EngineParams()


def test_evaluate_compares_models_on_a_generated_log(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """`segstream evaluate` end to end on a small seeded log with its planted truth: one report
    per model, with figures in their ranges and the min agreement never above the median."""
    import json

    log, truth = tmp_path / "log.jsonl", tmp_path / "truth.csv"
    code, _, err = run(capsys, "generate", "--customers", "300", "--days", "90", "--seed", "3",
                       "--out", str(log), "--truth", str(truth))  # fmt: skip
    assert code == 0, err
    code, out, err = run(capsys, "evaluate", str(log), "--truth", str(truth),
                         "--models", "microclusters,kmeans", "--json")  # fmt: skip
    assert code == 0, err
    reports = {r["model"]: r for r in json.loads(out)}
    assert set(reports) == {"microclusters", "kmeans"}
    for r in reports.values():
        assert r["customers"] == 300 and r["versions"] >= 2
        assert 0.0 <= r["id_agreement"] <= r["id_agreement_median"] <= 1.0
        assert r["ssq_ratio"] > 0.5 and -1.0 <= r["ari"] <= 1.0 and 0.0 < r["ari_reference"] <= 1.0
        assert 0.0 <= r["flapping"] <= 1.0 and r["changes"] >= 300  # everyone got a first segment
    code, out, err = run(capsys, "evaluate", str(log), "--models", "microclusters")
    assert code == 0, err
    assert "what downstream sees" in out and "stability" in out and "microclusters" in out
    assert "lifecycle stages at the end: " in out and "published != nearest:" in out  # the legend


def test_kafka_security_settings_reach_every_client() -> None:
    from stream.config import load
    from stream.io.kafka import _security

    s = load(
        overrides={
            "kafka": {
                "security_protocol": "SASL_SSL",
                "sasl_mechanism": "SCRAM-SHA-512",
                "sasl_username": "svc",
                "sasl_password": "pw-1",
                "ssl_cafile": "/x/ca.pem",
            }
        }
    )
    assert _security(s) == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "svc",
        "sasl_plain_password": "pw-1",
        "ssl_check_hostname": True,
        "ssl_cafile": "/x/ca.pem",
    }
    assert "pw-1" not in str(s.masked())
    assert _security(load()) == {"security_protocol": "PLAINTEXT"}


@pytest.mark.parametrize(
    ("kafka", "message"),
    [
        ({"security_protocol": "SASL_SSL"}, "SASL_SSL needs kafka.sasl_mechanism, kafka.sasl_username"),
        (
            {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "sasl_username": "u"},
            "sasl_password",
        ),
        ({"sasl_mechanism": "SCRAM-SHA-512"}, "security_protocol is PLAINTEXT"),
    ],
)
def test_a_half_configured_login_is_refused_with_what_is_missing(kafka: dict[str, str], message: str) -> None:
    from stream.config import load
    from stream.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        load(overrides={"kafka": kafka})
