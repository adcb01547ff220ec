"""Servers of a test's own, for tests that stop, pause or silence one: the shared stack's broker and
Redis serve every other test running at the same time, so they are never stopped or paused.

- :func:`private_redis`: a ``redis-server`` on a free port, without persistence, in tmp_path.
- :func:`private_kafka`: a single-node KRaft broker (the jars scripts/stack.sh uses) on free
  ports, with its own data dir under tmp_path and a small heap (~3 s to start here).
- :class:`Silent`: a port that accepts TCP connections and never answers (a hung server, as the
  client sees it).
- :func:`get_timed`: an HTTP GET and how long it took.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

ROOT = Path(__file__).resolve().parents[2]
KAFKA_LIBS = ROOT / ".cache" / "kafka" / "libs"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get_timed(url: str, timeout: float = 5.0) -> tuple[int, bytes, float]:
    """(status, body, seconds); a 4xx/5xx is a status, not an error."""
    began = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read(), time.monotonic() - began
    except urllib.error.HTTPError as e:
        return e.code, e.read(), time.monotonic() - began


def wait_for(condition: Callable[[], bool], timeout: float, what: str, step: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(step)
    pytest.fail(f"timed out after {timeout:g} s waiting for {what}", pytrace=False)


def _stop(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGCONT)  # a paused server cannot handle SIGTERM
        proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class PrivateRedis:
    """A ``redis-server`` of the test's own in ``workdir``, with RDB snapshots only: ``SAVE``
    marks a point in time, and :meth:`restart` after a ``kill -9`` comes back at that point, as
    Redis does after a power loss with ``appendfsync everysec`` or a failover to a lagging
    replica. ``args``: more redis-server options."""

    def __init__(self, workdir: Path, *args: str, secure: Secure | None = None, keys: str = "~*") -> None:
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None
        self.secure = secure
        if secure is not None:
            # As `scripts/stack.sh start --secure`: TLS only, the ACL users of config/redis/.
            (self.dir / "users.acl").write_text(render_acl(secure.users, keys))
            self.args = (
                *args,
                *("--port", "0", "--tls-port", str(self.port), "--tls-auth-clients", "no"),
                *("--tls-cert-file", str(secure.tls / "server.pem")),
                *("--tls-key-file", str(secure.tls / "server.key")),
                *("--tls-ca-cert-file", secure.cafile, "--aclfile", str(self.dir / "users.acl")),
                # The service user may not CONFIG SET the limits its buckets need: set here.
                *("--hash-max-listpack-value", "512", "--hash-max-listpack-entries", "1024"),
                *("--zset-max-listpack-entries", "1024"),
            )

    @property
    def url(self) -> str:
        """The service's URL (with TLS and ACLs: the service user's)."""
        return self.url_of(SERVICE_USER)

    def url_of(self, user: str) -> str:
        if self.secure is None:
            return f"redis://127.0.0.1:{self.port}/0"
        password = self.secure.users[user]
        return f"rediss://{user}:{password}@localhost:{self.port}/0?ssl_ca_certs={self.secure.cafile}"

    def start(self) -> PrivateRedis:
        server = shutil.which("redis-server")
        if server is None:
            pytest.fail("redis-server not found: run scripts/bootstrap.sh", pytrace=False)
        self.proc = proc = subprocess.Popen(
            [
                *(
                    server,
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ),
                *("--dir", str(self.dir), "--dbfilename", "dump.rdb", "--daemonize", "no"),
                *("--logfile", str(self.dir / "redis.log"), *self.args),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def answers() -> bool:
            assert proc.poll() is None, (self.dir / "redis.log").read_text(errors="replace")
            if self.secure is not None:
                try:
                    with redis.Redis.from_url(self.url_of(ADMIN_USER), socket_timeout=1) as client:
                        return bool(client.ping())
                except redis.RedisError:
                    return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    return s.recv(16).startswith(b"+PONG")
            except OSError:
                return False

        wait_for(answers, 10, f"redis-server on port {self.port}")
        return self

    def pause(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL: whatever was written since the last SAVE is gone."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> None:
        """Killed and started again on the same port and directory (from its last snapshot)."""
        self.kill()
        self.start()

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)


SERVICE_USER, ADMIN_USER = "segstream", "admin"  # the users of config/redis/acl.template


def render_acl(users: dict[str, str], keys: str) -> str:
    """config/redis/acl.template with the users' password hashes and the service's key patterns."""
    text = (ROOT / "config" / "redis" / "acl.template").read_text()
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return (
        "\n".join(lines)
        .replace("@ADMIN_SHA256@", hashlib.sha256(users[ADMIN_USER].encode()).hexdigest())
        .replace("@SERVICE_SHA256@", hashlib.sha256(users[SERVICE_USER].encode()).hexdigest())
        .replace("@KEYS@", keys)
        + "\n"
    )


@contextlib.contextmanager
def private_redis(
    tmp_path: Path, *args: str, secure: Secure | None = None, keys: str = "~*"
) -> Iterator[PrivateRedis]:
    """With ``secure``: TLS only and ACL users (``secure.users`` holds SERVICE_USER and
    ADMIN_USER); ``keys``: the service user's key patterns, e.g. ``~ns:* ~shadow:*``."""
    server = PrivateRedis(tmp_path / f"redis-{free_port()}", *args, secure=secure, keys=keys)
    try:
        yield server.start()
    finally:
        server.stop()


