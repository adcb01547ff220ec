"""What `evaluate` scores is what downstream saw: flaps of segments and stages, customer-months,
model-caused moves, and published against nearest."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from models.contracts import SegmentChange, SegmentRef, StageName
from models.segments.scoring import (
    customer_months,
    model_change_shares,
    published_vs_nearest,
    segment_flaps,
    stage_flaps,
)
from models.sim import generate
from stream.config import load
from stream.ops.evaluate import evaluate_log, log_records
from stream.runtime.engines import engine_params

DAY = 86400


def _change(
    customer: str,
    seq: int,
    day: float,
    previous: int | None,
    current: int | None,
    *,
    kind: str = "segment",
    stages: tuple[StageName | None, StageName | None] = (None, None),
    reason: str = "event",
    version: int = 1,
) -> SegmentChange:
    return SegmentChange(
        change_id=f"{customer}-{seq}",
        customer_id=customer,
        seq=seq,
        previous=SegmentRef(id=previous, name="") if previous is not None else None,
        current=SegmentRef(id=current, name="") if current is not None else None,
        kind=kind,  # type: ignore[arg-type]
        previous_stage=stages[0],
        stage=stages[1],
        confidence=1.0,
        reason=reason,  # type: ignore[arg-type]
        explanation="",
        model_version=version,
        event_time=datetime.fromtimestamp(day * DAY, UTC),
        source_topic="t",
        source_partition=0,
        source_offset=seq,
    )


def test_a_return_counts_within_30_days_only_and_stage_changes_are_not_segment_returns() -> None:
    changes = [
        _change("a", 1, 1, None, 1),
        _change("a", 2, 10, 1, 2),
        _change("a", 3, 39, 2, 1),  # back to 1 after 29 days: a flap
        _change("b", 1, 1, None, 1),
        _change("b", 2, 10, 1, 2),
        _change("b", 3, 41, 2, 1),  # after 31 days: not one
        # a stage change keeps the segment (previous == current): never a segment return
        _change("c", 1, 1, 3, 3, kind="stage", stages=("active", "at_risk")),
        _change("c", 2, 20, 3, 3, kind="stage", stages=("at_risk", "active")),
        _change("c", 3, 80, 3, 3, kind="stage", stages=("active", "at_risk")),
        _change("c", 4, 90, 3, 3, kind="stage", stages=("at_risk", "active")),
    ]
    assert segment_flaps(changes) == {"a": 1}
    assert stage_flaps(changes) == {"c": 2}


def test_customer_months_and_model_moves_per_version() -> None:
    assert customer_months({"a": 0.0, "b": 30 * DAY}, 90 * DAY) == pytest.approx(5.0)
    changes = [
        _change("a", 1, 1, 1, 2, reason="model_update", version=3),
        _change("b", 1, 1, 1, 2, reason="model_update", version=3),
        _change("c", 1, 1, 1, 2, reason="model_update", version=5),
        _change("d", 1, 1, 1, 2, reason="event", version=5),
    ]
    assert model_change_shares(changes, 10) == [0.2, 0.1]
    assert published_vs_nearest(np.array([1, 2, 3, 4]), np.array([1, 2, 0, 0])) == 0.5


def test_evaluate_scores_the_published_segments_beside_the_nearest() -> None:
    log = generate(300, 60, seed=4, start=datetime(2025, 1, 1, tzinfo=UTC))
    records = log_records("gen", ((r.key, r.value) for r in log.records))
    settings = load(
        overrides={"topics": {"partitions": 1}, "model": {"update_every": 500, "warmup_vectors": 500}}
    )
    (report,) = evaluate_log(records, settings, [engine_params(settings)], log.truth)
    # The nearest segment is the closest by definition: published can only be as tight or worse,
    # and equal only if no customer is published elsewhere.
    assert report.ssq_ratio >= report.nearest_ssq_ratio
    assert (report.ssq_ratio > report.nearest_ssq_ratio) == (report.published_differs > 0)
    assert sum(report.stages.values()) == report.customers == 300
    assert set(report.stages) <= {"prospect", "new", "active", "at_risk", "lapsed", "won_back"}
    assert report.ari is not None and report.nearest_ari is not None
    assert 0 <= report.segment_flaps_per_month < 1 and 0 <= report.stage_flaps_per_month < 1
