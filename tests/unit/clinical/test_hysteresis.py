"""RCV hysteresis through the detector (issue 10): what a ward sees, behaviour by behaviour."""

from __future__ import annotations

from datetime import timedelta

import pytest

from monitor.clinical.alert import Alert
from monitor.clinical.context import VitalSign
from monitor.clinical.detector import Detector, DetectorSettings
from monitor.clinical.model import CBCResult
from monitor.clinical.stored_state import dump_state, load_state
from tests.builders import NOW, T0, cbc, events, replay

DAY = 24.0
EVERY_CROSSING = Detector(DetectorSettings(hysteresis=False))

# The ANC week: one result a day, wandering around 1.0 x10^9/L (grade 2/3 boundary).
ANC_WEEK = (2.5, 0.95, 1.05, 0.97, 1.02, 0.96, 1.01, 0.99)


def daily(analyte: str, values: tuple[float, ...], prefix: str = "r") -> list[CBCResult]:
    return [cbc(f"{prefix}{d}", d * DAY, **{analyte: v}) for d, v in enumerate(values)]


def pages(alerts: list[Alert]) -> int:
    return sum(1 for a in alerts if a.page)


# --- the examples, with exact counts ---------------------------------------------------


def test_anc_week_pages_once_with_hysteresis() -> None:
    _, alerts, _ = replay(daily("neutrophils", ANC_WEEK))
    assert events(alerts) == [("neutropenia", "new", 3)]
    assert pages(alerts) == 1


def test_anc_week_without_hysteresis_is_seven_alerts_and_four_pages() -> None:
    _, alerts, _ = replay(daily("neutrophils", ANC_WEEK), EVERY_CROSSING)
    assert len(alerts) == 7
    assert pages(alerts) == 4
    assert all(a.why == "every-crossing" for a in alerts)
    assert not any(a.hysteresis for a in alerts)


PLATELET_PING_PONG = (148.0, 152.0, 149.0, 151.0, 148.0, 152.0)  # lower limit 150


def test_platelets_around_the_lower_limit_open_once_and_never_ping_pong() -> None:
    _, alerts, _ = replay(daily("platelets", PLATELET_PING_PONG))
    assert events(alerts) == [("thrombocytopenia", "new", 1)]


def test_platelets_around_the_lower_limit_without_hysteresis_ping_pong() -> None:
    _, alerts, _ = replay(daily("platelets", PLATELET_PING_PONG), EVERY_CROSSING)
    assert [a.event for a in alerts] == ["new", "resolved"] * 3
    assert len({a.dedup_key for a in alerts}) == 3


HEMOGLOBIN_AROUND_8 = (12.5, 7.9, 8.1, 7.95, 8.05, 7.9, 8.1)


def test_hemoglobin_around_eight_pages_once_not_three_times() -> None:
    _, with_rcv, _ = replay(daily("hemoglobin", HEMOGLOBIN_AROUND_8))
    _, every, _ = replay(daily("hemoglobin", HEMOGLOBIN_AROUND_8), EVERY_CROSSING)
    assert events(with_rcv, "anemia") == [("anemia", "new", 3)]
    assert pages(with_rcv) == 1
    assert pages(every) == 3


# --- 1. a worse grade than reached always alerts at once ----------------------------------------


def test_a_first_grade_four_pages_at_once_however_small_the_step() -> None:
    _, alerts, _ = replay(daily("neutrophils", (0.52, 0.49)))  # -6 %: well within the RCV
    assert events(alerts) == [("neutropenia", "new", 3), ("neutropenia", "worsened", 4)]
    assert [a.page for a in alerts] == [True, True]
    worse = alerts[1]
    assert worse.why == "worse-than-reached"
    assert worse.compared_with == 0.52
    assert worse.rcv_exceeded is False


def test_a_return_to_a_reached_grade_within_the_rcv_is_held_back() -> None:
    # grade 4, genuinely better (grade 2), then 1.2 (grade 2) -> 0.95 (grade 3): -21 %, noise.
    state, alerts, _ = replay(daily("neutrophils", (0.3, 1.2, 0.95)))
    assert events(alerts) == [("neutropenia", "new", 4), ("neutropenia", "improved", 2)]
    assert state.episodes["neutropenia"].grade == 2
    assert state.suppressed == {"neutropenia": ["r2"]}


# --- 2. and 3. a genuine fall re-pages; a genuine recovery re-arms ------------------------------


