"""Compare the segmentations of two namespaces (e.g. production and a what-if replay).

The comparison is pure (:func:`compare` on two :class:`NamespaceSnapshot`); :func:`snapshot`
reads one from Redis. Two namespaces number their segments independently, so segments are
matched by their members (:func:`~stream.ops.matching.match_segments`, a Hungarian assignment on
the confusion matrix), not by raw id: a customer has changed segment when its B segment is not
the match of its A segment. Reported: customers in both and in one only, customers whose segment
(under the matching) or feature state differs, the matching and its agreement, the confusion
matrix of segments (A id/name x B id/name), per-segment sizes, and the profile (centroid in
original units, from each namespace's model snapshot) of every A segment against its match (or,
without one, the B segment most of its customers went to).
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from models.features import CustomerState
from stream.ops.matching import Matching, match_segments

NO_SEGMENT = -1
SAMPLE = 10  # customer ids listed per category
PROFILE_TOL = 1e-9  # relative: centroids equal up to float noise


@dataclass(frozen=True)
class Segment:
    id: int
    name: str
    centroid: dict[str, float]


@dataclass
class NamespaceSnapshot:
    namespace: str
    model_version: int | None
    segments: dict[int, Segment]  # from the model snapshot
    customers: dict[str, tuple[int, bytes]]  # customer -> (segment id or -1, digest of the packed state)

    def name_of(self, sid: int) -> str:
        if sid == NO_SEGMENT:
            return "(none)"
        s = self.segments.get(sid)
        return s.name if s is not None else f"segment {sid} (retired)"


@dataclass
class SegmentDelta:
    a_id: int
    a_name: str
    b_id: int | None  # A's match in B, else the B segment most of A's customers are in
    b_name: str | None
    a_size: int
    b_size: int
    overlap: int
    centroid_delta: dict[str, float]  # feature -> B - A (original units)
    matched: bool = False  # b_id is A's match by members (not only where most of them went)


@dataclass
class DiffReport:
    a: str
    b: str
    a_version: int | None
    b_version: int | None
    in_both: int
    only_a: int
    only_b: int
    changed_segment: int
    changed_state: int
    confusion: dict[tuple[int, int], int]
    names_a: dict[int, str]
    names_b: dict[int, str]
    sizes_a: dict[int, int]
    sizes_b: dict[int, int]
    segments: list[SegmentDelta]
    model_differs: bool
    samples: dict[str, list[str]] = field(default_factory=dict)
    matching: Matching = field(default_factory=lambda: match_segments({}))
    changed_segment_id: int = 0  # customers whose raw segment id differs (the count before matching)

    @property
    def identical(self) -> bool:
        # Renumbered segments are not identical: the ids are the contract subscribers act on.
        return not (
            self.only_a
            or self.only_b
            or self.changed_segment
            or self.changed_state
            or self.model_differs
            or self.matching.renumbered
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "a": {"namespace": self.a, "model_version": self.a_version},
            "b": {"namespace": self.b, "model_version": self.b_version},
            "identical": self.identical,
            "customers": {
                "in_both": self.in_both,
                "only_a": self.only_a,
                "only_b": self.only_b,
                "changed_segment": self.changed_segment,
                "changed_state": self.changed_state,
            },
            "model_differs": self.model_differs,
            "matching": {
                "agreement": round(self.matching.agreement, 6),
                "agreed": self.matching.agreed,
                "renumbered": self.matching.renumbered,
                # Customers whose raw segment id differs, what `changed_segment` counted before
                # segments were matched by members.
                "changed_segment_id": self.changed_segment_id,
                "pairs": [
                    {
                        "a_id": a,
                        "a_name": self.names_a.get(a, str(a)),
                        "b_id": b,
                        "b_name": self.names_b.get(b, str(b)),
                        "customers": self.matching.overlap.get(a, 0),
                    }
                    for a, b in self.matching.pairs.items()
                ],
            },
            "confusion": [
                {
                    "a_id": a,
                    "a_name": self.names_a.get(a, str(a)),
                    "b_id": b,
                    "b_name": self.names_b.get(b, str(b)),
                    "customers": n,
                }
                for (a, b), n in sorted(self.confusion.items())
            ],
            "sizes": {
                "a": {str(k): v for k, v in sorted(self.sizes_a.items())},
                "b": {str(k): v for k, v in sorted(self.sizes_b.items())},
            },
            "segments": [
                {
                    "a_id": s.a_id,
                    "a_name": s.a_name,
                    "b_id": s.b_id,
                    "b_name": s.b_name,
                    "a_size": s.a_size,
                    "b_size": s.b_size,
                    "overlap": s.overlap,
                    "matched": s.matched,
                    "centroid_delta": s.centroid_delta,
                }
                for s in self.segments
            ],
            "samples": self.samples,
        }


def _centroids_differ(a: dict[str, float], b: dict[str, float]) -> bool:
    if a.keys() != b.keys():
        return True
    return any(not math.isclose(a[k], b[k], rel_tol=PROFILE_TOL, abs_tol=PROFILE_TOL) for k in a)


def compare(a: NamespaceSnapshot, b: NamespaceSnapshot) -> DiffReport:
    """Everything that differs between the segmentations of ``a`` and ``b``, segments matched
    by their members."""
    both = sorted(a.customers.keys() & b.customers.keys())
    only_a = sorted(a.customers.keys() - b.customers.keys())
    only_b = sorted(b.customers.keys() - a.customers.keys())
    confusion: Counter[tuple[int, int]] = Counter()
    state_changed: list[str] = []
    for cid in both:
        sa, da = a.customers[cid]
        sb, db = b.customers[cid]
        confusion[(sa, sb)] += 1
        if da != db:
            state_changed.append(cid)
    matching = match_segments(confusion)
    moved = [cid for cid in both if not matching.same(a.customers[cid][0], b.customers[cid][0])]
    moved_id = sum(a.customers[cid][0] != b.customers[cid][0] for cid in both)
    sizes_a = Counter(s for s, _ in a.customers.values())
    sizes_b = Counter(s for s, _ in b.customers.values())
    ids = sorted(set(sizes_a) | set(a.segments))
    deltas: list[SegmentDelta] = []
    for sid in ids:
        row = {bid: n for (aid, bid), n in confusion.items() if aid == sid}
        best = matching.pairs.get(sid)
        matched = best is not None
        if best is None:
            best = min(row, key=lambda k: (-row[k], k)) if row else None
        if best is None and sid in b.segments:
            best = sid  # no shared customers: compare with the same id
        ca = a.segments[sid].centroid if sid in a.segments else {}
        cb = b.segments[best].centroid if best is not None and best in b.segments else {}
        delta = {k: cb[k] - ca[k] for k in ca if k in cb}
        deltas.append(
            SegmentDelta(
                a_id=sid,
                a_name=a.name_of(sid),
                b_id=best,
                b_name=b.name_of(best) if best is not None else None,
                a_size=sizes_a.get(sid, 0),
                b_size=sizes_b.get(best, 0) if best is not None else 0,
                overlap=row.get(best, 0) if best is not None else 0,
                centroid_delta=delta,
                matched=matched,
            )
        )
    return DiffReport(
        a=a.namespace,
        b=b.namespace,
        a_version=a.model_version,
        b_version=b.model_version,
        in_both=len(both),
        only_a=len(only_a),
        only_b=len(only_b),
        changed_segment=len(moved),
        changed_state=len(state_changed),
        confusion=dict(confusion),
        names_a={sid: a.name_of(sid) for sid in set(sizes_a) | set(a.segments)},
        names_b={sid: b.name_of(sid) for sid in set(sizes_b) | set(b.segments)},
        sizes_a=dict(sizes_a),
        sizes_b=dict(sizes_b),
        segments=deltas,
        model_differs=_models_differ(a, b, matching),
        samples={
            "only_a": only_a[:SAMPLE],
            "only_b": only_b[:SAMPLE],
            "changed_segment": moved[:SAMPLE],
            "changed_state": state_changed[:SAMPLE],
        },
        matching=matching,
        changed_segment_id=moved_id,
    )


def _models_differ(a: NamespaceSnapshot, b: NamespaceSnapshot, matching: Matching) -> bool:
    """Whether the models hold other segments: a live segment without a partner (by members; a
    segment nobody is in is compared with the same id), or a pair with another name or centroid."""
    partner = {sid: matching.pairs.get(sid, sid) for sid in a.segments}
    if sorted(partner.values()) != sorted(b.segments):
        return True
    return any(
        a.segments[sa].name != b.segments[sb].name
        or _centroids_differ(a.segments[sa].centroid, b.segments[sb].centroid)
        for sa, sb in partner.items()
    )


# ---------------------------------------------------------------- reading a namespace


def digest(blob: bytes) -> bytes:
    return hashlib.blake2b(blob, digest_size=16).digest()


def snapshot(store: Any, partitions: int) -> NamespaceSnapshot:
    """Read a namespace: every customer's segment and state digest, and the model's segments."""
    from models.segments.engine import SegmentEngine

    customers: dict[str, tuple[int, bytes]] = {}
    for _p, cid, blob in store.scan_customers(partitions):
        customers[cid] = (CustomerState.unpack(blob).segment, digest(blob))
    segments: dict[int, Segment] = {}
    version: int | None = None
    saved = store.load_model()
    if saved is not None:
        engine = SegmentEngine.restore(saved[1])
        version = engine.version
        segments = {s.id: Segment(s.id, s.name, dict(s.centroid)) for s in engine.segments() if s.id >= 0}
    return NamespaceSnapshot(store.ns, version, segments, customers)
