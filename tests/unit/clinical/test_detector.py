"""Scripted patient sequences through the episode state machine, one rule per test."""

from __future__ import annotations

from datetime import timedelta

import pytest

from monitor.clinical.detector import Detector, DetectorSettings
from monitor.clinical.model import CBCResult
from monitor.clinical.stored_state import dump_state, load_state
from tests.builders import NOW, T0, cbc, events, replay

DAY = 24.0


# --- events --------------------------------------------------------------------------------


def test_new_worsened_improved_resolved_in_order() -> None:
    _, alerts, _ = replay(
        [
            cbc("r1", 0, neutrophils=4.0),
            cbc("r2", 1 * DAY, neutrophils=1.6),  # grade 1
            cbc("r3", 2 * DAY, neutrophils=0.7),  # grade 3
            cbc("r4", 3 * DAY, neutrophils=1.2),  # grade 2
            cbc("r5", 4 * DAY, neutrophils=2.5),  # normal
        ]
    )
    assert events(alerts) == [
        ("neutropenia", "new", 1),
        ("neutropenia", "worsened", 3),
        ("neutropenia", "improved", 2),
        ("neutropenia", "resolved", 0),
    ]
    assert [a.previous_grade for a in alerts] == [0, 1, 3, 2]


def test_stable_grade_four_on_daily_counts_pages_once() -> None:
    results = [cbc(f"r{d}", d * DAY, neutrophils=0.3 + d * 0.01) for d in range(10)]
    _, alerts, _ = replay(results)
    assert events(alerts) == [("neutropenia", "new", 4)]


def test_a_new_fall_after_resolve_is_new_again_with_a_new_dedup_key() -> None:
    _, alerts, _ = replay(
        [
            cbc("r1", 0, platelets=40),
            cbc("r2", DAY, platelets=200),
            cbc("r3", 2 * DAY, platelets=60),
        ]
    )
    assert events(alerts) == [
        ("thrombocytopenia", "new", 3),
        ("thrombocytopenia", "resolved", 0),
        ("thrombocytopenia", "new", 2),
    ]
    first, resolve, second = alerts
    assert first.dedup_key == resolve.dedup_key
    assert second.dedup_key != first.dedup_key


def test_dedup_key_is_stable_for_the_whole_episode() -> None:
    _, alerts, _ = replay(
        [
            cbc("r1", 0, wbc=3.5),
            cbc("r2", DAY, wbc=1.5),
            cbc("r3", 2 * DAY, wbc=2.5),
            cbc("r4", 3 * DAY, wbc=6.0),
        ]
    )
    assert len({a.dedup_key for a in alerts}) == 1
    assert len({a.alert_id for a in alerts}) == 4


def test_ids_are_deterministic_for_the_same_input_stream() -> None:
    stream = [cbc("r1", 0, neutrophils=0.4), cbc("r2", DAY, neutrophils=2.0)]
    _, first, _ = replay(stream)
    _, second, _ = replay(stream)
    assert [(a.alert_id, a.dedup_key) for a in first] == [(a.alert_id, a.dedup_key) for a in second]
    _, other_patient, _ = replay([cbc("r1", 0, neutrophils=0.4, patient_id="P-2")])
    assert other_patient[0].dedup_key != first[0].dedup_key


# --- at-least-once, statuses, late results -----------------------------------------------------


def test_redelivery_changes_nothing_and_emits_nothing() -> None:
    detector = Detector()
    state, alerts, _ = replay([cbc("r1", 0, neutrophils=0.4)], detector)
    before = dump_state(state)
    outcome = detector.process(state, cbc("r1", 0, neutrophils=0.4), NOW)
    assert outcome.disposition == "duplicate"
    assert outcome.alerts == ()
    assert dump_state(outcome.state) == before
    assert len(alerts) == 1


def test_preliminary_is_kept_but_never_alerted_then_final_alerts() -> None:
    detector = Detector()
    state, alerts, _ = replay([cbc("r1", 0, neutrophils=0.4, status="preliminary")], detector)
    assert alerts == []
    assert [e.result_id for e in state.history] == ["r1"]
    outcome = detector.process(state, cbc("r1", 0, neutrophils=0.4), NOW)
    assert events(outcome.alerts) == [("neutropenia", "new", 4)]
    assert [e.status for e in outcome.state.history] == ["final"]