def test_a_genuine_fall_after_a_genuine_improvement_pages_again() -> None:
    _, alerts, _ = replay(daily("neutrophils", (0.3, 1.3, 0.4)))
    assert events(alerts) == [
        ("neutropenia", "new", 4),
        ("neutropenia", "improved", 2),
        ("neutropenia", "worsened", 4),
    ]
    assert [a.page for a in alerts] == [True, False, True]
    assert alerts[2].why == "beyond-rcv"
    assert alerts[2].rcv_exceeded is True


def test_the_next_cycles_nadir_pages_after_recovery() -> None:
    cycle = (0.3, 0.6, 3.0, 4.0, 0.4)  # nadir, recovering, resolved, baseline, next nadir
    _, alerts, _ = replay([cbc(f"r{i}", i * 7 * DAY, neutrophils=v) for i, v in enumerate(cycle)])
    assert [(a.event, a.grade, a.page) for a in alerts] == [
        ("new", 4, True),
        ("improved", 3, False),
        ("resolved", 0, False),
        ("new", 4, True),
    ]
    assert alerts[0].dedup_key != alerts[3].dedup_key


# --- 4. meaningful resolution ------------------------------------------------------------------


def test_a_meaningful_fall_after_resolution_is_new() -> None:
    _, alerts, _ = replay(daily("platelets", (140.0, 200.0, 140.0)))
    assert [a.event for a in alerts] == ["new", "resolved", "new"]
    assert alerts[1].rcv_exceeded is True
    assert len({a.dedup_key for a in alerts}) == 2


def test_recovery_to_normal_resolves_an_open_episode() -> None:
    _, alerts, _ = replay(daily("neutrophils", (0.95, 3.5)))
    assert [a.event for a in alerts] == ["new", "resolved"]


# --- 5. every alert says why -------------------------------------------------------------------


def test_an_announced_change_carries_its_comparison() -> None:
    _, alerts, _ = replay(daily("neutrophils", (0.3, 1.3)))
    improved = alerts[1]
    assert improved.hysteresis is True
    assert improved.why == "beyond-rcv"
    assert improved.compared_with == 0.3
    assert improved.change == pytest.approx(1.3 / 0.3 - 1, abs=1e-4)
    assert improved.rcv == pytest.approx(0.383, abs=1e-3)  # research note: +38.3 % at Z 1.65
    assert improved.rcv_exceeded is True
    assert "reference change value" in improved.summary
    assert alerts[0].why == "worse-than-reached"
    assert alerts[0].compared_with is None


def test_an_alert_without_the_new_fields_still_reads() -> None:
    _, alerts, _ = replay(daily("neutrophils", (0.3,)))
    old = alerts[0].model_dump(
        exclude={"hysteresis", "why", "compared_with", "change", "rcv", "rcv_exceeded"}
    )
    again = Alert.model_validate(old)
    assert again.why is None
    assert again.hysteresis is False


# --- method changes and corrections are never noise ---------------------------------------------


def test_a_derived_anc_is_not_compared_with_a_counted_one() -> None:
    results = [
        cbc("r0", 0, neutrophils=0.95),
        cbc("r1", DAY, wbc=3.0, neutrophils_pct=35.0),  # derived ANC 1.05: another method
    ]
    _, alerts, _ = replay(results)
    neutropenia = [a for a in alerts if a.condition == "neutropenia"]
    assert [(a.event, a.why) for a in neutropenia] == [
        ("new", "worse-than-reached"),
        ("improved", "not-comparable"),
    ]


def test_a_corrected_anchor_is_announced() -> None:
    results = [
        cbc("r0", 0, neutrophils=0.95),
        cbc("r0", 0, status="corrected", neutrophils=1.05),
    ]
    _, alerts, _ = replay(results)
    assert [(a.event, a.why) for a in alerts] == [
        ("new", "worse-than-reached"),
        ("improved", "not-comparable"),
    ]


# --- at-least-once and stored state -------------------------------------------------------------


def test_a_redelivery_after_a_held_back_result_is_a_duplicate_that_changes_nothing() -> None:
    detector = Detector()
    results = daily("neutrophils", (0.95, 1.05))
    state, _, outcomes = replay(results, detector)
    assert outcomes[1].alerts == ()
    before = dump_state(state)
    outcome = detector.process(state, results[1], NOW)
    assert outcome.disposition == "duplicate"
    assert outcome.alerts == ()
    assert dump_state(outcome.state) == before


