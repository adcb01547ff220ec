"""Learner failover: instances with `model.role: auto` in one consumer group; the learner is
whoever owns input partition 0. Kill it (SIGKILL, mid-log): the group gives its partitions to
the survivor, which becomes the learner from the last checkpoint any learner stored and goes on
building versions with the same segment ids (issue #24 item 3). With every partition's rows in
the learn logs (`model.learn_all_partitions`), the model it ends with is the one an undisturbed
run of the same log builds: the same versions, ids and centroids. Run on the stack's Redis and on
a Redis Cluster of the test's own (issue #24: the crash and rebalance parts on the cluster)."""

from __future__ import annotations

import contextlib
import re
import signal
import time
from pathlib import Path

import pytest
import redis

from models.sim import generate
from stream.state import FeatureStore

from .harness import (
    FAST_REBALANCE,
    PARTITIONS,
    Stack,
    assert_exact_state,
    end_offsets,
    exit_code,
    kill_all,
    produce,
    reference_run,
    service_env,
    start_service,
    tail,
    wait_until,
)
from .servers import private_redis_cluster
from .test_rebalance import assignments

_LEARNER = re.compile(r"this instance is the learner now .*from model version (\d+)")


def learner_lines(log_path: Path) -> list[int]:
    """The model version each time the instance became the learner."""
    text = log_path.read_text(errors="replace") if log_path.exists() else ""
    return [int(m.group(1)) for m in _LEARNER.finditer(text)]


def role_lines(log_path: Path) -> list[str]:
    text = log_path.read_text(errors="replace") if log_path.exists() else ""
    return re.findall(r"this instance is the (learner|follower) now", text)


@pytest.mark.parametrize("redis_kind", ["redis", "cluster"])
def test_killing_the_learner_makes_another_instance_the_learner(
    stack: Stack,
    redis_client: redis.Redis,
    namespace: str,
    settings_env: dict[str, str],
    tmp_path: Path,
    redis_kind: str,
) -> None:
    with contextlib.ExitStack() as resources:
        if redis_kind == "cluster":
            cluster = resources.enter_context(private_redis_cluster(tmp_path))
            store = FeatureStore(cluster.url, namespace, cluster=True).start()
            resources.callback(store.close)
            where = {"SEGSTREAM_REDIS__URL": cluster.url, "SEGSTREAM_REDIS__CLUSTER": "true"}
        else:
            store, where = FeatureStore.from_client(redis_client, namespace), {}
        # 600 customers (~72k records) on either Redis: what is checked does not grow with the log.
        kill_the_learner(stack, redis_client, store, settings_env, where, 600, tmp_path, resources)


