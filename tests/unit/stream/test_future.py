"""Events dated in the future are dead-lettered (``collected_in_future``) on every feed, so they
cannot make later real results look late and silence a patient."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from monitor.adapters.future import in_future, screen_future
from monitor.clinical.model import describe_validation_error, parse_result
from monitor.metrics import Metrics
from monitor.settings import MonitorSettings
from monitor.stream.processor import Origin, ResultProcessor, received_at
from monitor.stream.replay import replay_messages

TODAY = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
DAY = timedelta(days=1)
MINUTE = timedelta(minutes=1)


@dataclass(frozen=True)
class Message:
    """A message of a logical feed with its receipt time (seconds since the epoch)."""

    topic: str
    value: bytes
    timestamp: float


def result(result_id: str, collected_at: str, anc: float, patient: str = "MRN-7") -> bytes:
    return json.dumps({
        "result_id": result_id,
        "patient_id": patient,
        "collected_at": collected_at,
        "sex": "female",
        "components": {"neutrophils": {"value": anc, "unit": "10*9/L"}},
    }).encode()  # fmt: skip


def at(moment: datetime, topic: str, value: bytes) -> Message:
    return Message(topic, value, moment.timestamp())


def replay(*messages: Message, settings: MonitorSettings | None = None) -> Any:
    rejections: list[tuple[int, str, str]] = []
    report = replay_messages(
        messages,
        settings or MonitorSettings(),
        clock=lambda: TODAY + 30 * DAY,
        on_reject=lambda n, r: rejections.append((n, r.code, r.reason)),
    )
    return report, rejections


def test_the_issue_example_a_result_dated_2099_hides_nothing() -> None:
    report, rejections = replay(
        at(TODAY, "results", result("S1", "2026-11-20T07:30:00Z", 2.5)),
        at(TODAY + timedelta(hours=2), "results", result("S2", "2099-11-20T07:30:00Z", 2.4)),
        at(TODAY + DAY, "results", result("S3", "2026-11-21T07:30:00Z", 0.3)),
    )
    assert [(a.result_id, a.condition, a.event, a.grade) for a in report.alerts] == [
        ("S3", "neutropenia", "new", 4)
    ]
    assert [(n, code) for n, code, _ in rejections] == [(2, "collected_in_future")]
    assert "collected_at is later than the time the message was received" in rejections[0][2]
    assert "2099" not in rejections[0][2]
    assert [e.result_id for e in report.states["MRN-7"].history] == ["S1", "S3"]


def hl7(specimen: str, obr7: str, anc: str) -> bytes:
    return "\r".join([
        "MSH|^~\\&|LIS|LAB|CBCMON|ONC|20261120120000+0000||ORU^R01|C1|P|2.5.1",
        "PID|1||MRN-7^^^HOSP^MR||DOE^JANE||19700101|F",
        f"OBR|1|ORD-{specimen}|{specimen}|57021-8^CBC W Auto Differential^LN|||{obr7}",
        f"OBX|1|NM|751-8^Neutrophils^LN||{anc}|10*9/L|1.8-7.7||||F",
    ]).encode()  # fmt: skip


def test_a_time_zone_written_the_wrong_way_round_does_not_hide_the_next_results() -> None:
    # Drawn at 07:00 local time in +05:00 (02:00Z), sent as -05:00: 12:00Z, ten hours ahead of
    # its receipt at 02:30Z. The next real specimen is drawn at 04:00Z, before that false time.
    received = datetime(2026, 11, 20, 2, 30, tzinfo=UTC)
    report, rejections = replay(
        at(received, "hl7v2", hl7("SP1", "202611200700-0500", "0.9")),
        at(received + timedelta(hours=2), "hl7v2", hl7("SP2", "202611200900+0500", "0.4")),
    )
    assert [(n, code) for n, code, _ in rejections] == [(1, "collected_in_future")]
    assert "OBR-7 collection time" in rejections[0][2]
    assert [(a.result_id, a.event, a.grade) for a in report.alerts] == [("SP2", "new", 4)]


@pytest.mark.parametrize(("ahead_minutes", "rejected"), [(4.9, False), (5.1, True), (-60, False)])
def test_the_tolerance_for_clock_skew_is_five_minutes_by_default(
    ahead_minutes: float, rejected: bool
) -> None:
    collected = (TODAY + timedelta(minutes=ahead_minutes)).isoformat()
    _, rejections = replay(at(TODAY, "results", result("S1", collected, 0.3)))
    assert bool(rejections) is rejected


def test_a_result_dated_inside_the_tolerance_hides_no_later_real_result() -> None:
    # Platelets dated 4 minutes after their receipt (a fast analyser clock), then a real count
    # of 15 drawn 2 minutes after that receipt: the first is read as drawn at its receipt, so
    # the 15 is the newer result and pages.
    early = result("S1", (TODAY + timedelta(minutes=4)).isoformat(), 2.5)
    real = result("S2", (TODAY + timedelta(minutes=2)).isoformat(), 0.3)
    report, rejections = replay(
        at(TODAY, "results", early), at(TODAY + 3 * MINUTE, "results", real)
    )
    assert rejections == []
    assert [(a.result_id, a.event, a.grade, a.page) for a in report.alerts] == [
        ("S2", "new", 4, True)
    ]
    history = report.states["MRN-7"].history
    assert [e.result_id for e in history] == ["S1", "S2"]
    assert history[0].collected_at == TODAY.timestamp()


def test_the_tolerance_is_a_setting() -> None:
    collected = (TODAY + timedelta(minutes=20)).isoformat()
    settings = MonitorSettings(future_tolerance_minutes=30)
    report, rejections = replay(
        at(TODAY, "results", result("S1", collected, 0.3)), settings=settings
    )
    assert rejections == []
    assert len(report.alerts) == 1
    strict = MonitorSettings(future_tolerance_minutes=0)
    _, rejections = replay(
        at(TODAY, "results", result("S1", (TODAY + timedelta(seconds=1)).isoformat(), 0.3)),
        settings=strict,
    )
    assert [code for _, code, _ in rejections] == ["collected_in_future"]
    assert "tolerance 0 minutes" in rejections[0][2]


def test_temperatures_and_treatments_dated_in_the_future_are_refused() -> None:
    vital = json.dumps({
        "observation_id": "VS-1", "patient_id": "MRN-7",
        "measured_at": "2026-11-21T08:00:00Z", "temperature": 39.0, "unit": "Cel",
    }).encode()  # fmt: skip
    dose = json.dumps({
        "event_id": "ADM-1", "patient_id": "MRN-7", "kind": "chemotherapy",
        "given_at": "2026-11-22T08:00:00+01:00",
    }).encode()  # fmt: skip
    report, rejections = replay(at(TODAY, "vitals", vital), at(TODAY, "treatments", dose))
    assert [(n, code) for n, code, _ in rejections] == [
        (1, "collected_in_future"),
        (2, "collected_in_future"),
    ]
    assert "measured_at" in rejections[0][2]
    assert "given_at" in rejections[1][2]
    assert report.vitals == {}
    assert report.treatments == {}


def test_a_future_specimen_does_not_take_the_other_specimens_of_its_message() -> None:
    good = hl7("SP1", "202611200730+0000", "0.4").decode()
    future = hl7("SP2", "209911200730+0000", "0.9").decode().split("\r")[2:]
    message = "\r".join([good, *future]).encode()
    report, rejections = replay(at(TODAY, "hl7v2", message))
    assert [a.result_id for a in report.alerts] == ["SP1"]
    ((_, code, reason),) = rejections
    assert code == "collected_in_future"
    assert reason.startswith("specimen 2 of 2 (in message order): OBR-7 collection time")


def test_the_worker_dead_letters_the_message_and_forwards_the_rest() -> None:
    settings = MonitorSettings()
    processor = ResultProcessor(settings, Metrics(), {}, clock=lambda: TODAY + DAY)
    good = hl7("SP1", "202611200730+0000", "0.4").decode()
    future = hl7("SP2", "209911200730+0000", "0.9").decode().split("\r")[2:]
    message = "\r".join([good, *future]).encode()
    origin = Origin(settings.hl7v2_topic, 0, 5, TODAY.timestamp())
    forwarded, dead = processor.handle(message, None, origin)
    assert forwarded.topic == f"{settings.results_topic}.by-patient"
    assert json.loads(forwarded.value or b"")["result_id"] == "SP1"
    assert dead.topic == settings.dlq_topic
    assert dead.value == message
    headers = dict(dead.headers)
    assert headers["dlq.code"] == b"collected_in_future"
    assert all(b"MRN-7" not in v and b"2099" not in v for v in headers.values())
    exposition = processor.metrics.exposition().decode()
    assert 'monitor_results_invalid_total{reason="collected_in_future"} 1.0' in exposition


def test_the_worker_reads_receipt_from_the_message_timestamp() -> None:
    settings = MonitorSettings()
    processor = ResultProcessor(settings, Metrics(), {}, clock=lambda: TODAY + 30 * DAY)
    origin = Origin(settings.results_topic, 0, 1, TODAY.timestamp())
    value = result("S1", (TODAY + DAY).isoformat(), 0.3)
    (dead,) = processor.handle(value, b"MRN-7", origin)
    assert dict(dead.headers)["dlq.code"] == b"collected_in_future"


def test_receipt_is_the_message_timestamp_unless_it_is_ahead_of_our_clock() -> None:
    assert received_at(TODAY.timestamp(), TODAY + DAY) == TODAY
    assert received_at((TODAY + DAY).timestamp(), TODAY) == TODAY
    assert received_at(None, TODAY) == TODAY


def test_screen_keeps_the_present_and_names_positions_only() -> None:
    parsed = [
        parse_result(result("A", "2026-11-20T07:00:00Z", 1.0)),
        parse_result(result("B", "2026-11-20T09:00:00Z", 1.0)),
    ]
    kept, rejected = screen_future(parsed, TODAY, timedelta(minutes=5), "collected_at")
    assert [r.result_id for r in kept] == ["A"]
    assert rejected is not None
    assert rejected.reason.startswith("specimen 2 of 2")
    assert not in_future(TODAY + timedelta(minutes=5), TODAY, timedelta(minutes=5))


@pytest.mark.parametrize(
    ("collected_at", "reason"),
    [
        ("2026-11-20", "collected_at: a date without a time of day"),
        ("20261120", "collected_at: a date without a time of day"),
        ("2026-11", "collected_at: a date without a time of day"),
        (20261120, "collected_at: a number, not an ISO 8601 date and time"),
        ("2026-11-20T08:00", "collected_at: Input should have timezone info"),
    ],
)
def test_date_only_and_numeric_times_are_refused_saying_so(
    collected_at: object, reason: str
) -> None:
    body = {"result_id": "S1", "patient_id": "MRN-7", "collected_at": collected_at}
    with pytest.raises(ValidationError) as caught:
        parse_result(json.dumps(body))
    assert describe_validation_error(caught.value).startswith(reason)


def test_date_only_on_the_context_feeds_is_refused_saying_so() -> None:
    vital = json.dumps({
        "observation_id": "VS-1", "patient_id": "MRN-7", "measured_at": "2026-11-20",
        "temperature": 39.0,
    }).encode()  # fmt: skip
    _, rejections = replay(at(TODAY, "vitals", vital))
    assert rejections[0][1] == "schema"
    assert "measured_at: a date without a time of day" in rejections[0][2]
    _, rejections = replay(at(TODAY, "hl7v2", hl7("SP1", "20261120+0000", "0.4")))
    assert rejections[0][1] == "unmappable"
    assert "OBR-7 collection time is a date without a time of day" in rejections[0][2]


def test_a_fhir_temperature_with_a_date_only_says_so() -> None:
    fhir = json.dumps({
        "resourceType": "Observation", "id": "bt-1", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8310-5"}]},
        "subject": {"reference": "Patient/MRN-7"}, "effectiveDateTime": "2026-11-20",
        "valueQuantity": {"value": 38.9, "unit": "C", "system": "http://unitsofmeasure.org",
                          "code": "Cel"},
    }).encode()  # fmt: skip
    _, rejections = replay(at(TODAY, "vitals", fhir))
    ((_, code, reason),) = rejections
    assert code == "unmappable"
    assert "measured_at: a date without a time of day" in reason
