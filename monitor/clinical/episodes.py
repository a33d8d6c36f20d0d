"""Episode transitions: how a condition's newly evaluated grade changes its episode.

Pure: no I/O, no clock. An episode is open while its grade is >= 1. Against the episode's
grade, a newly evaluated grade is ``new`` (from 0 or no episode to >= 1), ``worsened`` (a rise),
``improved`` (a fall that stays >= 1) or ``resolved`` (back to 0); an unchanged grade is no
transition. ``next_event`` is that decision, ``pages`` says which transitions page, and
``transition`` applies a decided transition to the patient's episodes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from monitor.clinical.alert import Event, make_dedup_key
from monitor.clinical.analytes import Condition
from monitor.clinical.history import Entry, Episode, PatientState


class Trigger(NamedTuple):
    """What an alert answers to: the message that caused it, and the result it is about."""

    patient_id: str
    source_id: str  # result id, or the vital sign's observation id
    result_id: str
    collected_at: datetime


@dataclass(frozen=True, slots=True)
class Transition:
    """One episode change: the event, the grade before it, and when that grade was set."""

    event: Event
    previous_grade: int
    episode: Episode
    previous_changed_at: float  # collected_at of the result that set the previous grade


def next_event(current: int, new: int, closing: Event = "resolved") -> Event | None:
    """The transition from the episode's grade ``current`` (0: none open) to ``new``, if any.

    ``closing`` is the event of a fall to 0: ``resolved``, or ``retracted`` when the fall comes
    from the lab withdrawing the result the episode stood on.
    """
    if new == current:
        return None
    if current == 0:
        return "new"
    return "worsened" if new > current else ("improved" if new >= 1 else closing)


def pages(event: Event, grade: int, page_grade: int) -> bool:
    """Whether a transition to ``grade`` pages: a new or worsened episode at ``page_grade``+."""
    return event in ("new", "worsened") and grade >= page_grade


def transition(
    state: PatientState,
    condition: Condition,
    grade: int,
    trigger: Trigger,
    entry: Entry,
    closing: Event = "resolved",
) -> Transition | None:
    """Move ``condition``'s episode to ``grade`` (set by ``entry``), opening one if none is open.

    Changes ``state.episodes`` in place; returns the transition, or None if the grade is
    unchanged. ``closing`` names a fall to 0 (see ``next_event``).
    """
    episode = state.episodes.get(condition.value)
    current = episode.grade if episode is not None else 0
    event = next_event(current, grade, closing)
    if event is None:
        return None
    if event == "new":
        number = (episode.number if episode is not None else 0) + 1
        episode = Episode(
            grade=grade,
            number=number,
            dedup_key=make_dedup_key(
                trigger.patient_id, condition.value, number, trigger.source_id
            ),
            opened_at=entry.collected_at,
            changed_at=entry.collected_at,
        )
        state.episodes[condition.value] = episode
        previous_changed_at = entry.collected_at
    else:
        assert episode is not None
        previous_changed_at = episode.changed_at
        episode.grade = grade
        episode.changed_at = entry.collected_at
    return Transition(event, current, episode, previous_changed_at)
