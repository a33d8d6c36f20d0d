"""The worker's per-message decisions, driven directly with a dict as the patient table."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitor.clinical.stored_state import load_state
from monitor.clinical.watch import PatientSummary
from monitor.metrics import Metrics
from monitor.settings import MonitorSettings
from monitor.stream.processor import Origin, ResultProcessor
from tests.builders import T0, cbc

SETTINGS = MonitorSettings()
NOW = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.fixture
def processor() -> ResultProcessor:
    return ResultProcessor(SETTINGS, Metrics(), {}, clock=lambda: NOW)


def origin(offset: int = 0, topic: str = SETTINGS.results_topic) -> Origin:
    return Origin(topic, 2, offset, NOW.timestamp())


def raw(result_id: str, hours: float, **values: float) -> bytes:
    return cbc(result_id, hours, patient_id="MRN-0042", **values).model_dump_json().encode()


def metric(processor: ResultProcessor, name: str, **labels: str) -> float:
    text = processor.metrics.exposition().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    raise AssertionError(f"{name}{labels} not exported")


def test_alerts_are_keyed_by_patient_and_carry_their_origin(processor: ResultProcessor) -> None:
    sends = processor.handle(raw("r1", 0, neutrophils=0.4), b"MRN-0042", origin(7))
    (send,) = sends
    assert send.topic == SETTINGS.alerts_topic
    assert send.key == b"MRN-0042"
    assert json.loads(send.value or b"")["event"] == "new"
    headers = dict(send.headers)
    assert headers["monitor.source_offset"] == b"7"
    assert all(b"MRN-0042" not in value for value in headers.values())
    assert processor.table[b"MRN-0042"]


def test_state_is_written_back_to_the_table(processor: ResultProcessor) -> None:
    processor.handle(raw("r1", 0, neutrophils=1.6), b"MRN-0042", origin(1))
    processor.handle(raw("r2", 24, neutrophils=0.8), b"MRN-0042", origin(2))
    state = load_state(processor.table[b"MRN-0042"])
    assert [e.result_id for e in state.history] == ["r1", "r2"]
    assert state.episodes["neutropenia"].grade == 3


def test_invalid_input_becomes_a_dead_letter_with_the_original_bytes(
    processor: ResultProcessor,
) -> None:
    bad = b'{"result_id": "r1", "patient_id": "MRN-0042"'
    (send,) = processor.handle(bad, b"MRN-0042", origin(9))
    assert send.topic == SETTINGS.dlq_topic
    assert send.value == bad
    assert send.key == b"MRN-0042"
    headers = dict(send.headers)
    assert headers["dlq.code"] == b"not_json"
    assert headers["dlq.source_offset"] == b"9"
    assert all(b"MRN-0042" not in value for value in headers.values())
    assert metric(processor, "monitor_results_invalid_total", reason="not_json") == 1
    assert processor.table == {}


def test_input_keyed_otherwise_is_repartitioned_by_patient(processor: ResultProcessor) -> None:
    value = raw("r1", 0, neutrophils=0.4)
    for key in (None, b"wrong-key"):
        (send,) = processor.handle(value, key, origin())
        assert send.topic == f"{SETTINGS.results_topic}.by-patient"
        assert send.key == b"MRN-0042"
        assert send.value == value
    assert processor.table == {}
    (alert,) = processor.handle(value, b"MRN-0042", origin(topic=send.topic))
    assert alert.topic == SETTINGS.alerts_topic


def test_input_on_the_by_patient_topic_keyed_otherwise_goes_round_again_keyed_by_patient(
    processor: ResultProcessor,
) -> None:
    """Never applied under another key's lock and partition: sent on keyed by patient, then
    applied when it comes back keyed so."""
    repartition = f"{SETTINGS.results_topic}.by-patient"
    value = raw("r1", 0, neutrophils=0.4)
    (send,) = processor.handle(value, None, origin(topic=repartition))
    assert (send.topic, send.key, send.value) == (repartition, b"MRN-0042", value)
    assert processor.table == {}
    sends = processor.handle(value, b"MRN-0042", origin(topic=repartition))
    assert [s.topic for s in sends] == [SETTINGS.alerts_topic]


def test_redelivery_sends_nothing_and_is_counted(processor: ResultProcessor) -> None:
    value = raw("r1", 0, neutrophils=0.4)
    assert len(processor.handle(value, b"MRN-0042", origin(1))) == 1
    stored = processor.table[b"MRN-0042"]
    assert processor.handle(value, b"MRN-0042", origin(2)) == []
    assert processor.table[b"MRN-0042"] == stored
    assert metric(processor, "monitor_duplicates_ignored_total", kind="duplicate") == 1


def test_gauges_follow_patients_and_episodes(processor: ResultProcessor) -> None:
    processor.handle(raw("r1", 0, neutrophils=0.4), b"MRN-0042", origin(1))
    assert metric(processor, "monitor_patients_tracked") == 1
    assert metric(processor, "monitor_active_episodes", condition="neutropenia", grade="4") == 1
    processor.handle(raw("r2", 24, neutrophils=3.0), b"MRN-0042", origin(2))
    assert metric(processor, "monitor_active_episodes", condition="neutropenia", grade="4") == 0
    processor.recount(processor.table.values())
    assert metric(processor, "monitor_patients_tracked") == 1


def test_a_processing_fault_becomes_a_dead_letter(processor: ResultProcessor) -> None:
    send = processor.failed(b"whatever", b"k", origin(5), RuntimeError("boom MRN-0042"))
    assert send.topic == SETTINGS.dlq_topic
    headers = dict(send.headers)
    assert headers["dlq.code"] == b"processing_error"
    assert headers["dlq.error_class"] == b"RuntimeError"
    assert all(b"MRN-0042" not in value for value in headers.values())


def test_published_alerts_feed_the_latency_histogram(processor: ResultProcessor) -> None:
    (send,) = processor.handle(raw("r1", 0, neutrophils=0.4), b"MRN-0042", origin(1))
    processor.published(send, origin(1))
    assert metric(processor, "monitor_result_to_alert_seconds_count") == 1
    assert (
        metric(
            processor,
            "monitor_alerts_total",
            condition="neutropenia",
            event="new",
            severity="critical",
        )
        == 1
    )


def test_cached_state_is_not_used_once_the_table_changed_under_it() -> None:
    table: dict[bytes, bytes] = {}
    first = ResultProcessor(SETTINGS, Metrics(), table, clock=lambda: NOW)
    other = ResultProcessor(SETTINGS, Metrics(), table, clock=lambda: NOW)
    first.handle(raw("r1", 0, neutrophils=1.6), b"MRN-0042", origin(1))
    # Another worker owned the partition for a while (a rebalance) and moved the patient on.
    other.handle(raw("r2", 24, neutrophils=0.8), b"MRN-0042", origin(2))
    (alert,) = first.handle(raw("r3", 48, neutrophils=0.3), b"MRN-0042", origin(3))
    assert (alert.alert_labels, json.loads(alert.value or b"")["previous_grade"]) == (
        ("neutropenia", "worsened", "critical"),
        3,
    )


class CountingTable(dict[bytes, bytes]):
    """A patient table that counts its reads."""

    reads = 0

    def get(self, key: bytes, default: Any = None) -> Any:
        self.reads += 1
        return super().get(key, default)


def test_within_an_epoch_the_cached_state_is_used_without_reading_the_table() -> None:
    table = CountingTable()
    epoch = [1]
    first = ResultProcessor(SETTINGS, Metrics(), table, lambda: NOW, table_epoch=lambda: epoch[0])
    other = ResultProcessor(SETTINGS, Metrics(), table, clock=lambda: NOW)
    first.handle(raw("r1", 0, neutrophils=1.6), b"MRN-0042", origin(1))
    first.handle(raw("r2", 24, neutrophils=1.7), b"MRN-0042", origin(2))
    assert table.reads == 1  # the first message only: nothing was cached yet
    # A rebalance: the partition was another worker's for a while, which moved the patient on.
    epoch[0] = 2
    other.handle(raw("r3", 48, neutrophils=0.8), b"MRN-0042", origin(3))
    (alert,) = first.handle(raw("r4", 72, neutrophils=0.3), b"MRN-0042", origin(4))
    assert json.loads(alert.value or b"")["previous_grade"] == 3
    assert [e.result_id for e in load_state(table[b"MRN-0042"]).history] == [
        "r1",
        "r2",
        "r3",
        "r4",
    ]


def test_state_cache_is_bounded() -> None:
    processor = ResultProcessor(SETTINGS, Metrics(), {}, clock=lambda: NOW, state_cache_size=3)
    for i in range(10):
        value = cbc(f"r{i}", 0, patient_id=f"P{i}", neutrophils=3.0).model_dump_json().encode()
        processor.handle(value, f"P{i}".encode(), origin(i))
    assert len(processor._states) == 3


def test_a_message_redelivered_before_its_state_was_written_alerts_again(
    processor: ResultProcessor,
) -> None:
    processor.handle(raw("r0", 0, neutrophils=3.0), b"MRN-0042", origin(0))
    stored = processor.table[b"MRN-0042"]
    # The worker died after planning (its alert never acknowledged) and before the write.
    value = raw("r1", 24, neutrophils=0.4)
    first = processor.plan(value, b"MRN-0042", origin(1))
    assert first.write is not None
    assert first.sends
    assert processor.table[b"MRN-0042"] == stored
    again = processor.plan(value, b"MRN-0042", origin(1))
    assert [s.value for s in again.sends] == [s.value for s in first.sends]
    processor.write(again)
    # Once written, the same message is a duplicate and alerts nothing more.
    assert processor.plan(value, b"MRN-0042", origin(1)).sends == []


def test_a_retraction_closes_the_episode_in_the_table_and_the_gauges(
    processor: ResultProcessor,
) -> None:
    processor.handle(raw("r1", 0, neutrophils=0.4), b"MRN-0042", origin(1))
    assert metric(processor, "monitor_active_episodes", condition="neutropenia", grade="4") == 1
    retraction = json.dumps(
        {
            "result_id": "r1",
            "patient_id": "MRN-0042",
            "collected_at": "2026-11-01T08:00:00Z",
            "status": "retracted",
        }
    ).encode()
    (send,) = processor.handle(retraction, b"MRN-0042", origin(2))
    alert = json.loads(send.value or b"")
    assert (alert["event"], alert["grade"], alert["previous_grade"]) == ("retracted", 0, 4)
    assert send.alert_labels == ("neutropenia", "retracted", "info")
    assert metric(processor, "monitor_active_episodes", condition="neutropenia", grade="4") == 0
    state = load_state(processor.table[b"MRN-0042"])
    assert state.history == []
    assert processor.handle(retraction, b"MRN-0042", origin(3)) == []


def test_a_patient_after_chemotherapy_gets_a_summary_then_a_tombstone(
    processor: ResultProcessor,
) -> None:
    """The summary comes with the plan's state, keyed by patient; once the last dose is past
    the nadir window the patient's summary is a tombstone."""

    def chemo_result(result_id: str, hours: float, dose_days_before: float) -> bytes:
        at = T0 + timedelta(hours=hours)
        result = cbc(
            result_id,
            hours,
            patient_id="MRN-0042",
            last_chemo_at=at - timedelta(days=dose_days_before),
            neutrophils=0.8,
        )
        return result.model_dump_json().encode()

    clock = [T0 + timedelta(hours=1)]
    processor.clock = lambda: clock[0]
    plan = processor.plan(chemo_result("r1", 0, 9), b"MRN-0042", origin(1))
    assert [s.topic for s in plan.sends] == [SETTINGS.alerts_topic]
    (after,) = plan.after
    assert after.topic == SETTINGS.summaries_topic == "lab.cbc.patient-summaries"
    assert after.key == b"MRN-0042"
    assert after.value is not None
    summary = PatientSummary.model_validate_json(after.value)
    assert summary.counts["neutrophils"].value == 0.8
    assert [(e.condition, e.grade) for e in summary.episodes] == [("neutropenia", 3)]
    processor.write(plan)
    clock[0] = T0 + timedelta(days=7)  # the dose of r1 is now 16 days ago
    plan = processor.plan(chemo_result("r2", 24 * 6, 15), b"MRN-0042", origin(2))
    (after,) = plan.after
    assert (after.key, after.value) == (b"MRN-0042", None)
    processor.write(plan)
    # The tombstone is sent once: later results of the patient out of the window send nothing.
    plan = processor.plan(chemo_result("r3", 24 * 7, 16), b"MRN-0042", origin(3))
    assert plan.write is not None
    assert plan.after == []


