"""The episode state machine: a new result in, the patient's new state and alerts out.

Pure: no Faust, no asyncio, no I/O, no clock (the caller passes ``now``).

How a result becomes events:

1. A redelivery (same result id, same content) changes nothing. A stale version (a final after a
   correction of the same id) is ignored. Otherwise the result enters the history, replacing an
   earlier version of the same specimen, and the history is pruned by age and count.
2. Each condition that the result can bear on is evaluated on the history as it now stands: a
   single-analyte condition on the latest alertable result carrying its analyte; pancytopenia
   on the latest value of each cell line within a window before the latest such result. A late
   result (older than a newer one carrying the same analyte) therefore updates history and
   baselines but cannot change a grade: it emits no page about the past. A condition known to
   stay at grade 0 with no episode open (``evaluation.known_zero``) is not evaluated.
3. The evaluated grade is compared with the condition's episode: 0/unknown to >= 1 is ``new``,
   a rise ``worsened``, a fall that stays >= 1 ``improved``, back to 0 ``resolved``; an
   unchanged or unknown grade emits nothing. With ``hysteresis`` (the default), a change that
   is within the analyte's reference change value of the value that set the announced state
   is held back, except a grade worse than the episode has reached (``episodes.decide``).

This module is the facade that orders those steps; the steps live beside it: evaluation (step 2)
in ``evaluation``, the transition (step 3) in ``episodes``, and the alert it emits in ``summary``.

Over 400 lines on purpose: the facade's entry points (a result, its retraction, a temperature,
a treatment) share one per-result bookkeeping (history merge, context, the loop over conditions
with its delta check); what a grade is and how an episode changes live in ``evaluation``,
``episodes`` and ``summary``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from monitor.clinical.alert import Alert, Event
from monitor.clinical.analytes import DEFAULT_LLN, Analyte, Condition, Sex
from monitor.clinical.context import FEBRILE_ANC_BELOW, Treatment, VitalSign
from monitor.clinical.delta import DELTA_LIMITS, specimen_suspect
from monitor.clinical.episodes import Trigger, transition
from monitor.clinical.evaluation import (
    CONDITION_ANALYTES,
    DAY_S,
    HOUR_S,
    LINE_CONDITIONS,
    ZERO_KNOWABLE,
    Evaluator,
    Graded,
    known_zero,
)
from monitor.clinical.grading import CtcaeVersion
from monitor.clinical.history import (
    STATUS_RANK,
    Anchor,
    Entry,
    PatientState,
    entry_from_result,
    merge_part,
    without,
)
from monitor.clinical.model import CBCResult
from monitor.clinical.summary import AlertWriter
from monitor.clinical.units import to_canonical
from monitor.clinical.variation import DEFAULT_Z, VARIATION, NoiseModel, Variation

Disposition = Literal["accepted", "duplicate", "stale"]


class DetectorSettings(BaseModel):
    """What the clinical logic is configured to do; every field has a cited default."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ctcae_version: CtcaeVersion = "5.0"
    page_grade: int = Field(default=3, ge=1, le=4)
    history_max_days: float = Field(default=90, gt=0)
    history_max_results: int = Field(default=50, ge=2)
    pancytopenia_window_hours: float = Field(default=72, gt=0)
    nadir_window_days: tuple[int, int] = (7, 14)
    delta_window_hours: float = Field(default=24, gt=0)
    # How close in time the fever and the low ANC must be (CLINICAL.md s.2, "close in time").
    febrile_window_hours: float = Field(default=24, gt=0)
    # A transfusion this long before a rise explains it (CLINICAL.md s.4).
    transfusion_explains_hours: float = Field(default=24, gt=0)
    default_lln: dict[Analyte, dict[Sex, float]] = Field(default_factory=lambda: DEFAULT_LLN)
    delta_limits: dict[Analyte, float] = Field(default_factory=lambda: DELTA_LIMITS)
    # RCV hysteresis (issue 10; variation.py): announce only changes beyond the noise, except a
    # grade worse than the episode has reached. False: every grade crossing, as before.
    hysteresis: bool = True
    rcv_z: float = Field(default=DEFAULT_Z, gt=0, le=4)  # one-sided 95 %, variation.py
    variation: dict[Analyte, Variation] = Field(default_factory=lambda: VARIATION)

    @model_validator(mode="after")
    def _ordered_nadir_window(self) -> DetectorSettings:
        first, last = self.nadir_window_days
        if not 0 <= first <= last:
            raise ValueError("nadir_window_days must be (first, last) with 0 <= first <= last")
        return self


@dataclass(frozen=True, slots=True)
class Outcome:
    state: PatientState
    alerts: tuple[Alert, ...]
    disposition: Disposition


