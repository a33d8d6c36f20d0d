"""PagerDuty Events API v2 payloads for sites that page through it, pure.

A ``trigger`` for every alert with ``page: true`` (new or worsened at or above the paging grade)
and a ``resolve`` when an episode that was triggered resolves, both under the episode's
``episode_ref`` (a keyed hash of its ``dedup_key``) as PagerDuty's ``dedup_key``: PagerDuty
folds the triggers of one episode into one incident and the resolve closes it. Nothing
identifies the patient: ``patient_ref`` (the keyed hash) goes in ``custom_details``, the summary
the monitor writes never names the patient, and neither the alert's own ``dedup_key`` nor its
``alert_id``/``result_id`` are sent (the unkeyed ``dedup_key`` with the condition and the result
id is enough to brute-force the patient id).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from monitor.bridge.episodes import Change, EpisodeBook
from monitor.bridge.pseudonym import Pseudonymizer
from monitor.clinical.alert import Alert, Severity

SOURCE = "cbc-monitor"
EVENT_CLASS = "cytopenia"
SUMMARY_MAX = 1024  # PagerDuty truncates longer summaries anyway
#: Our severity -> PagerDuty's (the same names; PagerDuty also knows "error").
PD_SEVERITY = {"critical": "critical", "warning": "warning", "info": "info"}

Event = dict[str, Any]


def trigger_event(
    routing_key: str,
    alert: Alert,
    patient_ref: str,
    episode_ref: str,
    severity: Severity | None = None,
) -> Event:
    """``severity`` overrides the alert's (a start-up re-trigger of an improved episode)."""
    details: dict[str, Any] = {
        "patient_ref": patient_ref,
        "condition": alert.condition,
        "grade": alert.grade,
        "previous_grade": alert.previous_grade,
        "event": alert.event,
        "ward": alert.ward or "unknown",
        "ctcae_version": alert.ctcae_version,
        "collected_at": alert.collected_at.isoformat(),
    }
    if alert.days_since_chemo is not None:
        details["days_since_chemo"] = alert.days_since_chemo
    if alert.in_nadir_window is not None:
        details["in_nadir_window"] = alert.in_nadir_window
    return {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": episode_ref,
        "client": SOURCE,
        "payload": {
            "summary": alert.summary[:SUMMARY_MAX],
            "source": SOURCE,
            "severity": PD_SEVERITY[severity or alert.severity],
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

    def trigger(self, alert: Alert, severity: Severity | None = None) -> Event:
        return trigger_event(
            self._routing_key,
            alert,
            self._pseudonym(alert.patient_id),
            self._pseudonym.episode_ref(alert.dedup_key),
            severity,
        )

    def resolve(self, dedup_key: str) -> Event:
        return resolve_event(self._routing_key, self._pseudonym.episode_ref(dedup_key))

    def on_change(self, change: Change, now: datetime) -> list[Event]:
        alert = change.alert
        if change.after.open:
            return [self.trigger(alert)] if alert.page else []
        # Resolve what was triggered; when the episode's start is no longer on the topic we
        # cannot know, and a resolve of an unknown dedup_key does nothing at PagerDuty.
        if change.before is None or change.after.paged:
            return [self.resolve(alert.dedup_key)]
        return []

    def keepalive(self, book: EpisodeBook, now: datetime) -> list[Event]:
        """PagerDuty incidents do not time out: nothing to refresh."""
        return []

    def startup(
        self,
        book: EpisodeBook,
        since_commit: Sequence[Change],
        now: datetime,
        first_run: bool = False,
    ) -> list[Event]:
        """The events of the alerts consumed since the group's commit, in order; a re-sent
        trigger of an open incident is folded into it by its ``dedup_key``. The triggers of an
        episode that has resolved meanwhile are left out (nobody is paged for an episode that
        is already over); its resolve is sent, in case a trigger went out before the stop.

        ``first_run`` (the group has no commit at all: a first deployment, or its offsets
        expired): this group never sent anything, so every open episode that has paged is
        triggered now, at its current severity (PagerDuty folds a trigger of an incident that
        is still open into it)."""
        if first_run:
            return [
                self.trigger(episode.last, episode.severity)
                for episode in book.open_episodes()
                if episode.paged
            ]
        closed = {change.alert.dedup_key for change in since_commit if not change.after.open}
        return [
            event
            for change in since_commit
            for event in self.on_change(change, now)
            if event["event_action"] == "resolve" or change.alert.dedup_key not in closed
        ]
