"""Credentials and encryption (issue #23, item 4): a private broker that speaks only SASL/SCRAM-
SHA-512 over TLS and a private Redis that speaks only TLS, with ACL users (the service user
limited to its namespaces' keys and the commands segstream sends), as `scripts/stack.sh start
--secure` starts them. The service, every command that talks to a server and a replay work from
settings alone; no command is refused by the ACLs; a wrong password ends with one line naming
the server; no password appears in any output, log line or metric.
"""

from __future__ import annotations

import secrets
import subprocess
import time
from pathlib import Path

import redis

from .harness import ROOT, SEGSTREAM, cli_env, error_line, run_cli, unique
from .servers import (
    ADMIN_USER,
    BROKER_USER,
    SERVICE_USER,
    Secure,
    free_port,
    get_timed,
    make_tls,
    private_kafka,
    private_redis,
)

NS, SHADOW = "sec", "shadow"


def _password() -> str:
    return "pw-" + secrets.token_hex(12)


def test_service_cli_and_replay_over_sasl_ssl_and_redis_acls(tmp_path: Path) -> None:
    tls = make_tls(tmp_path / "tls")
    kafka_users = {BROKER_USER: _password(), SERVICE_USER: _password()}
    redis_users = {ADMIN_USER: _password(), SERVICE_USER: _password()}
    passwords = [*kafka_users.values(), *redis_users.values()]
    began = time.monotonic()
    with (
        private_kafka(tmp_path, Secure(tls, kafka_users)) as kafka,
        private_redis(tmp_path, secure=Secure(tls, redis_users), keys=f"~{NS}:* ~{SHADOW}:*") as rds,
    ):
        started = time.monotonic() - began
        env = {
            "SEGSTREAM_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap,
            "SEGSTREAM_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
            "SEGSTREAM_KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
            "SEGSTREAM_KAFKA__SASL_USERNAME": SERVICE_USER,
            "SEGSTREAM_KAFKA__SASL_PASSWORD": kafka_users[SERVICE_USER],
            "SEGSTREAM_KAFKA__SSL_CAFILE": str(tls / "ca.pem"),
            "SEGSTREAM_KAFKA__GROUP_ID": unique("g"),
            "SEGSTREAM_REDIS__URL": rds.url,
            "SEGSTREAM_REDIS__NAMESPACE": NS,
        }
        outputs: list[str] = []

        def ok(*args: str) -> subprocess.CompletedProcess[str]:
            res = run_cli(env, *args, timeout=180)
            outputs.extend((res.stdout, res.stderr))
            assert res.returncode == 0, f"segstream {' '.join(args)}: {res.stderr[-2000:]}"
            return res

        log = tmp_path / "log.jsonl"
        ok("generate", "--customers", "150", "--days", "40", "--seed", "5", "--out", str(log))
        ok("topics", "create")
        ok("produce", str(log))

        # The service, its metrics scraped while it runs.
        port = free_port()
        service_log = tmp_path / "service.log"
        with service_log.open("wb") as out:
            proc = subprocess.Popen(
                [*SEGSTREAM, "run", "--until-idle", "6", "--metrics-port", str(port)],
                cwd=ROOT,
                env=cli_env(env),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        metrics = ""
        try:
            deadline = time.monotonic() + 120
            while proc.poll() is None and time.monotonic() < deadline:
                try:
                    status, body, _ = get_timed(f"http://127.0.0.1:{port}/metrics", timeout=2)
                    if status == 200:
                        metrics = body.decode()
                except OSError:
                    pass
                time.sleep(0.5)
            assert proc.wait(timeout=60) == 0, service_log.read_text()[-3000:]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert "segstream_events_total" in metrics or "segstream_" in metrics, "no metrics scraped"
        outputs += [service_log.read_text(errors="replace"), metrics]

        # Every command that talks to a server, from settings alone.
        customer = "c000001"
        ok("status")
        ok("segments")
        ok("customer", customer)
        ok("changes", "-n", "5")
        ok("export", "--out", str(tmp_path / "export.jsonl"))
        ok("config")
        ok("recover", "--resume", "--dry-run")
        ok("replay", "--from-offset", "0", "--namespace", SHADOW)
        ok("diff", NS, SHADOW)
        ok("-n", SHADOW, "--suffix", f".{SHADOW}", "changes", "-n", "3")
        ok("forget", customer)
        # -v lets kafka-python's and redis-py's own messages through: no secret in those either.
        ok("-v", "changes", "-n", "1")
        ok("-v", "segments")
        assert len((tmp_path / "export.jsonl").read_text().splitlines()) == 150

        # The ACLs held and segstream needed nothing past them: Redis logged no denied command.
        with redis.Redis.from_url(rds.url_of(ADMIN_USER)) as admin:
            denied = admin.acl_log()
            assert denied == [], denied
        with redis.Redis.from_url(rds.url) as service:
            try:
                service.get("other-namespace:x")
                raise AssertionError("the service user read a key outside its namespaces")
            except redis.exceptions.NoPermissionError:
                pass

        # A wrong password: one line naming the server, no secret.
        wrong_kafka = {**env, "SEGSTREAM_KAFKA__SASL_PASSWORD": "not-" + kafka_users[SERVICE_USER]}
        wrong_redis = {**env, "SEGSTREAM_REDIS__URL": rds.url.replace(redis_users[SERVICE_USER], "wrong-pw")}
        lines = []
        for settings, args, server in (
            (wrong_kafka, ("topics", "create"), f"Kafka at {kafka.bootstrap}"),
            (wrong_kafka, ("run", "--until-idle", "2", "--metrics-port", "0"), f"Kafka at {kafka.bootstrap}"),
            (wrong_redis, ("segments",), f"Redis at localhost:{rds.port}/0"),
            (
                wrong_redis,
                ("run", "--until-idle", "2", "--metrics-port", "0"),
                f"Redis at localhost:{rds.port}/0",
            ),
        ):
            res = run_cli(settings, *args, timeout=60)
            outputs.extend((res.stdout, res.stderr))
            assert res.returncode == 1, res.stderr[-2000:]
            line = error_line(res)
            assert server in line and (
                "refused" in line or "closed the connections during the login" in line
            ), line
            lines.append(line)
        outputs += [
            "wrong-pw",
            "not-" + kafka_users[SERVICE_USER],
        ]  # the wrong ones may appear nowhere either
        for text in outputs[:-2]:
            for secret in [*passwords, "wrong-pw", "not-" + kafka_users[SERVICE_USER]]:
                assert secret not in text, f"a password appears in an output: ...{text[-300:]}"
        print(f"\nsecure broker and Redis up in {started:.1f} s; wrong passwords:\n" + "\n".join(lines))
