"""Hypothesis properties of the RCV hysteresis (issue 10), against every-crossing behaviour."""

from __future__ import annotations

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.clinical.alert import Alert
from monitor.clinical.analytes import Analyte
from monitor.clinical.detector import Detector, DetectorSettings
from monitor.clinical.model import CBCResult
from monitor.clinical.variation import VARIATION, rcv
from tests.builders import cbc, replay
from tests.unit.clinical.test_detector_properties import streams

common = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
EVERY_CROSSING = DetectorSettings(hysteresis=False)
CONDITION = {"neutrophils": "neutropenia", "platelets": "thrombocytopenia"}
RANGE = {"neutrophils": (0.05, 4.0), "platelets": (5.0, 260.0)}


@st.composite
def noisy_series(draw: st.DrawFn) -> tuple[str, list[CBCResult]]:
    """One analyte's daily results, wandering on and across the grade boundaries."""
    analyte = draw(st.sampled_from(sorted(RANGE)))
    low, high = RANGE[analyte]
    values = draw(st.lists(st.floats(min_value=low, max_value=high), min_size=1, max_size=30))
    return analyte, [cbc(f"r{i:03d}", i * 24.0, **{analyte: v}) for i, v in enumerate(values)]


def grades_of(results: list[CBCResult], condition: str) -> list[int | None]:
    """Each result's evaluated grade, as it arrives in order."""
    detector, state, grades = Detector(EVERY_CROSSING), None, []
    for result in results:
        state = detector.process(state, result).state
        grades.append(detector.current_grades(state)[condition])  # type: ignore[index]
    return grades


def alerts_for(alerts: list[Alert], condition: str) -> list[Alert]:
    return [a for a in alerts if a.condition == condition]


@common
@given(series=noisy_series())
def test_a_the_worst_grade_of_an_episode_is_alerted_at_the_first_result_reaching_it(
    series: tuple[str, list[CBCResult]],
) -> None:
    analyte, results = series
    condition = CONDITION[analyte]
    _, alerts, _ = replay(results)
    alerts = alerts_for(alerts, condition)
    grades = grades_of(results, condition)
    index = {r.result_id: i for i, r in enumerate(results)}
    starts = [index[a.result_id] for a in alerts if a.event == "new"]
    for k, start in enumerate(starts):
        end = starts[k + 1] if k + 1 < len(starts) else len(results)
        segment = [g or 0 for g in grades[start:end]]
        worst = max(segment)
        first = start + segment.index(worst)
        at_first = [a for a in alerts if index[a.result_id] == first]
        assert [a.grade for a in at_first] == [worst]
        assert at_first[0].event in ("new", "worsened")


@common
@given(stream=streams())
def test_b_hysteresis_never_pages_more_than_every_crossing(stream: list[CBCResult]) -> None:
    _, with_rcv, _ = replay(stream)
    _, every, _ = replay(stream, Detector(EVERY_CROSSING))
    assert sum(a.page for a in with_rcv) <= sum(a.page for a in every)


@common
@given(series=noisy_series())
def test_b_single_analyte_series_never_page_more(series: tuple[str, list[CBCResult]]) -> None:
    _, results = series
    _, with_rcv, _ = replay(results)
    _, every, _ = replay(results, Detector(EVERY_CROSSING))
    assert sum(a.page for a in with_rcv) <= sum(a.page for a in every)


@st.composite
def within_rcv(draw: st.DrawFn) -> tuple[str, list[float]]:
    """Values whose every pairwise change is within the analyte's RCV (a band of that width)."""
    analyte = draw(st.sampled_from(sorted(RANGE)))
    limits = rcv(VARIATION[Analyte(analyte)])
    width = 0.99 * min(math.log1p(limits.up), -math.log1p(limits.down))
    low, high = RANGE[analyte]
    base = draw(
        st.floats(min_value=max(low, 0.2 if analyte == "neutrophils" else 6.0), max_value=high)
    )
    steps = draw(st.lists(st.floats(min_value=0, max_value=1), min_size=1, max_size=30))
    return analyte, [base * math.exp(u * width) for u in steps]


@common
@given(case=within_rcv())
def test_c_changes_within_the_rcv_announce_nothing_after_the_first_alert_but_new_worst_grades(
    case: tuple[str, list[float]],
) -> None:
    # Behaviour 1 wins over (c): a grade worse than reached is always announced, even within the
    # RCV; everything else after the first alert (improvements, resolutions, re-crossings into
    # grades already reached) stays silent.
    analyte, values = case
    results = [cbc(f"r{i:03d}", i * 24.0, **{analyte: v}) for i, v in enumerate(values)]
    _, alerts, _ = replay(results)
    later = alerts_for(alerts, CONDITION[analyte])[1:]
    assert all(a.event == "worsened" and a.why == "worse-than-reached" for a in later)
    grades = [a.grade for a in alerts_for(alerts, CONDITION[analyte])]
    assert grades == sorted(set(grades))


@common
@given(case=within_rcv())
def test_c_changes_within_the_rcv_from_the_lowest_first_value_emit_at_most_one_alert(
    case: tuple[str, list[float]],
) -> None:
    analyte, values = case
    values = [min(values), *values]  # the worst value first: nothing later can be worse
    results = [cbc(f"r{i:03d}", i * 24.0, **{analyte: v}) for i, v in enumerate(values)]
    _, alerts, _ = replay(results)
    assert len(alerts_for(alerts, CONDITION[analyte])) <= 1
