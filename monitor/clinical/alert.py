"""The alert the monitor publishes: one per change of a (patient, condition) episode."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict

Event = Literal["new", "worsened", "improved", "resolved", "retracted"]
# Events that close an episode: ``resolved`` (counts recovered) and ``retracted`` (the lab
# withdrew the result the episode stood on, so the cytopenia never was).
CLOSING_EVENTS: frozenset[str] = frozenset({"resolved", "retracted"})
Severity = Literal["info", "warning", "critical"]
LlnSource = Literal["lab", "patient", "default-female", "default-male", "default-unknown-sex"]

# Severity tiers like CDS Hooks cards (CLINICAL.md section 5): grade 1 info, 2 warning, 3-4
# critical; an improvement or a resolution is information, not a reason to wake anyone.
SEVERITY_BY_GRADE: dict[int, Severity] = {1: "info", 2: "warning", 3: "critical", 4: "critical"}


def severity_of(event: Event, grade: int) -> Severity:
    if event in ("improved", "resolved", "retracted"):
        return "info"
    return SEVERITY_BY_GRADE[grade]


def _utc_if_naive(moment: datetime) -> datetime:
    """The monitor writes zoned times; one without an offset (written by something else) is
    read as UTC, so every consumer of the alert topic compares aware datetimes only."""
    return moment if moment.utcoffset() is not None else moment.replace(tzinfo=UTC)


ZonedTime = Annotated[datetime, AfterValidator(_utc_if_naive)]


def _digest(*parts: str) -> str:
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=16).hexdigest()


def make_dedup_key(patient_id: str, condition: str, episode_number: int, opened_by: str) -> str:
    """Stable for a whole episode: its trigger, updates and resolve share it."""
    return _digest("episode", patient_id, condition, str(episode_number), opened_by)


def make_alert_id(dedup_key: str, event: str, grade: int, result_id: str) -> str:
    """Deterministic, so a consumer can drop a repeat that at-least-once delivery lets through."""
    return _digest("alert", dedup_key, event, str(grade), result_id)


class LineValue(BaseModel):
    """One cell line's value behind a pancytopenia alert."""

    model_config = ConfigDict(frozen=True)

    analyte: str
    value: float
    unit: str
    grade: int
    lln: float | None
    lln_source: LlnSource | None
    result_id: str
    collected_at: ZonedTime


class Alert(BaseModel):
    model_config = ConfigDict(frozen=True)

    alert_id: str
    dedup_key: str
    event: Event
    condition: str
    grade: int
    previous_grade: int
    severity: Severity
    page: bool
    ctcae_version: str
    patient_id: str
    result_id: str
    collected_at: ZonedTime
    emitted_at: ZonedTime
    value: float | None = None
    unit: str | None = None
    lln: float | None = None
    lln_source: LlnSource | None = None
    derived: bool = False
    baseline: float | None = None
    change_from_baseline: float | None = None
    days_since_chemo: int | None = None
    in_nadir_window: bool | None = None
    specimen_suspect: str | None = None
    ward: str | None = None
    temperature_c: float | None = None  # the fever behind a febrile neutropenia alert
    components: dict[str, LineValue] | None = None
    # Why it fired (issue 10), optional so alerts written before them still read. ``why``:
    # "every-crossing" (hysteresis off), "worse-than-reached" (a new episode or a grade worse
    # than the episode had reached: never held back), "beyond-rcv" (moved beyond the reference
    # change value from ``compared_with``), "not-comparable" (no comparable earlier value).
    # ``change`` and ``rcv`` are fractions of ``compared_with`` (-0.3: 30 % lower); ``rcv`` is
    # the limit in the direction of the change; ``rcv_exceeded`` whether the change passed it.
    hysteresis: bool = False
    why: str | None = None
    compared_with: float | None = None
    change: float | None = None
    rcv: float | None = None
    rcv_exceeded: bool | None = None
    summary: str


# One readable line per alert, for terminals (demo, tail).
_BADGE = {"critical": "CRIT", "warning": "WARN", "info": "INFO"}


def format_alert(alert: Alert) -> str:
    """``2026-11-20 08:15 CRIT worsened neutropenia G3<G1 PAGE SIM-0042 oncology-4b <summary>``."""
    grade = f"G{alert.grade}<G{alert.previous_grade}" if alert.event != "new" else f"G{alert.grade}"
    page = "PAGE" if alert.page else "    "
    when = alert.collected_at.strftime("%Y-%m-%d %H:%M")
    return (
        f"{when} {_BADGE[alert.severity]} {alert.event:<8} {alert.condition:<16} {grade:<6} {page} "
        f"{alert.patient_id} {alert.ward or '-'}  {alert.summary}"
    )