_TEMPERATURES_KEPT_S = 7 * DAY_S


class Detector:
    def __init__(self, settings: DetectorSettings | None = None) -> None:
        self.settings = settings or DetectorSettings()
        self._max_age_s = self.settings.history_max_days * DAY_S
        self._delta_window_s = self.settings.delta_window_hours * HOUR_S
        self._evaluator = Evaluator(
            ctcae_version=self.settings.ctcae_version,
            default_lln=self.settings.default_lln,
            pancytopenia_window_hours=self.settings.pancytopenia_window_hours,
            febrile_window_hours=self.settings.febrile_window_hours,
            transfusion_explains_hours=self.settings.transfusion_explains_hours,
        )
        self._noise = (
            NoiseModel(self.settings.rcv_z, self.settings.variation)
            if self.settings.hysteresis
            else None
        )
        self._writer = AlertWriter(
            ctcae_version=self.settings.ctcae_version,
            page_grade=self.settings.page_grade,
            nadir_window_days=self.settings.nadir_window_days,
            default_lln=self.settings.default_lln,
            hysteresis=self.settings.hysteresis,
        )

    # --- public ---------------------------------------------------------------------------

    def process(
        self,
        state: PatientState | None,
        result: CBCResult,
        now: datetime | None = None,
        content_hash: str | None = None,
    ) -> Outcome:
        """Fold one validated result into the patient's state (changed in place and returned).

        ``content_hash`` (for example ``history.raw_fingerprint`` of the message bytes) tells a
        redelivery from a new version; by default it is computed from the result's fields.
        """
        state = state if state is not None else PatientState()
        self._evaluator.forget()
        entry = entry_from_result(result, content_hash)
        if result.status == "retracted":
            return self._retract(state, result, entry, None, now)
        tombstone = state.retraction(entry.result_id)
        if tombstone is not None:
            # The specimen was retracted: a redelivered or older version stays out; only a new
            # version more settled than the one removed (a re-issued correction) comes back.
            _, removed_status, removed_content = tombstone
            if entry.fingerprint == removed_content or STATUS_RANK[entry.status] <= STATUS_RANK.get(
                removed_status, 0
            ):
                return Outcome(state, (), "stale")
            state.forget_retraction(entry.result_id)
        touched = set(entry.readings)
        index = state.find(entry.result_id)
        previous: Entry | None = None
        if index is not None:
            previous = state.history[index]
            if previous.fingerprint == entry.fingerprint:
                return Outcome(state, (), "duplicate")
            if STATUS_RANK[entry.status] < STATUS_RANK[previous.status]:
                return Outcome(state, (), "stale")
            if result.partial:
                entry = merge_part(previous, entry)
            if result.retracted:
                entry = without(entry, result.retracted)
            if result.partial and (entry.readings, entry.status) == (
                previous.readings,
                previous.status,
            ):
                return Outcome(state, (), "duplicate")  # a part already merged in
            touched = set(entry.readings) | set(previous.readings)
        elif result.retracted:
            entry = without(entry, result.retracted)
        if result.retracted and not entry.readings:
            if index is None:
                return Outcome(state, (), "stale")  # values withdrawn from nothing we hold
            # Every value of the specimen is withdrawn: the whole specimen is retracted.
            return self._retract(state, result, entry, index, now)
        if index is not None:
            del state.history[index]
        self._update_context(state, result, entry)
        state.insert(entry)
        state.prune(self._max_age_s, self.settings.history_max_results)
        if not entry.alertable or state.find(entry.result_id) is None:
            return Outcome(state, (), "accepted")

        emitted_at = now or datetime.now(UTC)
        suspect: str | None = None
        suspect_checked = False
        alerts: list[Alert] = []
        # What the lab withdrew, with the counts derived from it (a withdrawn differential
        # takes its derived ANC along).
        withdrawn = (
            set(previous.readings) - set(entry.readings)
            if result.retracted and previous is not None
            else set()
        )
        newest = state.history[-1] is entry
        normal_line = False  # a pancytopenia line of the newest entry (this one) is normal
        for condition, analytes in _CONDITION_ANALYTES:
            if analytes.isdisjoint(touched):
                continue
            reevaluated = withdrawn and not withdrawn.isdisjoint(analytes)
            if (
                condition in ZERO_KNOWABLE
                and not reevaluated
                and known_zero(state, condition, normal_line)
                and _unchanged(state, condition, 0)
            ):
                continue  # what evaluating would end in
            graded = self._evaluator.evaluate(state, condition)
            if reevaluated:
                assert previous is not None
                # A value this condition stood on was withdrawn: re-evaluated like a retraction.
                trigger = Trigger(
                    result.patient_id, entry.result_id, entry.result_id, result.collected_at
                )
                alert = self._reevaluate(state, condition, graded, trigger, previous, emitted_at)
                if alert is not None:
                    alerts.append(alert)
                continue
            if graded is None:
                continue
            if (
                newest
                and not graded.grade
                and graded.entry is entry
                and condition in LINE_CONDITIONS
            ):
                normal_line = True
            episode = state.episodes.get(_CONDITION_KEY[condition])
            if graded.grade == (episode.grade if episode is not None else 0):
                continue  # unchanged (``_unchanged``): no transition, nothing below could alert
            if not suspect_checked:
                suspect = specimen_suspect(
                    entry,
                    state.history,
                    self._delta_window_s,
                    self.settings.delta_limits,
                    self._evaluator.explained_rises(state, entry),
                )
                suspect_checked = True
            trigger = Trigger(
                result.patient_id, entry.result_id, entry.result_id, result.collected_at
            )
            alert = self._transition(state, condition, graded, trigger, entry, emitted_at, suspect)
            if alert is not None:
                alerts.append(alert)
        return Outcome(state, tuple(alerts), "accepted")

    def _retract(
        self,
        state: PatientState,
        result: CBCResult,
        entry: Entry,
        index: int | None,
        now: datetime | None,
    ) -> Outcome:
        """Withdraw a whole specimen from the history and re-evaluate what it bore on.

        A redelivered retraction (nothing left to remove, already remembered) is a duplicate.
        The conditions its analytes drive are evaluated again on the history without it: an
        episode whose basis is gone (no value left, or a normal one) closes with ``retracted``;
        one an earlier abnormal value still supports moves to that value's grade
        (``improved``/``worsened``; ``new`` if the retracted result had resolved it).
        """
        if index is None:
            index = state.find(entry.result_id)
        if index is None:
            if state.retraction(entry.result_id) is not None:
                return Outcome(state, (), "duplicate")
            # Retracted before it arrived: remember it, so the original stays out when it comes.
            state.remember_retraction(entry.result_id, "final", "")
            return Outcome(state, (), "accepted")
        removed = state.history.pop(index)
        state.remember_retraction(removed.result_id, removed.status, removed.fingerprint)
        if not removed.alertable:
            return Outcome(state, (), "accepted")
        emitted_at = now or datetime.now(UTC)
        trigger = Trigger(
            result.patient_id, removed.result_id, removed.result_id, result.collected_at
        )
        alerts: list[Alert] = []
        for condition in Condition:
            if not (CONDITION_ANALYTES[condition] & set(removed.readings)):
                continue
            graded = self._evaluator.evaluate(state, condition)
            alert = self._reevaluate(state, condition, graded, trigger, removed, emitted_at)
            if alert is not None:
                alerts.append(alert)
        return Outcome(state, tuple(alerts), "accepted")

    def _reevaluate(
        self,
        state: PatientState,
        condition: Condition,
        graded: Graded | None,
        trigger: Trigger,
        removed: Entry,
        emitted_at: datetime,
    ) -> Alert | None:
        """The episode of ``condition`` after values of ``removed`` were withdrawn."""
        if graded is None:
            # Nothing left to grade on: the episode's basis is gone.
            graded = Graded(0, removed, None, None, None, None)
        return self._transition(
            state, condition, graded, trigger, graded.entry, emitted_at, None, closing="retracted"
        )

    def process_vital(
        self, state: PatientState | None, vital: VitalSign, now: datetime | None = None
    ) -> Outcome:
        """Record a temperature; it can start or end a febrile neutropenia."""
        state = state if state is not None else PatientState()
        added = state.add_temperature(
            vital.measured_at.timestamp(), vital.celsius, vital.observation_id, _TEMPERATURES_KEPT_S
        )
        if not added:
            return Outcome(state, (), "duplicate")
        self._evaluator.forget()
        graded = self._evaluator.evaluate(state, Condition.FEBRILE_NEUTROPENIA)
        if graded is None:
            return Outcome(state, (), "accepted")
        anc = graded.entry
        trigger = Trigger(
            vital.patient_id,
            vital.observation_id,
            anc.result_id,
            datetime.fromtimestamp(anc.collected_at, UTC),
        )
        alert = self._transition(
            state,
            Condition.FEBRILE_NEUTROPENIA,
            graded,
            trigger,
            anc,
            now or datetime.now(UTC),
            None,
        )
        return Outcome(state, (alert,) if alert is not None else (), "accepted")

    def process_treatment(self, state: PatientState | None, treatment: Treatment) -> Outcome:
        """Record a treatment: chemotherapy dates the nadir, a transfusion explains a rise."""
        state = state if state is not None else PatientState()
        added = state.add_dose(
            treatment.given_at.timestamp(), treatment.kind, treatment.event_id, self._max_age_s
        )
        return Outcome(state, (), "accepted" if added else "duplicate")

    def current_grades(self, state: PatientState) -> dict[Condition, int | None]:
        """Every condition's grade as the history stands now (for inspection and tests)."""
        grades: dict[Condition, int | None] = {}
        self._evaluator.forget()
        for condition in Condition:
            graded = self._evaluator.evaluate(state, condition)
            grades[condition] = graded.grade if graded is not None else None
        return grades

    # --- transition -----------------------------------------------------------------------

    def _transition(
        self,
        state: PatientState,
        condition: Condition,
        graded: Graded,
        trigger: Trigger,
        entry: Entry,
        emitted_at: datetime,
        suspect: str | None,
        closing: Event = "resolved",
    ) -> Alert | None:
        """Move the condition's episode to the evaluated grade; the alert if it changed."""
        if closing != "retracted" and _unchanged(state, condition, graded.grade):
            # What episodes.transition returns for an unchanged grade, cheaper. Not after a
            # retraction: transition then re-reads the episode's reached grade and anchor.
            return None
        observed, comparable = observed_value(condition, graded)
        change = transition(
            state,
            condition,
            graded.grade,
            trigger,
            entry,
            observed,
            self._noise,
            comparable,
            observed_lines(graded),
            closing,
        )
        if change is None:
            return None
        return self._writer.alert(
            state, condition, change, graded, trigger, entry, emitted_at, suspect
        )

    # --- context ----------------------------------------------------------------------------

    def _update_context(self, state: PatientState, result: CBCResult, entry: Entry) -> None:
        context = result.context
        if entry.last_chemo_at is not None and (
            state.last_chemo_at is None or entry.last_chemo_at > state.last_chemo_at
        ):
            state.last_chemo_at = entry.last_chemo_at
        if context.ward is not None and (
            state.ward_at is None or entry.collected_at >= state.ward_at
        ):
            state.ward, state.ward_at = context.ward, entry.collected_at
        if context.lln_overrides and (
            state.overrides_at is None or entry.collected_at >= state.overrides_at
        ):
            state.lln_overrides = {
                analyte: to_canonical(analyte, o.value, o.unit)
                for analyte, o in context.lln_overrides.items()
            }
            state.overrides_at = entry.collected_at


