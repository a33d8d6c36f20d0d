"""What the bridge posts to Alertmanager's ``POST /api/v2/alerts``, pure.

Alertmanager identifies an alert by its labelset. ``grade`` and ``severity`` are labels (routes
and inhibition need them), so a grade change is a different Alertmanager alert: the previous
labelset is resolved (``endsAt`` = now) in the same request that fires the new one, and
Alertmanager holds exactly one firing alert per open episode. Open alerts are re-posted every
resend interval with ``endsAt`` = now + 4 intervals (as Prometheus does), so an alert whose
bridge died resolves by itself instead of firing forever.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from monitor.bridge.episodes import Change, Episode, EpisodeBook
from monitor.bridge.pseudonym import Pseudonymizer
from monitor.clinical.alert import Alert

ALERTNAME = "CytopeniaEpisode"
SOURCE = "cbc-monitor"
ENDS_AFTER_INTERVALS = 4
#: Alerts per POST when many are sent at once (start-up, keep-alive).
BATCH = 500

PostableAlert = dict[str, Any]
Labels = dict[str, str]


def labels_of(episode: Episode, pseudonym: Pseudonymizer) -> Labels:
    """Exactly the routing, grouping and inhibition labels; no patient id, no values, and no
    unkeyed hash of the patient id (the label ``dedup_key`` holds the episode's keyed
    ``episode_ref``)."""
    last = episode.last
    return {
        "alertname": ALERTNAME,
        "source": SOURCE,
        "condition": last.condition,
        "severity": episode.severity,
        "grade": str(episode.grade),
        "ward": last.ward or "unknown",
        # Keyed: the raw dedup_key is an unkeyed hash the patient id can be recovered from.
        "dedup_key": pseudonym.episode_ref(episode.dedup_key),
        "patient_ref": pseudonym(last.patient_id),
    }


def annotations_of(alert: Alert) -> dict[str, str]:
    """What a person needs on the notification; the patient id lives here, never in a label."""
    annotations = {
        "summary": alert.summary,
        "patient_id": alert.patient_id,
        "event": alert.event,
        "alert_id": alert.alert_id,
        "result_id": alert.result_id,
        "collected_at": alert.collected_at.isoformat(),
        "ctcae_version": alert.ctcae_version,
    }
    if alert.days_since_chemo is not None:
        annotations["days_since_chemo"] = str(alert.days_since_chemo)
    if alert.in_nadir_window is not None:
        annotations["in_nadir_window"] = str(alert.in_nadir_window).lower()
    return annotations


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def starts_at(episode: Episode, now: datetime) -> datetime:
    """The episode's first alert time, never in the future (Alertmanager rejects an end
    before the start, and a resolve is stamped ``now``)."""
    return min(episode.first.emitted_at, now)


class AlertmanagerOutput:
    name = "alertmanager"

    def __init__(self, pseudonym: Pseudonymizer, resend_interval: timedelta) -> None:
        if resend_interval <= timedelta(0):
            raise ValueError("the resend interval must be positive")
        self._pseudonym = pseudonym
        self.resend_interval = resend_interval

    def firing(self, episode: Episode, now: datetime) -> PostableAlert:
        return {
            "labels": labels_of(episode, self._pseudonym),
            "annotations": annotations_of(episode.last),
            "startsAt": _iso(starts_at(episode, now)),
            "endsAt": _iso(now + ENDS_AFTER_INTERVALS * self.resend_interval),
        }

    def resolved(self, episode: Episode, alert: Alert, now: datetime) -> PostableAlert:
        """End ``episode``'s labelset now, annotated with the alert that ended it."""
        return {
            "labels": labels_of(episode, self._pseudonym),
            "annotations": annotations_of(alert),
            "startsAt": _iso(starts_at(episode, now)),
            "endsAt": _iso(now),
        }

    def retired(self, change: Change, now: datetime) -> PostableAlert | None:
        """The labelset the change ends, if any: the episode resolved, or its labels changed
        (grade, severity, ward). For a resolve of an episode never seen open (its earlier
        alerts aged out of the topic) the labels are guessed from the resolve itself."""
        before, after = change.before, change.after
        if not after.open:
            return self.resolved(before or after, change.alert, now)
        if (
            before is not None
            and before.open
            and labels_of(before, self._pseudonym) != labels_of(after, self._pseudonym)
        ):
            return self.resolved(before, change.alert, now)
        return None

    def alerts_for(self, change: Change, now: datetime) -> list[PostableAlert]:
        """Resolve the labelset the change retires (if any), then fire the current one."""
        retired = self.retired(change, now)
        posted = [retired] if retired is not None else []
        if change.after.open:
            posted.append(self.firing(change.after, now))
        return posted

    def on_change(self, change: Change, now: datetime) -> list[list[PostableAlert]]:
        return [self.alerts_for(change, now)]

    def keepalive(self, book: EpisodeBook, now: datetime) -> list[list[PostableAlert]]:
        return _batches(self.firing(episode, now) for episode in book.open_episodes())

    def startup(
        self,
        book: EpisodeBook,
        since_commit: Sequence[Change],
        now: datetime,
        first_run: bool = False,
    ) -> list[list[PostableAlert]]:
        """After a restart: end every labelset retired since the group's committed offset
        (unless it fires again now), then fire every open episode. A ``first_run`` (a group
        without any commit) has nothing retired to end and fires every open episode too."""
        firing = [self.firing(episode, now) for episode in book.open_episodes()]
        live = {_key(alert["labels"]) for alert in firing}
        retired: dict[tuple[tuple[str, str], ...], PostableAlert] = {}
        for change in since_commit:
            alert = self.retired(change, now)
            if alert is not None:
                retired[_key(alert["labels"])] = alert
        ended = [alert for key, alert in retired.items() if key not in live]
        return _batches([*ended, *firing])


def _key(labels: Labels) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


def _batches(alerts: Iterable[PostableAlert]) -> list[list[PostableAlert]]:
    batches: list[list[PostableAlert]] = []
    for alert in alerts:
        if not batches or len(batches[-1]) >= BATCH:
            batches.append([])
        batches[-1].append(alert)
    return batches