@dataclass
class PrivateKafka:
    proc: subprocess.Popen[bytes]
    port: int
    logs: Path
    # Client settings beyond the bootstrap (security), as kafka-python keywords.
    client: dict[str, Any] = field(default_factory=dict)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def kill(self) -> None:
        """SIGKILL, and wait until the process is gone: the broker dies, as in a crash."""
        self.proc.kill()
        self.proc.wait()


@dataclass(frozen=True)
class Secure:
    """What a secure server was started with: TLS files (scripts/tls.sh) and SCRAM or ACL users."""

    tls: Path  # ca.pem, server.pem, server.key, server.p12, keystore.password
    users: dict[str, str]  # user -> password

    @property
    def cafile(self) -> str:
        return str(self.tls / "ca.pem")


def make_tls(directory: Path) -> Path:
    """A throwaway CA and a loopback server certificate (scripts/tls.sh, as the stack makes them)."""
    subprocess.run([str(ROOT / "scripts" / "tls.sh"), str(directory)], check=True, capture_output=True)
    return directory


_KAFKA_JAVA = [
    "-Xmx256m",
    "-Xms64m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",  # starts in ~2 s instead of ~4 s; throughput is not the point
    "-Djava.awt.headless=true",
    f"-Dlog4j2.configurationFile={ROOT / 'config' / 'kafka' / 'log4j2.properties'}",
]
BROKER_USER = "broker"  # the secure broker's own SCRAM user (inter-broker listener)