def test_a_state_from_before_the_summary_flag_gets_one_tombstone(
    processor: ResultProcessor,
) -> None:
    """A state written before ``summary_published`` existed may have a summary out: one
    tombstone, then nothing."""
    long_ago = T0 - timedelta(days=60)
    first = cbc("r1", 0, patient_id="MRN-0042", last_chemo_at=long_ago, neutrophils=3.0)
    plan = processor.plan(first.model_dump_json().encode(), b"MRN-0042", origin(1))
    assert plan.after == []  # never watched: no tombstone
    assert plan.write is not None
    key, value, _ = plan.write
    old = json.loads(value)
    del old["p"]
    processor.table[key] = json.dumps(old).encode()
    second = cbc("r2", 24, patient_id="MRN-0042", last_chemo_at=long_ago, neutrophils=3.0)
    plan = processor.plan(second.model_dump_json().encode(), b"MRN-0042", origin(2))
    assert [(s.key, s.value) for s in plan.after] == [(b"MRN-0042", None)]


def test_no_summary_for_a_patient_without_chemotherapy(processor: ResultProcessor) -> None:
    plan = processor.plan(raw("r1", 0, neutrophils=0.4), b"MRN-0042", origin(1))
    assert plan.sends
    assert plan.after == []


def test_a_dead_letter_too_large_to_send_points_at_its_original(
    processor: ResultProcessor,
) -> None:
    """An input of 1.2 MB (the broker took it; a producer would refuse it as a dead letter)
    is dead-lettered without its bytes, which stay at the source offset its headers name."""
    (dead,) = processor.handle(b"x" * 1_200_000, b"P-BIG", origin(7))
    headers = dict(dead.headers)
    assert dead.topic == SETTINGS.dlq_topic
    assert headers["dlq.code"] == b"oversize"
    assert headers["dlq.original_omitted"] == b"1200005 bytes"
    assert headers["dlq.source_offset"] == b"7"
    assert dead.value is None
    assert dead.key == b"P-BIG"
    (small,) = processor.handle(b"x" * 70_000, b"P-BIG", origin(8))
    assert small.value == b"x" * 70_000
    assert "dlq.original_omitted" not in dict(small.headers)
