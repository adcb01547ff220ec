"""Store calls on a background thread, in order, so Redis works while Python computes."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, TypeVar

from stream.errors import StateConflict
from stream.state.protocol import PartitionView, PartitionWrite, StateStore

T = TypeVar("T")
log = logging.getLogger(__name__)
_Call = Callable[[], None]


@dataclass(frozen=True)
class Loading:
    """A load in flight (:meth:`OrderedIO.load`); :meth:`OrderedIO.view` turns it into a view."""

    read: Future[PartitionView]
    # The partition's writes, oldest first, that were not yet written when the load was submitted
    # (with their batch's future): the read may or may not see each of them.
    pending: tuple[tuple[PartitionWrite, Future[None]], ...]
    due_until: int


# Batches whose state is not yet written (waiting for their outputs to be acknowledged, or for
# Redis) before the computing thread waits: bounds the outputs and states held in memory, and
# how far Redis's applied offsets trail the batches already published.
MAX_UNWRITTEN_BATCHES = 8


class OrderedIO:
    """A store's loads and commits on a background thread, so that Redis works while Python
    computes, and the computation never waits for the broker.

    Redis runs the batch scripts for ~12 us per customer, the pipeline computes for ~20 us per
    event; on one thread they take turns and a core idles. Here calls run one at a time on a
    thread, in submission order, with two twists:

    - A batch's commit is deferred until the next batch's loads have been submitted
      (:meth:`release`), so Redis writes batch N while Python computes batch N+1 instead of while
      Python waits for N+1's first load.
    - Each partition's write carries its outputs (``PartitionWrite.outbox``) into Redis in the
      same atomic step; once it landed, ``publish`` hands them to the sink, and a second thread
      waits for the broker's acknowledgement (``flush``), then deletes the outbox entries. Loads
      do not queue behind a slow flush (a publisher catching up with a burst of changes stalled
      the computation for 100-300 ms), and nothing is published that Redis does not hold.

    So a load may run before some earlier batches' writes: it reads the store as an atomic
    snapshot, and :meth:`view` lays every write of that partition the snapshot does not yet show
    over it, in order (applied offset, watermark, the states and inactivity schedule they change):
    the views equal those of sequential code. At most ``MAX_UNWRITTEN_BATCHES`` batches wait to
    be written and acknowledged; :meth:`commit` waits beyond that.

    A failed commit is raised by the next :meth:`view` after it ran, or by :meth:`drain`; a view
    whose store offset is not what the pending writes expect raises at once (they will fail).
    After a failed write or flush the batches queued behind it fail at once, without writing (they
    are redone after the caller resyncs), until :meth:`drain` has seen them all. A batch whose
    flush failed is written: its outputs wait in the outbox for the caller to publish again.
    """

    def __init__(
        self,
        store: StateStore,
        publish: Callable[[PartitionWrite], None] | None = None,
        flush: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        # ``publish``: hands a landed write's outputs to the sink (on the store thread, in write
        # order); ``flush``: returns once the broker acknowledged all of them (off both threads).
        self._publish = publish
        self._flush = flush
        # A store without network waits (the in-memory one) runs inline: a thread would only
        # contend for the GIL with the computation it is meant to overlap.
        threaded = getattr(store, "blocking_io", True)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="segstream-store") if threaded else None
        self._flusher = (
            ThreadPoolExecutor(1, thread_name_prefix="segstream-flush")
            if threaded and flush is not None
            else None
        )
        self._commits: deque[Future[None]] = deque()  # not yet checked for failure
        self._unwritten: deque[tuple[list[PartitionWrite], Future[None]]] = deque()
        self._deferred: tuple[list[PartitionWrite], Future[None], tuple[Callable[[], None], ...]] | None = (
            None
        )
        self._failure: BaseException | None = None  # the first since the last drain

    def _submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        if self._pool is not None:
            return self._pool.submit(fn, *args)
        done: Future[T] = Future()
        try:
            done.set_result(fn(*args))
        except Exception as e:
            done.set_exception(e)
        return done

    def _forget_written(self) -> None:
        while self._unwritten and self._unwritten[0][1].done():
            self._unwritten.popleft()

    def unwritten(self) -> int:
        """Batches committed whose writes have not finished (at most ``MAX_UNWRITTEN_BATCHES``)."""
        self._forget_written()
        return len(self._unwritten)

    def load(self, p: int, customer_ids: list[str], due_until: int) -> Loading:
        self._forget_written()
        pending = tuple((w, done) for writes, done in self._unwritten for w in writes if w.partition == p)
        return Loading(self._submit(self.store.load, p, customer_ids, due_until), pending, due_until)

    def view(self, loading: Loading) -> PartitionView:
        """The partition as the calls submitted before the load, and the pending writes, leave it."""
        view = loading.read.result()
        while self._commits and self._commits[0].done():
            self._commits.popleft().result()
        for w, done in loading.pending:
            if done.done() and (failed := done.exception()) is not None:
                raise failed  # never to be written: do not compute (and publish) on top of it
            if view.applied_offset >= w.new_offset:
                continue  # written before the read ran
            view = _overlay(view, w, loading.due_until)
        return view

    def commit(self, writes: list[PartitionWrite], after: Sequence[Callable[[], None]] = ()) -> Future[None]:
        """Defer a batch's writes until :meth:`release`; the future is done once they are written
        (and their outputs acknowledged), and fails with the first failed write (the rest of the
        batch is then not written: it is redone after the caller resyncs). ``after``: calls to
        make on the store thread once every write landed, before the flush (the learner's model
        checkpoint: it may hold the batch's rows only once they are in the store)."""
        self.release()
        done: Future[None] = Future()
        self._deferred = (writes, done, tuple(after))
        self._commits.append(done)
        self._unwritten.append((writes, done))
        self._forget_written()
        if len(self._unwritten) > MAX_UNWRITTEN_BATCHES:
            wait([self._unwritten[0][1]])  # a failure is raised by the next view or drain
        return done

    def release(self) -> None:
        """Submit the deferred writes (after the next batch's loads, or before waiting)."""
        if self._deferred is None:
            return
        writes, done, after = self._deferred
        self._deferred = None
        self._submit(self._write, writes, done, after)

    def _write(
        self, writes: list[PartitionWrite], done: Future[None], after: tuple[Callable[[], None], ...] = ()
    ) -> None:
        landed: dict[int, list[int]] = {}  # partition -> outbox entries written
        try:
            if self._failure is not None:
                raise self._failure  # an earlier batch failed: this one is redone after a resync
            for w in writes:
                entry = self.store.commit(w)
                if entry is not None:
                    landed.setdefault(w.partition, []).append(entry)
                if self._publish is not None:
                    self._publish(w)  # each partition's outputs as soon as its state is in
            for call in after:
                call()
        except Exception as e:
            self._fail(done, e)
            return
        if self._flusher is not None:
            self._flusher.submit(self._flush_then_clear, landed, done)
        else:
            self._flush_then_clear(landed, done)

    def _flush_then_clear(self, landed: dict[int, list[int]], done: Future[None]) -> None:
        try:
            if self._failure is not None:
                raise self._failure  # a failed publisher is not asked again for each batch
            if self._flush is not None:
                self._flush()  # a failure leaves the entries: the caller publishes them again
        except Exception as e:
            self._fail(done, e)
            return
        if landed:
            if self._pool is not None:
                self._pool.submit(self._clear, landed)
            else:
                self._clear(landed)
        done.set_result(None)

    def _clear(self, landed: dict[int, list[int]]) -> None:
        try:
            self.store.clear_outbox(landed)
        except Exception as e:  # the outputs are acknowledged: a restart publishes them again
            log.warning("acknowledged outbox entries were not deleted (%s): they are published again", e)

    def _fail(self, done: Future[None], e: BaseException) -> None:
        if self._failure is None:
            self._failure = e
        done.set_exception(e)

    def drain(self) -> None:
        """Write everything deferred, wait for every commit (those queued behind a failure fail
        at once); raise the first failure. Batches committed after this write again."""
        self.release()
        failure: BaseException | None = None
        while self._commits:
            failed = self._commits.popleft().exception()
            failure = failure or failed
        self._unwritten.clear()
        self._failure = None  # every queued batch has finished: the caller resyncs from here
        if failure is not None:
            raise failure

    def close(self) -> None:
        try:
            self.drain()
        finally:
            for pool in (self._flusher, self._pool):  # the flusher hands writes to the pool
                if pool is not None:
                    pool.shutdown(wait=True)


def _overlay(view: PartitionView, w: PartitionWrite, due_until: int) -> PartitionView:
    """``view`` (read before ``w`` was written) as it reads once ``w`` is."""
    if view.applied_offset != w.expected_offset:
        raise StateConflict(
            f"partition {w.partition}: applied offset is {view.applied_offset}, "
            f"the pending write expects {w.expected_offset}"
        )
    changed = w.states
    states = {c: (changed[c] or None) if c in changed else blob for c, blob in view.states.items()}
    due = [(ts, c) for ts, c in view.due if c not in w.due]
    for c, ts in w.due.items():
        if 1 <= ts <= due_until:
            due.append((ts, c))
            if c not in states:
                if c not in changed:
                    raise ValueError(
                        f"partition {w.partition}: a schedule change for {c!r} without its state"
                    )
                states[c] = changed[c] or None
    due.sort()
    clock = view.clock if w.clock is None else w.clock
    return PartitionView(
        w.partition, w.new_offset, w.watermark, states, due, clock, view.topic_id or w.topic_id
    )
