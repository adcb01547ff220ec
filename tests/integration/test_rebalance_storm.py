"""A rebalance storm (issue #24 item 3): instances with `model.role: auto` join and leave one
consumer group while the log is read: three start, the learner is SIGKILLed, a fourth joins, a
follower stops with SIGTERM. Every record is applied once (the features equal an undisturbed
run's), every instance ends cleanly, and the learner after the kill went on from the killed
one's last checkpoint, and the model the group ends with is an undisturbed run's: every
partition's rows are learned (`model.learn_all_partitions`), so neither the kill nor who owned
which partition when changes a version."""

from __future__ import annotations

import contextlib
import signal
import subprocess
from pathlib import Path

import redis

from stream.state import FeatureStore

from .harness import (
    FAST_REBALANCE,
    Stack,
    applied_count,
    assert_exact_state,
    exit_code,
    kill_all,
    produce_generated,
    reference_run,
    service_env,
    start_service,
    tail,
    wait_until,
)
from .test_learner_failover import learner_lines, role_lines
from .test_rebalance import assignments


def test_instances_join_leave_and_die_while_the_log_is_read(
    stack: Stack,
    redis_client: redis.Redis,
    namespace: str,
    settings_env: dict[str, str],
    tmp_path: Path,
) -> None:
    records, ends = produce_generated(stack, settings_env, customers=1200, seed=10)
    n = len(records)
    env = service_env(settings_env, **FAST_REBALANCE, SEGSTREAM_MODEL__ROLE="auto")
    procs: dict[str, subprocess.Popen[bytes]] = {}
    outs: dict[str, Path] = {}
    step = n // 8

    def start(name: str) -> None:
        outs[name] = tmp_path / f"{name}.log"
        procs[name] = start_service(env, outs[name], until_idle=20)

    def progress() -> int:
        return applied_count(redis_client, namespace)

    def running() -> list[str]:
        return [w for w, p in procs.items() if p.poll() is None]

    def owners() -> dict[str, list[int]]:
        """Each running instance's latest assignment."""
        return {w: (assignments(outs[w]) or [[]])[-1] for w in running()}

    def settled() -> str | None:
        """The learner, once the running instances split the four partitions and the owner of
        partition 0 took the learner's role."""
        got = owners()
        if not all(got.values()) or sorted(p for ps in got.values() for p in ps) != [0, 1, 2, 3]:
            return None
        owner = next(w for w, ps in got.items() if 0 in ps)
        return owner if role_lines(outs[owner])[-1:] == ["learner"] else None

    def advance(what: str) -> None:
        at = progress()
        wait_until(lambda: progress() >= at + step or len(running()) < len(procs) - gone, 180, what)
        assert len(running()) == len(procs) - gone, {w: tail(outs[w]) for w in procs}
        assert progress() < n, "the log ended mid-storm: the test needs a longer log"

    store = FeatureStore.from_client(redis_client, namespace)
    gone = 0
    with contextlib.ExitStack() as later:  # the undisturbed run, started below
        try:
            start("a")
            advance("A to apply an eighth")
            start("b")
            start("c")
            wait_until(
                lambda: settled() is not None or len(running()) < 3, 120, "three instances, one learner"
            )
            advance("three instances to apply another eighth")
            # The kill must cost a learner that checkpointed: its successor takes that version on.
            wait_until(lambda: store.model_version() >= 1 or len(running()) < 3, 120, "a first version")
            learner = settled()
            assert learner is not None and progress() < n, (owners(), progress())
            procs[learner].send_signal(signal.SIGKILL)
            procs[learner].wait(timeout=30)
            at_kill = store.model_version()
            gone += 1
            start("d")
            wait_until(lambda: settled() not in (None, learner) or len(running()) < 3, 120, "a new learner")
            successor = settled()
            assert successor is not None and successor != learner
            took = learner_lines(outs[successor])[-1]
            advance("the group without the killed learner to apply another eighth")
            follower = next(w for w in running() if w != settled())
            procs[follower].send_signal(signal.SIGTERM)
            assert exit_code(procs[follower], 60, outs[follower], follower) == 0, tail(outs[follower])
            gone += 1
            # The storm is over. Once every record is applied the instances only wait out their
            # --until-idle: the undisturbed run goes then, beside that wait.
            rest = running()
            wait_until(lambda: progress() >= n or not running(), 300, "every record applied")
            reference = later.enter_context(reference_run(stack, redis_client, settings_env, tmp_path))
            for w in rest:
                assert exit_code(procs[w], 300, outs[w], w) == 0, tail(outs[w])
        finally:
            kill_all(*procs.values())

        seg = assert_exact_state(
            stack,
            redis_client,
            namespace,
            settings_env,
            records,
            ends,
            tmp_path,
            same_model=True,
            reference=reference,
        )
    # The learner after the kill went on from the killed one's last checkpoint (not from 0), and
    # the model only went forward from there.
    assert took == at_kill and seg["model_version"] >= at_kill, (took, at_kill, seg["model_version"])
    print(
        f"\nrebalance storm: {n} records; {', '.join(f'{w} {assignments(outs[w])}' for w in outs)}; "
        f"killed learner {learner} at version {at_kill}, {successor} took it on, stopped {follower}; "
        f"ended at version {seg['model_version']}; "
        f"{seg['customers']} customers' features equal"
    )
