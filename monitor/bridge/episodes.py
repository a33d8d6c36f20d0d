"""The episodes the bridge knows about: the last alert of each ``dedup_key``, pure.

The alert topic is the bridge's only memory. On start the bridge replays it into an
:class:`EpisodeBook`; afterwards every consumed alert goes through :meth:`EpisodeBook.apply`,
which returns the :class:`Change` an output turns into HTTP requests, or ``None`` when the alert
changes nothing (a repeat delivered again, or a late alert for an episode already closed).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from monitor.clinical.alert import CLOSING_EVENTS, SEVERITY_BY_GRADE, Alert, Severity

#: Closed episodes remembered (so late repeats of their alerts are recognised); oldest go first.
CLOSED_EPISODES_KEPT = 100_000


@dataclass(frozen=True)
class Episode:
    """One (patient, condition) episode as the alerts seen so far describe it."""

    dedup_key: str
    first: Alert  # the earliest alert seen: its emission time is the episode's start
    last: Alert
    alert_ids: frozenset[str]
    paged: bool  # some alert of the episode had ``page: true``

    @property
    def open(self) -> bool:
        return self.last.event not in CLOSING_EVENTS

    @property
    def grade(self) -> int:
        """The current grade; for a closed episode, the grade it had when it was resolved (or
        its result retracted)."""
        return self.last.grade if self.open else self.last.previous_grade

    @property
    def severity(self) -> Severity:
        """The alert's own severity for new/worsened; an improved episode stays open at the
        severity of its new grade (its alert says ``info``: nothing to wake anyone for, but the
        cytopenia is still there)."""
        if self.last.event in ("new", "worsened"):
            return self.last.severity
        return SEVERITY_BY_GRADE.get(self.grade, "info")


@dataclass(frozen=True)
class Change:
    """What one alert did to its episode; ``before`` is None for an episode seen first."""

    alert: Alert
    before: Episode | None
    after: Episode


class EpisodeBook:
    def __init__(self, closed_kept: int = CLOSED_EPISODES_KEPT) -> None:
        self._open: dict[str, Episode] = {}
        self._closed: dict[str, Episode] = {}  # insertion order = closing order
        self._closed_kept = closed_kept

    def get(self, dedup_key: str) -> Episode | None:
        return self._open.get(dedup_key) or self._closed.get(dedup_key)

    def open_episodes(self) -> Iterator[Episode]:
        return iter(list(self._open.values()))

    def __len__(self) -> int:
        return len(self._open)

    def apply(self, alert: Alert) -> Change | None:
        before = self.get(alert.dedup_key)
        if before is not None and _ignored(before, alert):
            return None
        after = Episode(
            dedup_key=alert.dedup_key,
            first=before.first if before else alert,
            last=alert,
            alert_ids=(before.alert_ids if before else frozenset()) | {alert.alert_id},
            paged=(before.paged if before else False) or alert.page,
        )
        if after.open:
            self._open[alert.dedup_key] = after
        else:
            self._open.pop(alert.dedup_key, None)
            self._closed[alert.dedup_key] = after
            while len(self._closed) > self._closed_kept:
                del self._closed[next(iter(self._closed))]
        return Change(alert=alert, before=before, after=after)


def _ignored(episode: Episode, alert: Alert) -> bool:
    """A repeat (same alert id), anything after the episode closed (a new fall opens a new
    episode with a new ``dedup_key``), or an alert older than the last one applied on both
    clocks (its result and its emission), which a redelivery after a rebalance can produce."""
    if alert.alert_id in episode.alert_ids or not episode.open:
        return True
    last = episode.last
    return alert.collected_at < last.collected_at and alert.emitted_at < last.emitted_at
