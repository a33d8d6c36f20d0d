"""Alerts for the bridge tests, built with the real model and its deterministic ids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from monitor.clinical.alert import Alert, Event, make_alert_id, make_dedup_key, severity_of

T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
PATIENT = "MRN-SECRET-0042"


def dedup(patient_id: str = PATIENT, condition: str = "neutropenia", episode: int = 1) -> str:
    return make_dedup_key(patient_id, condition, episode, f"{condition}-r{episode}")


def make_alert(
    event: Event,
    grade: int,
    previous_grade: int = 0,
    *,
    hours: float = 0,
    patient_id: str = PATIENT,
    condition: str = "neutropenia",
    episode: int = 1,
    ward: str | None = "oncology-4b",
    page: bool | None = None,
    result_id: str | None = None,
) -> Alert:
    """An alert of episode ``episode`` of (patient, condition), ``hours`` after T0."""
    key = dedup(patient_id, condition, episode)
    result = result_id or f"LAB-{event}-{grade}-{hours}"
    moment = T0 + timedelta(hours=hours)
    return Alert(
        alert_id=make_alert_id(key, event, grade, result),
        dedup_key=key,
        event=event,
        condition=condition,
        grade=grade,
        previous_grade=previous_grade,
        severity=severity_of(event, grade) if event != "resolved" else "info",
        page=page if page is not None else (event in ("new", "worsened") and grade >= 3),
        ctcae_version="5.0",
        patient_id=patient_id,
        result_id=result,
        collected_at=moment,
        emitted_at=moment + timedelta(seconds=2),
        value=0.8,
        unit="10^9/L",
        days_since_chemo=10,
        in_nadir_window=True,
        ward=ward,
        summary=f"ANC 0.8 x10^9/L: grade {grade} {condition} (CTCAE v5.0), {event}",
    )
