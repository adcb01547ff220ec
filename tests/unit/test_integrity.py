"""Which accident a partition's facts show, and where `segstream recover` resumes it."""

from __future__ import annotations

import pytest

from stream.errors import SegstreamError, StateLost, TopicChanged
from stream.ops.recover import plan
from stream.runtime.integrity import PartitionFacts, Where, diagnose, first_problem

WHERE = Where("interactions", "seg", "segstream")


def facts(
    p: int = 0, applied: int = 99, stored: str = "A", topic: str = "A", **kw: int | None
) -> PartitionFacts:
    return PartitionFacts(
        partition=p,
        applied=applied,
        stored_topic=stored,
        topic=topic,
        committed=kw.get("committed", applied + 1),
        begin=kw.get("begin", 0),
        end=kw.get("end", 1000),
    )


def test_a_healthy_partition_has_no_problem() -> None:
    assert diagnose(facts(), WHERE) is None
    assert diagnose(facts(committed=50), WHERE) is None  # the group trails Redis: normal
    assert diagnose(facts(applied=-1, stored="", committed=None), WHERE) is None  # a fresh start
    assert diagnose(facts(stored="", topic=""), WHERE) is None  # a broker without topic ids


@pytest.mark.parametrize(
    ("kw", "kind", "words"),
    [
        ({"topic": "B"}, TopicChanged, "deleted and created again"),
        ({"end": 50}, TopicChanged, "truncated"),
        ({"begin": 500}, TopicChanged, "retention deleted 400 records"),
        ({"applied": -1, "committed": 700}, StateLost, "has no state for partition 0"),
        ({"committed": 700}, StateLost, "Redis lost writes"),
    ],
)
def test_each_accident_is_named_with_its_way_out(kw: dict, kind: type, words: str) -> None:
    problem = diagnose(facts(**kw), WHERE)
    assert isinstance(problem, kind) and words in str(problem)
    assert "segstream recover --" in str(problem) and "\n" not in str(problem)


def test_lost_writes_are_reported_before_a_partition_that_holds_nothing() -> None:
    found = first_problem([facts(0, applied=-1, committed=50), facts(1, applied=10, committed=80)], WHERE)
    assert isinstance(found, StateLost) and "partition 1" in str(found)
    found = first_problem([facts(0, applied=10, committed=80), facts(1, topic="B")], WHERE)
    assert isinstance(found, TopicChanged)


def test_recover_plans() -> None:
    assert plan("resume", 99, "A", "A", 0, 1000) == (100, "resumes after what Redis holds")
    assert plan("resume", -1, "", "A", 40, 1000)[0] == 40
    for applied, stored, begin, end in ((99, "B", 0, 1000), (999, "A", 0, 500), (99, "A", 300, 1000)):
        with pytest.raises(SegstreamError, match="adopt-topic"):
            plan("resume", applied, stored, "A", begin, end)
    assert plan("adopt-topic", 999, "B", "A", 0, 10)[0] == 0
    assert plan("adopt-topic", 99, "A", "A", 300, 1000)[0] == 300
