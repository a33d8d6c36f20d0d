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
   baselines but cannot change a grade: it emits no page about the past.
3. The evaluated grade is compared with the condition's episode: 0/unknown to >= 1 is ``new``,
   a rise ``worsened``, a fall that stays >= 1 ``improved``, back to 0 ``resolved``; an
   unchanged or unknown grade emits nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, model_validator

from monitor.clinical.alert import (
    Alert,
    Event,
    LineValue,
    LlnSource,
    make_alert_id,
    make_dedup_key,
    severity_of,
)
from monitor.clinical.analytes import (
    CONDITION_OF,
    DEFAULT_LLN,
    DISPLAY_NAME,
    PANCYTOPENIA_LINES,
    Analyte,
    Condition,
    Sex,
)
from monitor.clinical.context import (
    FEBRILE_ANC_BELOW,
    FEBRILE_NEUTROPENIA_GRADE,
    Treatment,
    VitalSign,
    has_fever,
)
from monitor.clinical.delta import DELTA_LIMITS, specimen_suspect
from monitor.clinical.grading import CTCAE, CtcaeVersion, GradeScale, grade_with_scale
from monitor.clinical.history import (
    STATUS_RANK,
    Entry,
    Episode,
    PatientState,
    Reading,
    entry_from_result,
    merge_part,
)
from monitor.clinical.model import CBCResult
from monitor.clinical.units import CANONICAL_UNIT, from_canonical, to_canonical

DAY_S = 86_400.0
HOUR_S = 3_600.0

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


@dataclass(frozen=True, slots=True)
class _Graded:
    """A condition's grade as evaluated from one result (or, for pancytopenia, three lines)."""

    grade: int
    entry: Entry
    analyte: Analyte | None
    reading: Reading | None
    lln: float | None  # canonical
    lln_source: LlnSource | None
    lines: dict[str, _Graded] | None = None
    temperature: float | None = None


class Trigger(NamedTuple):
    """What an alert answers to: the message that caused it, and the result it is about."""

    patient_id: str
    source_id: str  # result id, or the vital sign's observation id
    result_id: str
    collected_at: datetime


_CONDITION_ANALYTES: dict[Condition, frozenset[Analyte]] = {
    Condition.ANEMIA: frozenset({Analyte.HEMOGLOBIN, Analyte.RBC}),
    Condition.LEUKOPENIA: frozenset({Analyte.WBC}),
    Condition.NEUTROPENIA: frozenset({Analyte.NEUTROPHILS}),
    Condition.LYMPHOPENIA: frozenset({Analyte.LYMPHOCYTES}),
    Condition.THROMBOCYTOPENIA: frozenset({Analyte.PLATELETS}),
    Condition.PANCYTOPENIA: frozenset(
        {Analyte.HEMOGLOBIN, Analyte.RBC, Analyte.WBC, Analyte.PLATELETS}
    ),
    Condition.FEBRILE_NEUTROPENIA: frozenset({Analyte.NEUTROPHILS}),
}
# What a transfusion is expected to raise within a day (CLINICAL.md s.4, delta checks).
_TRANSFUSION_RAISES: dict[str, frozenset[Analyte]] = {
    "rbc_transfusion": frozenset({Analyte.HEMOGLOBIN, Analyte.MCV}),
    "platelet_transfusion": frozenset({Analyte.PLATELETS}),
}
_TEMPERATURES_KEPT_S = 7 * DAY_S
_ANALYTE_OF: dict[Condition, Analyte] = {c: a for a, c in CONDITION_OF.items()}
_LINES: tuple[tuple[str, frozenset[Analyte]], ...] = tuple(
    zip(
        ("red", "white", "platelets"), (frozenset(line) for line in PANCYTOPENIA_LINES), strict=True
    )
)
_PANCY_ANALYTES = _CONDITION_ANALYTES[Condition.PANCYTOPENIA]


