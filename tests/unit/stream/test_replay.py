"""Offline replay of every feed (JSON, HL7 v2, FHIR, treatments, vitals) through the detector."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime

import pytest

from monitor.clinical.alert import Alert
from monitor.settings import MonitorSettings
from monitor.sim.cohort import CohortSpec, simulate_cohort
from monitor.sim.messages import SimMessage
from monitor.stream.replay import ReplayReport, replay_messages, replay_values, topic_names

NOW = datetime(2026, 12, 1, tzinfo=UTC)
FN = "febrile_neutropenia"
SPEC = CohortSpec(seed=3, patients=12, days=30)


@pytest.fixture(scope="module")
def messages() -> list[SimMessage]:
    return simulate_cohort(SPEC)


@pytest.fixture(scope="module")
def report(messages: list[SimMessage]) -> ReplayReport:
    return replay_messages(messages, clock=lambda: NOW)


def test_every_feed_is_handled(messages: list[SimMessage], report: ReplayReport) -> None:
    assert report.messages == Counter(m.topic for m in messages)
    assert set(report.messages) == {"results", "hl7v2", "fhir", "treatments", "vitals"}
    assert report.treatments == Counter(accepted=report.messages["treatments"])
    assert report.vitals == Counter(accepted=report.messages["vitals"])


def test_counts_are_consistent(messages: list[SimMessage], report: ReplayReport) -> None:
    lab = report.messages["results"] + report.messages["hl7v2"] + report.messages["fhir"]
    assert report.results == lab
    malformed = sum(1 for m in messages if m.kind == "malformed")
    assert malformed > 0
    # Only the malformed messages are dead letters; every other lab message is one result.
    assert sum(report.dead_letters.values()) == malformed
    assert sum(report.invalid.values()) == malformed
    assert sum(report.dispositions.values()) == lab - malformed
    redeliveries = sum(1 for m in messages if m.kind == "redelivery")
    assert report.dispositions["duplicate"] == redeliveries
    patients = {m.key.decode() for m in messages if m.key is not None}
    assert set(report.states) == patients


def test_febrile_neutropenia_appears(messages: list[SimMessage], report: ReplayReport) -> None:
    fever_patients = {
        json.loads(m.value)["patient_id"]
        for m in messages
        if m.topic == "vitals" and json.loads(m.value)["temperature"] >= 38.0
    }
    new = [a for a in report.alerts if a.condition == FN and a.event == "new"]
    assert len({a.patient_id for a in new}) >= 2
    assert {a.patient_id for a in new} <= fever_patients
    for alert in new:
        assert alert.grade == 3
        assert alert.temperature_c is not None
        assert alert.temperature_c >= 38.0
        assert alert.value is not None
        assert alert.value < 1.0


def test_treatments_give_every_format_its_chemotherapy_context(
    messages: list[SimMessage], report: ReplayReport
) -> None:
    formats = {m.key: m.topic for m in messages if m.topic in ("hl7v2", "fhir", "results")}
    by_format: dict[str, list[Alert]] = {"results": [], "hl7v2": [], "fhir": []}
    for alert in report.alerts:
        by_format[formats[alert.patient_id.encode()]].append(alert)
    for topic, alerts in by_format.items():
        assert alerts, topic
        assert all(a.days_since_chemo is not None for a in alerts), topic
    assert any(a.in_nadir_window for a in report.alerts)
    # Without the treatments feed, HL7 v2 and FHIR results say nothing of the last dose.
    bare = replay_messages(simulate_cohort(CohortSpec(seed=3, patients=12, days=30, context=False)))
    assert all(
        a.days_since_chemo is None
        for a in bare.alerts
        if formats[a.patient_id.encode()] in ("hl7v2", "fhir")
    )


def test_formats_do_not_change_the_cbc_alerts() -> None:
    plain = simulate_cohort(CohortSpec(seed=3, patients=12, days=30, hl7v2_share=0, fhir_share=0))
    mixed = simulate_cohort(SPEC)
    expected = replay_values(m.value for m in plain if m.topic == "results")
    got = replay_messages(mixed)
    assert sorted(a.alert_id for a in got.alerts if a.condition != FN) == sorted(
        a.alert_id for a in expected.alerts
    )


def test_json_only_cohort_replays_like_replay_values() -> None:
    cohort = simulate_cohort(
        CohortSpec(seed=5, patients=10, days=30, hl7v2_share=0, fhir_share=0, context=False)
    )
    by_messages = replay_messages(cohort, clock=lambda: NOW)
    by_values = replay_values((m.value for m in cohort), clock=lambda: NOW)
    assert by_messages.alerts == by_values.alerts
    assert by_messages.dispositions == by_values.dispositions
    assert by_messages.results == by_values.results
    assert sum(by_messages.invalid.values()) == sum(by_values.invalid.values())


def test_on_alert_sees_every_alert_in_order(messages: list[SimMessage]) -> None:
    seen: list[Alert] = []
    report = replay_messages(messages, clock=lambda: NOW, on_alert=seen.append)
    assert seen == report.alerts


def test_topic_names_follow_the_settings(messages: list[SimMessage]) -> None:
    settings = MonitorSettings(
        results_topic="a.results",
        hl7v2_topic="a.hl7",
        fhir_topic="a.fhir",
        treatments_topic="a.treatments",
        vitals_topic="a.vitals",
    )
    assert topic_names(settings) == {
        "results": "a.results",
        "hl7v2": "a.hl7",
        "fhir": "a.fhir",
        "treatments": "a.treatments",
        "vitals": "a.vitals",
    }
    renamed = replay_messages(messages, settings, clock=lambda: NOW)
    default = replay_messages(messages, clock=lambda: NOW)
    assert [a.alert_id for a in renamed.alerts] == [a.alert_id for a in default.alerts]


def test_an_unknown_feed_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown feed"):
        replay_messages([SimMessage(b"P", b"{}", "result", 0.0, topic="labs")])  # type: ignore[arg-type]


def _result(rid: str, collected: str, anc: float) -> SimMessage:
    body = {
        "result_id": rid,
        "patient_id": "P-1",
        "collected_at": collected,
        "components": {"neutrophils": {"value": anc, "unit": "10*9/L"}},
    }
    return SimMessage(b"P-1", json.dumps(body).encode(), "result", 0.0)


def _vital(oid: str, measured: str, celsius: float) -> SimMessage:
    body = {
        "observation_id": oid,
        "patient_id": "P-1",
        "measured_at": measured,
        "temperature": celsius,
    }
    return SimMessage(b"P-1", json.dumps(body).encode(), "result", 0.0, topic="vitals")


def _dose(eid: str, given: str) -> SimMessage:
    body = {"event_id": eid, "patient_id": "P-1", "kind": "chemotherapy", "given_at": given}
    return SimMessage(b"P-1", json.dumps(body).encode(), "result", 0.0, topic="treatments")


def test_fever_and_low_anc_make_febrile_neutropenia_in_either_order() -> None:
    dose = _dose("T-1", "2026-11-01T10:00:00Z")
    low = _result("R-1", "2026-11-12T08:00:00Z", 0.4)
    fever = _vital("V-1", "2026-11-12T14:00:00Z", 38.9)
    for order in ([dose, low, fever], [dose, fever, low]):
        report = replay_messages(order, clock=lambda: NOW)
        fn = [a for a in report.alerts if a.condition == FN]
        assert [(a.event, a.grade) for a in fn] == [("new", 3)]
        assert fn[0].days_since_chemo == 10
        assert fn[0].in_nadir_window is True
        assert fn[0].temperature_c == 38.9
    # Fever a day and a half away from the low count: no febrile neutropenia.
    far = _vital("V-2", "2026-11-13T22:00:00Z", 38.9)
    report = replay_messages([dose, low, far], clock=lambda: NOW)
    assert not [a for a in report.alerts if a.condition == FN]


def test_a_redelivered_vital_or_dose_is_a_duplicate() -> None:
    dose = _dose("T-1", "2026-11-01T10:00:00Z")
    vital = _vital("V-1", "2026-11-12T14:00:00Z", 37.0)
    report = replay_messages([dose, dose, vital, vital], clock=lambda: NOW)
    assert report.treatments == Counter(accepted=1, duplicate=1)
    assert report.vitals == Counter(accepted=1, duplicate=1)


def test_a_broken_context_message_is_a_dead_letter() -> None:
    broken = _vital("V-1", "2026-11-12T14:00:00", 37.0)  # no zone
    report = replay_messages([broken, _dose("T-1", "not a time")], clock=lambda: NOW)
    assert sum(report.dead_letters.values()) == 2
    assert report.vitals == Counter()
    assert report.treatments == Counter()
