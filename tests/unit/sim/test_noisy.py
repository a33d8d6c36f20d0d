"""The noisy cohort (issue 10): deterministic, valid, near the boundaries, with real nadirs."""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict

import pytest

from monitor.bench.hysteresis import measure_fatigue
from monitor.clinical.model import parse_result
from monitor.sim.noisy import NoisySpec, simulate_noisy_cohort

SMALL = NoisySpec(seed=3, patients=30, days=42)


def test_same_spec_same_bytes() -> None:
    assert simulate_noisy_cohort(SMALL) == simulate_noisy_cohort(SMALL)
    assert simulate_noisy_cohort(SMALL) != simulate_noisy_cohort(NoisySpec(seed=4, patients=30))


def test_every_result_is_valid_and_each_patients_results_are_in_time_order() -> None:
    seen: dict[str, list[float]] = defaultdict(list)
    for message in simulate_noisy_cohort(SMALL):
        result = parse_result(message.value)
        assert message.key == result.patient_id.encode()
        seen[result.patient_id].append(result.collected_ts)
    assert len(seen) == 30
    assert all(times == sorted(times) for times in seen.values())


def test_steady_patients_scatter_like_their_cvi_and_cva() -> None:
    # Steady patients sit at one set point: the spread of their ANC is the combined CV,
    # sqrt(12.5^2 + 6.25^2) = 14.0 % (variation.py), within sampling error.
    spec = NoisySpec(seed=5, patients=40, days=42, steady_share=1.0)
    by_patient: dict[str, list[float]] = defaultdict(list)
    for message in simulate_noisy_cohort(spec):
        data = json.loads(message.value)
        by_patient[data["patient_id"]].append(data["components"]["neutrophils"]["value"])
    cvs = [statistics.stdev(v) / statistics.mean(v) for v in by_patient.values()]
    assert statistics.median(cvs) == pytest.approx(0.14, abs=0.03)


def test_treated_patients_reach_a_nadir_and_recover() -> None:
    spec = NoisySpec(seed=5, patients=20, days=42, steady_share=0.0)
    by_patient: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for message in simulate_noisy_cohort(spec):
        data = json.loads(message.value)
        by_patient[data["patient_id"]].append(
            (data["collected_at"], data["components"]["platelets"]["value"])
        )
    for values in by_patient.values():
        counts = [v for _, v in values]
        assert min(counts) < 0.7 * max(counts)  # a nadir, far below the baseline
        assert counts[-1] > min(counts) or counts[0] > min(counts)


def test_hysteresis_reduces_alerts_and_pages_without_delaying_any_page() -> None:
    values = [m.value for m in simulate_noisy_cohort(SMALL)]
    off = measure_fatigue(values, hysteresis=False)
    on = measure_fatigue(values, hysteresis=True)
    assert on.alerts < off.alerts
    assert on.pages <= off.pages
    assert off.held_back == 0
    assert on.held_back > 0
    assert on.unpaged == 0
    assert off.unpaged == 0
    assert on.delays_h
    assert max(on.delays_h) == 0.0
    assert math.isclose(max(off.delays_h), 0.0)
