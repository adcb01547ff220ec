"""Kafka clients: consumer, producer and admin factories, topic creation, records and keys."""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple, Protocol, TypeVar

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.coordinator.assignors.range import RangePartitionAssignor
from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from kafka.errors import KafkaError, SaslAuthenticationFailedError, TopicAlreadyExistsError
from kafka.net.compat import KafkaNetClient
from kafka.partitioner.default import murmur2

from stream.config import Settings
from stream.errors import SegstreamError, ServiceUnavailable

log = logging.getLogger(__name__)

# The largest record segstream writes: a model snapshot with the largest sample (16,384
# customers) is a few megabytes; the producer and the model topic allow this much.
MAX_OUTPUT_RECORD_BYTES = 16 * 1024 * 1024
# A dead letter is bounded (models.contracts.DEAD_LETTER_ORIGINAL_BYTES of the record, its hash and
# size, a reason of at most 1,000 characters): a few kilobytes fit any topic, whatever the record.
DEAD_LETTER_TOPIC_BYTES = 1024 * 1024


class Record(Protocol):
    """What the pipeline reads of a consumed record: a :class:`SourceRecord`, or kafka-python's
    ``ConsumerRecord`` as polled (the service passes those on: no copy per record)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


class SourceRecord(NamedTuple):
    """One consumed record, decoupled from the client library (also built from replay files).
    A named tuple: built for every record, and a frozen dataclass's ``__init__`` cost ~1 us more."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def _security(settings: Settings) -> dict[str, Any]:
    """The clients' security settings. kafka-python names the SASL user and password
    ``sasl_plain_*`` whatever the mechanism (SCRAM included)."""
    k = settings.kafka
    conf: dict[str, Any] = {"security_protocol": k.security_protocol}
    if k.sasl_mechanism:
        conf["sasl_mechanism"] = k.sasl_mechanism
        conf["sasl_plain_username"] = k.sasl_username
        conf["sasl_plain_password"] = k.sasl_password.get_secret_value() if k.sasl_password else None
    if k.security_protocol in ("SSL", "SASL_SSL"):
        conf["ssl_check_hostname"] = k.ssl_check_hostname
        if k.ssl_cafile:
            conf["ssl_cafile"] = k.ssl_cafile
    return conf


def make_consumer(settings: Settings, **overrides: Any) -> KafkaConsumer:
    k = settings.kafka
    conf: dict[str, Any] = {
        "group_id": k.group_id,
        "enable_auto_commit": False,  # offsets commit last, after Redis and the producer
        "auto_offset_reset": "earliest",
        "max_poll_records": k.max_poll_records,
        "session_timeout_ms": k.session_timeout_ms,
        "heartbeat_interval_ms": k.heartbeat_interval_ms,
        "max_partition_fetch_bytes": 4 * 1024 * 1024,
        "fetch_max_bytes": 16 * 1024 * 1024,
        # Eager rebalancing (kafka-python's default, pinned): the listener is told the whole new
        # assignment, which Service.on_assigned takes as the partitions it owns. A cooperative
        # assignor would report only the partitions added.
        "partition_assignment_strategy": (RangePartitionAssignor, RoundRobinPartitionAssignor),
        **overrides,
    }
    return _connect(KafkaConsumer, settings, conf)


def make_producer(settings: Settings, **overrides: Any) -> KafkaProducer:
    conf: dict[str, Any] = {
        # A record counts as sent once every in-sync replica has it (topics.min_insync_replicas of
        # them at least): a leader that dies after the acknowledgement does not take it along.
        "acks": "all",
        # kafka-python's defaults (3.0), pinned: idempotence, so that its retries after a leader
        # change (retries unbounded within delivery_timeout_ms, 120 s; the metadata is refreshed
        # on NotLeaderForPartition) write no second copy. Explicit, an override that conflicts
        # with it fails at construction instead of silently turning it off.
        "enable_idempotence": True,
        "linger_ms": 5,
        "batch_size": 256 * 1024,
        "max_request_size": MAX_OUTPUT_RECORD_BYTES,
        **overrides,
    }
    return _connect(KafkaProducer, settings, conf)


def make_admin(settings: Settings, **overrides: Any) -> KafkaAdminClient:
    return _connect(KafkaAdminClient, settings, dict(overrides))


_Client = TypeVar("_Client", KafkaConsumer, KafkaProducer, KafkaAdminClient)


