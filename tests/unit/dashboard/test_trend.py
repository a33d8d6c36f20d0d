"""One episode's trend: the analytes of its condition, graded as the detector grades them."""

from __future__ import annotations

from datetime import timedelta

from monitor.dashboard.trend import episode_trend
from tests.builders import T0, cbc, replay


def test_neutropenia_trend_points_carry_the_alerts_grades() -> None:
    state, alerts, _ = replay(
        [
            cbc("r1", 0, neutrophils=2.4, platelets=200),
            cbc("r2", 24, neutrophils=0.8, platelets=190),
            cbc("r3", 48, neutrophils=0.4),
        ]
    )
    assert [(a.condition, a.grade) for a in alerts] == [("neutropenia", 3), ("neutropenia", 4)]
    (series,) = episode_trend(state, "neutropenia")
    assert series["analyte"] == "neutrophils"
    assert series["label"] == "ANC"
    assert series["unit"] == "10^9/L"
    assert [p["value"] for p in series["points"]] == [2.4, 0.8, 0.4]
    assert [p["grade"] for p in series["points"]] == [0, 3, 4]
    assert series["points"][1]["at"] == (T0 + timedelta(hours=24)).isoformat()
    assert series["lln"] == 1.8  # the default: no lab limit was sent
    assert series["thresholds"] == [
        {"grade": 4, "below": 0.5},
        {"grade": 3, "below": 1.0},
        {"grade": 2, "below": 1.5},
    ]


def test_lab_and_patient_limits_come_before_the_default() -> None:
    state, _, _ = replay([cbc("r1", 0, neutrophils=1.7, lln={"neutrophils": 2.0})])
    (series,) = episode_trend(state, "neutropenia")
    assert series["lln"] == 2.0
    assert series["points"][0]["grade"] == 1
    state, _, _ = replay(
        [cbc("r1", 0, neutrophils=1.3, overrides={"neutrophils": (1.2, "10*9/L")})]
    )
    (series,) = episode_trend(state, "neutropenia")
    assert series["lln"] == 1.2
    assert series["points"][0]["grade"] == 2  # below 1.5 whatever the LLN


def test_pancytopenia_draws_its_three_lines_and_skips_empty_ones() -> None:
    state, _, _ = replay([cbc("r1", 0, hemoglobin=7.5, wbc=1.5, platelets=40)])
    analytes = [s["analyte"] for s in episode_trend(state, "pancytopenia")]
    assert analytes == ["hemoglobin", "wbc", "platelets"]
    assert episode_trend(state, "lymphopenia") == []
    assert episode_trend(state, "no-such-condition") == []


def test_version_6_does_not_grade_lymphocytes() -> None:
    state, _, _ = replay([cbc("r1", 0, lymphocytes=0.3)])
    (series,) = episode_trend(state, "lymphopenia", version="6.0")
    assert series["points"][0]["grade"] is None
    assert series["thresholds"] == []
    (series,) = episode_trend(state, "lymphopenia", version="5.0")
    assert series["points"][0]["grade"] == 3


def test_results_held_back_as_within_the_rcv_are_marked() -> None:
    values = (2.5, 0.95, 1.05, 0.97, 1.02)  # the ANC week, first days
    state, alerts, _ = replay([cbc(f"r{d}", d * 24, neutrophils=v) for d, v in enumerate(values)])
    assert len(alerts) == 1
    (series,) = episode_trend(state, "neutropenia")
    # 1.05 and 1.02 are grade 2 against an announced grade 3: held back; 0.97 is grade 3 as
    # announced (no change to hold back).
    assert [p["suppressed"] for p in series["points"]] == [False, False, True, False, True]
    assert episode_trend(state, "thrombocytopenia") == []