def test_correction_replaces_the_result_and_a_stale_final_is_ignored() -> None:
    detector = Detector()
    state, _, _ = replay([cbc("r1", 0, platelets=40)], detector)
    corrected = detector.process(state, cbc("r1", 0, platelets=180, status="corrected"), NOW)
    assert events(corrected.alerts) == [("thrombocytopenia", "resolved", 0)]
    assert len(corrected.state.history) == 1
    stale = detector.process(corrected.state, cbc("r1", 0, platelets=40), NOW)
    assert stale.disposition == "stale"
    assert stale.alerts == ()
    assert stale.state.history[0].readings["platelets"].value == 180


def test_late_result_emits_no_page_about_the_past() -> None:
    detector = Detector()
    state, alerts, _ = replay(
        [cbc("r1", 0, neutrophils=3.0), cbc("r3", 2 * DAY, neutrophils=2.9)], detector
    )
    late = detector.process(state, cbc("r2", DAY, neutrophils=0.2), NOW)
    assert late.disposition == "accepted"
    assert late.alerts == ()
    assert [e.result_id for e in late.state.history] == ["r1", "r2", "r3"]
    assert alerts == []


def test_late_result_updates_the_baseline() -> None:
    detector = Detector()
    state, _, _ = replay([cbc("r1", 0, neutrophils=3.0), cbc("r3", 2 * DAY, neutrophils=2.9)])
    state = detector.process(state, cbc("r2", DAY, neutrophils=4.4), NOW).state
    outcome = detector.process(state, cbc("r4", 3 * DAY, neutrophils=0.9), NOW)
    (alert,) = outcome.alerts
    assert alert.baseline == 2.9  # last normal before r4 is r3, not the late r2
    state2, _, _ = replay([cbc("r1", 0, neutrophils=3.0)])
    state2 = detector.process(state2, cbc("r2", DAY, neutrophils=4.4), NOW).state
    (alert2,) = detector.process(state2, cbc("r4", 3 * DAY, neutrophils=0.9), NOW).alerts
    assert alert2.baseline == 4.4
    assert alert2.change_from_baseline == pytest.approx(-3.5)


def test_late_result_that_is_newest_for_its_analyte_is_current_news() -> None:
    # An Hgb-only panel arrives before an earlier-drawn full count: the ANC is still the newest.
    _, alerts, _ = replay([cbc("r2", 2, hemoglobin=13.0), cbc("r1", 1, neutrophils=0.4)])
    assert events(alerts) == [("neutropenia", "new", 4)]


# --- conditions --------------------------------------------------------------------------------


def test_pancytopenia_takes_the_worst_line_and_carries_three_values() -> None:
    _, alerts, _ = replay(
        [cbc("r1", 0, hemoglobin=9.0, wbc=2.5, platelets=40)]  # anemia 2, wbc 2, platelets 3
    )
    pancy = [a for a in alerts if a.condition == "pancytopenia"]
    assert events(pancy) == [("pancytopenia", "new", 3)]
    assert pancy[0].value is None
    assert pancy[0].components is not None
    assert {k: v.value for k, v in pancy[0].components.items()} == {
        "red": 9.0,
        "white": 2.5,
        "platelets": 40.0,
    }
    assert pancy[0].severity == "critical"


def test_pancytopenia_combines_lines_within_the_window_only() -> None:
    within = [cbc("r1", 0, hemoglobin=9.0, wbc=2.5), cbc("r2", 71, platelets=40)]
    _, alerts, _ = replay(within)
    assert ("pancytopenia", "new", 3) in events(alerts)
    beyond = [cbc("r1", 0, hemoglobin=9.0, wbc=2.5), cbc("r2", 73, platelets=40)]
    _, alerts, _ = replay(beyond)
    assert "pancytopenia" not in {a.condition for a in alerts}


def test_pancytopenia_resolves_when_one_line_recovers() -> None:
    _, alerts, _ = replay(
        [
            cbc("r1", 0, hemoglobin=9.0, wbc=2.5, platelets=40),
            cbc("r2", DAY, platelets=180),
        ]
    )
    assert events(alerts, "pancytopenia") == [
        ("pancytopenia", "new", 3),
        ("pancytopenia", "resolved", 0),
    ]


