"""Replay a sequence of raw messages through the detector, offline (no Kafka).

Used by the offline demo, the benchmark, and to compute the alerts a cohort is expected to
produce, which the integration tests compare with what the running service publishes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pydantic import ValidationError

from monitor.alert import Alert
from monitor.detector import Detector
from monitor.history import PatientState, raw_fingerprint
from monitor.model import describe_validation_error, parse_result


@dataclass
class ReplayReport:
    alerts: list[Alert] = field(default_factory=list)
    results: int = 0
    dispositions: Counter[str] = field(default_factory=Counter)
    invalid: Counter[str] = field(default_factory=Counter)  # reason -> count
    states: dict[str, PatientState] = field(default_factory=dict)


def replay_values(
    values: Iterable[bytes],
    detector: Detector | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    on_alert: Callable[[Alert], None] | None = None,
) -> ReplayReport:
    """Validate and detect each raw canonical JSON value in order, patient by patient."""
    detector = detector or Detector()
    report = ReplayReport()
    for value in values:
        report.results += 1
        try:
            result = parse_result(value)
        except ValidationError as exc:
            report.invalid[describe_validation_error(exc)] += 1
            continue
        outcome = detector.process(
            report.states.get(result.patient_id), result, clock(), raw_fingerprint(value)
        )
        report.states[result.patient_id] = outcome.state
        report.dispositions[outcome.disposition] += 1
        for alert in outcome.alerts:
            report.alerts.append(alert)
            if on_alert is not None:
                on_alert(alert)
    return report
