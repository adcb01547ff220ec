"""What the integration tests share: the stack, topics, producing and reading, running the CLI
and the service as a user does, comparing states. Test modules import from here (and from
servers.py for servers of their own), never from each other.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import UnknownTopicOrPartitionError

from models.contracts import InteractionEvent
from models.features import CustomerState, FeatureParams, apply_event, evaluate, fact_of, feature_differences
from models.sim import GeneratedRecord, generate
from stream.config import OUTPUT_NAMES
from stream.ops.erase import partition_of
from stream.state import FeatureStore

ROOT = Path(__file__).resolve().parents[2]
STACK_SH = ROOT / "scripts" / "stack.sh"
# `python -m stream` from the repository root: the checkout under test, whatever is installed.
SEGSTREAM = [sys.executable, "-m", "stream"]
PARTITIONS = 4


@dataclass(frozen=True)
class Stack:
    bootstrap: str
    redis_url: str


def unique(prefix: str = "t") -> str:
    return prefix + uuid.uuid4().hex[:10]


def create_topics(admin: KafkaAdminClient, topics: list[NewTopic], timeout_s: float = 30.0) -> None:
    """Create topics and wait until the broker's metadata lists all of them."""
    admin.create_topics(topics, timeout_ms=int(timeout_s * 1000))
    names = {t.name for t in topics}
    deadline = time.monotonic() + timeout_s
    while not names <= set(admin.list_topics()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"topics not visible after {timeout_s}s: {sorted(names)}")
        time.sleep(0.05)


def delete_topics(admin: KafkaAdminClient, names: list[str]) -> None:
    # Already gone is fine: cleanup must not fail a test.
    with contextlib.suppress(UnknownTopicOrPartitionError):
        admin.delete_topics(names, timeout_ms=30000)


# ---------------------------------------------------------------- records in and out


def produce_pairs(bootstrap: str, topic: str, records: Iterable[tuple[bytes | None, bytes]]) -> int:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, batch_size=256 * 1024)
    n = 0
    for key, value in records:
        producer.send(topic, key=key, value=value)
        n += 1
    producer.flush(timeout=120)
    producer.close()
    return n


def produce_records(
    bootstrap: str,
    topic: str,
    records: Iterable[tuple[bytes | None, bytes | None, Sequence[tuple[str, bytes]]]],
    **config: object,
) -> int:
    """(key, value, headers) records, in order; ``config``: more producer settings (security).
    A request size that fits a megabyte record and its headers."""
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=20,
        batch_size=256 * 1024,
        max_request_size=2 * 1024 * 1024,
        **config,
    )
    n = 0
    for key, value, headers in records:
        producer.send(topic, key=key, value=value, headers=list(headers))
        n += 1
    producer.flush(timeout=120)
    producer.close()
    return n


