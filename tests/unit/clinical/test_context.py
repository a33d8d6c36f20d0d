"""Treatments and temperatures: febrile neutropenia, nadir dating, transfusions explaining rises."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from pydantic import ValidationError

from monitor.clinical.context import Treatment, VitalSign, has_fever
from monitor.clinical.detector import Detector
from monitor.clinical.history import PatientState
from monitor.clinical.stored_state import dump_state, load_state
from tests.builders import NOW, T0, cbc, events, replay

HOUR = 3600.0


def vital(obs_id: str, hours: float, temperature: float, unit: str = "Cel") -> VitalSign:
    return VitalSign(
        observation_id=obs_id,
        patient_id="P-1",
        measured_at=T0 + timedelta(hours=hours),
        temperature=temperature,
        unit=unit,  # type: ignore[arg-type]
    )


def dose(event_id: str, at: datetime, kind: str = "chemotherapy") -> Treatment:
    return Treatment(event_id=event_id, patient_id="P-1", kind=kind, given_at=at)  # type: ignore[arg-type]


# --- the fever rule (CTCAE v5.0) ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("readings", "fever"),
    [
        ([(0, 38.4)], 38.4),  # a single reading above 38.3 C
        ([(0, 38.3)], None),  # 38.3 is not above 38.3
        ([(0, 38.0), (1800, 38.1), (3700, 38.0)], 38.1),  # >= 38.0 for more than an hour
        ([(0, 38.0), (3600, 38.0)], None),  # exactly an hour is not more than an hour
        ([(0, 38.0), (1800, 37.6), (3700, 38.0)], None),  # broken by a normal reading
        ([(0, 37.9), (4000, 37.9)], None),
        ([], None),
    ],
)
def test_fever_rule(readings: list[tuple[float, float]], fever: float | None) -> None:
    assert has_fever(readings) == fever


def test_fahrenheit_is_converted_and_implausible_values_are_rejected() -> None:
    assert vital("v1", 0, 101.3, "[degF]").celsius == pytest.approx(38.5)
    with pytest.raises(ValidationError, match="plausible"):
        vital("v1", 0, 101.3, "Cel")


# --- febrile neutropenia ------------------------------------------------------------------------


def test_fever_after_a_low_anc_is_febrile_neutropenia() -> None:
    detector = Detector()
    state, alerts, _ = replay([cbc("r1", 0, neutrophils=0.6)], detector)
    assert events(alerts) == [("neutropenia", "new", 3)]
    outcome = detector.process_vital(state, vital("v1", 5, 38.6), NOW)
    (alert,) = outcome.alerts
    assert (alert.condition, alert.event, alert.grade) == ("febrile_neutropenia", "new", 3)
    assert alert.severity == "critical"
    assert alert.page is True
    assert alert.result_id == "r1"
    assert alert.temperature_c == 38.6
    assert "febrile neutropenia" in alert.summary
    assert "temperature 38.6 C" in alert.summary


def test_low_anc_after_a_fever_is_febrile_neutropenia() -> None:
    detector = Detector()
    state = detector.process_vital(None, vital("v1", 0, 38.9), NOW).state
    outcome = detector.process(state, cbc("r1", 10, neutrophils=0.8), NOW)
    assert ("febrile_neutropenia", "new", 3) in events(outcome.alerts)


def test_fever_far_from_the_anc_is_not_febrile_neutropenia() -> None:
    detector = Detector()
    state = detector.process_vital(None, vital("v1", 0, 38.9), NOW).state
    outcome = detector.process(state, cbc("r1", 30, neutrophils=0.8), NOW)
    assert "febrile_neutropenia" not in {a.condition for a in outcome.alerts}


def test_fever_with_anc_at_one_is_not_febrile_neutropenia() -> None:
    detector = Detector()
    state = detector.process_vital(None, vital("v1", 0, 38.9), NOW).state
    outcome = detector.process(state, cbc("r1", 2, neutrophils=1.0), NOW)
    assert "febrile_neutropenia" not in {a.condition for a in outcome.alerts}


def test_febrile_neutropenia_resolves_when_the_anc_recovers() -> None:
    detector = Detector()
    state, _, _ = replay([cbc("r1", 0, neutrophils=0.6)], detector)
    state = detector.process_vital(state, vital("v1", 1, 38.6), NOW).state
    outcome = detector.process(state, cbc("r2", 48, neutrophils=1.6), NOW)
    fn = [a for a in outcome.alerts if a.condition == "febrile_neutropenia"]
    assert [(a.event, a.grade, a.severity) for a in fn] == [("resolved", 0, "info")]


def test_a_repeated_temperature_is_a_duplicate() -> None:
    detector = Detector()
    state, _, _ = replay([cbc("r1", 0, neutrophils=0.6)], detector)
    first = detector.process_vital(state, vital("v1", 1, 38.6), NOW)
    again = detector.process_vital(first.state, vital("v1", 1, 38.6), NOW)
    assert len(first.alerts) == 1
    assert (again.disposition, again.alerts) == ("duplicate", ())


def test_sustained_fever_builds_up_over_readings() -> None:
    detector = Detector()
    state, _, _ = replay([cbc("r1", 0, neutrophils=0.4)], detector)
    first = detector.process_vital(state, vital("v1", 2, 38.1), NOW)
    second = detector.process_vital(first.state, vital("v2", 2.5, 38.2), NOW)
    third = detector.process_vital(second.state, vital("v3", 3.1, 38.0), NOW)
    assert (first.alerts, second.alerts) == ((), ())
    assert events(third.alerts) == [("febrile_neutropenia", "new", 3)]


# --- treatments ---------------------------------------------------------------------------------


def test_chemotherapy_from_the_treatment_feed_dates_the_nadir() -> None:
    detector = Detector()
    state = detector.process_treatment(None, dose("c1", T0 - timedelta(days=11))).state
    state = detector.process_treatment(state, dose("c0", T0 - timedelta(days=32))).state
    (alert,) = detector.process(state, cbc("r1", 0, neutrophils=0.4), NOW).alerts
    assert (alert.days_since_chemo, alert.in_nadir_window) == (11, True)


def test_a_dose_after_the_specimen_does_not_date_it() -> None:
    detector = Detector()
    state = detector.process_treatment(None, dose("c1", T0 + timedelta(days=1))).state
    (alert,) = detector.process(state, cbc("r1", 0, neutrophils=0.4), NOW).alerts
    assert alert.days_since_chemo is None


def test_a_repeated_treatment_is_a_duplicate() -> None:
    detector = Detector()
    state = detector.process_treatment(None, dose("c1", T0)).state
    assert detector.process_treatment(state, dose("c1", T0)).disposition == "duplicate"
    assert len(state.doses) == 1


def test_a_transfusion_explains_a_hemoglobin_rise() -> None:
    detector = Detector()
    state, _, _ = replay([cbc("r1", 0, hemoglobin=6.5)], detector)
    state = detector.process_treatment(
        state, dose("t1", T0 + timedelta(hours=4), "rbc_transfusion")
    ).state
    (alert,) = detector.process(state, cbc("r2", 12, hemoglobin=9.8), NOW).alerts
    assert alert.event == "improved"
    assert alert.specimen_suspect is None
    _, untransfused, _ = replay([cbc("r1", 0, hemoglobin=6.5), cbc("r2", 12, hemoglobin=9.8)])
    assert untransfused[-1].specimen_suspect is not None


def test_a_transfusion_does_not_explain_a_fall() -> None:
    detector = Detector()
    state, _, _ = replay([cbc("r1", 0, hemoglobin=13.0)], detector)
    state = detector.process_treatment(
        state, dose("t1", T0 + timedelta(hours=4), "rbc_transfusion")
    ).state
    (alert,) = detector.process(state, cbc("r2", 12, hemoglobin=9.5), NOW).alerts
    assert alert.specimen_suspect is not None


def test_context_survives_serialization() -> None:
    detector = Detector()
    state = detector.process_treatment(PatientState(), dose("c1", T0)).state
    state = detector.process_vital(state, vital("v1", 1, 38.0), NOW).state
    restored = load_state(dump_state(state))
    assert restored.doses == state.doses
    assert restored.temperatures == state.temperatures
