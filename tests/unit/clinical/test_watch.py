"""The watch-list summary of one patient: dose dating, latest counts, direction, fever."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.clinical.analytes import DEFAULT_LLN, Analyte
from monitor.clinical.context import Treatment, VitalSign, has_fever
from monitor.clinical.detector import Detector
from monitor.clinical.history import PatientState
from monitor.clinical.variation import NoiseModel
from monitor.clinical.watch import (
    DIRECTION_NOISE,
    PatientSummary,
    days_since,
    direction,
    last_fever,
    make_watch_id,
    patient_summary,
    phase_of,
)
from tests.builders import T0, cbc, replay

PATIENT = "MRN-3381"
DOSE = T0 - timedelta(days=8)


def summarize(
    state: PatientState, now: datetime, noise: NoiseModel = DIRECTION_NOISE
) -> PatientSummary | None:
    return patient_summary(
        state,
        PATIENT,
        now,
        window=(7, 14),
        ctcae_version="5.0",
        default_lln=DEFAULT_LLN,
        noise=noise,
    )


def course() -> PatientState:
    state, _, _ = replay(
        [
            cbc("r1", 0, patient_id=PATIENT, last_chemo_at=DOSE, neutrophils=2.4, platelets=180,
                hemoglobin=11.2),
            cbc("r2", 24, patient_id=PATIENT, last_chemo_at=DOSE, neutrophils=1.2, platelets=170,
                hemoglobin=11.1),
        ]
    )  # fmt: skip
    return state


def test_summary_has_the_latest_counts_their_grades_and_directions() -> None:
    state = course()
    now = T0 + timedelta(days=1, hours=2)
    summary = summarize(state, now)
    assert summary is not None
    assert summary.patient_id == PATIENT
    assert summary.ward == "oncology-4b"
    assert summary.chemo_at == DOSE
    assert days_since(summary.chemo_at, now) == 9
    counts = summary.counts
    assert set(counts) == {"neutrophils", "platelets", "hemoglobin"}
    anc = counts["neutrophils"]
    assert (anc.value, anc.previous, anc.grade, anc.direction) == (1.2, 2.4, 2, "falling")
    assert anc.collected_at == T0 + timedelta(hours=24)
    # 170 after 180 is -5.6%, inside the platelets' RCV (about 21%): stable. Grade 0 (>= LLN).
    assert (counts["platelets"].grade, counts["platelets"].direction) == (0, "stable")
    assert counts["hemoglobin"].grade == 1
    assert [(e.condition, e.grade) for e in summary.episodes] == [
        ("anemia", 1),
        ("neutropenia", 2),
    ]
    assert summary.fever is None


def test_no_summary_without_a_dose_or_once_past_the_window() -> None:
    state, _, _ = replay([cbc("r1", 0, patient_id=PATIENT, neutrophils=0.9)])
    assert summarize(state, T0) is None
    state = course()
    assert summarize(state, DOSE + timedelta(days=14, hours=23)) is not None
    assert summarize(state, DOSE + timedelta(days=15)) is None


def test_a_dose_from_the_treatment_feed_alone_starts_a_summary() -> None:
    detector = Detector()
    given_at = datetime(2026, 11, 20, 9, tzinfo=UTC)
    dose = Treatment(event_id="ADM-7", patient_id=PATIENT, kind="chemotherapy", given_at=given_at)
    state = detector.process_treatment(None, dose).state
    summary = summarize(state, given_at + timedelta(days=5))
    assert summary is not None
    assert summary.counts == {}
    assert summary.watch_id == make_watch_id(PATIENT, given_at.timestamp())
    gcsf = Treatment(event_id="ADM-8", patient_id=PATIENT, kind="gcsf", given_at=given_at)
    assert summarize(detector.process_treatment(None, gcsf).state, given_at) is None


def test_a_fever_is_dated_by_the_reading_that_made_it_one() -> None:
    detector = Detector()
    state = course()
    for i, (hours, celsius) in enumerate(((30, 37.2), (31, 38.6), (40, 37.0))):
        vital = VitalSign(
            observation_id=f"VS-{i}",
            patient_id=PATIENT,
            measured_at=T0 + timedelta(hours=hours),
            temperature=celsius,
        )
        state = detector.process_vital(state, vital, T0 + timedelta(hours=hours)).state
    summary = summarize(state, T0 + timedelta(hours=41))
    assert summary is not None
    assert summary.fever is not None
    assert summary.fever.at == T0 + timedelta(hours=31)
    assert summary.fever.celsius == 38.6


@pytest.mark.parametrize(
    ("days", "phase"),
    [(3, None), (4, "approaching"), (6, "approaching"), (7, "nadir"), (14, "nadir"), (15, None)],
)
def test_phase(days: int, phase: str | None) -> None:
    assert phase_of(days, (7, 14), 3) == phase


def test_direction_uses_the_reference_change_value() -> None:
    # The cited table (monitor.clinical.variation), one-sided Z 1.65. ANC: CVi 12.5 %, CVa
    # 6.25 %, log-normal: a fall of 27.7 % or a rise of 38.3 % is real. Hemoglobin: CVi 2.74 %,
    # CVa 1.37 %, symmetric: 1.65 x sqrt(2) x 3.06 % = 7.1 %.
    assert direction(Analyte.NEUTROPHILS, 3.4, 2.1) == "falling"  # -38%
    assert direction(Analyte.NEUTROPHILS, 1.0, 0.75) == "stable"  # -25%
    assert direction(Analyte.NEUTROPHILS, 1.0, 0.7) == "falling"  # -30%
    assert direction(Analyte.NEUTROPHILS, 1.0, 1.35) == "stable"  # +35%
    assert direction(Analyte.NEUTROPHILS, 1.0, 1.4) == "rising"  # +40%
    assert direction(Analyte.HEMOGLOBIN, 10.0, 9.35) == "stable"  # -6.5%
    assert direction(Analyte.HEMOGLOBIN, 10.0, 9.2) == "falling"  # -8%
    assert direction(Analyte.HEMOGLOBIN, 10.0, 10.8) == "rising"  # +8%
    # Counts are clamped to the analyte's floor (0.1 x10^9/L for ANC) before the ratio.
    assert direction(Analyte.NEUTROPHILS, 0.0, 0.0) == "stable"
    assert direction(Analyte.NEUTROPHILS, 0.0, 0.2) == "rising"


readings = st.lists(
    st.tuples(st.integers(0, 20_000), st.sampled_from([36.8, 37.9, 38.0, 38.2, 38.4, 39.1])),
    max_size=12,
).map(lambda rs: sorted({t: c for t, c in rs}.items()))


@given(readings)
def test_last_fever_agrees_with_the_fever_rule(rs: list[tuple[int, float]]) -> None:
    """A fever is found exactly when ``has_fever`` finds one, and never after the last one."""
    found = last_fever([(float(t), c, f"VS-{t}") for t, c in rs])
    assert (found is not None) == (has_fever([(float(t), c) for t, c in rs]) is not None)
    if found is not None:
        at, celsius = found
        prefix = [(float(t), c) for t, c in rs if t <= at]
        assert has_fever(prefix) is not None
        assert celsius >= 38.0


def test_the_direction_uses_the_noise_model_it_is_given() -> None:
    # ANC 2.4 -> 1.2 is -50 %: falling at the default one-sided Z 1.65 (fall RCV -27.7 %), but
    # within the noise of a site that asks for Z 4 (fall RCV about -54 %).
    state = course()
    now = T0 + timedelta(days=1, hours=2)
    wide = summarize(state, now, NoiseModel(4.0))
    assert wide is not None
    assert wide.counts["neutrophils"].direction == "stable"
    default = summarize(state, now)
    assert default is not None
    assert default.counts["neutrophils"].direction == "falling"
