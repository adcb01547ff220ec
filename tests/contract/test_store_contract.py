"""One contract, every store: the in-memory store (always) and the Redis store with its default
and with tiny buckets (marked integration: they need the stack), and on a Redis Cluster of the
session's own (three masters, a replica each; marked integration: it needs redis-server)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from models.segments.population import customer_key
from stream.errors import ModelConflict, StateConflict, StateLost, TopicChanged
from stream.state import DEFAULT_BUCKETS, FeatureStore, MemoryFeatureStore, PartitionWrite
from stream.state.learnlog import entry_name
from tests.integration.harness import Stack, unique
from tests.integration.servers import PrivateRedisCluster


@pytest.fixture(
    params=[
        "memory",
        pytest.param("redis", marks=pytest.mark.integration),
        pytest.param("redis-2-buckets", marks=pytest.mark.integration),
        pytest.param("redis-cluster", marks=pytest.mark.integration),
    ]
)
def store(request: pytest.FixtureRequest) -> Iterator[FeatureStore | MemoryFeatureStore]:
    if request.param == "memory":
        yield MemoryFeatureStore()
        return
    if request.param == "redis-cluster":
        cluster: PrivateRedisCluster = request.getfixturevalue("redis_cluster")
        s = FeatureStore(cluster.url, unique("t"), cluster=True).start()
        yield s
        s.close()
        return
    stack = request.getfixturevalue("stack")
    namespace = request.getfixturevalue("namespace")
    # Two buckets per partition: customers share hash buckets and due buckets.
    buckets = 2 if request.param == "redis-2-buckets" else DEFAULT_BUCKETS
    s = FeatureStore(stack.redis_url, namespace, buckets=buckets).start()
    yield s
    s.close()


def write(p: int, expected: int, new: int, **kw: object) -> PartitionWrite:
    return PartitionWrite(
        partition=p,
        expected_offset=expected,
        new_offset=new,
        watermark=int(kw.get("wm", 1000)),  # type: ignore[call-overload]
        states=dict(kw.get("states", {})),  # type: ignore[call-overload]
        due=dict(kw.get("due", {})),  # type: ignore[call-overload]
        segment_deltas=dict(kw.get("deltas", {})),  # type: ignore[call-overload]
        clock=kw.get("clock"),  # type: ignore[arg-type]
        topic_id=str(kw.get("topic", "")),
        outbox=bytes(kw.get("outbox", b"")),  # type: ignore[call-overload]
    )


def test_empty_partition(store: FeatureStore | MemoryFeatureStore) -> None:
    view = store.load(0, ["a"], due_until=10**9)
    assert (view.applied_offset, view.watermark, view.states, view.due) == (-1, 0, {"a": None}, [])


def test_commit_then_load(store: FeatureStore | MemoryFeatureStore) -> None:
    store.commit(write(1, -1, 41, wm=500, states={"a": b"\x01A", "b": b"\x01B"}, due={"a": 900, "b": 2000}))
    view = store.load(1, ["a", "c"], due_until=1000)
    assert view.applied_offset == 41 and view.watermark == 500
    assert view.states == {"a": b"\x01A", "c": None}
    assert view.due == [(900, "a")]
    # A customer that is only due (no event in the batch) is loaded too.
    assert store.load(1, [], due_until=5000).states == {"a": b"\x01A", "b": b"\x01B"}
    assert store.applied_offset(1) == 41 and store.get_state(1, "b") == b"\x01B"
    assert store.load(0, ["a"], due_until=10**9).states == {"a": None}  # partitions are separate


def test_compare_and_set_rejects_a_stale_batch(store: FeatureStore | MemoryFeatureStore) -> None:
    store.commit(write(2, -1, 10, states={"a": b"\x01one"}))
    with pytest.raises(StateConflict):
        store.commit(write(2, -1, 10, states={"a": b"\x01two"}))  # a replayed batch
    with pytest.raises(StateConflict):
        store.commit(write(2, 5, 20, states={"a": b"\x01two"}))
    assert store.get_state(2, "a") == b"\x01one" and store.applied_offset(2) == 10
    store.commit(write(2, 10, 20, states={"a": b""}, due={"a": 0}))  # b"" deletes, 0 unschedules
    assert store.get_state(2, "a") is None and store.load(2, [], due_until=10**9).due == []


def test_the_outbox_is_written_with_the_state_and_only_with_it(
    store: FeatureStore | MemoryFeatureStore,
) -> None:
    """A batch's outputs go in with its state, in the same step, numbered in write order; a
    write refused by the compare-and-set leaves none; deleting acknowledged entries leaves the rest."""
    assert store.commit(write(3, -1, 10, states={"a": b"\x01A"}, outbox=b"first")) == 1
    assert store.commit(write(3, 10, 20, states={"a": b"\x01B"})) is None  # no outputs: no entry
    with pytest.raises(StateConflict):
        store.commit(write(3, 10, 30, states={"a": b"\x01C"}, outbox=b"stale"))
    assert store.commit(write(3, 20, 30, outbox=b"\x00second\xff" * 1000)) == 2
    assert store.outbox(3) == [(1, b"first"), (2, b"\x00second\xff" * 1000)]
    assert store.outbox(2) == []  # partitions are separate
    store.clear_outbox({3: [1], 2: []})
    assert store.outbox(3) == [(2, b"\x00second\xff" * 1000)]
    store.clear_outbox({3: [2, 1]})  # deleting twice is harmless
    assert store.outbox(3) == [] and store.commit(write(3, 30, 40, outbox=b"third")) == 3


def test_unpublished_model_events_stay_until_cleared(store: FeatureStore | MemoryFeatureStore) -> None:
    store.save_model(b"v1", 1, unpublished=b'[{"kind": "birth"}]')
    store.save_model(b"v2", 2, after=1, unpublished=b"[]")
    store.save_model(b"v2", 2, after=2)  # a refresh of the same version adds nothing
    assert store.unpublished_model_events() == [(1, b'[{"kind": "birth"}]'), (2, b"[]")]
    store.clear_unpublished(1)
    assert store.unpublished_model_events() == [(2, b"[]")] and store.load_model() == (2, b"v2")
    with pytest.raises(ModelConflict):
        store.save_model(b"v3", 3, after=1, unpublished=b"[1]")
    assert store.unpublished_model_events() == [(2, b"[]")]


def test_the_partition_clock_and_topic_id_travel_with_the_state(
    store: FeatureStore | MemoryFeatureStore,
) -> None:
    view = store.load(3, [], due_until=0)
    assert (view.clock, view.topic_id) == ("", "")
    store.commit(write(3, -1, 5, clock="10 a 20 b", topic="id-1"))
    view = store.load(3, [], due_until=0)
    assert (view.clock, view.topic_id, store.topic_id(3)) == ("10 a 20 b", "id-1", "id-1")
    store.commit(write(3, 5, 6))  # clock None: unchanged; topic "": not checked
    assert (store.load(3, [], due_until=0).clock, store.topic_id(3)) == ("10 a 20 b", "id-1")
    # A batch of another topic of the same name (recreated) is refused, and changes nothing.
    with pytest.raises(TopicChanged, match="deleted and created again"):
        store.commit(write(3, 6, 7, states={"x": b"\x01X"}, clock="", topic="id-2"))
    assert (store.applied_offset(3), store.get_state(3, "x")) == (6, None)
    # recover --adopt-topic: the state stays, the partition goes on from the new topic's start.
    store.commit(write(3, 6, 8, states={"x": b"\x01X"}, topic="id-1"))
    store.adopt_topic(3, "id-2", -1)
    assert (store.applied_offset(3), store.topic_id(3), store.get_state(3, "x")) == (-1, "id-2", b"\x01X")
    store.commit(write(3, -1, 0, topic="id-2"))
    assert store.applied_offset(3) == 0


def test_segment_counts_add_up_across_partitions(store: FeatureStore | MemoryFeatureStore) -> None:
    store.commit(write(0, -1, 1, deltas={3: 2, 4: 1}))
    store.commit(write(1, -1, 1, deltas={3: 1}))
    store.commit(write(0, 1, 2, deltas={4: -1, 5: 1}))
    assert store.segment_counts(2) == {3: 3, 5: 1}
    # One instance's partitions (a worker reports only its own; the dashboard sums instances).
    assert store.segment_counts([1]) == {3: 1}
    assert store.segment_counts([0]) == {3: 2, 5: 1}


def test_model_and_meta(store: FeatureStore | MemoryFeatureStore) -> None:
    assert store.load_model() is None
    store.save_model(b"snap", 7)
    assert store.load_model() == (7, b"snap")
    store.save_meta("interactions", 4)
    assert store.meta() == {"topic": "interactions", "partitions": "4"}


def test_a_second_learner_cannot_overwrite_the_model(store: FeatureStore | MemoryFeatureStore) -> None:
    store.save_model(b"v1", 1, after=0)  # nothing stored counts as version 0
    store.save_model(b"v2", 2, after=1)
    store.save_model(b"v2 again", 2, after=2)  # a graceful stop re-saves its own version
    # A second learner that loaded version 1 (or started fresh) builds "its" next version.
    for after in (1, 0):
        with pytest.raises(ModelConflict, match=f"holds version 2, not {after}"):
            store.save_model(b"theirs", after + 1, after=after)
    assert store.load_model() == (2, b"v2 again")
    # A checkpoint that went back (Redis lost writes) is told apart from a second learner.
    with pytest.raises(StateLost, match="went back from version 3 to 2"):
        store.save_model(b"mine", 4, after=3)
    store.save_model(b"replayed", 9)  # unconditional: a replay into its own fresh namespace
    assert store.load_model() == (9, b"replayed")


def test_the_version_history_and_the_merge_position(store: FeatureStore | MemoryFeatureStore) -> None:
    """What a follower of the learner's merge reads (decision 0032): the versions kept with the
    place each was built after, and how far the merge got."""
    assert store.merge_state() == ("", {})
    store.save_model(b"full 1", 1, after=0, kept=b"v1", built_after="10 0 5")
    store.save_model(b"full 2", 2, after=1, kept=b"v2", built_after="20 1 7")
    store.save_model(b"full 3", 3, after=2)  # no followers: nothing kept
    store.set_merged("25 0 9")
    assert store.merge_state() == ("25 0 9", {1: "10 0 5", 2: "20 1 7"})
    assert (store.kept_version(2), store.kept_version(3), store.load_model()) == (b"v2", None, (3, b"full 3"))
    store.set_merged("30 1 1", forget=[1])
    assert store.merge_state() == ("30 1 1", {2: "20 1 7"}) and store.kept_version(1) is None


def test_a_follower_logs_its_rows_once_ahead_of_its_write(store: FeatureStore | MemoryFeatureStore) -> None:
    """A follower's rows go to the learn log before their batch's write; a redo after a crash
    sends only those not logged yet; another instance past the batch is a conflict."""
    assert store.logged(3) == (-1, 0)
    assert store.log_rows(3, -1, 100, entry_name(140), b"rows 100-140", 9, 500) == -1
    assert store.logged(3) == (9, 500)
    # The same batch again (a crash before its write): nothing new. A longer one: from 140 on.
    assert store.log_rows(3, -1, 100, entry_name(140), b"rows 100-140", 9, 500) == -1
    assert store.log_rows(3, -1, 100, entry_name(180), b"rows 100-180", 12, 600) == 140
    assert store.log_rows(3, -1, 141, entry_name(180), b"rows 141-180", 12, 600) == -1
    assert store.learn_entries(3) == [(entry_name(140), b"rows 100-140"), (entry_name(180), b"rows 141-180")]
    assert store.logged(3) == (12, 600)
    # A bound alone (every record of the batch held back) moves only the clock.
    assert store.log_rows(3, -1, 0, "", b"", -1, 650) == -1 and store.logged(3) == (12, 650)
    store.commit(write(3, -1, 12))
    assert store.log_rows(3, 12, 181, entry_name(200), b"rows 181-200", 15, 700) == -1  # its next batch
    with pytest.raises(StateConflict):
        store.log_rows(3, 5, 181, entry_name(190), b"a zombie's", 14, 690)
    assert store.learn_entries(3, after=entry_name(180)) == [(entry_name(200), b"rows 181-200")]


def test_scan_customers(store: FeatureStore | MemoryFeatureStore) -> None:
    store.commit(write(0, -1, 1, states={"x": b"\x01x"}))
    store.commit(write(3, -1, 1, states={"y": b"\x01y", "z": b"\x01z"}))
    assert sorted(store.scan_customers(4)) == [(0, "x", b"\x01x"), (3, "y", b"\x01y"), (3, "z", b"\x01z")]
    assert sorted(store.partition_states(3)) == [("y", b"\x01y"), ("z", b"\x01z")]
    assert list(store.partition_states(1)) == []


def test_many_customers_and_the_due_schedule(store: FeatureStore | MemoryFeatureStore) -> None:
    ids = [f"c{i}" for i in range(40)]
    store.commit(
        write(
            0,
            -1,
            1,
            states={c: b"\x01" + c.encode() for c in ids},
            due={c: 100 + i for i, c in enumerate(ids)},
        )
    )
    view = store.load(0, ids[:3], due_until=109)
    assert view.due == [(100 + i, ids[i]) for i in range(10)]
    assert view.states == {c: b"\x01" + c.encode() for c in ids[:10]}
    # Move the earliest entries later, remove some, delete one customer: the due index follows.
    store.commit(
        write(0, 1, 2, states={"c1": b"", "c2": b"\x01new"}, due={"c0": 500, "c1": 0, "c2": 0, "c3": 99})
    )
    assert store.load(0, [], due_until=104).due == [(99, "c3"), (104, "c4")]
    assert store.due_of(0, "c0") == 500 and store.due_of(0, "c1") == 0
    assert [t for t, _ in store.load(0, [], due_until=10**9).due] == sorted([99, 500, *range(104, 140)])
    assert store.get_states(0, ["c1", "c2", "zz"]) == [None, b"\x01new", None]
    assert store.customer_ids(0) == sorted(c for c in ids if c != "c1")
    assert len(list(store.scan_customers(1))) == 39
    expected = {c: b"\x01" + c.encode() for c in ids if c != "c1"} | {"c2": b"\x01new"}
    assert sorted(store.partition_states(0)) == sorted(expected.items())


def test_erase_customer(store: FeatureStore | MemoryFeatureStore) -> None:
    store.commit(
        write(1, -1, 5, states={"a": b"\x01A", "b": b"\x01B"}, due={"a": 10, "b": 20}, deltas={3: 2})
    )
    assert store.state_and_offset(1, "a") == (b"\x01A", 5)
    assert store.erase_customer(1, "a", b"\x01stale", 3) == 0
    assert store.erase_customer(1, "a", b"\x01A", 3) == 1
    assert store.erase_customer(1, "a", b"\x01A", 3) == -1
    assert store.get_state(1, "a") is None and store.due_of(1, "a") == 0
    assert store.load(1, [], due_until=100).due == [(20, "b")]
    assert store.segment_counts(2) == {3: 1}
    # The erasure waits for the learner to drop the customer from the model's sample.
    assert store.erased_keys(2) == {1: {customer_key("a")}}
    store.clear_erased({1: {customer_key("a")}})
    assert store.erased_keys(2) == {}


@pytest.mark.integration
@pytest.mark.parametrize("server", ["redis", "redis-cluster"])
def test_the_due_index_is_a_skiplist_and_buckets_are_listpacks(
    request: pytest.FixtureRequest, server: str
) -> None:
    """The index takes one update per touched bucket per batch: as a listpack of a few hundred
    buckets each update moved the whole set (~6 us against ~0.5 us); the never-due member that
    keeps it a skiplist never shows in a load. On the cluster (its nodes start with Redis's
    default listpack limits, too low for the buckets) the store raised them on the node that
    holds the partition."""
    if server == "redis-cluster":
        cluster: PrivateRedisCluster = request.getfixturevalue("redis_cluster")
        s = FeatureStore(cluster.url, unique("t"), cluster=True).start()
    else:
        stack: Stack = request.getfixturevalue("stack")
        s = FeatureStore(stack.redis_url, request.getfixturevalue("namespace")).start()
    try:
        ids = [f"c{i}" for i in range(300)]
        # States as long as packed ones get (<= 276 bytes): past Redis's default listpack value limit.
        states = {c: b"\x01" + c.encode().ljust(270, b".") for c in ids}
        s.commit(write(0, -1, 1, states=states, due={c: 100 for c in ids}))
        client = s.client
        assert client.object("encoding", s.due_key(0)) == b"skiplist"
        assert client.object("encoding", s.due_bucket_key(0, s.bucket_of("c7"))) == b"listpack"
        assert client.object("encoding", s.customer_key(0, "c7")) == b"listpack"
        buckets = {s.bucket_of(c) for c in ids}
        assert client.zcard(s.due_key(0)) == len(buckets) + 1
        view = s.load(0, [], due_until=2**62)
        assert sorted(c for _, c in view.due) == sorted(ids) and set(view.states) == set(ids)
    finally:
        s.close()


@pytest.fixture(
    params=[
        pytest.param("redis", marks=pytest.mark.integration),
        pytest.param("redis-cluster", marks=pytest.mark.integration),
    ]
)
def redis_store(request: pytest.FixtureRequest) -> Iterator[FeatureStore]:
    if request.param == "redis-cluster":
        cluster: PrivateRedisCluster = request.getfixturevalue("redis_cluster")
        s = FeatureStore(cluster.url, unique("t"), cluster=True).start()
    else:
        stack: Stack = request.getfixturevalue("stack")
        s = FeatureStore(stack.redis_url, request.getfixturevalue("namespace")).start()
    s.take_census(2)
    yield s
    s.close()


def _written(s: FeatureStore) -> list[str]:
    """Partition 1 with customers in several buckets, due times, an outbox, a clock, a topic id and
    a trimmed learn log; its customer ids."""
    ids = [f"c{i}" for i in range(40)]
    states = {c: b"\x01" + c.encode() for c in ids}
    first = write(1, -1, 5, states=states, due={c: 50 for c in ids}, outbox=b"o", clock="k", topic="t")
    first.learned, first.learned_name = b"rows", "e1"
    s.commit(first)
    second = write(1, 5, 6, topic="t")
    second.learned, second.learned_name = b"rows", "e2"
    s.commit(second)
    s.trim_learned(1, "e2")  # a checkpoint has the first entry
    return ids


LOST = [
    "state bucket",
    "due bucket",
    "census",
    "watermark",
    "due index",
    "outbox",
    "clock",
    "topic",
    "learn log",
]


@pytest.mark.parametrize("lost", LOST)
def test_a_key_redis_lost_fails_the_load_that_would_read_past_it(
    redis_store: FeatureStore, lost: str
) -> None:
    """Every load compares the buckets it reads, and the keys a partition must have, with the
    partition's key census: a lost key fails the load (StateLost naming it) instead of handing
    the pipeline customers that look new. Loads that do not read the lost bucket go on."""
    s = redis_store
    ids = _written(s)
    victim = ids[0]
    bystander = next(c for c in ids if s.bucket_of(c) != s.bucket_of(victim))
    key = {
        "state bucket": s.customer_key(1, victim),
        "due bucket": s.due_bucket_key(1, s.bucket_of(victim)),
        "census": s.census_key(1),
        "watermark": s.watermark_key(1),
        "due index": s.due_key(1),
        "outbox": s.outbox_key(1),
        "clock": f"{s.ns}:{{1}}:clock",
        "topic": s.topic_key(1),
        "learn log": s.learn_key(1),
    }[lost]
    assert s.client.delete(key) == 1
    bucket_only = lost in ("state bucket", "due bucket")
    if bucket_only:  # another bucket, nothing due: the lost key is not read
        assert s.load(1, [bystander], due_until=0).states == {bystander: b"\x01" + bystander.encode()}
    with pytest.raises(StateLost, match="Redis lost") as e:
        s.load(1, [victim], due_until=100)
    assert key in str(e.value)
    assert s.load(0, ["x"], due_until=100).states == {"x": None}  # other partitions go on


def test_the_census_follows_erasures_and_is_taken_once_for_an_earlier_release(
    redis_store: FeatureStore,
) -> None:
    s = redis_store
    ids = _written(s)
    assert s.erase_customer(1, ids[3], b"\x01" + ids[3].encode(), -1) == 1
    # The erased customer's buckets shrank with the census: no loss reported.
    view = s.load(1, ids, due_until=100)
    assert view.states[ids[3]] is None and len(view.due) == len(ids) - 1
    # A namespace an earlier release wrote has no census: counted once, at the start.
    s.client.delete(s.census_key(1))
    s.client.hdel(s.meta_key, "census")
    s.take_census(2)
    assert s.load(1, ids, due_until=100).states == view.states
    # Once a namespace keeps censuses, a partition with state that has none lost it.
    s.client.delete(s.census_key(1))
    with pytest.raises(StateLost, match="census"):
        s.take_census(2)


def test_a_start_finds_a_key_lost_where_no_batch_looks(redis_store: FeatureStore) -> None:
    """A bucket of customers who never come back is read by no batch: the start's check of every
    key finds it (and `segstream status` says so, read only)."""
    s = redis_store
    ids = _written(s)
    s.take_census(2)
    assert s.census_problems(2) == []
    key = s.customer_key(1, ids[5])
    s.client.delete(key)
    # A write into the lost bucket (of a customer no load saw missing) does not make it right.
    s.commit(write(1, 6, 7, states={ids[5]: b"\x01again"}, topic="t"))
    assert [p for p, _ in s.census_problems(2)] == [1] and key in s.census_problems(2)[0][1]
    with pytest.raises(StateLost, match="Redis lost"):
        s.take_census(2)
