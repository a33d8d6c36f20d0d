"""The wards' nadir watch lists, folded from the patient-summaries topic (pure).

Every worker reads the whole compacted summaries topic into one ``WatchList``: the latest
summary of each patient, keyed by patient id. A tombstone (a key with no value) removes the
patient. Who is on a list is decided when the list is asked for: the patient's days since the
last dose must fall in the nadir window or the lead days before it (``monitor.clinical.watch``),
so a patient joins and leaves as the days pass. A summary whose dose is already past the window
is dropped from memory at once (it can only come back with a new dose, i.e. a new summary).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from monitor.clinical.watch import PatientSummary, days_since, phase_of
from monitor.dashboard.view import Pseudonym, mask_patient_id

FEBRILE_WITHIN = timedelta(hours=24)  # "a fever recorded in the last 24 h" (the issue)


class WatchList:
    def __init__(self, window: tuple[int, int] = (7, 14), lead_days: int = 3) -> None:
        self.window = window
        self.lead_days = lead_days
        self.patients: dict[str, PatientSummary] = {}
        self.summaries_applied = 0

    def apply(self, patient_id: str, summary: PatientSummary | None, now: datetime) -> None:
        """Fold one record of the topic: a summary replaces the patient's, None removes it."""
        self.summaries_applied += 1
        if summary is None or days_since(summary.chemo_at, now) > self.window[1]:
            self.patients.pop(patient_id, None)
            return
        self.patients[patient_id] = summary

    def wards(self) -> set[str]:
        return {s.ward for s in self.patients.values() if s.ward is not None}

    def locate(self, watch_id: str) -> str | None:
        """The patient id of a row of the list, else None."""
        for patient_id, summary in self.patients.items():
            if summary.watch_id == watch_id:
                return patient_id
        return None

    def watched(self, now: datetime, ward: str | None = None) -> list[PatientSummary]:
        """The patients in or just before the window, of ``ward`` (all wards if None), most at
        risk first: febrile (a fever in the last 24 h) first, then lowest ANC (none known
        last), then latest in the cycle."""
        self._forget_past(now)
        shown = [
            s
            for s in self.patients.values()
            if (ward is None or s.ward == ward)
            and phase_of(days_since(s.chemo_at, now), self.window, self.lead_days) is not None
        ]
        return sorted(shown, key=lambda s: rank(s, now))

    def _forget_past(self, now: datetime) -> None:
        past = [p for p, s in self.patients.items() if days_since(s.chemo_at, now) > self.window[1]]
        for patient_id in past:
            del self.patients[patient_id]

    def snapshot(
        self, now: datetime, ward: str | None, reveal: bool, pseudonym: Pseudonym | None
    ) -> dict[str, Any]:
        """The ``/api/watchlist`` body; ids masked by ``mask_patient_id`` unless ``reveal``."""
        first, last = self.window
        return {
            "generated_at": now.isoformat(),
            "masked": not reveal,
            "ward": ward,
            "window": {"first_day": first, "last_day": last, "lead_days": self.lead_days},
            "patients": [
                row(
                    s,
                    now,
                    s.patient_id if reveal else mask_patient_id(s.patient_id, pseudonym),
                    phase_of(days_since(s.chemo_at, now), self.window, self.lead_days),
                )
                for s in self.watched(now, ward)
            ],
        }


def febrile(summary: PatientSummary, now: datetime) -> bool:
    return summary.fever is not None and now - summary.fever.at <= FEBRILE_WITHIN


def rank(summary: PatientSummary, now: datetime) -> tuple[bool, float, int, str]:
    anc = summary.counts.get("neutrophils")
    return (
        not febrile(summary, now),
        anc.value if anc is not None else float("inf"),
        -days_since(summary.chemo_at, now),
        summary.watch_id,
    )


def row(summary: PatientSummary, now: datetime, patient: str, phase: str | None) -> dict[str, Any]:
    """One patient of ``/api/watchlist``."""
    return {
        "watch_id": summary.watch_id,
        "patient": patient,
        "ward": summary.ward,
        "days_since_chemo": days_since(summary.chemo_at, now),
        "phase": phase,
        "chemo_at": summary.chemo_at.isoformat(),
        "counts": {
            name: {
                "value": c.value,
                "unit": c.unit,
                "grade": c.grade,
                "collected_at": c.collected_at.isoformat(),
                "previous": c.previous,
                "direction": c.direction,
            }
            for name, c in summary.counts.items()
        },
        "febrile": febrile(summary, now),
        "fever": (
            {"at": summary.fever.at.isoformat(), "celsius": summary.fever.celsius}
            if summary.fever is not None
            else None
        ),
        "episodes": [e.model_dump() for e in summary.episodes],
    }