class Detector:
    def __init__(self, settings: DetectorSettings | None = None) -> None:
        self.settings = settings or DetectorSettings()
        self._scales: dict[Analyte, GradeScale | None] = CTCAE[self.settings.ctcae_version]
        self._max_age_s = self.settings.history_max_days * DAY_S
        self._pancy_window_s = self.settings.pancytopenia_window_hours * HOUR_S
        self._delta_window_s = self.settings.delta_window_hours * HOUR_S
        self._febrile_window_s = self.settings.febrile_window_hours * HOUR_S
        self._transfusion_s = self.settings.transfusion_explains_hours * HOUR_S
        # Grades of (result id, analyte) within one call: pancytopenia re-reads the lines the
        # single-analyte conditions just graded. Cleared on every call, so never stale.
        self._memo: dict[tuple[str, Analyte], _Graded | None] = {}

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
        self._memo.clear()
        entry = entry_from_result(result, content_hash)
        touched = set(entry.readings)
        index = state.find(entry.result_id)
        if index is not None:
            previous = state.history[index]
            if previous.fingerprint == entry.fingerprint:
                return Outcome(state, (), "duplicate")
            if STATUS_RANK[entry.status] < STATUS_RANK[previous.status]:
                return Outcome(state, (), "stale")
            if result.partial:
                entry = merge_part(previous, entry)
                if (entry.readings, entry.status) == (previous.readings, previous.status):
                    return Outcome(state, (), "duplicate")  # a part already merged in
            del state.history[index]
            touched = set(entry.readings) | set(previous.readings)
        self._update_context(state, result, entry)
        state.insert(entry)
        state.prune(self._max_age_s, self.settings.history_max_results)
        if not entry.alertable or state.find(entry.result_id) is None:
            return Outcome(state, (), "accepted")

        emitted_at = now or datetime.now(UTC)
        suspect: str | None = None
        suspect_checked = False
        alerts: list[Alert] = []
        for condition in Condition:
            if not (_CONDITION_ANALYTES[condition] & touched):
                continue
            graded = self._evaluate(state, condition)
            if graded is None:
                continue
            if not suspect_checked:
                suspect = specimen_suspect(
                    entry,
                    state.history,
                    self._delta_window_s,
                    self.settings.delta_limits,
                    self._explained_rises(state, entry),
                )
                suspect_checked = True
            trigger = Trigger(
                result.patient_id, entry.result_id, entry.result_id, result.collected_at
            )
            alert = self._transition(state, condition, graded, trigger, entry, emitted_at, suspect)
            if alert is not None:
                alerts.append(alert)
        return Outcome(state, tuple(alerts), "accepted")

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
        self._memo.clear()
        graded = self._evaluate(state, Condition.FEBRILE_NEUTROPENIA)
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
        self._memo.clear()
        for condition in Condition:
            graded = self._evaluate(state, condition)
            grades[condition] = graded.grade if graded is not None else None
        return grades

    # --- evaluation -----------------------------------------------------------------------

    def _evaluate(self, state: PatientState, condition: Condition) -> _Graded | None:
        if condition is Condition.PANCYTOPENIA:
            return self._evaluate_pancytopenia(state)
        if condition is Condition.FEBRILE_NEUTROPENIA:
            return self._evaluate_febrile_neutropenia(state)
        analytes = _CONDITION_ANALYTES[condition]
        for entry in reversed(state.history):
            if entry.alertable and not analytes.isdisjoint(entry.readings):
                if condition is Condition.ANEMIA:
                    return self._grade_red_line(state, entry)
                return self._grade_reading(state, entry, _ANALYTE_OF[condition])
        return None

    def _evaluate_febrile_neutropenia(self, state: PatientState) -> _Graded | None:
        """On the latest ANC: below 1.0 with a fever close in time is grade 3, else none."""
        for entry in reversed(state.history):
            reading = entry.readings.get(Analyte.NEUTROPHILS)
            if reading is None or not entry.alertable:
                continue
            if reading.value >= FEBRILE_ANC_BELOW:
                return _Graded(0, entry, Analyte.NEUTROPHILS, reading, None, None)
            near = [
                (at, celsius)
                for at, celsius, _ in state.temperatures
                if abs(at - entry.collected_at) <= self._febrile_window_s
            ]
            fever = has_fever(near)
            grade_ = FEBRILE_NEUTROPENIA_GRADE if fever is not None else 0
            return _Graded(
                grade_, entry, Analyte.NEUTROPHILS, reading, None, None, temperature=fever
            )
        return None

    def _explained_rises(self, state: PatientState, entry: Entry) -> frozenset[Analyte]:
        """Analytes a transfusion shortly before this specimen is expected to have raised."""
        explained: set[Analyte] = set()
        for given_at, kind, _ in state.doses:
            if 0 <= entry.collected_at - given_at <= self._transfusion_s:
                explained |= _TRANSFUSION_RAISES.get(kind, frozenset())
        return frozenset(explained)

    def _evaluate_pancytopenia(self, state: PatientState) -> _Graded | None:
        """Pancytopenia as of the latest window in which all three lines can be judged.

        A window ends at a result carrying a line and reaches back ``pancytopenia_window_hours``;
        each line is judged on its latest value inside it. When the newest window lacks a line
        (partial panels), the latest earlier window that has all three decides, so the answer
        depends on the history alone, never on the order the results arrived in.
        """
        history = state.history
        for anchor in range(len(history) - 1, -1, -1):
            entry = history[anchor]
            if entry.alertable and not _PANCY_ANALYTES.isdisjoint(entry.readings):
                graded = self._pancytopenia_window(state, anchor)
                if graded is not None:
                    return graded
        return None

    def _pancytopenia_window(self, state: PatientState, anchor: int) -> _Graded | None:
        history = state.history
        window_start = history[anchor].collected_at - self._pancy_window_s
        found: dict[str, _Graded | None] = {}
        for i in range(anchor, -1, -1):
            entry = history[i]
            if entry.collected_at < window_start:
                break
            if not entry.alertable:
                continue
            for name, line in _LINES:
                if name in found or line.isdisjoint(entry.readings):
                    continue
                if name == "red":
                    found[name] = self._grade_red_line(state, entry)
                else:
                    found[name] = self._grade_reading(state, entry, next(iter(line)))
            if len(found) == len(_LINES):
                break
        known = {name: g for name, g in found.items() if g is not None}
        grades = [g.grade for g in known.values()]
        if not grades or (min(grades) >= 1 and len(known) < len(_LINES)):
            return None  # a line is missing from the window: cannot tell
        # All three lines low: the worst of the three grades; any line normal: grade 0.
        return _Graded(
            grade=max(grades) if min(grades) >= 1 else 0,
            entry=max((g.entry for g in known.values()), key=lambda e: e.sort_key),
            analyte=None,
            reading=None,
            lln=None,
            lln_source=None,
            lines=known,
        )

    def _grade_red_line(self, state: PatientState, entry: Entry) -> _Graded | None:
        if Analyte.HEMOGLOBIN in entry.readings:
            return self._grade_reading(state, entry, Analyte.HEMOGLOBIN)
        # No hemoglobin sent: anemia is a red cell count below its limit (grade 1), else none.
        reading = entry.readings[Analyte.RBC]
        lln, source = self._lln(state, entry, Analyte.RBC, reading)
        if lln is None:
            return None
        grade_ = 1 if reading.value < lln else 0
        return _Graded(grade_, entry, Analyte.RBC, reading, lln, source)

    def _grade_reading(self, state: PatientState, entry: Entry, analyte: Analyte) -> _Graded | None:
        key = (entry.result_id, analyte)
        if key in self._memo:
            return self._memo[key]
        graded = self._grade_reading_uncached(state, entry, analyte)
        self._memo[key] = graded
        return graded

    def _grade_reading_uncached(
        self, state: PatientState, entry: Entry, analyte: Analyte
    ) -> _Graded | None:
        scale = self._scales.get(analyte)
        reading = entry.readings.get(analyte)
        if scale is None or reading is None:
            return None
        lln, source = self._lln(state, entry, analyte, reading)
        lln_in_unit: float | None = None
        if lln is not None:
            lln_in_unit = (
                reading.lln if source == "lab" else from_canonical(analyte, lln, reading.unit)
            )
        grade_ = grade_with_scale(scale, analyte, reading.raw, reading.unit, lln_in_unit)
        if grade_ is None:
            return None
        return _Graded(grade_, entry, analyte, reading, lln, source)

    def _lln(
        self, state: PatientState, entry: Entry, analyte: Analyte, reading: Reading
    ) -> tuple[float | None, LlnSource | None]:
        """The lower limit that applies, canonical: patient override, then lab, then default."""
        override = state.lln_overrides.get(analyte)
        if override is not None:
            return override, "patient"
        if reading.lln is not None:
            return to_canonical(analyte, reading.lln, reading.unit), "lab"
        limits = self.settings.default_lln.get(analyte)
        if limits is None:
            return None, None
        sex = entry.sex or _known_sex(state)
        if sex == Sex.MALE:
            return limits[Sex.MALE], "default-male"
        if sex == Sex.FEMALE:
            return limits[Sex.FEMALE], "default-female"
        # Unknown sex: the lower of the two limits, and the alert says so.
        return min(limits.values()), "default-unknown-sex"

    # --- transitions and alerts -------------------------------------------------------------

    def _transition(
        self,
        state: PatientState,
        condition: Condition,
        graded: _Graded,
        trigger: Trigger,
        entry: Entry,
        emitted_at: datetime,
        suspect: str | None,
    ) -> Alert | None:
        episode = state.episodes.get(condition.value)
        current = episode.grade if episode is not None else 0
        new = graded.grade
        if new == current:
            return None
        event: Event
        if current == 0:
            event = "new"
            number = (episode.number if episode is not None else 0) + 1
            episode = Episode(
                grade=new,
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
            event = "worsened" if new > current else ("improved" if new >= 1 else "resolved")
            previous_changed_at = episode.changed_at
            episode.grade = new
            episode.changed_at = entry.collected_at
        return self._alert(
            state, condition, event, graded, current, episode, previous_changed_at,
            trigger, entry, emitted_at, suspect,
        )  # fmt: skip

    def _alert(
        self,
        state: PatientState,
        condition: Condition,
        event: Event,
        graded: _Graded,
        previous_grade: int,
        episode: Episode,
        previous_changed_at: float,
        trigger: Trigger,
        entry: Entry,
        emitted_at: datetime,
        suspect: str | None,
    ) -> Alert:
        version = self.settings.ctcae_version
        value = unit = baseline = change = None
        if graded.reading is not None and graded.analyte is not None:
            value = graded.reading.value
            unit = CANONICAL_UNIT[graded.analyte]
            baseline = self._baseline(state, graded.entry, graded.analyte)
            if baseline is not None:
                change = round(value - baseline, 6)
        days, in_nadir = self._chemo_context(state, entry)
        reported_grade = graded.grade if event != "resolved" else 0
        return Alert(
            alert_id=make_alert_id(episode.dedup_key, event, reported_grade, trigger.source_id),
            dedup_key=episode.dedup_key,
            event=event,
            condition=condition.value,
            grade=reported_grade,
            previous_grade=previous_grade,
            severity=severity_of(event, max(reported_grade, 1)),
            page=event in ("new", "worsened") and reported_grade >= self.settings.page_grade,
            ctcae_version=version,
            patient_id=trigger.patient_id,
            result_id=trigger.result_id,
            collected_at=trigger.collected_at,
            emitted_at=emitted_at,
            value=value,
            unit=unit,
            lln=graded.lln,
            lln_source=graded.lln_source,
            derived=graded.reading.derived if graded.reading is not None else False,
            baseline=baseline,
            change_from_baseline=change,
            days_since_chemo=days,
            in_nadir_window=in_nadir,
            specimen_suspect=suspect,
            ward=state.ward,
            temperature_c=graded.temperature,
            components=(
                {name: _line_value(g) for name, g in graded.lines.items()}
                if graded.lines is not None
                else None
            ),
            summary=self._summary(
                condition, event, graded, previous_grade, previous_changed_at, days, in_nadir,
                suspect,
            ),
        )  # fmt: skip

    def _baseline(self, state: PatientState, entry: Entry, analyte: Analyte) -> float | None:
        """The patient's last normal value of ``analyte`` before ``entry`` (canonical unit)."""
        for previous in reversed(state.history):
            if previous.sort_key >= entry.sort_key or not previous.alertable:
                continue
            reading = previous.readings.get(analyte)
            if reading is None:
                continue
            lln, _ = self._lln(state, previous, analyte, reading)
            if lln is not None and reading.value >= lln:
                return reading.value
        return None

    def _chemo_context(self, state: PatientState, entry: Entry) -> tuple[int | None, bool | None]:
        """Days from the last chemotherapy dose before this specimen, and whether in the nadir."""
        known = [entry.last_chemo_at, state.last_chemo_at]
        known += [at for at, kind, _ in state.doses if kind == "chemotherapy"]
        before = [at for at in known if at is not None and at <= entry.collected_at]
        if not before:
            return None, None
        dose_at = max(before)
        days = int((entry.collected_at - dose_at) // DAY_S)
        first, last = self.settings.nadir_window_days
        return days, first <= days <= last

    def _summary(
        self,
        condition: Condition,
        event: Event,
        graded: _Graded,
        previous_grade: int,
        previous_changed_at: float,
        days: int | None,
        in_nadir: bool | None,
        suspect: str | None,
    ) -> str:
        if graded.lines is not None:
            values = ", ".join(
                _format_value(line.analyte, line.reading.value, derived=False)
                for line in graded.lines.values()
                if line.analyte is not None and line.reading is not None
            )
        elif graded.reading is not None and graded.analyte is not None:
            values = _format_value(graded.analyte, graded.reading.value, graded.reading.derived)
            if graded.temperature is not None:
                values += f", temperature {graded.temperature:.1f} C"
        else:
            values = "latest counts"
        since = datetime.fromtimestamp(previous_changed_at, UTC).date().isoformat()
        version = f"CTCAE v{self.settings.ctcae_version}"
        name = condition.value.replace("_", " ")
        finding = f"{values}: grade {graded.grade} {name} ({version})"
        if event == "new":
            text = f"{finding}, new"
        elif event == "worsened":
            text = f"{finding}, worse than grade {previous_grade} on {since}"
        elif event == "improved":
            text = f"{finding}, better than grade {previous_grade} on {since}"
        else:
            text = f"{values}: {name} resolved (was grade {previous_grade} since {since})"
        if days is not None:
            text += f"; day {days} after chemotherapy" + (" (nadir window)" if in_nadir else "")
        if suspect is not None:
            text += f"; specimen suspect: {suspect}"
        return text

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


def _known_sex(state: PatientState) -> str | None:
    for entry in reversed(state.history):
        if entry.sex is not None:
            return entry.sex
    return None


def _format_value(analyte: Analyte, value: float, derived: bool) -> str:
    unit = CANONICAL_UNIT[analyte].replace("10^", "x10^")
    text = f"{DISPLAY_NAME[analyte]} {value:g} {unit}"
    return text + " (derived from WBC and differential)" if derived else text


def _line_value(graded: _Graded) -> LineValue:
    assert graded.analyte is not None
    assert graded.reading is not None
    return LineValue(
        analyte=graded.analyte.value,
        value=graded.reading.value,
        unit=CANONICAL_UNIT[graded.analyte],
        grade=graded.grade,
        lln=graded.lln,
        lln_source=graded.lln_source,
        result_id=graded.entry.result_id,
        collected_at=datetime.fromtimestamp(graded.entry.collected_at, UTC),
    )
