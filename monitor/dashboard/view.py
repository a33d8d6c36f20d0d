"""The whole system's open episodes and recent alerts, folded from the alert topic (pure).

Every worker reads the whole alert topic into one ``DashboardView``, so the page shows the same
picture whichever worker serves it. Delivery is at-least-once: a repeated alert id changes
nothing, and an alert for an episode already resolved never reopens it (after a resolve, a new
fall is a new episode with a new ``dedup_key``). Memory stays bounded: the ids remembered for
those two checks are the most recent ones only.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from monitor.clinical.alert import CLOSING_EVENTS, Alert, Event, Severity, severity_of
from monitor.clinical.analytes import Condition

GRADES = (1, 2, 3, 4)
MASK = "\u2022" * 4  # four bullets
REF_PREFIX = "ref:"

# A patient reference: the paging bridge's keyed hash of a patient id (``Pseudonymizer``).
Pseudonym = Callable[[str], str]


def mask_patient_id(patient_id: str, pseudonym: Pseudonym | None) -> str:
    """What a visitor without the API token sees instead of a patient id.

    With a pseudonym key, ``ref:`` and the same keyed hash as Alertmanager's ``patient_ref``
    label (so a page can be matched to a row, yet the id cannot be read back); without one,
    four bullets, nothing of the id (part of an id, e.g. the digits of ``MRN-0042``, is the part
    that tells patients apart).
    """
    return REF_PREFIX + pseudonym(patient_id) if pseudonym is not None else MASK


@dataclass(slots=True)
class OpenEpisode:
    """One open (patient, condition) episode as the alerts describe it."""

    dedup_key: str
    patient_id: str
    condition: str
    grade: int
    ward: str | None
    opened_at: datetime  # collected_at of the result that opened it (or the first alert seen)
    last_event: Event
    last_event_at: datetime  # collected_at of the latest alert's result
    summary: str

    @property
    def severity(self) -> Severity:
        """The severity of the current grade (an ``improved`` alert itself is ``info``)."""
        return severity_of("new", self.grade)


class _Recent(OrderedDict[str, None]):
    """An insertion-ordered set that forgets its oldest members past ``limit``."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def add(self, key: str) -> None:
        self[key] = None
        self.move_to_end(key)
        while len(self) > self.limit:
            self.popitem(last=False)


class DashboardView:
    def __init__(self, recent_max: int = 200, remember: int = 50_000) -> None:
        self.episodes: dict[str, OpenEpisode] = {}
        self.recent: deque[Alert] = deque(maxlen=recent_max)
        self.alerts_applied = 0
        self._seen_ids = _Recent(remember)
        self._closed = _Recent(remember)
        # dedup_key -> (patient id, condition) of closed episodes, so the trend of an episode
        # that just resolved can still be drawn.
        self._closed_owner: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._owner_limit = min(remember, 5_000)
        # Every ward an alert has named, for the ward selector (a hospital has tens of wards).
        self.wards_seen: set[str] = set()
        self._wards_limit = 1_000

    def apply(self, alert: Alert) -> bool:
        """Fold one alert in; False when it was a repeat or concerns a closed episode."""
        if alert.alert_id in self._seen_ids:
            return False
        self._seen_ids.add(alert.alert_id)
        if alert.dedup_key in self._closed:
            return False
        self.alerts_applied += 1
        self.recent.appendleft(alert)
        if alert.ward is not None and len(self.wards_seen) < self._wards_limit:
            self.wards_seen.add(alert.ward)
        if alert.event in CLOSING_EVENTS:  # resolved, or the result behind it retracted
            self._close(alert)
            return True
        episode = self.episodes.get(alert.dedup_key)
        if episode is None:
            self.episodes[alert.dedup_key] = OpenEpisode(
                dedup_key=alert.dedup_key,
                patient_id=alert.patient_id,
                condition=alert.condition,
                grade=alert.grade,
                ward=alert.ward,
                opened_at=alert.collected_at,
                last_event=alert.event,
                last_event_at=alert.collected_at,
                summary=alert.summary,
            )
            return True
        episode.grade = alert.grade
        episode.ward = alert.ward or episode.ward
        episode.last_event = alert.event
        episode.last_event_at = alert.collected_at
        episode.summary = alert.summary
        return True

    def _close(self, alert: Alert) -> None:
        self.episodes.pop(alert.dedup_key, None)
        self._closed.add(alert.dedup_key)
        self._closed_owner[alert.dedup_key] = (alert.patient_id, alert.condition)
        while len(self._closed_owner) > self._owner_limit:
            self._closed_owner.popitem(last=False)

    def locate(self, dedup_key: str) -> tuple[str, str] | None:
        """(patient id, condition) of an open or recently closed episode, else None."""
        episode = self.episodes.get(dedup_key)
        if episode is not None:
            return episode.patient_id, episode.condition
        return self._closed_owner.get(dedup_key)

    def counts(self, ward: str | None = None) -> dict[str, dict[str, int]]:
        """Open episodes (of ``ward``, all if None) by condition and grade; every condition and
        grade, zeros included."""
        table = {c.value: {str(g): 0 for g in GRADES} for c in Condition}
        for episode in self.episodes.values():
            if ward is not None and episode.ward != ward:
                continue
            row = table.setdefault(episode.condition, {str(g): 0 for g in GRADES})
            key = str(episode.grade)
            row[key] = row.get(key, 0) + 1
        return table

    def snapshot(
        self,
        now: datetime,
        reveal: bool,
        pseudonym: Pseudonym | None,
        ward: str | None = None,
        wards: Iterable[str] = (),
    ) -> dict[str, Any]:
        """The ``/api/dashboard`` body; ids masked by ``mask_patient_id`` unless ``reveal``.

        ``ward``: only that ward's episodes, counts and alerts (all wards if None); ``wards``:
        wards seen elsewhere (the watch list), added to the selector's ``wards``.
        """

        def patient(patient_id: str) -> str:
            return patient_id if reveal else mask_patient_id(patient_id, pseudonym)

        episodes = sorted(
            (e for e in self.episodes.values() if ward is None or e.ward == ward),
            key=lambda e: (-e.grade, e.opened_at, e.dedup_key),
        )
        recent = [a for a in self.recent if ward is None or a.ward == ward]
        return {
            "generated_at": now.isoformat(),
            "masked": not reveal,
            "alerts_applied": self.alerts_applied,
            "ward": ward,
            "wards": sorted(self.wards_seen.union(wards)),
            "episodes": [
                {
                    "dedup_key": e.dedup_key,
                    "patient": patient(e.patient_id),
                    "condition": e.condition,
                    "grade": e.grade,
                    "severity": e.severity,
                    "ward": e.ward,
                    "opened_at": e.opened_at.isoformat(),
                    "open_seconds": max(0, int((now - e.opened_at).total_seconds())),
                    "last_event": e.last_event,
                    "last_event_at": e.last_event_at.isoformat(),
                    "summary": e.summary,
                }
                for e in episodes
            ],
            "counts": self.counts(ward),
            "recent": [
                {
                    "alert_id": a.alert_id,
                    "dedup_key": a.dedup_key,
                    "event": a.event,
                    "condition": a.condition,
                    "grade": a.grade,
                    "previous_grade": a.previous_grade,
                    "severity": a.severity,
                    "page": a.page,
                    "patient": patient(a.patient_id),
                    "ward": a.ward,
                    "collected_at": a.collected_at.isoformat(),
                    "emitted_at": a.emitted_at.isoformat(),
                    "summary": a.summary,
                }
                for a in recent
            ],
        }
