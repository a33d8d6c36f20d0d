"""PagerDuty Events API v2 payloads for sites that page through it, pure.

A ``trigger`` for every alert with ``page: true`` (new or worsened at or above the paging grade)
and a ``resolve`` when an episode that was triggered resolves, both under the episode's
``dedup_key``: PagerDuty folds the triggers of one episode into one incident and the resolve
closes it. Nothing identifies the patient by default: ``patient_ref`` (the keyed hash) goes in
``custom_details``, and the summary the monitor writes never names the patient.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from monitor.alert import Alert
from monitor.bridge.episodes import Change, EpisodeBook
from monitor.bridge.pseudonym import Pseudonymizer

SOURCE = "cbc-monitor"
EVENT_CLASS = "cytopenia"
SUMMARY_MAX = 1024  # PagerDuty truncates longer summaries anyway
#: Our severity -> PagerDuty's (the same names; PagerDuty also knows "error").
PD_SEVERITY = {"critical": "critical", "warning": "warning", "info": "info"}

Event = dict[str, Any]


def trigger_event(routing_key: str, alert: Alert, patient_ref: str) -> Event:
    details: dict[str, Any] = {
        "patient_ref": patient_ref,
        "condition": alert.condition,
        "grade": alert.grade,
        "previous_grade": alert.previous_grade,
        "event": alert.event,
        "ward": alert.ward or "unknown",
        "ctcae_version": alert.ctcae_version,
        "alert_id": alert.alert_id,
        "result_id": alert.result_id,
        "collected_at": alert.collected_at.isoformat(),
    }
    if alert.days_since_chemo is not None:
        details["days_since_chemo"] = alert.days_since_chemo
    if alert.in_nadir_window is not None:
        details["in_nadir_window"] = alert.in_nadir_window
    return {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": alert.dedup_key,
        "client": SOURCE,
        "payload": {
            "summary": alert.summary[:SUMMARY_MAX],
            "source": SOURCE,
            "severity": PD_SEVERITY[alert.severity],
            "timestamp": alert.emitted_at.isoformat(),
            "component": alert.condition,
            "group": alert.ward or "unknown",
            "class": EVENT_CLASS,
            "custom_details": details,
        },
    }


def resolve_event(routing_key: str, dedup_key: str) -> Event:
    return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": dedup_key}


class PagerDutyOutput:
    name = "pagerduty"

    def __init__(self, routing_key: str, pseudonym: Pseudonymizer) -> None:
        if not routing_key:
            raise ValueError("a PagerDuty routing key is required")
        self._routing_key = routing_key
        self._pseudonym = pseudonym

    def on_change(self, change: Change, now: datetime) -> list[Event]:
        alert = change.alert
        if change.after.open:
            if alert.page:
                return [trigger_event(self._routing_key, alert, self._pseudonym(alert.patient_id))]
            return []
        # Resolve what was triggered; when the episode's start is no longer on the topic we
        # cannot know, and a resolve of an unknown dedup_key does nothing at PagerDuty.
        if change.before is None or change.after.paged:
            return [resolve_event(self._routing_key, alert.dedup_key)]
        return []

    def keepalive(self, book: EpisodeBook, now: datetime) -> list[Event]:
        """PagerDuty incidents do not time out: nothing to refresh."""
        return []

    def startup(
        self, book: EpisodeBook, since_commit: Sequence[Change], now: datetime
    ) -> list[Event]:
        """The events of the alerts consumed since the group's commit, in order; a re-sent
        trigger of an open incident is folded into it by its ``dedup_key``. The triggers of an
        episode that has resolved meanwhile are left out (nobody is paged for an episode that
        is already over); its resolve is sent, in case a trigger went out before the stop."""
        closed = {change.alert.dedup_key for change in since_commit if not change.after.open}
        return [
            event
            for change in since_commit
            for event in self.on_change(change, now)
            if event["event_action"] == "resolve" or change.alert.dedup_key not in closed
        ]