@contextlib.contextmanager
def private_kafka(tmp_path: Path, secure: Secure | None = None) -> Iterator[PrivateKafka]:
    """A broker of the test's own, from config/kafka/server.properties (as scripts/stack.sh).
    With ``secure``: config/kafka/secure.properties on top (SASL/SCRAM-SHA-512 over TLS only, as
    ``scripts/stack.sh start --secure``), its users created at format time; ``secure.users``
    must hold BROKER_USER."""
    if shutil.which("java") is None or not list(KAFKA_LIBS.glob("kafka_2.13-*.jar")):
        pytest.fail(f"java or Kafka jars in {KAFKA_LIBS} missing: run scripts/bootstrap.sh", pytrace=False)
    port, controller = free_port(), free_port()
    home = tmp_path / f"kafka-{port}"
    data, logs = home / "data", home / "logs"
    data.mkdir(parents=True)
    logs.mkdir()
    template = (ROOT / "config" / "kafka" / "server.properties").read_text()
    scram: list[str] = []
    client: dict[str, Any] = {}
    if secure is not None:
        template += "\n" + (ROOT / "config" / "kafka" / "secure.properties").read_text()
        template = (
            template.replace("@TLS_DIR@", str(secure.tls))
            .replace("@KEYSTORE_PASSWORD@", (secure.tls / "keystore.password").read_text().strip())
            .replace("@BROKER_USER@", BROKER_USER)
            .replace("@BROKER_PASSWORD@", secure.users[BROKER_USER])
        )
        for user, password in secure.users.items():
            scram += ["--add-scram", f"SCRAM-SHA-512=[name={user},password={password}]"]
        user = next(u for u in secure.users if u != BROKER_USER)
        client = {
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_plain_username": user,
            "sasl_plain_password": secure.users[user],
            "ssl_cafile": secure.cafile,
        }
    props = home / "server.properties"
    props.write_text(
        template.replace("@KAFKA_PORT@", str(port))
        .replace("@KAFKA_CONTROLLER_PORT@", str(controller))
        .replace("@KAFKA_DATA_DIR@", str(data))
    )
    java = ["java", *_KAFKA_JAVA, f"-Dkafka.logs.dir={logs}", "-cp", f"{KAFKA_LIBS}/*"]
    fmt = subprocess.run(
        [
            *(*java, "kafka.tools.StorageTool", "format", "--cluster-id", "c2Vnc3RyZWFtLXRlc3RzLQ"),
            *("--config", str(props), "--ignore-formatted", *scram),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr
    proc = subprocess.Popen(
        [*java, "kafka.Kafka", str(props)],
        stdin=subprocess.DEVNULL,
        stdout=(logs / "kafka.out").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # a Ctrl-C of pytest does not reach it before the teardown does
    )
    try:
        check = (
            "import json, sys\n"
            "from kafka import KafkaAdminClient\n"
            f"a = KafkaAdminClient(bootstrap_servers='127.0.0.1:{port}', bootstrap_timeout_ms=2000,"
            " **json.loads(sys.argv[1]))\n"
            "a.describe_cluster(); a.close()\n"
        )

        def answers() -> bool:
            assert proc.poll() is None, (logs / "kafka.out").read_text(errors="replace")[-2000:]
            probe = subprocess.run(
                [sys.executable, "-c", check, json.dumps(client)], capture_output=True, check=False
            )
            return probe.returncode == 0

        wait_for(answers, 90, f"the private broker on port {port}", step=0.3)
        yield PrivateKafka(proc, port, logs, client)
    finally:
        _stop(proc, timeout=30)


class Silent:
    """A listening port that never accepts: connecting succeeds (the kernel's backlog), and no
    byte ever comes back."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = int(self._sock.getsockname()[1])

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Silent:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


@dataclass
class PrivateCluster:
    """Brokers of a test's own that form one cluster (:func:`private_cluster`)."""

    nodes: dict[int, PrivateKafka]  # node id -> its broker

    @property
    def bootstrap(self) -> str:
        """Every node, as the service's ``kafka.bootstrap_servers`` takes them."""
        return ",".join(node.bootstrap for node in self.nodes.values())

    def kill(self, node_id: int) -> None:
        """SIGKILL one node (its broker and its controller): a crash, not a controlled shutdown."""
        self.nodes[node_id].kill()


@contextlib.contextmanager
def private_cluster(tmp_path: Path, nodes: int = 3) -> Iterator[PrivateCluster]:
    """``nodes`` KRaft nodes on free ports, each broker and controller (the controllers are the
    quorum's voters), from config/kafka/server.properties and brokers.properties as ``scripts/
    stack.sh start --brokers 3`` (replication 3 and min ISR 2 for the internal topics), with a
    256 MB heap each. Yields once every broker is registered and unfenced."""
    if shutil.which("java") is None or not list(KAFKA_LIBS.glob("kafka_2.13-*.jar")):
        pytest.fail(f"java or Kafka jars in {KAFKA_LIBS} missing: run scripts/bootstrap.sh", pytrace=False)
    ports = {n: (free_port(), free_port()) for n in range(1, nodes + 1)}
    voters = ",".join(f"{n}@127.0.0.1:{controller}" for n, (_, controller) in ports.items())
    template = "\n".join(
        (ROOT / "config" / "kafka" / name).read_text() for name in ("server.properties", "brokers.properties")
    )
    home = tmp_path / f"cluster-{ports[1][0]}"
    commands: dict[int, list[str]] = {}
    formats: dict[int, subprocess.Popen[bytes]] = {}
    for n, (port, controller) in ports.items():
        data, logs = home / f"node-{n}" / "data", home / f"node-{n}" / "logs"
        data.mkdir(parents=True)
        logs.mkdir()
        props = home / f"node-{n}" / "server.properties"
        props.write_text(
            template.replace("@KAFKA_PORT@", str(port))
            .replace("@KAFKA_CONTROLLER_PORT@", str(controller))
            .replace("@KAFKA_DATA_DIR@", str(data))
            .replace("@NODE_ID@", str(n))
            .replace("@VOTERS@", voters)
        )
        java = ["java", *_KAFKA_JAVA, f"-Dkafka.logs.dir={logs}", "-cp", f"{KAFKA_LIBS}/*"]
        commands[n] = [*java, "kafka.Kafka", str(props)]
        # One cluster id for every node; the formats run side by side (a JVM start each).
        formats[n] = subprocess.Popen(
            [
                *(*java, "kafka.tools.StorageTool", "format", "--cluster-id", "c2Vnc3RyZWFtLWNsdXN0ZQ"),
                *("--config", str(props), "--ignore-formatted"),
            ],
            stdout=(logs / "format.out").open("wb"),
            stderr=subprocess.STDOUT,
        )
    for n, fmt in formats.items():
        assert fmt.wait(timeout=120) == 0, (home / f"node-{n}" / "logs" / "format.out").read_text()
    cluster = PrivateCluster({})
    try:
        for n, command in commands.items():
            logs = home / f"node-{n}" / "logs"
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=(logs / "kafka.out").open("wb"),
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C of pytest does not reach it before the teardown does
            )
            cluster.nodes[n] = PrivateKafka(proc, ports[n][0], logs)
        check = (
            "import sys\n"
            "from kafka import KafkaAdminClient\n"
            f"a = KafkaAdminClient(bootstrap_servers={cluster.bootstrap!r}, bootstrap_timeout_ms=2000)\n"
            "live = [b for b in a.describe_cluster()['brokers'] if not b.get('is_fenced')]\n"
            f"a.close(); sys.exit(0 if len(live) == {nodes} else 1)\n"
        )

        def answers() -> bool:
            for n, node in cluster.nodes.items():
                assert node.proc.poll() is None, (
                    f"node {n}: " + (node.logs / "kafka.out").read_text(errors="replace")[-2000:]
                )
            probe = subprocess.run([sys.executable, "-c", check], capture_output=True, check=False)
            return probe.returncode == 0

        wait_for(answers, 120, f"the private cluster's {nodes} brokers", step=0.5)
        yield cluster
    finally:
        for node in cluster.nodes.values():  # together: a controlled shutdown needs the quorum
            if node.proc.poll() is None:
                node.proc.terminate()
        for node in cluster.nodes.values():
            _stop(node.proc, timeout=30)


class PrivateRedisCluster:
    """A Redis Cluster of the test's own: three masters with one replica each (as
    ``scripts/stack.sh start --cluster``), ``redis-server`` processes on free ports in
    ``workdir``, without persistence, made with ``redis-cli --cluster create``. A master that
    is silent for ``node_timeout_ms`` is failed over to its replica."""

    def __init__(self, workdir: Path, node_timeout_ms: int = 2000) -> None:
        self.dir = workdir
        self.node_timeout_ms = node_timeout_ms
        self.nodes = [
            PrivateRedis(
                workdir / f"node-{i}",
                *("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"),
                # The bus port is set: the default (port + 10000) may be past 65535.
                *("--cluster-port", str(free_port())),
                *("--cluster-node-timeout", str(node_timeout_ms)),
                # A replica's first sync at once, not after the default 5 s wait for others.
                *("--repl-diskless-sync-delay", "0"),
            )
            for i in range(6)
        ]

    @property
    def url(self) -> str:
        """One node's URL: the cluster client finds the others from it."""
        return f"redis://127.0.0.1:{self.nodes[0].port}/0"

    def start(self) -> PrivateRedisCluster:
        if shutil.which("redis-cli") is None:
            pytest.fail("redis-cli not found: run scripts/bootstrap.sh", pytrace=False)
        for node in self.nodes:
            node.start()
        create = subprocess.run(
            [
                *("redis-cli", "--cluster", "create"),
                *(f"127.0.0.1:{node.port}" for node in self.nodes),
                *("--cluster-replicas", "1", "--cluster-yes"),
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert create.returncode == 0, create.stdout[-2000:] + create.stderr[-2000:]
        wait_for(self.healthy, 30, "the private Redis Cluster to be ok, every replica in sync")
        return self

    def client(self, node: PrivateRedis) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=node.port, socket_timeout=2)

    def healthy(self) -> bool:
        """Every live node says the cluster is ok, and every live replica's link is up."""
        try:
            for node in self.live():
                with self.client(node) as c:
                    if c.cluster("info").get("cluster_state") != "ok":
                        return False
                    info = c.info("replication")
                    if info["role"] == "slave" and info.get("master_link_status") != "up":
                        return False
        except redis.RedisError:
            return False
        return True

    def live(self) -> list[PrivateRedis]:
        return [n for n in self.nodes if n.proc is not None and n.proc.poll() is None]

    def owner(self, key: str) -> PrivateRedis:
        """The master serving ``key``'s slot, as the live nodes see it."""
        for node in self.live():
            try:
                with self.client(node) as c:
                    slot = int(c.cluster("keyslot", key))
                    for start, end, master, *_ in c.execute_command("CLUSTER", "SLOTS"):
                        if start <= slot <= end:
                            return next(n for n in self.nodes if n.port == int(master[1]))
            except redis.RedisError:
                continue
        raise AssertionError(f"no live node knows who serves {key!r}")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@contextlib.contextmanager
def private_redis_cluster(tmp_path: Path, node_timeout_ms: int = 2000) -> Iterator[PrivateRedisCluster]:
    cluster = PrivateRedisCluster(tmp_path / f"cluster-{free_port()}", node_timeout_ms)
    try:
        yield cluster.start()
    finally:
        cluster.stop()