def _connect(cls: type[_Client], settings: Settings, conf: dict[str, Any]) -> _Client:
    """A kafka-python client, bootstrapped within ``kafka.connect_timeout_seconds``, or
    ServiceUnavailable naming the broker and the wait (kafka-python's own default is 30 s).

    The constructors start their IO thread before bootstrapping and leave it running when the
    bootstrap fails; the factory below keeps hold of it so that a failed attempt stops it (the
    health prober retries every second for as long as a broker is away). Every client gets the
    brokers, the client id and the security settings; ``conf`` adds to them or overrides them."""
    k = settings.kafka
    conf = {
        "bootstrap_servers": k.bootstrap_servers.split(","),
        "client_id": k.client_id,
        **_security(settings),
        **conf,
    }
    timeout = k.connect_timeout_seconds
    conf.setdefault("bootstrap_timeout_ms", int(timeout * 1000))
    made: list[KafkaNetClient] = []

    def net_client(**configs: Any) -> KafkaNetClient:
        client = KafkaNetClient(**configs)
        made.append(client)
        return client

    with _ManagerLog.collect() as seen:
        try:
            return cls(kafka_client=net_client, **conf)
        except KafkaError as e:
            for client in made:
                _discard(client)
            waited = conf["bootstrap_timeout_ms"] / 1000
            raise ServiceUnavailable(_bootstrap_failure(settings, waited, e, seen)) from e


class _ManagerLog:
    """kafka-python's connection manager logs why each bootstrap attempt failed; the CLI and a
    quiet service silence the library's loggers. While a client bootstraps, that logger is opened
    to WARNING for the collectors only (no propagation: nothing silenced gets printed), counted,
    so that concurrent bootstraps (the prober's thread) restore it once."""

    log = logging.getLogger("kafka.net.manager")
    lock = threading.Lock()
    opened = 0
    saved: tuple[int, bool] = (logging.NOTSET, True)

    @classmethod
    @contextlib.contextmanager
    def collect(cls) -> Iterator[_BootstrapErrors]:
        seen = _BootstrapErrors()
        with cls.lock:
            if cls.opened == 0 and not cls.log.isEnabledFor(logging.WARNING):
                cls.saved = (cls.log.level, cls.log.propagate)
                cls.log.setLevel(logging.WARNING)
                cls.log.propagate = False
                cls.opened = 1
            elif cls.opened:
                cls.opened += 1
            cls.log.addHandler(seen)
        try:
            yield seen
        finally:
            with cls.lock:
                cls.log.removeHandler(seen)
                if cls.opened:
                    cls.opened -= 1
                    if cls.opened == 0:
                        cls.log.setLevel(cls.saved[0])
                        cls.log.propagate = cls.saved[1]


class _BootstrapErrors(logging.Handler):
    """The errors kafka-python logs while it bootstraps and retries until its timeout (a refused
    login or a failed TLS handshake included): the failure then says why, not only that the
    time ran out. It keeps the exceptions, never the formatted lines."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.errors: list[BaseException] = []

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args if isinstance(record.args, tuple) else ()
        self.errors.extend(a for a in args if isinstance(a, BaseException))


def _bootstrap_failure(settings: Settings, waited: float, e: KafkaError, seen: _BootstrapErrors) -> str:
    k = settings.kafka
    where = f"Kafka at {k.bootstrap_servers}"
    for err in reversed(seen.errors):
        if isinstance(err, SaslAuthenticationFailedError):
            # The broker's own words name the mechanism and the cause; no secret is in them.
            who = f"user {k.sasl_username!r} ({k.sasl_mechanism})"
            return f"{where} refused the login of {who}: {_one_line(err)}"
        if "Handshake failed" in str(err) or "SSL" in type(err).__name__:
            return f"{where}: the TLS handshake failed ({k.security_protocol}): {_one_line(err)}"
    if k.sasl_mechanism and any("socket disconnected" in str(x) for x in seen.errors):
        # The broker answers a failed login with an error and then closes the connection, and
        # kafka-python often sees the close first (a refused port or a failed TLS handshake
        # reads otherwise): the attempts ended in the login.
        return (
            f"{where} closed the connections during the login of user {k.sasl_username!r} "
            f"({k.sasl_mechanism}) for {waited:g} s: the user or password is likely wrong"
        )
    others = [x for x in seen.errors if str(x) != str(e)]
    last = f" (last error: {_one_line(others[-1])})" if others else ""
    return f"{where} did not answer within {waited:g} s: {_one_line(e)}{last}"


def _one_line(e: BaseException) -> str:
    """``Class: message`` on one line, without kafka-python's repeated ``[Error n] Class:`` prefixes."""
    name = type(e).__name__
    text = " ".join(str(e).split())
    text = re.sub(rf"^(\[Error \d+\] )?({name}: )+", "", text)
    return f"{name}: {text}" if text and text != name else name


def _discard(client: KafkaNetClient) -> None:
    """Close a client whose owner failed to start: its sockets, then its IO thread."""
    try:
        client.close()
        client._net.stop(timeout_ms=1000)
    except Exception as e:  # best effort: the error being raised is the one that matters
        log.debug("closing a client that failed to bootstrap: %s", e)


