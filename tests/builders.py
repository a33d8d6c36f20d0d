"""A tiny kit for building canonical results and replaying them through the detector."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from monitor.clinical.alert import Alert
from monitor.clinical.detector import Detector, Outcome
from monitor.clinical.history import PatientState
from monitor.clinical.model import CBCResult

T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
NOW = datetime(2026, 12, 31, tzinfo=UTC)

DEFAULT_UNITS = {
    "hemoglobin": "g/dL",
    "hematocrit": "%",
    "rbc": "10*12/L",
    "mcv": "fL",
    "wbc": "10*9/L",
    "neutrophils": "10*9/L",
    "neutrophils_pct": "%",
    "bands_pct": "%",
    "lymphocytes": "10*9/L",
    "lymphocytes_pct": "%",
    "platelets": "10*9/L",
}


def cbc(
    result_id: str,
    hours: float = 0,
    *,
    patient_id: str = "P-1",
    sex: str | None = "female",
    status: str = "final",
    ward: str | None = "oncology-4b",
    last_chemo_at: datetime | None = None,
    units: dict[str, str] | None = None,
    lln: dict[str, float] | None = None,
    overrides: dict[str, tuple[float, str]] | None = None,
    **values: float,
) -> CBCResult:
    """A result collected ``hours`` after T0 with the given component values."""
    units = {**DEFAULT_UNITS, **(units or {})}
    components: dict[str, Any] = {}
    for analyte, value in values.items():
        component: dict[str, Any] = {"value": value, "unit": units[analyte]}
        if lln and analyte in lln:
            component["lln"] = lln[analyte]
        components[analyte] = component
    context: dict[str, Any] = {"ward": ward}
    if last_chemo_at is not None:
        context["last_chemo_at"] = last_chemo_at.isoformat()
    if overrides:
        context["lln_overrides"] = {a: {"value": v, "unit": u} for a, (v, u) in overrides.items()}
    return CBCResult.model_validate(
        {
            "result_id": result_id,
            "patient_id": patient_id,
            "collected_at": (T0 + timedelta(hours=hours)).isoformat(),
            "status": status,
            "sex": sex,
            "components": components,
            "context": context,
        }
    )


def replay(
    results: Iterable[CBCResult],
    detector: Detector | None = None,
    state: PatientState | None = None,
) -> tuple[PatientState, list[Alert], list[Outcome]]:
    """Feed results in order; return the final state, every alert and every outcome."""
    detector = detector or Detector()
    alerts: list[Alert] = []
    outcomes: list[Outcome] = []
    for result in results:
        outcome = detector.process(state, result, NOW)
        state = outcome.state
        alerts.extend(outcome.alerts)
        outcomes.append(outcome)
    return state or PatientState(), alerts, outcomes


def events(alerts: Iterable[Alert], condition: str | None = None) -> list[tuple[str, str, int]]:
    """(condition, event, grade) triples, optionally for one condition."""
    return [
        (a.condition, a.event, a.grade)
        for a in alerts
        if condition is None or a.condition == condition
    ]
