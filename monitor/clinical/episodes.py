"""Episode transitions: how a condition's newly evaluated grade changes its episode.

Pure: no I/O, no clock. An episode is open while its grade is >= 1. Against the episode's
grade, a newly evaluated grade is ``new`` (from 0 or no episode to >= 1), ``worsened`` (a rise),
``improved`` (a fall that stays >= 1) or ``resolved`` (back to 0); an unchanged grade is no
transition. ``next_event`` is that decision, ``pages`` says which transitions page, and
``transition`` applies a decided transition to the patient's episodes.

With hysteresis on (``decide``, the default through ``DetectorSettings.hysteresis``), a grade
change is announced only when it is more than noise (issue 10; CLINICAL.md section 6):

1. a grade worse than the episode has reached (and every ``new``) is always announced at once;
2. a return to a grade the episode has already reached, and any improvement or resolution, is
   announced only when the value moved beyond the analyte's reference change value (RCV,
   ``variation``) from the value that set the announced state (the episode's ``anchor``);
3. when that comparison cannot be made (no anchor: state from before hysteresis; another
   analyte or method, e.g. RBC for Hgb or a derived ANC for a counted one; the anchor result
   itself corrected; no variation figures), the change is announced as without hysteresis.

Pancytopenia has no single value: each cell line is compared with its own anchor
(``Episode.line_anchors``, ``_lines_gate``).

A held-back change writes nothing to the episode, so replays stay idempotent and alert ids
deterministic. Paging is unchanged: a ``new`` or ``worsened`` at the paging grade pages; a
``worsened`` now needs a genuine fall, and an ``improved``/``resolved`` before it a genuine
rise, which is what re-arms paging for the next cycle's nadir.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, NamedTuple

from monitor.clinical.alert import Event, make_dedup_key
from monitor.clinical.analytes import Condition
from monitor.clinical.history import Anchor, Entry, Episode, PatientState
from monitor.clinical.variation import NoiseModel, relative_change

# Why a grade change was announced or held back (the alert's ``why``).
Why = Literal[
    "every-crossing",  # hysteresis off
    "worse-than-reached",  # rule 1: new, or a grade worse than the episode has reached
    "not-comparable",  # rule 3: no comparable value to test against
    "beyond-rcv",  # rule 2: moved beyond the RCV from the anchor
    "within-rcv",  # held back: within the RCV of the anchor
    "retraction",  # the lab withdrew a value the episode stood on: announced without a test
]


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
    gate: Gate | None = None  # why it was announced (None: decided without ``decide``)


@dataclass(frozen=True, slots=True)
class Gate:
    """The hysteresis decision for one evaluated grade: the event to announce (None: nothing)
    and the comparison behind it. ``change`` and ``rcv`` are fractions (-0.25: a 25 % fall);
    ``rcv`` is the limit tested in the direction of the grade change."""

    event: Event | None
    why: Why | None  # None: the grade did not change
    compared_with: float | None = None  # the anchor value, canonical unit
    change: float | None = None
    rcv: float | None = None
    rcv_exceeded: bool | None = None

    @property
    def suppressed(self) -> bool:
        return self.why == "within-rcv"


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


def decide(
    episode: Episode | None,
    new: int,
    observed: Anchor | None,
    noise: NoiseModel | None,
    comparable: bool = True,
    lines: Mapping[str, tuple[Anchor, int]] | None = None,
    closing: Event = "resolved",
) -> Gate:
    """The hysteresis rule (module docstring, rules 1-3) for a newly evaluated grade ``new``.

    ``episode``: the condition's stored episode (None: never had one); ``observed``: the value
    behind ``new`` (None when the grade is not driven by one comparable value, e.g.
    pancytopenia or a fever-driven change); ``noise``: the RCV table, None for hysteresis off
    (every crossing announced, as before issue 10); ``comparable`` False: ``observed`` is kept
    as the anchor but not tested (a fever-driven change); ``lines``: pancytopenia's cell lines
    (name -> (value, line grade)), judged each against its own anchor (``_lines_gate``);
    ``closing`` ``retracted``: the grade was re-evaluated because the lab withdrew a value the
    episode stood on, so the change is announced without an RCV test (a withdrawn value is
    not a measurement that noise could explain). Pure; raises nothing.
    """
    current = episode.grade if episode is not None else 0
    event = next_event(current, new, closing)
    if event is None:
        return Gate(None, None)
    if noise is None:
        return Gate(event, "every-crossing")
    if closing == "retracted":
        return Gate(event, "retraction")
    worst = max(episode.worst_grade, current) if episode is not None and current >= 1 else 0
    if lines is not None:
        if new > current and new > worst:
            return Gate(event, "worse-than-reached")
        anchors = episode.line_anchors if episode is not None else None
        return _lines_gate(event, new, current, lines, anchors or {}, noise)
    anchor = episode.anchor if episode is not None else None
    limits = noise.limits(observed.analyte) if observed is not None else None
    comparable = (
        comparable
        and anchor is not None
        and observed is not None
        and limits is not None
        and anchor.analyte == observed.analyte
        and anchor.derived == observed.derived
        and anchor.result_id != observed.result_id  # a corrected anchor is never noise
    )
    if not comparable:
        why: Why = "worse-than-reached" if new > worst else "not-comparable"
        return Gate(event, why)
    assert anchor is not None
    assert observed is not None
    assert limits is not None
    variation, bounds = limits
    change = relative_change(variation, anchor.value, observed.value)
    worse = new > current
    limit = bounds.down if worse else bounds.up
    exceeded = change <= limit if worse else change >= limit
    if worse and new > worst:
        why = "worse-than-reached"
    elif exceeded:
        why = "beyond-rcv"
    else:
        return Gate(None, "within-rcv", anchor.value, round(change, 4), round(limit, 4), False)
    return Gate(event, why, anchor.value, round(change, 4), round(limit, 4), exceeded)


def _lines_gate(
    event: Event,
    new: int,
    current: int,
    lines: Mapping[str, tuple[Anchor, int]],
    anchors: Mapping[str, Anchor],
    noise: NoiseModel,
) -> Gate:
    """Pancytopenia (no single value): a worsening needs a line at the new grade that fell
    beyond its RCV, an improvement any line that rose beyond it (a resolution: a line that is
    now normal). A line without a comparable anchor (none, another analyte or method, a
    corrected value) makes the change announced, as without hysteresis."""
    worse = new > current
    if worse:
        candidates = [(n, obs) for n, (obs, g) in lines.items() if g == new]
    elif new == 0:
        candidates = [(n, obs) for n, (obs, g) in lines.items() if g == 0]
    else:
        candidates = [(n, obs) for n, (obs, _) in lines.items()]
    tested: list[Gate] = []
    for name, obs in candidates:
        anchor = anchors.get(name)
        limits = noise.limits(obs.analyte)
        if (
            anchor is None
            or limits is None
            or anchor.analyte != obs.analyte
            or anchor.derived != obs.derived
            or (anchor.result_id == obs.result_id and anchor.value != obs.value)
        ):
            return Gate(event, "not-comparable")
        variation, bounds = limits
        change = round(relative_change(variation, anchor.value, obs.value), 4)
        limit = round(bounds.down if worse else bounds.up, 4)
        exceeded = change <= limit if worse else change >= limit
        if exceeded:
            return Gate(event, "beyond-rcv", anchor.value, change, limit, True)
        tested.append(Gate(None, "within-rcv", anchor.value, change, limit, False))
    return tested[0] if tested else Gate(event, "not-comparable")


def pages(event: Event, grade: int, page_grade: int) -> bool:
    """Whether a transition to ``grade`` pages: a new or worsened episode at ``page_grade``+."""
    return event in ("new", "worsened") and grade >= page_grade


def transition(
    state: PatientState,
    condition: Condition,
    grade: int,
    trigger: Trigger,
    entry: Entry,
    observed: Anchor | None = None,
    noise: NoiseModel | None = None,
    comparable: bool = True,
    lines: Mapping[str, tuple[Anchor, int]] | None = None,
    closing: Event = "resolved",
) -> Transition | None:
    """Move ``condition``'s episode to ``grade`` (set by ``entry``), opening one if none is open.

    ``observed``, ``noise`` and ``closing`` as for ``decide`` (``noise`` None: every crossing).
    Changes ``state.episodes`` in place and records a held-back result in ``state.suppressed``;
    returns the transition, or None if the grade is unchanged or the change was held back.
    """
    key = _CONDITION_KEY[condition]  # enum .value is slow
    episode = state.episodes.get(key)
    current = episode.grade if episode is not None else 0
    line_anchors = {name: obs for name, (obs, _) in lines.items()} if lines is not None else None
    if closing == "retracted" and episode is not None and current >= 1:
        # The lab withdrew a value this episode may have stood on: the grade it reached and the
        # value it is compared with are read again from what is left, so a later first reach
        # of a worse grade is announced at once (rule 1), never judged against a withdrawn
        # value. Lowering ``worst_grade`` can only announce more, never less.
        episode.worst_grade = grade
        episode.anchor = observed
        episode.line_anchors = line_anchors
    gate = decide(episode, grade, observed, noise, comparable, lines, closing)
    if gate.suppressed:
        state.mark_suppressed(key, trigger.result_id, announced=False)
        return None
    event = gate.event
    if event is None:
        return None
    if noise is not None:
        state.mark_suppressed(key, trigger.result_id, announced=True)
    if event == "new":
        number = (episode.number if episode is not None else 0) + 1
        episode = Episode(
            grade=grade,
            number=number,
            dedup_key=make_dedup_key(trigger.patient_id, key, number, trigger.source_id),
            opened_at=entry.collected_at,
            changed_at=entry.collected_at,
            worst_grade=grade,
            anchor=observed,
            line_anchors=line_anchors,
        )
        state.episodes[key] = episode
        previous_changed_at = entry.collected_at
    else:
        assert episode is not None
        previous_changed_at = episode.changed_at
        episode.worst_grade = (
            grade if closing == "retracted" else max(episode.worst_grade, current, grade)
        )
        episode.grade = grade
        episode.changed_at = entry.collected_at
        episode.anchor = observed
        episode.line_anchors = line_anchors
    return Transition(event, current, episode, previous_changed_at, gate)


_CONDITION_KEY: dict[Condition, str] = {c: c.value for c in Condition}