def read_records(bootstrap: str, topic: str, timeout_s: float = 30.0, **config: object) -> list:
    """Every record of the topic up to its end offsets at call time, in partition then offset order.
    ``config``: more consumer settings (security)."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=2000, **config
    )
    parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    end = consumer.end_offsets(parts)
    out: dict[int, list] = {tp.partition: [] for tp in parts}
    remaining = {tp for tp in parts if end[tp] > 0}
    import time

    deadline = time.monotonic() + timeout_s
    while remaining and time.monotonic() < deadline:
        for tp, msgs in consumer.poll(timeout_ms=500).items():
            for m in msgs:
                if m.offset < end[tp]:
                    out[tp.partition].append(m)
            if consumer.position(tp) >= end[tp]:
                remaining.discard(tp)
    consumer.close()
    assert not remaining, f"could not read {topic} to its end"
    return [m for p in sorted(out) for m in out[p]]


def cli_env(settings_env: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(settings_env)
    env["PYTHONPATH"] = str(ROOT)
    return env


def run_cli(settings_env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*SEGSTREAM, *args],
        env=cli_env(settings_env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def children_of(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(entry))
    return kids


def alive(pid: int) -> bool:
    """Running (a zombie is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


# ---------------------------------------------------------------- the service, states


def produce(stack: Stack, topic: str, records: Iterable[GeneratedRecord]) -> int:
    producer = KafkaProducer(
        bootstrap_servers=stack.bootstrap, acks="all", linger_ms=20, batch_size=256 * 1024
    )
    n = 0
    for r in records:
        producer.send(topic, key=r.key, value=r.value)
        n += 1
    producer.flush(timeout=120)
    producer.close()
    return n


# Rebalances within seconds: the broker's smallest session (group.min.session.timeout.ms), so a
# killed or frozen member's partitions move ~6 s later, and small polls, so that a kill lands
# mid-log.
FAST_REBALANCE = {
    "SEGSTREAM_KAFKA__MAX_POLL_RECORDS": "200",
    "SEGSTREAM_KAFKA__SESSION_TIMEOUT_MS": "6000",
    "SEGSTREAM_KAFKA__HEARTBEAT_INTERVAL_MS": "1000",
}


def service_env(settings_env: dict[str, str], **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(settings_env)
    env.update(extra)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def start_service(env: dict[str, str], log_path: Path, until_idle: float = 8.0) -> subprocess.Popen[bytes]:
    """``segstream run`` as a subprocess, its output appended to ``log_path``."""
    out = log_path.open("ab")
    try:
        return subprocess.Popen(
            [*SEGSTREAM, "run", "--until-idle", str(until_idle), "--metrics-port", "0"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    finally:
        out.close()  # the child holds its own descriptor


def run_to_end(env: dict[str, str], log_path: Path, until_idle: float = 2.0, timeout: float = 300) -> None:
    """One instance reads the log to its end and exits 0. A short ``until_idle`` is safe: the
    service stops only when idle *and* at every owned partition's end (a quiet spell alone never
    ends a run), so the idle wait is pure cost."""
    proc = start_service(env, log_path, until_idle)
    try:
        rc = proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert rc == 0, f"segstream run exited {rc}: {tail(log_path)}"


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no output)"


def exit_code(proc: subprocess.Popen[bytes], timeout: float, out: Path, name: str = "segstream run") -> int:
    """The process's exit code; a process still running after ``timeout`` fails the test with the
    end of its log (a bare TimeoutExpired would hide why it did not stop)."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{name} still running after {timeout:.0f} s:\n{tail(out)}")


def applied_offsets(client: redis.Redis, ns: str, partitions: int = PARTITIONS) -> list[int]:
    raw = client.mget([f"{ns}:{{{p}}}:offset" for p in range(partitions)])
    return [int(v) if v is not None else -1 for v in raw]


def applied_count(client: redis.Redis, ns: str) -> int:
    """Records applied so far over every partition (from the applied offsets)."""
    return sum(o + 1 for o in applied_offsets(client, ns))


def end_offsets(stack: Stack, topic: str, partitions: int = PARTITIONS) -> list[int]:
    consumer = KafkaConsumer(bootstrap_servers=stack.bootstrap)
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        ends = consumer.end_offsets(tps)
        return [int(ends[tp]) for tp in tps]
    finally:
        consumer.close()


def committed_offsets(stack: Stack, topic: str, group: str, partitions: int = PARTITIONS) -> list[int]:
    consumer = KafkaConsumer(bootstrap_servers=stack.bootstrap, group_id=group, enable_auto_commit=False)
    try:
        out = []
        for p in range(partitions):
            c = consumer.committed(TopicPartition(topic, p))
            out.append(int(c) if c is not None else -1)
        return out
    finally:
        consumer.close(autocommit=False)


def customer_states(client: redis.Redis, ns: str, partitions: int = PARTITIONS) -> dict[str, bytes]:
    """customer id -> packed state, for every customer of the namespace."""
    return {c: blob for _, c, blob in FeatureStore.from_client(client, ns).scan_customers(partitions)}


def read_topic(
    stack: Stack, topic: str, partitions: int = PARTITIONS, idle_s: float = 3.0
) -> list[tuple[bytes | None, bytes | None]]:
    """Every (key, value) of a topic, from the beginning, until it has been quiet for ``idle_s``."""
    consumer = KafkaConsumer(bootstrap_servers=stack.bootstrap, enable_auto_commit=False)
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    ends = consumer.end_offsets(tps)
    got: list[tuple[bytes | None, bytes | None]] = []
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            for msgs in consumer.poll(timeout_ms=int(idle_s * 1000)).values():
                got.extend((m.key, m.value) for m in msgs)
            if all(consumer.position(tp) >= ends[tp] for tp in tps):
                break
    finally:
        consumer.close()
    return got


def wait_until(cond: Callable[[], bool], timeout: float, what: str, step: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)


def compare_states(got: dict[str, bytes], want: dict[str, bytes]) -> tuple[list[str], dict[str, Any]]:
    """(feature problems, segment agreement counts) between two namespaces' states."""
    problems: list[str] = []
    if set(got) != set(want):
        problems.append(
            f"customer sets differ: {len(set(got) - set(want))} extra, {len(set(want) - set(got))} missing"
        )
    seg: dict[str, Any] = {"customers": 0, "segment": 0, "seq": 0, "segment_since": 0, "differ": []}
    for cid in sorted(set(got) & set(want)):
        a, b = CustomerState.unpack(got[cid]), CustomerState.unpack(want[cid])
        for m in feature_differences(a, b):
            problems.append(f"{cid}: {m}")
        seg["customers"] += 1
        seg["segment"] += a.segment == b.segment
        seg["seq"] += a.seq == b.seq
        seg["segment_since"] += a.segment_since == b.segment_since
        mine, theirs = (a.segment, a.seq, a.segment_since), (b.segment, b.seq, b.segment_since)
        if mine != theirs and len(seg["differ"]) < 12:
            seg["differ"].append((cid, mine, theirs, a.last_ts))  # (segment, seq, since), newest event
    return problems, seg


def second_env(settings_env: dict[str, str], stack: Stack) -> tuple[dict[str, str], str]:
    """Settings for an uninterrupted reference run: same topics, its own namespace and group
    (the caller deletes the namespace's keys)."""
    ns = unique("ref")
    env = dict(settings_env)
    env["SEGSTREAM_REDIS__NAMESPACE"] = ns
    env["SEGSTREAM_KAFKA__GROUP_ID"] = unique("g")
    # Reference output goes to the same topics with a suffix-free name: harmless, the test
    # compares Redis state only.
    return env, ns


@dataclass(frozen=True)
class Reference:
    """An uninterrupted run started ahead of assert_exact_state (:func:`reference_run`)."""

    proc: subprocess.Popen[bytes]
    ns: str
    log: Path


@contextlib.contextmanager
def reference_run(
    stack: Stack,
    client: redis.Redis,
    settings_env: dict[str, str],
    tmp_path: Path,
    until_idle: float = 2.0,
    own_outputs: bool = False,
) -> Iterator[Reference]:
    """assert_exact_state's uninterrupted run, started now (pass it as its ``reference``): its
    seconds overlap what the test still waits for (an instance's ``--until-idle``, say) instead of
    adding to them. Start it only once the whole log is in the topic: a run that catches up with
    a log still being written is not an uninterrupted run of that log. ``own_outputs``: it
    publishes to topics of its own (a suffix; deleted on the way out), not to the topics the
    test may still read. On the way out it is killed if still running and its keys deleted."""
    env, ns = second_env(settings_env, stack)
    if own_outputs:
        env["SEGSTREAM_TOPICS__SUFFIX"] = f".{ns}"
    log = tmp_path / "reference.log"
    proc = start_service(service_env(env), log, until_idle)
    try:
        yield Reference(proc, ns, log)
    finally:
        kill_all(proc)
        delete_namespace(client, ns)
        if own_outputs:
            admin = KafkaAdminClient(bootstrap_servers=stack.bootstrap)
            try:
                names = {f"{settings_env[f'SEGSTREAM_TOPICS__{o.upper()}']}.{ns}" for o in OUTPUT_NAMES}
                delete_topics(admin, sorted(names & set(admin.list_topics())))
            finally:
                admin.close()


def delete_namespace(client: redis.Redis, ns: str) -> None:
    batch: list[bytes] = []
    for key in client.scan_iter(match=f"{ns}:*", count=1000):
        batch.append(key)
        if len(batch) >= 500:
            client.delete(*batch)
            batch.clear()
    if batch:
        client.delete(*batch)


def valid_count(records: Sequence[GeneratedRecord]) -> int:
    return sum(1 for r in records if not r.malformed)


def produce_generated(
    stack: Stack, settings_env: dict[str, str], customers: int, seed: int
) -> tuple[list[GeneratedRecord], list[int]]:
    """A generated 90-day log (0.2% malformed) in the test's interactions topic: its records and
    the topic's end offsets."""
    records = generate(customers=customers, days=90, seed=seed, malformed_fraction=0.002).records
    topic = settings_env["SEGSTREAM_TOPICS__INTERACTIONS"]
    produce(stack, topic, records)
    ends = end_offsets(stack, topic)
    assert sum(ends) == len(records)
    return records, ends


def kill_all(*procs: subprocess.Popen[bytes] | None) -> None:
    """At the end of a test, whatever still runs: woken (if it was stopped) and killed."""
    for proc in procs:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
            proc.wait()


def assert_exact_state(
    stack: Stack,
    client: redis.Redis,
    ns: str,
    settings_env: dict[str, str],
    records: Sequence[GeneratedRecord],
    ends: list[int],
    tmp_path: Path,
    until_idle: float = 2.0,
    same_model: bool = False,
    store: FeatureStore | None = None,
    reference: Reference | None = None,
) -> dict[str, int]:
    """Effectively-once, checked: every offset applied, every valid event applied once, and every
    customer's features equal to those of an uninterrupted run of the same log (in a namespace
    of its own, on the Redis ``client`` talks to). Returns the segment agreement counts with that
    run (compare_states). ``same_model``: the namespace's model is also that run's
    (assert_same_engine). ``store``: where the namespace ``ns`` is read (a cluster's, say; default
    ``client``'s Redis). ``reference``: that run, started earlier by reference_run and waited for
    here (default: run here, once ``ns`` passed its checks)."""
    store = FeatureStore.from_client(client, ns) if store is None else store
    partitions = len(ends)
    assert [store.applied_offset(p) for p in range(partitions)] == [e - 1 for e in ends]
    got = {c: blob for _, c, blob in store.scan_customers(partitions)}
    events = sum(CustomerState.unpack(v).events for v in got.values())
    assert events == valid_count(records), f"{events} events applied, {valid_count(records)} valid records"
    ref_env, ref_ns = second_env(settings_env, stack) if reference is None else ({}, reference.ns)
    try:
        if reference is None:
            run_to_end(service_env(ref_env), tmp_path / "reference.log", until_idle=until_idle)
        else:
            rc = exit_code(reference.proc, 300, reference.log, "the reference run")
            assert rc == 0, f"the reference run exited {rc}: {tail(reference.log)}"
        assert applied_offsets(client, ref_ns, partitions) == [e - 1 for e in ends]
        problems, seg = compare_states(got, customer_states(client, ref_ns, partitions))
        assert not problems, f"{len(problems)} feature differences, first: {problems[:5]}"
        mine, theirs = store.load_model(), FeatureStore.from_client(client, ref_ns).load_model()
        if mine is not None and theirs is not None:
            from models.segments.engine import SegmentEngine

            names = [SegmentEngine.restore(blob).live_names() for _, blob in (mine, theirs)]
            seg["model_version"], seg["reference_version"] = mine[0], theirs[0]
            seg["same_segments"] = int(names[0] == names[1])
            seg["same_model"] = int(mine[1] == theirs[1])
        if same_model:
            assert mine is not None and theirs is not None and mine[0] == theirs[0], (
                f"model version {mine and mine[0]}, an uninterrupted run's {theirs and theirs[0]}"
            )
            assert_same_engine(theirs[1], mine[1])
    finally:
        delete_namespace(client, ref_ns)
    return seg


def manifest_diff(a: object, b: object, path: str = "") -> list[str]:
    """Where two decoded manifests differ: one line per differing leaf."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [
            line for k in a.keys() | b.keys() for line in manifest_diff(a.get(k), b.get(k), f"{path}/{k}")
        ]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [
            line
            for i, (x, y) in enumerate(zip(a, b, strict=True))
            for line in manifest_diff(x, y, f"{path}/{i}")
        ]
    return [] if a == b else [f"{path}: {str(a)[:200]}, {str(b)[:200]}"]


def assert_same_engine(a: bytes, b: bytes) -> None:
    """Two checkpoints hold the same engine: the same manifest, and arrays equal up to float
    rounding (measured: one standard deviation of the vectoriser 1 ulp apart). The rows waiting
    for the next version are compared as one block (their blocks depend on the batches), and
    the RFM score cache is left out (filled by whoever scored a row last)."""

    def parts(snapshot: bytes) -> tuple[dict[str, object], list[np.ndarray]]:
        from models.segments.engine import SegmentEngine

        engine = SegmentEngine.restore(snapshot)
        engine.rfm_scorer._edge_bins = None
        if engine._pending_raw:
            engine._pending_raw = [np.concatenate(engine._pending_raw)]
            engine._pending_t = [np.concatenate(engine._pending_t)]
        blob = engine.snapshot()
        size = int.from_bytes(blob[19:27], "big")
        manifest = json.loads(blob[27 : 27 + size])
        body = blob[27 + size :]
        arrays = [np.load(io.BytesIO(body[o : o + n])) for o, n in manifest.pop("arrays")]
        return manifest, arrays

    (ma, xa), (mb, xb) = parts(a), parts(b)
    assert ma == mb, f"engine manifests differ (path: reference, this run): {manifest_diff(ma, mb)[:20]}"
    for i, (x, y) in enumerate(zip(xa, xb, strict=True)):
        where = f"array {i} at {array_path(ma, i)}"
        assert x.shape == y.shape and x.dtype == y.dtype, f"{where}: {x.shape} {x.dtype}, {y.shape} {y.dtype}"
        same = (
            np.allclose(x, y, rtol=1e-12, atol=1e-12, equal_nan=True)
            if x.dtype.kind == "f"
            else np.array_equal(x, y)
        )
        assert same, f"{where} differs (reference, this run): {x.ravel()[:8]}, {y.ravel()[:8]}"


def array_path(manifest: object, i: int, path: str = "") -> str | None:
    """Where array ``i`` sits in a decoded manifest (``{"$nd": i}``)."""
    if manifest == {"$nd": i}:
        return path
    items = (
        manifest.items()
        if isinstance(manifest, dict)
        else enumerate(manifest)
        if isinstance(manifest, list)
        else ()
    )
    for k, v in items:
        if (found := array_path(v, i, f"{path}/{k}")) is not None:
            return found
    return None


# ---------------------------------------------------------------- logs and direct computation


def event(
    n: int, customer: str, ts: float, typ: str = "page_view", amount: float | None = None, **extra: object
) -> GeneratedRecord:
    body: dict[str, object] = {
        "event_id": f"e{n}",
        "customer_id": customer,
        "ts": datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z"),
        "channel": "web",
        "type": typ,
        **extra,
    }
    if amount is not None:
        body |= {"amount": amount, "currency": "EUR"}
    value = json.dumps(body, separators=(",", ":")).encode()
    return GeneratedRecord(customer.encode(), value, False, customer, "test", float(ts))


def customers_of(partition: int, n: int, prefix: str = "c") -> list[str]:
    out: list[str] = []
    i = 0
    while len(out) < n:
        c = f"{prefix}{i:05d}"
        if partition_of(c, 4) == partition:
            out.append(c)
        i += 1
    return out


def direct_states(records: Iterable[GeneratedRecord]) -> dict[str, CustomerState]:
    """Each customer's state computed directly from its events, in log order (no service)."""
    params = FeatureParams()
    states: dict[str, CustomerState] = {}
    for r in records:
        e = InteractionEvent.model_validate_json(r.value)
        apply_event(states.setdefault(e.customer_id, CustomerState.new()), params, fact_of(e))
    return states


def assert_features_equal(stored: dict[str, bytes], direct: dict[str, CustomerState]) -> None:
    """Every customer of the log, with counts and spend exact and every feature within 1e-9."""
    assert set(stored) >= set(direct), f"missing customers: {sorted(set(direct) - set(stored))[:10]}"
    params = FeatureParams()
    for cid, want in direct.items():
        got = CustomerState.unpack(stored[cid])
        assert (got.events, got.purchases, got.first_ts, got.last_ts) == (
            want.events,
            want.purchases,
            want.first_ts,
            want.last_ts,
        ), cid
        assert got.spend == want.spend, (cid, got.spend, want.spend)
        at = want.last_ts
        np.testing.assert_allclose(evaluate(got, params, at), evaluate(want, params, at), rtol=1e-9)


def error_line(res: subprocess.CompletedProcess) -> str:
    """The one line a failed command ends with (and no traceback before it)."""
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("segstream: error: "), res.stderr[-3000:]
    return lines[-1]


def assert_topics_hold_the_state(
    stack: Stack, client: redis.Redis, ns: str, topic_names: dict[str, str]
) -> dict[str, int]:
    """What subscribers see agrees with what Redis holds: each ``change_id`` has one payload; a
    customer's ``seq`` numbers one change each; every customer's newest change (and its record
    on the compacted topic) is its state's segment, stage and ``seq``; no state has a change the
    topic lacks. Returns counts for the test's message."""
    from models.segments.lifecycle import stage_name

    changes = [json.loads(v) for _, v in read_topic(stack, topic_names["changes"]) if v is not None]
    payloads: dict[str, str] = {}
    by_customer: dict[str, dict[int, str]] = {}
    duplicates = 0
    for c in changes:
        text = json.dumps(c, sort_keys=True)
        first = payloads.setdefault(c["change_id"], text)
        assert first == text, f"change {c['change_id']} was published with two payloads:\n{first}\n{text}"
        if first is not text:
            duplicates += 1
            continue
        seqs = by_customer.setdefault(c["customer_id"], {})
        assert c["seq"] not in seqs, f"{c['customer_id']}: seq {c['seq']} used by two changes"
        seqs[c["seq"]] = c["change_id"]
    newest = {cid: max(seqs) for cid, seqs in by_customer.items()}
    latest = {c["change_id"]: c for c in changes}
    current = {}
    for key, value in read_topic(stack, topic_names["current"]):
        if key is not None and value is not None:
            current[key.decode()] = json.loads(value)
    states = {c: CustomerState.unpack(b) for c, b in customer_states(client, ns).items()}
    unplaced = 0
    for cid, st in states.items():
        unplaced += st.segment < 0
        if st.seq == 0:
            assert cid not in by_customer, f"{cid}: changes published, none in its state"
            continue
        assert newest.get(cid) == st.seq, f"{cid}: state at seq {st.seq}, newest change {newest.get(cid)}"
        last = latest[by_customer[cid][st.seq]]
        got = (last["current"]["id"] if last["current"] else -1, last["stage"])
        assert got == (st.segment, stage_name(st.stage)), f"{cid}: newest change says {got}, state {st}"
        assert current.get(cid, {}).get("change_id") == last["change_id"], f"{cid}: compacted topic lags"
    return {
        "changes": len(payloads),
        "duplicates": duplicates,
        "customers": len(states),
        "unplaced": unplaced,
    }