def test_pancytopenia_uses_red_cell_count_without_hemoglobin() -> None:
    _, alerts, _ = replay([cbc("r1", 0, rbc=3.5, wbc=3.5, platelets=120)])
    assert ("pancytopenia", "new", 1) in events(alerts)
    assert ("anemia", "new", 1) in events(alerts)


def test_red_cell_count_at_its_limit_is_not_anemia() -> None:
    _, alerts, _ = replay([cbc("r1", 0, rbc=4.2)])
    assert alerts == []


def test_derived_anc_is_graded_and_said_to_be_derived() -> None:
    _, alerts, _ = replay([cbc("r1", 0, wbc=2.0, neutrophils_pct=38, bands_pct=2)])
    (neutro,) = [a for a in alerts if a.condition == "neutropenia"]
    assert neutro.value == 0.8
    assert neutro.grade == 3
    assert neutro.derived is True
    assert "derived" in neutro.summary


def test_measured_anc_wins_over_the_differential() -> None:
    _, alerts, _ = replay([cbc("r1", 0, wbc=5.0, neutrophils=2.5, neutrophils_pct=10)])
    assert alerts == []


def test_lymphopenia_from_absolute_count_and_not_graded_in_ctcae_6() -> None:
    _, alerts, _ = replay([cbc("r1", 0, lymphocytes=0.4)])
    assert events(alerts) == [("lymphopenia", "new", 3)]
    _, alerts6, _ = replay(
        [cbc("r1", 0, lymphocytes=0.4)], Detector(DetectorSettings(ctcae_version="6.0"))
    )
    assert alerts6 == []


def test_ctcae_version_is_on_every_alert_and_changes_grades() -> None:
    detector = Detector(DetectorSettings(ctcae_version="6.0"))
    _, alerts, _ = replay([cbc("r1", 0, neutrophils=0.4)], detector)
    assert events(alerts) == [("neutropenia", "new", 3)]  # v6: grade 3 is < 0.5 to 0.1
    assert alerts[0].ctcae_version == "6.0"
    assert "CTCAE v6.0" in alerts[0].summary


# --- lower limits --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sex", "expected", "source"),
    [
        ("male", [("anemia", "new", 1)], "default-male"),
        ("female", [], "default-female"),
        (None, [], "default-unknown-sex"),
    ],
)
def test_default_lln_by_sex(sex: str | None, expected: list[object], source: str) -> None:
    detector = Detector()
    state, alerts, _ = replay([cbc("r1", 0, hemoglobin=12.5, sex=sex)], detector)
    assert events(alerts) == expected
    out = detector.process(state, cbc("r2", 1, hemoglobin=9.5, sex=sex), NOW)
    assert out.alerts[0].lln_source == source
    assert out.alerts[0].lln == (13.0 if sex == "male" else 12.0)


def test_lab_lln_wins_over_default() -> None:
    _, alerts, _ = replay([cbc("r1", 0, neutrophils=2.0, lln={"neutrophils": 2.2})])
    assert events(alerts) == [("neutropenia", "new", 1)]
    assert alerts[0].lln_source == "lab"
    assert alerts[0].lln == 2.2


def test_lab_lln_in_the_components_unit() -> None:
    _, alerts, _ = replay(
        [
            cbc(
                "r1",
                0,
                neutrophils=1700,
                units={"neutrophils": "/uL"},
                lln={"neutrophils": 1600},
            )
        ]
    )
    assert alerts == []


def test_patient_override_beats_lab_and_default() -> None:
    # A Duffy-null patient's ANC limit of 1.2: 1.6 is her normal even though the lab says 1.8.
    override = {"neutrophils": (1.2, "10*9/L")}
    _, alerts, _ = replay(
        [cbc("r1", 0, neutrophils=1.6, lln={"neutrophils": 1.8}, overrides=override)]
    )
    assert alerts == []
    detector = Detector()
    state, _, _ = replay([cbc("r1", 0, neutrophils=1.6, overrides=override)], detector)
    (alert,) = detector.process(state, cbc("r2", DAY, neutrophils=1.1), NOW).alerts
    assert alert.lln_source == "patient"
    assert alert.lln == 1.2