def kill_the_learner(
    stack: Stack,
    redis_client: redis.Redis,
    store: FeatureStore,
    settings_env: dict[str, str],
    where: dict[str, str],
    customers: int,
    tmp_path: Path,
    resources: contextlib.ExitStack,
) -> None:
    """Two instances, the learner SIGKILLed mid-log, the survivor ends with the undisturbed model.
    ``store``: where the service's namespace lives (``where``: its settings for it);
    ``resources``: what the test releases at its end (the undisturbed run)."""
    namespace = store.ns
    records = generate(customers=customers, days=90, seed=9, malformed_fraction=0.002).records
    topic = settings_env["SEGSTREAM_TOPICS__INTERACTIONS"]
    # Two thirds first; the rest once the learner is dead (the survivor must learn from them).
    first = len(records) * 2 // 3
    produce(stack, topic, records[:first])
    env = service_env(
        settings_env,
        **FAST_REBALANCE,  # a killed member's partitions move ~6 s after its death
        SEGSTREAM_MODEL__ROLE="auto",
        SEGSTREAM_MODEL__LEARN_ALL_PARTITIONS="true",
        **where,
    )
    outs = {"a": tmp_path / "a.log", "b": tmp_path / "b.log"}

    def progress() -> int:
        return sum(store.applied_offset(p) + 1 for p in range(PARTITIONS))

    # --until-idle outlasts the longest quiet spell an instance has before the log is done: A
    # waiting for B to start and join (~3 s), or the survivor, done with its own partitions,
    # waiting for the dead one's (the 6 s session of FAST_REBALANCE: ~6 s). At the end it is
    # waited out once, beside the undisturbed run.
    idle = 12
    procs = {"a": start_service(env, outs["a"], until_idle=idle)}
    try:
        wait_until(
            lambda: (progress() >= first and store.model_version() >= 1) or procs["a"].poll() is not None,
            120,
            "A to apply the first part and build a version",
        )
        assert procs["a"].poll() is None, f"A exited early: {tail(outs['a'])}"
        assert learner_lines(outs["a"]), f"A alone in the group did not learn: {tail(outs['a'])}"
        procs["b"] = start_service(env, outs["b"], until_idle=idle)

        def settled() -> str | None:
            """Who learns, once the group has split the partitions and both took their roles (an
            instance that starts as a follower and stays one logs no role)."""
            got = {w: assignments(outs[w]) for w in outs}
            if not all(got.values()) or sorted(got["a"][-1] + got["b"][-1]) != [0, 1, 2, 3]:
                return None
            owner = "a" if 0 in got["a"][-1] else "b"
            other = "b" if owner == "a" else "a"
            if role_lines(outs[owner])[-1:] == ["learner"] and role_lines(outs[other])[-1:] in (
                [],
                ["follower"],
            ):
                return owner
            return None

        wait_until(lambda: settled() or procs["b"].poll() is not None, 120, "one learner and one follower")
        assert procs["b"].poll() is None, f"B exited early: {tail(outs['b'])}"
        learner = settled()
        assert learner is not None
        survivor = "b" if learner == "a" else "a"
        became = len(learner_lines(outs[survivor]))
        procs[learner].send_signal(signal.SIGKILL)
        procs[learner].wait(timeout=30)
        killed_at = time.monotonic()
        produce(stack, topic, records[first:])
        saved = store.load_model()
        assert saved is not None
        version_at_kill, blob_at_kill = saved
        wait_until(
            lambda: len(learner_lines(outs[survivor])) > became or procs[survivor].poll() is not None,
            90,
            f"{survivor} to become the learner",
        )
        takeover = time.monotonic() - killed_at
        # Once every record is applied the survivor only waits out its --until-idle: the
        # undisturbed run goes then, beside that wait.
        wait_until(
            lambda: progress() >= len(records) or procs[survivor].poll() is not None,
            300,
            "every record applied",
        )
        reference = resources.enter_context(reference_run(stack, redis_client, settings_env, tmp_path))
        assert exit_code(procs[survivor], 300, outs[survivor], survivor) == 0, tail(outs[survivor])
    finally:
        kill_all(*procs.values())
    n, ends = len(records), end_offsets(stack, topic)
    assert sum(ends) == n
    from_version = learner_lines(outs[survivor])[-1]
    final = store.load_model()
    assert final is not None
    from models.segments.engine import SegmentEngine

    before, after = SegmentEngine.restore(blob_at_kill), SegmentEngine.restore(final[1])
    # It went on from the killed learner's last checkpoint, and built versions after it.
    assert from_version == version_at_kill >= 1, (from_version, version_at_kill)
    assert final[0] > version_at_kill, (final[0], version_at_kill)
    # The same ids: every segment of the checkpoint is still live, or was retired by a version.
    kept = set(after.live_names()) | set(after.registry.retired)
    assert set(before.live_names()) <= kept, (before.live_names(), after.live_names())
    # Nothing of the model was lost: an undisturbed run of the same log builds the same one.
    seg = assert_exact_state(
        stack,
        redis_client,
        namespace,
        settings_env,
        records,
        ends,
        tmp_path,
        same_model=True,
        store=store,
        reference=reference,
    )
    print(
        f"\nlearner failover ({'cluster' if where else 'redis'}): {n} records; killed the learner "
        f"({learner}) at model version "
        f"{version_at_kill}; {survivor} learned from version {from_version} {takeover:.1f} s later and "
        f"built up to version {final[0]}; live segments {sorted(before.live_names())} -> "
        f"{sorted(after.live_names())}; {seg['customers']} customers' features equal"
    )