def test_state_round_trips_with_the_hysteresis_fields() -> None:
    state, _, _ = replay(daily("neutrophils", (0.3, 1.3, 1.0)))
    loaded = load_state(dump_state(state))
    assert loaded.episodes == state.episodes
    assert loaded.suppressed == state.suppressed
    assert loaded.episodes["neutropenia"].worst_grade == 4
    assert loaded.episodes["neutropenia"].anchor is not None


def test_state_written_before_hysteresis_loads_and_announces_the_next_change() -> None:
    import json

    state, _, _ = replay(daily("neutrophils", (0.95,)))
    data = json.loads(dump_state(state))
    del data["x"], data["s"]  # exactly the keys the earlier version wrote
    assert all(len(values) == 5 for values in data["e"].values())
    old = load_state(json.dumps(data).encode())
    assert old.episodes["neutropenia"].anchor is None
    outcome = Detector().process(old, cbc("r9", DAY, neutrophils=1.05), NOW)
    assert [(a.event, a.why) for a in outcome.alerts] == [("improved", "not-comparable")]


def test_new_state_keeps_the_earlier_versions_episode_layout() -> None:
    import json

    state, _, _ = replay(daily("neutrophils", (0.3, 1.3)))
    data = json.loads(dump_state(state))
    assert all(len(values) == 5 for values in data["e"].values())


# --- febrile neutropenia: only the ANC-driven exit is judged against the RCV --------------------


def fever(observation_id: str, hours: float, celsius: float = 38.6) -> VitalSign:
    return VitalSign(
        observation_id=observation_id,
        patient_id="P-1",
        measured_at=T0 + timedelta(hours=hours),
        temperature=celsius,
    )


def test_febrile_neutropenia_does_not_resolve_on_anc_noise() -> None:
    detector = Detector()
    state = detector.process(None, cbc("r0", 0, neutrophils=0.95), NOW).state
    opened = detector.process_vital(state, fever("v0", 1), NOW)
    assert [(a.condition, a.event, a.page) for a in opened.alerts] == [
        ("febrile_neutropenia", "new", True)
    ]
    noise = detector.process(opened.state, cbc("r1", 6, neutrophils=1.05), NOW)
    assert "febrile_neutropenia" not in {a.condition for a in noise.alerts}
    assert noise.state.episodes["febrile_neutropenia"].grade == 3


def test_febrile_neutropenia_exit_without_fever_is_announced() -> None:
    detector = Detector()
    state = detector.process(None, cbc("r0", 0, neutrophils=0.7), NOW).state
    state = detector.process_vital(state, fever("v0", 1), NOW).state
    later = detector.process(state, cbc("r1", 3 * DAY, neutrophils=0.72), NOW)  # no fever near
    assert [(a.event, a.why) for a in later.alerts if a.condition == "febrile_neutropenia"] == [
        ("resolved", "not-comparable")
    ]


# --- pancytopenia: each cell line against its own anchor ----------------------------------------


def test_pancytopenia_does_not_ping_pong_on_one_line_around_its_limit() -> None:
    results = [
        cbc(f"r{d}", d * DAY, hemoglobin=9.0, wbc=2.5, platelets=plt)
        for d, plt in enumerate(PLATELET_PING_PONG)
    ]
    _, with_rcv, _ = replay(results)
    _, every, _ = replay(results, EVERY_CROSSING)
    assert [a.event for a in with_rcv if a.condition == "pancytopenia"] == ["new"]
    assert [a.event for a in every if a.condition == "pancytopenia"] == ["new", "resolved"] * 3


def test_pancytopenia_resolves_when_a_line_genuinely_recovers() -> None:
    results = [
        cbc("r0", 0, hemoglobin=9.0, wbc=2.5, platelets=100.0),
        cbc("r1", DAY, hemoglobin=9.0, wbc=2.5, platelets=180.0),  # +80 %: beyond the RCV
    ]
    _, alerts, _ = replay(results)
    pancytopenia = [a for a in alerts if a.condition == "pancytopenia"]
    assert [(a.event, a.why, a.rcv_exceeded) for a in pancytopenia] == [
        ("new", "worse-than-reached", None),
        ("resolved", "beyond-rcv", True),
    ]
    assert pancytopenia[1].compared_with == 100.0


def test_pancytopenia_line_anchors_survive_the_state_round_trip() -> None:
    state, _, _ = replay([cbc("r0", 0, hemoglobin=9.0, wbc=2.5, platelets=100.0)])
    loaded = load_state(dump_state(state))
    lines = loaded.episodes["pancytopenia"].line_anchors
    assert lines is not None
    assert {name: a.value for name, a in lines.items()} == {
        "red": 9.0,
        "white": 2.5,
        "platelets": 100.0,
    }