def test_sex_known_from_an_earlier_result_is_used() -> None:
    _, alerts, _ = replay(
        [cbc("r1", 0, wbc=5.0, sex="male"), cbc("r2", DAY, hemoglobin=12.5, sex=None)]
    )
    assert alerts[0].lln_source == "default-male"


# --- severity and paging ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("anc", "severity", "page"),
    [
        (1.6, "info", False),
        (1.2, "warning", False),
        (0.7, "critical", True),
        (0.2, "critical", True),
    ],
)
def test_severity_by_grade(anc: float, severity: str, page: bool) -> None:
    _, alerts, _ = replay([cbc("r1", 0, neutrophils=anc)])
    assert (alerts[0].severity, alerts[0].page) == (severity, page)


def test_improved_and_resolved_are_info_and_never_page() -> None:
    _, alerts, _ = replay(
        [
            cbc("r1", 0, neutrophils=0.2),
            cbc("r2", DAY, neutrophils=0.7),
            cbc("r3", 2 * DAY, neutrophils=3),
        ]
    )
    assert [(a.event, a.severity, a.page) for a in alerts] == [
        ("new", "critical", True),
        ("improved", "info", False),
        ("resolved", "info", False),
    ]


def test_paging_grade_is_a_setting() -> None:
    detector = Detector(DetectorSettings(page_grade=2))
    _, alerts, _ = replay([cbc("r1", 0, neutrophils=1.2)], detector)
    assert alerts[0].page is True
    with pytest.raises(ValueError, match="page_grade"):
        DetectorSettings(page_grade=5)


# --- context on the alert -----------------------------------------------------------------------


def test_days_since_chemo_and_nadir_window() -> None:
    dose = T0 - timedelta(days=10)
    _, alerts, _ = replay([cbc("r1", 0, neutrophils=0.4, last_chemo_at=dose)])
    assert alerts[0].days_since_chemo == 10
    assert alerts[0].in_nadir_window is True
    assert "day 10 after chemotherapy (nadir window)" in alerts[0].summary
    _, alerts, _ = replay([cbc("r1", 0, neutrophils=0.4, last_chemo_at=T0 - timedelta(days=3))])
    assert (alerts[0].days_since_chemo, alerts[0].in_nadir_window) == (3, False)
    _, alerts, _ = replay([cbc("r1", 0, neutrophils=0.4)])
    assert (alerts[0].days_since_chemo, alerts[0].in_nadir_window) == (None, None)


def test_chemo_date_known_from_an_earlier_result() -> None:
    dose = T0 - timedelta(days=2)
    _, alerts, _ = replay(
        [cbc("r1", 0, neutrophils=4.0, last_chemo_at=dose), cbc("r2", 8 * DAY, neutrophils=0.9)]
    )
    assert (alerts[0].days_since_chemo, alerts[0].in_nadir_window) == (10, True)


def test_specimen_suspect_on_implausible_hemoglobin_jump_within_24h() -> None:
    _, alerts, _ = replay([cbc("r1", 0, hemoglobin=12.5), cbc("r2", 20, hemoglobin=9.0)])
    assert alerts[0].specimen_suspect is not None
    assert "hemoglobin" in alerts[0].specimen_suspect
    assert "specimen suspect" in alerts[0].summary
    _, alerts, _ = replay([cbc("r1", 0, hemoglobin=12.5), cbc("r2", 30, hemoglobin=9.0)])
    assert alerts[0].specimen_suspect is None
    _, alerts, _ = replay([cbc("r1", 0, hemoglobin=12.5), cbc("r2", 20, hemoglobin=9.6)])
    assert alerts[0].specimen_suspect is None


def test_specimen_suspect_on_mcv_change() -> None:
    _, alerts, _ = replay(
        [cbc("r1", 0, mcv=88, platelets=200), cbc("r2", 10, mcv=92, platelets=60)]
    )
    assert alerts[0].specimen_suspect is not None
    assert "mcv" in alerts[0].specimen_suspect


def test_baseline_is_the_last_normal_value() -> None:
    _, alerts, _ = replay(
        [
            cbc("r1", 0, platelets=260),
            cbc("r2", DAY, platelets=210),
            cbc("r3", 2 * DAY, platelets=140),
            cbc("r4", 3 * DAY, platelets=60),
        ]
    )
    assert [(a.event, a.baseline, a.change_from_baseline) for a in alerts] == [
        ("new", 210.0, -70.0),
        ("worsened", 210.0, -150.0),
    ]


