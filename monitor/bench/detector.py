"""Throughput of validation + detection on one core, without Kafka."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from monitor.clinical.detector import Detector
from monitor.clinical.history import PatientState, raw_fingerprint
from monitor.clinical.model import parse_result
from monitor.sim.cohort import CohortSpec, simulate_cohort
from monitor.sim.messages import SimMessage


def cohort_values(patients: int = 400, seed: int = 11) -> list[bytes]:
    """Valid raw results of a simulated cohort, in publication order, redeliveries included."""
    messages: list[SimMessage] = simulate_cohort(
        CohortSpec(
            seed=seed,
            patients=patients,
            malformed_rate=0.0,
            hl7v2_share=0.0,
            fhir_share=0.0,
            context=False,
        )
    )
    return [m.value for m in messages]


def measure_detector(values: list[bytes], rounds: int = 3) -> tuple[float, int]:
    """Best-of-``rounds`` results per second through parse_result + Detector.process.

    Returns (results per second, alerts in one round). Each round starts from empty state.
    """
    now = datetime(2026, 12, 1, tzinfo=UTC)
    best = 0.0
    alerts = 0
    for _ in range(rounds):
        detector = Detector()
        states: dict[str, PatientState] = {}
        alerts = 0
        started = time.perf_counter()
        for value in values:
            result = parse_result(value)
            outcome = detector.process(
                states.get(result.patient_id), result, now, raw_fingerprint(value)
            )
            states[result.patient_id] = outcome.state
            alerts += len(outcome.alerts)
        elapsed = time.perf_counter() - started
        best = max(best, len(values) / elapsed)
    return best, alerts
