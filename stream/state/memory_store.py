"""The feature store contract in process memory: for ``segstream evaluate``, replays of files in
tests, and notebooks. It passes the same contract tests as the Redis store (``tests/contract``)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from models.segments.population import customer_key
from stream.errors import StateConflict
from stream.state.learnlog import entry_name
from stream.state.protocol import PartitionView, PartitionWrite, model_conflict, topic_changed


class MemoryFeatureStore:
    """The FeatureStore contract in process memory: for `segstream evaluate` and notebooks.

    It passes the same contract tests as the Redis store (tests/integration/test_feature_store.py).
    """

    blocking_io = False  # OrderedIO runs it inline
    writes_in_order = True  # what a failure loses is always the newest writes (one process)

    def __init__(self, namespace: str = "memory") -> None:
        self.ns = namespace
        self._offsets: dict[int, int] = {}
        self._watermarks: dict[int, int] = {}
        self._clocks: dict[int, str] = {}
        self._topics: dict[int, str] = {}
        self._states: dict[int, dict[str, bytes]] = {}
        self._due: dict[int, dict[str, int]] = {}
        self._segcounts: dict[int, dict[int, int]] = {}
        self._model: tuple[int, bytes] | None = None
        self._meta: dict[str, str] = {}
        self._erased: dict[int, set[int]] = {}
        self._outbox: dict[int, dict[int, bytes]] = {}
        self._unpublished: dict[int, bytes] = {}
        self._learned: dict[int, dict[str, bytes]] = {}
        self._outbox_n: dict[int, int] = {}
        self._logged: dict[int, tuple[int, int]] = {}
        self._kept: dict[int, tuple[bytes, str]] = {}  # the version history (save_model's kept)
        self._merged = ""

    def start(self) -> MemoryFeatureStore:
        return self

    def close(self) -> None:
        pass

    def load(self, p: int, customer_ids: list[str], due_until: int) -> PartitionView:
        states = self._states.get(p, {})
        due = sorted((ts, c) for c, ts in self._due.get(p, {}).items() if 1 <= ts <= due_until)
        requested = set(customer_ids)
        wanted = list(customer_ids) + [c for _, c in due if c not in requested]
        return PartitionView(
            partition=p,
            applied_offset=self._offsets.get(p, -1),
            watermark=self._watermarks.get(p, 0),
            states={c: states.get(c) for c in wanted},
            due=due,
            clock=self._clocks.get(p, ""),
            topic_id=self._topics.get(p, ""),
        )

    def commit(self, w: PartitionWrite) -> int | None:
        p = w.partition
        current = self._offsets.get(p, -1)
        if current != w.expected_offset:
            raise StateConflict(
                f"partition {p}: applied offset is {current}, batch expected {w.expected_offset}"
            )
        stored_topic = self._topics.get(p, "")
        if w.topic_id:
            if stored_topic and stored_topic != w.topic_id:
                raise topic_changed(p, stored_topic, w.topic_id)
            self._topics[p] = w.topic_id
        if w.clock is not None:
            self._clocks[p] = w.clock
        states = self._states.setdefault(p, {})
        for c, blob in w.states.items():
            if blob:
                states[c] = blob
            else:
                states.pop(c, None)
        due = self._due.setdefault(p, {})
        for c, ts in w.due.items():
            if ts:
                due[c] = ts
            else:
                due.pop(c, None)
        counts = self._segcounts.setdefault(p, {})
        for seg, delta in w.segment_deltas.items():
            counts[seg] = counts.get(seg, 0) + delta
            if counts[seg] <= 0:
                del counts[seg]
        self._watermarks[p] = w.watermark
        self._offsets[p] = w.new_offset
        if w.learned:
            self._learned.setdefault(p, {})[w.learned_name] = w.learned
        if not w.outbox:
            return None
        n = self._outbox_n[p] = self._outbox_n.get(p, 0) + 1
        self._outbox.setdefault(p, {})[n] = w.outbox
        return n

    def learn_entries(self, p: int, after: str = "") -> list[tuple[str, bytes]]:
        return sorted((k, v) for k, v in self._learned.get(p, {}).items() if k > after)

    def log_rows(
        self, p: int, expected_offset: int, first: int, name: str, blob: bytes, through: int, clock: int
    ) -> int:
        current = self._offsets.get(p, -1)
        if current >= 0 and current > expected_offset:
            raise StateConflict(
                f"partition {p}: applied offset is {current}, batch expected {expected_offset}"
            )
        if name:
            entries = self._learned.setdefault(p, {})
            last = max(entries, default="")
            if entry_name(first) <= last < name:
                return int(last)
            if last < entry_name(first):
                entries[name] = blob
        offset, was = self._logged.get(p, (-1, 0))
        self._logged[p] = (max(offset, through), max(was, clock))
        return -1

    def logged(self, p: int) -> tuple[int, int]:
        return self._logged.get(p, (-1, 0))

    def trim_learned(self, p: int, below: str) -> None:
        entries = self._learned.get(p, {})
        for name in [n for n in entries if n < below]:
            del entries[name]

    def outbox(self, p: int) -> list[tuple[int, bytes]]:
        return sorted(self._outbox.get(p, {}).items())

    def clear_outbox(self, entries: dict[int, list[int]]) -> None:
        for p, numbers in entries.items():
            for n in numbers:
                self._outbox.get(p, {}).pop(n, None)

    def applied_offset(self, p: int) -> int:
        return self._offsets.get(p, -1)

    def watermark(self, p: int) -> int:
        return self._watermarks.get(p, 0)

    def topic_id(self, p: int) -> str:
        return self._topics.get(p, "")

    def adopt_topic(self, p: int, topic_id: str, applied: int) -> None:
        if applied >= 0:
            self._offsets[p] = applied
        else:
            self._offsets.pop(p, None)
        if topic_id:
            self._topics[p] = topic_id
        else:
            self._topics.pop(p, None)

    def state_and_offset(self, p: int, customer_id: str) -> tuple[bytes | None, int]:
        return self.get_state(p, customer_id), self.applied_offset(p)

    def erase_customer(self, p: int, customer_id: str, expected: bytes, segment: int) -> int:
        states = self._states.get(p, {})
        current = states.get(customer_id)
        if current is None:
            return -1
        if current != expected:
            return 0
        del states[customer_id]
        self._erased.setdefault(p, set()).add(customer_key(customer_id))
        self._due.get(p, {}).pop(customer_id, None)
        counts = self._segcounts.get(p, {})
        if segment in counts:
            counts[segment] -= 1
            if counts[segment] <= 0:
                del counts[segment]
        return 1

    def get_state(self, p: int, customer_id: str) -> bytes | None:
        return self._states.get(p, {}).get(customer_id)

    def get_states(self, p: int, customer_ids: list[str]) -> list[bytes | None]:
        states = self._states.get(p, {})
        return [states.get(c) for c in customer_ids]

    def due_of(self, p: int, customer_id: str) -> int:
        return self._due.get(p, {}).get(customer_id, 0)

    def customer_ids(self, p: int) -> list[str]:
        return sorted(self._states.get(p, {}))

    def segment_counts(self, partitions: int | Iterable[int]) -> dict[int, int]:
        out: dict[int, int] = {}
        for p in range(partitions) if isinstance(partitions, int) else partitions:
            for seg, n in self._segcounts.get(p, {}).items():
                if seg >= 0:
                    out[seg] = out.get(seg, 0) + n
        return out

    def unplaced(self, p: int) -> int:
        return self._segcounts.get(p, {}).get(-1, 0)

    def erased_keys(self, partitions: int) -> dict[int, set[int]]:
        return {p: set(keys) for p, keys in self._erased.items() if keys and p < partitions}

    def clear_erased(self, erased: dict[int, set[int]]) -> None:
        for p, keys in erased.items():
            self._erased.get(p, set()).difference_update(keys)

    def save_model(
        self,
        snapshot: bytes,
        version: int,
        after: int | None = None,
        unpublished: bytes = b"",
        kept: bytes = b"",
        built_after: str = "",
    ) -> None:
        stored = self.model_version()
        if after is not None and stored != after:
            raise model_conflict(version, after, stored)
        self._model = (version, snapshot)
        if unpublished:
            self._unpublished[version] = unpublished
        if built_after:
            self._kept[version] = (kept, built_after)

    def merge_state(self) -> tuple[str, dict[int, str]]:
        return self._merged, {v: at for v, (_, at) in self._kept.items()}

    def kept_version(self, version: int) -> bytes | None:
        kept = self._kept.get(version)
        return kept[0] if kept is not None else None

    def set_merged(self, position: str, forget: Iterable[int] = ()) -> None:
        self._merged = position
        for v in forget:
            self._kept.pop(v, None)

    def unpublished_model_events(self) -> list[tuple[int, bytes]]:
        return sorted(self._unpublished.items())

    def clear_unpublished(self, version: int) -> None:
        self._unpublished.pop(version, None)

    def model_version(self) -> int:
        return self._model[0] if self._model is not None else 0

    def load_model(self) -> tuple[int, bytes] | None:
        return self._model

    def save_meta(self, topic: str, partitions: int) -> None:
        self._meta.update({"topic": topic, "partitions": str(partitions)})

    def meta(self) -> dict[str, str]:
        return dict(self._meta)

    def output_topics(self) -> dict[str, str]:
        return {k[4:]: v for k, v in self._meta.items() if k.startswith("out:")}

    def record_output_topics(self, ids: dict[str, str]) -> None:
        self._meta = {k: v for k, v in self._meta.items() if not k.startswith("out:")}
        self._meta.update({f"out:{name}": tid for name, tid in ids.items()})

    def take_census(self, partitions: int) -> None:
        """Nothing to count: a process's memory loses no single key."""

    def scan_customers(self, partitions: int) -> Any:
        for p in range(partitions):
            for c, blob in self.partition_states(p):
                yield p, c, blob

    def partition_states(self, p: int) -> Iterator[tuple[str, bytes]]:
        yield from sorted(self._states.get(p, {}).items())
