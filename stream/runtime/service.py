"""The long-running consumer: poll, process a batch, commit offsets last; graceful stop."""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from kafka import (
    ConsumerRebalanceListener,
    KafkaAdminClient,
    KafkaConsumer,
    OffsetAndMetadata,
    TopicPartition,
)
from kafka.errors import KafkaError
from prometheus_client import CollectorRegistry

from stream.config import Settings
from stream.errors import (
    BatchAbandoned,
    ModelConflict,
    ServiceUnavailable,
    StateConflict,
    StateLost,
)
from stream.io.kafka import Record, ensure_topics, make_admin, make_consumer
from stream.io.sinks import OutputSink, open_sink
from stream.io.sinks.process import PublisherError
from stream.runtime.engines import load_engine, restore, tune_runtime
from stream.runtime.guard import IntegrityMixin, KafkaUnavailable
from stream.runtime.http import Health, serve
from stream.runtime.integrity import topic_id
from stream.runtime.metrics import Metrics
from stream.runtime.pipeline import BatchProcessor
from stream.runtime.positions import PositionsMixin
from stream.runtime.probes import Prober
from stream.state import REDIS_DOWN, REDIS_ERRORS, REDIS_REFUSED, FeatureStore, model_conflict
from stream.state.learnlog import offset_of

log = logging.getLogger(__name__)
IDLE_TOPIC_CHECK_SECONDS = 5.0  # how often an idle service asks the broker for its topics' ids


@dataclass
class RunSummary:
    records: int = 0
    applied: int = 0
    dead_letters: int = 0
    changes: int = 0
    batches: int = 0
    seconds: float = 0.0


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, service: Service) -> None:
        self.service = service

    def on_partitions_revoked(self, revoked: Any) -> None:
        # Also called for partitions lost to a session expiry (kafka-python's on_partitions_lost).
        self.service.on_revoked(list(revoked))

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.service.on_assigned(list(assigned))


