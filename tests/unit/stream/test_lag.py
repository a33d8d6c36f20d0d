"""Consumer lag per input topic, as the worker publishes it in ``monitor_consumer_lag``."""

from __future__ import annotations

from typing import NamedTuple

from monitor.stream.app import lag_by_topic


class TP(NamedTuple):
    topic: str
    partition: int


def test_lag_sums_assigned_partitions_of_each_input_topic() -> None:
    ends = {TP("in", 0): 10, TP("in", 1): 7, TP("other", 0): 99, TP("ctx", 0): 3}
    committed = {TP("in", 0): 4, TP("in", 1): 7, TP("other", 0): 0, TP("ctx", 0): 3}
    lag = lag_by_topic(["in", "ctx"], ends, ends.get, committed.get)
    assert lag == {"in": 6, "ctx": 0}


def test_unknown_end_counts_nothing_and_no_commit_counts_from_zero() -> None:
    ends: dict[TP, int | None] = {TP("in", 0): None, TP("in", 1): 5}
    lag = lag_by_topic(["in"], ends, ends.get, {}.get)
    assert lag == {"in": 5}


def test_a_committed_offset_past_a_stale_end_is_no_negative_lag() -> None:
    ends = {TP("in", 0): 3}
    assert lag_by_topic(["in", "idle"], ends, ends.get, {TP("in", 0): 5}.get) == {
        "in": 0,
        "idle": 0,
    }