def test_ward_and_summary_of_a_worsening() -> None:
    _, alerts, _ = replay([cbc("r1", 0, neutrophils=1.6), cbc("r2", DAY, neutrophils=0.8)])
    worse = alerts[-1]
    assert worse.ward == "oncology-4b"
    assert worse.summary.startswith("ANC 0.8 x10^9/L: grade 3 neutropenia (CTCAE v5.0)")
    assert "worse than grade 1 on 2026-11-01" in worse.summary


# --- history ---------------------------------------------------------------------------


def test_history_is_bounded_by_count() -> None:
    detector = Detector(DetectorSettings(history_max_results=5))
    state, _, _ = replay([cbc(f"r{i}", i, wbc=5.0) for i in range(12)], detector)
    assert [e.result_id for e in state.history] == [f"r{i}" for i in range(7, 12)]


def test_history_is_bounded_by_age() -> None:
    detector = Detector(DetectorSettings(history_max_days=10))
    state, _, _ = replay([cbc("old", 0, wbc=5.0), cbc("new", 11 * DAY, wbc=5.0)], detector)
    assert [e.result_id for e in state.history] == ["new"]


def test_history_is_ordered_by_collection_time() -> None:
    state, _, _ = replay([cbc("b", 5, wbc=5.0), cbc("a", 1, wbc=5.0), cbc("c", 9, wbc=5.0)])
    assert [e.result_id for e in state.history] == ["a", "b", "c"]


def test_state_survives_serialization() -> None:
    detector = Detector()
    state, _, _ = replay(
        [
            cbc(
                "r1",
                0,
                neutrophils=0.4,
                hemoglobin=9,
                last_chemo_at=T0,
                overrides={"neutrophils": (1.2, "/nL")},
            ),
            cbc("r2", DAY, wbc=2.0, neutrophils_pct=30),
        ],
        detector,
    )
    restored = load_state(dump_state(state))
    assert restored == state
    follow_up = cbc("r3", 2 * DAY, neutrophils=2.5)
    assert [a.alert_id for a in detector.process(restored, follow_up, NOW).alerts] == [
        a.alert_id for a in detector.process(state, follow_up, NOW).alerts
    ]


# --- results sent in parts (FHIR Observations one at a time) ----------------------------------


def part(result_id: str, hours: float, **values: float) -> CBCResult:
    return cbc(result_id, hours, **values).model_copy(update={"partial": True})


def test_parts_of_one_specimen_merge_into_one_result() -> None:
    detector = Detector()
    state, alerts, _ = replay(
        [
            part("spec-1", 0, wbc=2.5),
            part("spec-1", 0, platelets=40),
            part("spec-1", 0, hemoglobin=9.0),
        ],
        detector,
    )
    assert [e.result_id for e in state.history] == ["spec-1"]
    assert set(state.history[0].readings) == {"wbc", "platelets", "hemoglobin"}
    assert ("pancytopenia", "new", 3) in events(alerts)


def test_a_later_part_can_complete_a_derived_count() -> None:
    _, alerts, _ = replay([part("spec-1", 0, wbc=2.0), part("spec-1", 0, neutrophils_pct=30)])
    neutro = [a for a in alerts if a.condition == "neutropenia"]
    assert [(a.event, a.value, a.derived) for a in neutro] == [("new", 0.6, True)]


def test_a_repeated_part_is_a_duplicate() -> None:
    detector = Detector()
    state, _, _ = replay([part("spec-1", 0, wbc=2.5), part("spec-1", 0, platelets=40)], detector)
    outcome = detector.process(state, part("spec-1", 0, wbc=2.5), NOW)
    assert outcome.disposition == "duplicate"
    assert outcome.alerts == ()


def test_a_whole_result_still_replaces_rather_than_merges() -> None:
    state, _, _ = replay(
        [cbc("r1", 0, wbc=2.5, platelets=40), cbc("r1", 0, wbc=5.0, status="corrected")]
    )
    assert set(state.history[0].readings) == {"wbc"}