class Service(IntegrityMixin, PositionsMixin):
    """One consumer process. ``partitions`` None: it joins the consumer group (subscribe), and
    the group spreads partitions over instances; a list: it reads exactly those (a worker of
    ``segstream run --workers N``, see :mod:`stream.runtime.workers`)."""

    def __init__(
        self,
        settings: Settings,
        registry: CollectorRegistry | None = None,
        partitions: list[int] | None = None,
    ) -> None:
        self.settings = settings
        self._partitions = partitions
        self.registry = registry or CollectorRegistry()
        self.metrics = Metrics(self.registry)
        self.health = Health(settings.service.stall_seconds)
        self._stop = threading.Event()
        self.consumer: KafkaConsumer | None = None
        self.store: FeatureStore | None = None
        self.sink: OutputSink | None = None
        self.processor: BatchProcessor | None = None
        self.http_port: int | None = None
        self.prober: Prober | None = None  # Kafka and Redis, asked every second for /readyz
        self._assigned: set[int] = set()
        self._next_offset: dict[int, int] = {}  # owned partition -> next offset the loop reads
        self._asked: dict[int, int] = {}  # end offsets asked of the broker (_ends)
        self._ends_asked_at = -math.inf
        self._kafka_error: str | None = None
        self._behind_logged = -math.inf  # when --until-idle last said why it was still waiting
        self._sizes_at = 0.0
        self._sized: set[int] = set()  # segments whose size gauge is set
        self._uncommitted: dict[TopicPartition, OffsetAndMetadata] = {}  # newest offsets sent
        self._admin: KafkaAdminClient | None = None  # the input topic's id (integrity checks)
        # Assigned partitions not yet checked against Redis, the group and the topic (integrity).
        self._unverified: set[int] = set()
        self._written: dict[int, int] = {}  # partition -> next offset after what Redis confirmed
        self._outputs: dict[str, str] = {}  # output topic -> its id (integrity checks)
        self._topics_checked_at = -math.inf  # when idle (_idle_topic_check)
        self._relearn_due = False  # a learner's learn log is to be learned again (_relearn)
        self._role_due = False  # `model.role: auto`: the assignment changed (_take_role)
        self._remote_end: dict[int, int] = {}  # end offsets of partitions read by other instances
        self._remote_ends_at = -math.inf
        self._model_needed = False  # customers in segments and only a warm-up checkpoint (start)
        self._held_from: dict[int, int] = {}  # revoked partitions' first held offsets (on_revoked)
        # Offsets of processed batches, waiting for their state to be written (BatchResult.durable).
        self._durable: deque[tuple[Future[None] | None, dict[TopicPartition, OffsetAndMetadata]]] = deque()

    # ---- lifecycle ----
    def start(self, serve_http: bool = True) -> None:
        s = self.settings
        if serve_http:
            server = serve(self.registry, self.health, s.service.metrics_host, s.service.metrics_port)
            self.http_port = server.server_address[1]
        self.health.checks["partitions"] = lambda: None if self._assigned else "no partitions assigned yet"
        self.health.checks["model"] = lambda: None if self.processor is not None else "model not loaded"
        self.health.checks["redis"] = self._redis_check
        self.health.checks["kafka"] = self._kafka_check
        self.health.checks["publisher"] = self._publisher_check
        self.store = FeatureStore(
            s.redis.url.get_secret_value(), s.redis.namespace, cluster=s.redis.cluster
        ).start(s.redis.connect_timeout_seconds)
        ensure_topics(s)  # before any work: an unreachable broker ends the start with one line
        started = time.perf_counter()
        engine = load_engine(s, self.store)
        # Customers in segments need a model. A stored warm-up checkpoint (version 0) is enough
        # at the start: a crash can fall between a batch that built version 1 and its checkpoint,
        # and the learn log builds it again (checked once relearned, _relearn).
        self._model_needed = engine.version == 0 and bool(self.store.segment_counts(s.topics.partitions))
        if self._model_needed and self.store.load_model() is None:
            raise StateLost(
                f"namespace {s.redis.namespace!r} has customers in segments but no model checkpoint: "
                "Redis lost it (a flush of that key, a failover to a lagging replica?); rebuild with "
                "`segstream replay --from-offset 0 --namespace NEW`"
            )
        self.metrics.restore_seconds.set(time.perf_counter() - started)
        self.metrics.model_version.set(engine.version)
        self._admin = make_admin(s)
        self._adopt_outputs()
        self.store.save_meta(s.topics.interactions, s.topics.partitions)
        self.store.take_census(s.topics.partitions)  # before any batch: its loads check it
        self.sink = open_sink(s)
        self.processor = BatchProcessor(self._as(self._role()), self.store, engine, self.sink, self.metrics)
        self.processor.await_learner = self._await_learner
        # Only with partitions assigned (--workers): in a subscribing group they move, and a new
        # owner would find rows a follower logged ahead of what it applied.
        self.processor.follow_merge(self.processor.waits_for_merge and self._partitions is not None)
        self.processor.topic_id = topic_id(self._admin, s.topics.interactions)
        if self.processor.learns:
            if n := self.processor.publish_unpublished():
                log.info("published the model events of %d version(s) a crash kept from the broker", n)
            self._relearn_due = True  # once the partitions are verified (_relearn)
        self.consumer = make_consumer(s)
        if self._partitions is None:
            self.consumer.subscribe([s.topics.interactions], listener=_Rebalance(self))
        else:
            tps = [TopicPartition(s.topics.interactions, p) for p in self._partitions]
            self.consumer.assign(tps)
            self.on_assigned(tps)
        # Both servers answered during this start: they count as answering from now on.
        self.prober = Prober(s, self.metrics, answered_at=time.monotonic()).start()
        tune_runtime()

    # The checks run on the HTTP server's threads: they only read what others recorded, so that
    # every probe answers at once whatever Kafka and Redis do (stream.runtime.probes asks them).
    def _redis_check(self) -> str | None:
        if self.store is None:
            return "not connected"
        if self.prober is None:
            return "not probed yet"
        return self.prober.problem("redis")

    def _publisher_check(self) -> str | None:
        if self.sink is None:
            return "not started"
        return self.sink.problem()  # a publisher process can die on its own

    def _kafka_check(self) -> str | None:
        if self.consumer is None:
            return "consumer not started"
        if self.prober is None:
            return "not probed yet"
        # The broker's silence, else a failed poll (set by it, cleared by the next good one).
        return self.prober.problem("kafka") or self._kafka_error

    def on_assigned(self, assigned: list[TopicPartition]) -> None:
        """Seek past what Redis already applied: a restart resumes where the state is, not re-reads."""
        self.metrics.rebalances.inc()
        self._assigned = {tp.partition for tp in assigned}
        self._role_due = self.settings.model.role == "auto"
        # Records the merge held back are read again from the positions sought here; a partition
        # kept through the rebalance may keep its position, past them, so it is sought back.
        # (kafka-python revokes every partition before an eager rebalance's assignment, and
        # on_revoked notes where their held records began.)
        held_from, self._held_from = self._held_from, {}
        if self.processor is not None:
            self.processor.owned = frozenset(self._assigned)
            held_from |= self.processor.drop_held()
        self._uncommitted = {tp: o for tp, o in self._uncommitted.items() if tp in set(assigned)}
        self.metrics.assigned_partitions.set(len(assigned))
        assert self.consumer is not None and self.store is not None
        # Kafka offsets commit after Redis, so Redis is never behind them: resuming at Redis's
        # applied offset + 1 skips what a crash left committed in Redis but not in Kafka.
        # (kafka-python 3 runs this callback on its IO thread: only non-blocking calls here.)
        for tp in assigned:
            applied = self.store.applied_offset(tp.partition)
            if applied >= 0:
                self.consumer.seek(tp, applied + 1)
                self._next_offset[tp.partition] = applied + 1
            elif tp.partition in held_from:  # nothing applied yet, every record read was held
                self.consumer.seek(tp, held_from[tp.partition])
        # Checked against the group and the topic before any of their records is processed
        # (_verify: the blocking calls it needs cannot run on kafka-python's IO thread).
        self._unverified = set(self._assigned)
        log.info("partitions assigned: %s", sorted(self._assigned))

    def on_revoked(self, revoked: list[TopicPartition]) -> None:
        """Forget revoked (or lost) partitions: the loop must not seek or commit them any more.
        Their batches still in flight fail their compare-and-set if the new owner moved on."""
        gone = {tp.partition for tp in revoked}
        self._assigned = self._assigned - gone
        self._role_due = self.settings.model.role == "auto"
        self._next_offset = {p: o for p, o in self._next_offset.items() if p not in gone}
        self._written = {p: o for p, o in self._written.items() if p not in gone}
        if self.processor is not None:
            self.processor.owned = frozenset(self._assigned)
            # Sought back by on_assigned if the partition comes back (its position may be kept).
            self._held_from |= self.processor.drop_held(gone)
        # Their offsets are the new owner's to commit from now on (lag readings would go back).
        self._uncommitted = {tp: o for tp, o in self._uncommitted.items() if tp.partition not in gone}
        self._durable = deque(
            (fut, {tp: o for tp, o in offsets.items() if tp.partition not in gone})
            for fut, offsets in self._durable
        )
        self.metrics.assigned_partitions.set(len(self._assigned))
        log.info("partitions revoked: %s", sorted(gone))

    def request_stop(self, *_: Any) -> None:
        self._stop.set()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)

    def close(self) -> None:
        if self.processor is not None and self.store is not None:
            written = True
            try:
                self.processor.close()  # every processed batch's state into Redis first
            except (StateConflict, PublisherError, *REDIS_ERRORS) as e:
                written = False
                log.warning("the last batch's state was not written (%s); a restart redoes it", e)
            self._commit_durable()
            engine = self.processor.engine
            # A follower's copy is the learner's, maybe older; a learner's holds the rows of every
            # batch it took in, so only when all of them are written (else a restart's redo would
            # learn them twice: the stored checkpoint and the learn log stand).
            if self.processor.learns and written:
                try:
                    self.store.save_model(engine.snapshot(), engine.version, after=engine.version)
                except (ModelConflict, StateLost) as e:
                    # Not raised on the way out: it would hide the error the service stops on (a
                    # version of a failed batch is not checkpointed); a start checks the store.
                    log.warning("the model checkpoint was not refreshed on the way out: %s", e)
                except REDIS_DOWN as e:  # the last version's checkpoint stands; a restart resumes
                    log.warning("the model checkpoint was not refreshed on the way out: %s", e)
        if self.consumer is not None:
            self._commit_last()
            self.consumer.close(autocommit=False)
        if self.sink is not None:
            self.sink.close()
        if self._admin is not None:
            self._admin.close()
        if self.store is not None:
            self.store.close()
        if self.prober is not None:
            self.prober.stop()

    # ---- the loop ----
    def run(self, until_idle: float | None = None, max_records: int | None = None) -> RunSummary:
        assert self.consumer is not None and self.processor is not None
        summary = RunSummary()
        started = time.perf_counter()
        idle_since = time.monotonic()
        timeout = self.settings.kafka.poll_timeout_ms
        while not self._stop.is_set():
            self.health.beat()
            self.metrics.last_loop.set(time.time())
            try:
                # A learner with followers polls often: they wait for it to merge their rows.
                remote = self.processor.learns and bool(self.processor.remote)
                polled = self.consumer.poll(timeout_ms=min(timeout, 50) if remote else timeout)
            except KafkaError as e:
                self.metrics.errors.labels(component="kafka").inc()
                self._kafka_error = f"poll failed: {e}"
                log.warning("poll failed: %s", e)
                time.sleep(1)
                continue
            self._kafka_error = None
            records = _to_records(polled)
            try:
                if self._unverified:
                    self._verify()  # before any record of newly assigned partitions
                # Not before the group assigned partitions (a subscribing start's first polls
                # can come back before that): none would have been verified yet.
                if self._role_due and not self._unverified:
                    self._take_role()
                if self._relearn_due and self._assigned and not self._unverified:
                    self._relearn()
                self._pull_remote()
                if not records and self.processor.held_records():
                    # Records the merge held back go once what held them passed or ended.
                    self._process(records, summary)
                    if self.processor.held_records():
                        self._stop.wait(0.05)
                    continue
                if not records:
                    self._drain()  # idle: let the state and the offsets catch up
                    self._idle_topic_check()
                    self._idle_model_update()
                    idle = time.monotonic() - idle_since
                    if until_idle is not None and idle >= until_idle and self._caught_up():
                        break
                    continue
                idle_since = time.monotonic()
                self._process(records, summary)
            except REDIS_DOWN as e:
                if isinstance(e, REDIS_REFUSED):
                    raise
                self._recover_from_redis(e)
                idle_since = time.monotonic()
                continue
            except KafkaUnavailable as e:  # a check could not ask the broker: nothing was processed
                self.metrics.errors.labels(component="kafka").inc()
                self._kafka_error = str(e)
                log.warning("%s; reading the polled records again once Kafka answers", e)
                self._rewind()
                self._stop.wait(1.0)
                continue
            if max_records is not None and summary.records >= max_records:
                break
        try:
            self._finish_followers()
            self._drain()
        except REDIS_DOWN as e:  # close() tries once more; a restart redoes what did not land
            log.warning("Redis failed while the last batches were written: %s", e)
        summary.seconds = time.perf_counter() - started
        return summary

    def _await_learner(self) -> bool:
        """A follower waiting for the learner's merge to pass its rows: the loop stays alive for
        /healthz. A stop does not end the wait (the learner finishes what its followers wait for
        before it stops, _finish_followers): the batch is written rather than left logged."""
        self.health.beat()
        time.sleep(0.02)
        return True

    def _finish_followers(self) -> None:
        """A stopping learner merges what its followers logged and wait for (at most
        ``follower_wait_seconds``), so that a stop of `--workers N` leaves no rows logged ahead
        of what was written: a run with another N would find them learned but not applied."""
        p = self.processor
        if p is None or self.store is None or not p.learns or not p.remote:
            return
        deadline = time.monotonic() + self.settings.model.follower_wait_seconds
        while time.monotonic() < deadline:
            ahead = [q for q in p.remote if self.store.logged(q)[0] > self.store.applied_offset(q)]
            if not ahead:
                return
            self._pull_remote()
            if p.held_records():
                self._process([], RunSummary())
            time.sleep(0.02)

    def _follow_model(self, idle: bool = False) -> None:
        """A follower swaps to the learner's newest checkpointed version between two batches (one
        that waits for the learner's merge takes each row's version itself, so only when idle)."""
        assert self.processor is not None and self.store is not None
        if self.processor.learns or (self.processor.waits_for_merge and not idle):
            return
        if self.store.model_version() <= self.processor.engine.version:
            return
        saved = self.store.load_model()
        if saved is None:
            return
        version, blob = saved
        self.processor.engine = restore(self.settings, blob)
        self.metrics.model_version.set(version)
        self.metrics.model_updated.set(time.time())
        log.debug("following model version %d", version)

    def _idle_topic_check(self) -> None:
        """Idle: the topics are checked every few seconds too (wall clock: how often to ask the
        broker, nothing the state reads). An input topic deleted under a subscribing consumer
        leaves it with no partitions, so no poll returns records to check; an output topic
        recreated while nothing changes would wait for the next record."""
        now = time.monotonic()
        if self._admin is None or now - self._topics_checked_at < IDLE_TOPIC_CHECK_SECONDS:
            return  # (no admin client: a service not started, as unit tests build it)
        self._topics_checked_at = now
        try:
            self._check_topic()
        except ServiceUnavailable as e:
            raise KafkaUnavailable(str(e)) from e

    def _idle_model_update(self) -> None:
        """Idle: a follower takes the learner's newest version, and customers its partitions
        hold in a segment a version retired move now rather than at the partition's next record
        (the end of a log, a quiet topic)."""
        assert self.processor is not None
        self._follow_model(idle=True)
        try:
            # Only partitions read to their end: an idle spell mid-log (a restart's group join,
            # a broker away) must not move anyone a record would not have (a function of the log).
            self.processor.move_retired_idle(self._read_to_end([]))
        except StateConflict as e:
            self._resync(e)

    def _process(self, records: list[Record], summary: RunSummary) -> None:
        assert self.consumer is not None and self.processor is not None and self.store is not None
        try:
            self._check_topic()
        except ServiceUnavailable as e:
            raise KafkaUnavailable(str(e)) from e
        self._follow_model()
        if self.processor.learns or self.processor.waits_for_merge:
            self.processor.drained = self._drained(records)
        try:
            result = self.processor.process(records)
        except StateConflict as e:
            self._resync(e)
            return
        except BatchAbandoned as e:  # nothing of the batch was written or committed
            if not self._stop.is_set():
                # Polling again lets the group rebalance (a dead learner's partition 0 moves).
                log.warning("%s", e)
                self._rewind()
            return
        topic = self.settings.topics.interactions
        offsets = {TopicPartition(topic, p): OffsetAndMetadata(o, "", -1) for p, o in result.offsets.items()}
        self._next_offset.update(result.offsets)
        self._durable.append((result.durable, offsets))
        self._commit_durable()
        self._update_lag(result.offsets, result.watermarks)
        summary.records += len(records)
        summary.applied += result.applied
        summary.dead_letters += result.dead_letters
        summary.changes += result.changes
        summary.batches += 1
        self._check_model_rebuilt()

    def _resync(self, e: StateConflict) -> None:
        """Someone else advanced a partition (a rebalance race), or a batch's write failed: resume
        every assigned partition from what Redis holds; offsets not yet durable are dropped."""
        assert self.consumer is not None and self.store is not None
        log.warning("%s; re-seeking to the applied offsets", e)
        self.metrics.errors.labels(component="state_conflict").inc()
        self._forget_unwritten()
        # Checked again before the next batch: a conflict can be the first sign of a Redis that
        # came back with less than it acknowledged (the applied offset went back).
        self._unverified |= self._assigned
        self._realign_model()
        self._reseek()
        # A batch written before the failure may not have had its outputs acknowledged.
        owned = {tp.partition for tp in self.consumer.assignment()}
        self.processor.publish_outbox(self._assigned & owned)  # type: ignore[union-attr]

    def _recover_from_redis(self, e: Exception) -> None:
        """Redis dropped a connection or went away mid-batch (a restart, a network blip, a Redis
        Cluster's failover: the loop's transient errors are REDIS_DOWN of stream.state). Nothing is
        lost: a batch whose step did not land is redone from Redis's applied offsets, and one
        whose reply alone was lost is found applied there. Wait until Redis answers (the loop
        stays alive for /healthz; /readyz reports Redis), then resume from what it holds."""
        assert self.store is not None
        self.metrics.errors.labels(component="redis").inc()
        log.warning("Redis failed mid-batch (%s); resuming from its applied offsets once it answers", e)
        delay = 0.05
        while not self._stop.is_set():
            self.health.beat()
            try:
                self.store.client.ping()
                self._forget_unwritten()
                # Redis may be back with less than it confirmed (no fsync, a lagging replica):
                # checked against the group and what this process saw written before going on.
                self._unverified |= self._assigned
                self._realign_model()
                self._reseek()
                return
            except REDIS_DOWN as again:
                if isinstance(again, REDIS_REFUSED):
                    raise
                log.debug("Redis still unavailable: %s", again)
                self._stop.wait(delay)
                delay = min(delay * 2, 2.0)

    def _realign_model(self) -> None:
        """Before batches are redone, a learner goes back to its stored checkpoint, as a restart
        would: the rows it learned from the batches about to be redone must not count twice, and
        a version built by a failed batch (its checkpoint maybe not written) is rebuilt. Rows of
        batches that did land since the checkpoint are learned again from the learn log (as after
        a restart). A stored version newer than its own means another learner: stop, as the
        checkpoint's compare-and-set would."""
        assert self.processor is not None and self.store is not None
        if not self.processor.learns:
            return  # a follower swaps to the stored version between batches anyway
        built, stored = self.processor.engine.version, self.store.model_version()
        if stored > built:
            if self.settings.model.role == "auto":  # another instance owns partition 0 now
                log.warning("model version %d was built by another instance: this one follows", stored)
                self._become("follower")
                return
            raise model_conflict(built + 1, built, stored)
        self.processor.engine = load_engine(self.settings, self.store)
        self.processor.forget_rows_ahead()  # the relearn reads them again
        self._relearn_due = True
        self.metrics.model_version.set(stored)
        if stored < built:
            log.warning(
                "model version %d was not checkpointed; back to the stored version %d, and on from the "
                "learn log before the next batch",
                built,
                stored,
            )

    def _pull_remote(self) -> None:
        """A learner takes the rows the other instances' partitions logged (their followers write
        them, ``model.learn_all_partitions``), to learn them in the merge's order."""
        p = self.processor
        assert p is not None and self.store is not None and self.consumer is not None
        all_rows = self.settings.model.align_partitions and self.settings.model.learn_all_partitions
        p.remote = (
            frozenset(range(self.settings.topics.partitions)) - self._assigned
            if p.learns and all_rows and self._assigned and not self._relearn_due
            else frozenset()
        )
        if not p.remote:
            return
        # Read to their end first: a partition applied up to its end has logged all its rows.
        ends = self._remote_ends(sorted(p.remote))
        # (Or logged to its end: a follower logs its rows before it writes their batch.)
        drained = {
            q
            for q, end in ends.items()
            if end is not None and max(self.store.applied_offset(q), self.store.logged(q)[0]) + 1 >= end
        }
        p.pull_remote(drained)

    def _remote_ends(self, partitions: list[int]) -> dict[int, int | None]:
        """The end offsets of partitions this instance does not read, asked at most once a second."""
        assert self.consumer is not None
        now = time.monotonic()
        if now - self._remote_ends_at >= 1.0:
            self._remote_ends_at = now
            topic = self.settings.topics.interactions
            try:
                got = self.consumer.end_offsets(
                    [TopicPartition(topic, q) for q in partitions], timeout_ms=2000
                )
                self._remote_end.update({tp.partition: end for tp, end in got.items()})
            except (KafkaError, TypeError) as e:
                log.debug("end offsets not available: %s", e)
        return {q: self._remote_end.get(q) for q in partitions}

    def _role(self) -> str:
        """``model.role``, with `auto` decided by who owns input partition 0: one learner per
        consumer group, and another takes over when the partition moves (its owner died or left)."""
        role = self.settings.model.role
        if role != "auto":
            return role
        return "learner" if 0 in self._assigned else "follower"

    def _as(self, role: str) -> Settings:
        return self.settings.model_copy(
            update={"model": self.settings.model.model_copy(update={"role": role})}
        )

    def _take_role(self) -> None:
        """After a rebalance (`model.role: auto`), before any record of the new assignment: become
        the learner if this instance got partition 0, a follower if it lost it."""
        self._role_due = False
        assert self.processor is not None
        role = self._role()
        if (role == "learner") != self.processor.learns:
            self._become(role)

    def _become(self, role: str) -> None:
        """Swap the processor for one of ``role``, from the newest checkpoint: a new learner goes
        on from the last version any learner stored, and learns again what its learn logs hold
        after it (_relearn), as after a restart."""
        assert self.processor is not None and self.store is not None and self.sink is not None
        self._drain()
        old = self.processor
        old.close()
        settings = self._as(role)
        self.processor = BatchProcessor(
            settings, self.store, load_engine(settings, self.store), self.sink, self.metrics
        )
        self.processor.topic_id = old.topic_id
        self.processor.await_learner = self._await_learner
        # Only with partitions assigned (--workers): in a subscribing group they move, and a new
        # owner would find rows a follower logged ahead of what it applied.
        self.processor.follow_merge(self.processor.waits_for_merge and self._partitions is not None)
        self.processor.owned = frozenset(self._assigned)
        self.metrics.model_version.set(self.processor.engine.version)
        if self.processor.learns:
            if n := self.processor.publish_unpublished():
                log.info("published the model events of %d version(s) a crash kept from the broker", n)
            self._relearn_due = True
        log.info(
            "this instance is the %s now (model.role auto: it %s input partition 0), from model version %d",
            role,
            "owns" if role == "learner" else "does not own",
            self.processor.engine.version,
        )

    def _relearn(self) -> None:
        """A learner back at its stored checkpoint (a start, a failed batch) learns the rows its
        learn log holds after it, before the next batch, and only once partitions are assigned
        and their state is verified: a namespace that lost writes stops the service before
        anything is rebuilt."""
        assert self.processor is not None
        self._relearn_due = False
        self._refuse_rows_learned_ahead()
        self.processor.relearn(range(self.settings.topics.partitions))
        self.metrics.model_version.set(self.processor.engine.version)
        self._check_model_rebuilt()

    def _refuse_rows_learned_ahead(self) -> None:
        """A learner that now reads a partition a `--workers` follower read, whose checkpoint took
        in rows that follower logged but did not write (it was killed while it waited for the
        merge), would learn them twice: one line and a stop (decision 0032)."""
        assert self.processor is not None and self.store is not None
        fed = getattr(self.processor.engine, "fed", {})
        for p in sorted(self._assigned):
            applied = self.store.applied_offset(p)
            took = offset_of(fed.get(p, -1))  # the record of the last row it took in
            if took > applied and self.store.logged(p)[0] > applied:
                raise StateLost(
                    f"partition {p}: the model learned the rows of offsets up to {took}, which a "
                    f"`--workers` follower logged but did not write (applied: {applied}); run again with "
                    "the --workers of the run that stopped to write them, or replay into a fresh namespace"
                )

    def _check_model_rebuilt(self) -> None:
        """After a relearn, customers in segments need a version; learn-log rows that wait for
        their place in the merge may build it, so the check waits for them."""
        assert self.processor is not None
        if (
            not self._model_needed
            or not self.processor.learns
            or self._relearn_due
            or self.processor.held_records()
        ):
            return
        if self.processor.engine.version == 0:
            raise StateLost(
                f"namespace {self.settings.redis.namespace!r} has customers in segments but its "
                "learn log does not rebuild the version that placed them (Redis lost it); rebuild with "
                "`segstream replay --from-offset 0 --namespace NEW`"
            )
        self._model_needed = False

    def _forget_unwritten(self) -> None:
        """Wait for the batches still being written; those that fail are redone after a re-seek."""
        if self.processor is not None:
            try:
                self.processor.drain()
            except (StateConflict, *REDIS_DOWN) as later:
                log.warning("another pending write failed as well: %s", later)
        self._durable.clear()

    def _drain(self) -> None:
        if self.processor is None:
            return
        try:
            self.processor.drain()
        except StateConflict as e:
            self._resync(e)
            return
        self._commit_durable()

    def _commit_durable(self) -> None:
        """Commit the Kafka offsets of the batches whose state is in Redis, oldest first.

        Asynchronous: a restart resumes from Redis's applied offsets, so a lost commit costs
        nothing but a stale lag reading (waiting for each one cost ~9 ms a batch). Never ahead of
        Redis: a partition with nothing applied in Redis yet resumes from these offsets."""
        assert self.consumer is not None
        ready: dict[TopicPartition, OffsetAndMetadata] = {}
        while self._durable and (self._durable[0][0] is None or self._durable[0][0].done()):
            durable, offsets = self._durable.popleft()
            if durable is not None and durable.exception() is not None:
                # Raised by the processor's next view or drain, which resyncs (and clears this
                # queue); until then no later batch's offsets may pass it.
                self._durable.appendleft((durable, offsets))
                break
            ready.update(offsets)
        if ready:
            self.consumer.commit_async(ready, callback=self._committed)
            self._uncommitted.update(ready)
            self._written.update({tp.partition: o.offset for tp, o in ready.items()})

    def _committed(self, offsets: dict[Any, Any], response: Any) -> None:
        if isinstance(response, Exception):
            self.metrics.errors.labels(component="kafka").inc()
            log.warning("offset commit failed (the next one supersedes it): %s", response)

    def _commit_last(self) -> None:
        """On the way out: commit the newest offsets synchronously, so the group's lag is exact."""
        if self.consumer is None or not self._uncommitted:
            return
        try:
            self.consumer.commit(dict(self._uncommitted))
        except KafkaError as e:  # e.g. partitions already reassigned: Redis holds the truth anyway
            log.warning("final offset commit failed: %s", e)
        self._uncommitted.clear()


def _to_records(polled: dict[Any, list[Any]]) -> list[Record]:
    """The polled ConsumerRecords as one list; they carry what the pipeline reads (a Record)."""
    return [m for msgs in polled.values() for m in msgs]