def topic_specs(settings: Settings) -> list[NewTopic]:
    """The topics segstream creates, with limits that fit what it writes to them, each with the
    settings' replication factor and ``min.insync.replicas`` (written on every topic, so that a
    broker's default does not decide how many copies an acknowledged output has)."""
    t = settings.topics
    rf = t.replication_factor
    durable = {"min.insync.replicas": str(t.min_insync_replicas)}
    compact = {**durable, "cleanup.policy": "compact"}
    return [
        NewTopic(t.interactions, t.partitions, rf, topic_configs=dict(durable)),
        NewTopic(
            t.out("dlq"),
            t.partitions,
            rf,
            topic_configs={**durable, "max.message.bytes": str(DEAD_LETTER_TOPIC_BYTES)},
        ),
        NewTopic(t.out("changes"), t.partitions, rf, topic_configs=dict(durable)),
        NewTopic(t.out("current"), t.partitions, rf, topic_configs=compact),
        NewTopic(
            t.out("model"),
            1,
            rf,
            topic_configs={**compact, "max.message.bytes": str(MAX_OUTPUT_RECORD_BYTES)},
        ),
        NewTopic(t.out("model_events"), 1, rf, topic_configs=dict(durable)),
    ]


def ensure_topics(settings: Settings, only: Iterable[str] | None = None) -> list[str]:
    """Create the topics that do not exist yet; return the names created."""
    admin = make_admin(settings)
    try:
        existing = set(admin.list_topics())
        wanted = [s for s in topic_specs(settings) if only is None or s.name in set(only)]
        missing = [s for s in wanted if s.name not in existing]
        for spec in missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # created concurrently: fine
                admin.create_topics([spec])
        _wait_for_topics(admin, [s.name for s in missing])
        return [s.name for s in missing]
    finally:
        admin.close()


def _wait_for_topics(admin: KafkaAdminClient, names: list[str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while names and time.monotonic() < deadline:
        if set(names) <= set(admin.list_topics()):
            return
        time.sleep(0.2)


def read_latest(settings: Settings, topic: str, limit: int, key: bytes | None = None) -> list[bytes]:
    """The last ``limit`` record values of a topic (optionally of one key), oldest first."""
    from kafka import TopicPartition

    consumer = make_consumer(settings, group_id=None, enable_auto_commit=False)
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        if not parts:
            raise SegstreamError(f"topic {topic} does not exist: run `segstream topics create`")
        consumer.assign(parts)
        end = consumer.end_offsets(parts)
        begin = consumer.beginning_offsets(parts)
        # Without a key filter the tail of each partition suffices; with one, scan everything.
        for tp in parts:
            consumer.seek(tp, begin[tp] if key else max(begin[tp], end[tp] - limit))
        found: list[tuple[int, int, bytes]] = []
        pending = {tp for tp in parts if consumer.position(tp) < end[tp]}
        while pending:
            for tp, msgs in consumer.poll(timeout_ms=1000).items():
                for m in msgs:
                    if m.offset < end[tp] and m.value is not None and (key is None or m.key == key):
                        found.append((m.timestamp, m.offset, m.value))
            pending = {tp for tp in pending if consumer.position(tp) < end[tp]}
        found.sort()
        return [v for _, _, v in found[-limit:]]
    finally:
        consumer.close()


def read_topic(settings: Settings, topic: str) -> list[bytes]:
    """Every record value of a topic up to its end offsets at call time (tombstones left out),
    partition by partition in offset order. For reports over a whole stream (``segstream
    report``): no consumer group, nothing committed."""
    found: dict[int, list[bytes]] = {}
    for partition, msg in scan_topic(settings, topic):
        if msg.value is not None:
            found.setdefault(partition, []).append(msg.value)
    return [v for p in sorted(found) for v in found[p]]


def scan_topic(settings: Settings, topic: str) -> Iterator[tuple[int, Any]]:
    """(partition, record) of every record of a topic up to its end offsets at call time, each
    partition in offset order (partitions interleaved). No consumer group, nothing committed."""
    from kafka import TopicPartition

    consumer = make_consumer(settings, group_id=None, enable_auto_commit=False)
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        if not parts:
            raise SegstreamError(f"topic {topic} does not exist: run `segstream topics create`")
        consumer.assign(parts)
        end = consumer.end_offsets(parts)
        consumer.seek_to_beginning(*parts)
        pending = {tp for tp in parts if consumer.position(tp) < end[tp]}
        while pending:
            for tp, msgs in consumer.poll(timeout_ms=1000).items():
                yield from ((tp.partition, m) for m in msgs if m.offset < end[tp])
            pending = {tp for tp in pending if consumer.position(tp) < end[tp]}
    finally:
        consumer.close()


@functools.lru_cache(maxsize=1 << 16)
def key_hash(key: bytes) -> int:
    """The default partitioner's hash of a record key (murmur2, positive): partition = hash % count.
    Cached: the same customers change again and again."""
    return murmur2(key) & 0x7FFFFFFF


def partition_for_key(key: bytes | None, partitions: int) -> int:
    """The partition Kafka's default partitioner gives a key (a keyless record counts as 0)."""
    if partitions <= 1 or key is None:
        return 0
    return key_hash(key) % partitions