_CONDITION_ANALYTES: tuple[tuple[Condition, frozenset[Analyte]], ...] = tuple(
    (c, CONDITION_ANALYTES[c]) for c in Condition
)
_CONDITION_KEY: dict[Condition, str] = {c: c.value for c in Condition}
_ANALYTE_KEY: dict[Analyte, str] = {a: a.value for a in Analyte}  # enum .value is slow


def _unchanged(state: PatientState, condition: Condition, grade: int) -> bool:
    """Whether ``grade`` is the episode's grade already (0 with no episode): then
    ``episodes.transition`` changes nothing and returns None (``next_event`` is None)."""
    episode = state.episodes.get(_CONDITION_KEY[condition])
    return grade == (episode.grade if episode is not None else 0)


def observed_value(condition: Condition, graded: Graded) -> tuple[Anchor | None, bool]:
    """The one value behind a graded condition, and whether hysteresis may compare it.

    (None, False) for pancytopenia (three lines, no single value: ``observed_lines``). A
    febrile neutropenia keeps its ANC as the anchor, but only an exit by ANC >= 1.0 is
    compared: a change the fever drives is not a lab value whose noise can be judged.
    """
    reading = graded.reading
    if graded.lines is not None or reading is None or graded.analyte is None:
        return None, False
    anchor = Anchor(
        _ANALYTE_KEY[graded.analyte], reading.value, graded.entry.result_id, reading.derived
    )
    if condition is Condition.FEBRILE_NEUTROPENIA:
        return anchor, graded.grade == 0 and reading.value >= FEBRILE_ANC_BELOW
    return anchor, True


def observed_lines(graded: Graded) -> dict[str, tuple[Anchor, int]] | None:
    """Pancytopenia's cell lines: name -> (the line's value, its grade); None otherwise."""
    if graded.lines is None:
        return None
    lines: dict[str, tuple[Anchor, int]] = {}
    for name, line in graded.lines.items():
        if line.reading is None or line.analyte is None:
            return None
        anchor = Anchor(
            _ANALYTE_KEY[line.analyte],
            line.reading.value,
            line.entry.result_id,
            line.reading.derived,
        )
        lines[name] = (anchor, line.grade)
    return lines
