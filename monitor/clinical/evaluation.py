"""Condition evaluation: the grade a patient's history supports for each condition right now.

Pure: no I/O, no clock. A single-analyte condition is graded on the latest alertable result
carrying its analyte, against the lower limit of normal (LLN) that applies and where that limit
came from (patient override, lab, or the sex-specific default); anemia falls back from
hemoglobin to the red cell count. Pancytopenia is judged on the latest value of each cell line
within a window; febrile neutropenia is a low absolute neutrophil count (ANC) with a fever close
in time. Also here: which rises a recent transfusion explains (for the delta check), and the
patient's baseline (last normal value) of an analyte.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from monitor.clinical.alert import LlnSource
from monitor.clinical.analytes import CONDITION_OF, PANCYTOPENIA_LINES, Analyte, Condition, Sex
from monitor.clinical.context import FEBRILE_ANC_BELOW, FEBRILE_NEUTROPENIA_GRADE, has_fever
from monitor.clinical.grading import CTCAE, CtcaeVersion, GradeScale, grade_with_scale
from monitor.clinical.history import Entry, PatientState, Reading
from monitor.clinical.units import from_canonical, to_canonical

DAY_S = 86_400.0
HOUR_S = 3_600.0


class Graded(NamedTuple):
    """A condition's grade as evaluated from one result (or, for pancytopenia, three lines).

    A tuple, like ``Entry``: several are built for every result, and a frozen dataclass costs
    several times more to build."""

    grade: int
    entry: Entry
    analyte: Analyte | None
    reading: Reading | None
    lln: float | None  # canonical
    lln_source: LlnSource | None
    lines: dict[str, Graded] | None = None
    temperature: float | None = None


CONDITION_ANALYTES: dict[Condition, frozenset[Analyte]] = {
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
_ANALYTE_OF: dict[Condition, Analyte] = {c: a for a, c in CONDITION_OF.items()}
# Pancytopenia's lines: name, analytes, and the one analyte graded (None: the red line, graded
# on hemoglobin, else the red cell count).
_LINES: tuple[tuple[str, frozenset[Analyte], Analyte | None], ...] = tuple(
    (name, frozenset(line), line[0] if len(line) == 1 else None)
    for name, line in zip(("red", "white", "platelets"), PANCYTOPENIA_LINES, strict=True)
)
_PANCYTOPENIA = Condition.PANCYTOPENIA
_FEBRILE_NEUTROPENIA = Condition.FEBRILE_NEUTROPENIA
_ANEMIA = Condition.ANEMIA
_MALE, _FEMALE = Sex.MALE, Sex.FEMALE
_PANCY_ANALYTES = CONDITION_ANALYTES[Condition.PANCYTOPENIA]
# ``Entry.alertable`` compared inline in the loops over a history (a property call per entry).
_PRELIMINARY = "preliminary"
_GRADES_KEPT = 8192
_UNSEEN = Graded(0, None, None, None, None, None)  # type: ignore[arg-type]  # a memo miss
# tuple.__new__ builds a Graded without the Python-level __new__ of a NamedTuple; every field
# is given, in order.
_new = tuple.__new__


class Evaluator:
    """Grades conditions on a patient's history, with the configured scales, limits and windows.

    Grades of (result id, analyte) are memoised within one message: pancytopenia re-reads the
    lines the single-analyte conditions just graded. Call ``forget`` at the start of every
    message, so the memo is never stale.
    """

    def __init__(
        self,
        *,
        ctcae_version: CtcaeVersion,
        default_lln: Mapping[Analyte, Mapping[Sex, float]],
        pancytopenia_window_hours: float,
        febrile_window_hours: float,
        transfusion_explains_hours: float,
    ) -> None:
        self._scales: dict[Analyte, GradeScale | None] = CTCAE[ctcae_version]
        self._default_lln = default_lln
        self._pancy_window_s = pancytopenia_window_hours * HOUR_S
        self._febrile_window_s = febrile_window_hours * HOUR_S
        self._transfusion_s = transfusion_explains_hours * HOUR_S
        self._memo: dict[tuple[str, Analyte], Graded | None] = {}
        # grade_with_scale's answers by (analyte, value, unit, lln), each with the scale it was
        # graded on: keyed on its full input, so never stale; a lab sends the same few values
        # again and again. Emptied when it holds ``_GRADES_KEPT``.
        self._grades: dict[
            tuple[Analyte, float, str, float | None], tuple[GradeScale, int | None]
        ] = {}
        # The default limit (canonical, its source, in the unit) by (analyte, sex, unit): a
        # function of those and ``default_lln`` alone. At most one entry per unit string a lab
        # sent, emptied like ``_grades``.
        self._defaults: dict[
            tuple[Analyte, str | None, str],
            tuple[float | None, LlnSource | None, float | None],
        ] = {}

    def forget(self) -> None:
        """Drop the grades memoised for the previous message."""
        self._memo.clear()

    def evaluate(self, state: PatientState, condition: Condition) -> Graded | None:
        """The grade ``condition`` has on the history as it stands (None: it cannot be told)."""
        if condition is _PANCYTOPENIA:
            return self._evaluate_pancytopenia(state)
        if condition is _FEBRILE_NEUTROPENIA:
            return self._evaluate_febrile_neutropenia(state)
        analytes = CONDITION_ANALYTES[condition]
        for entry in reversed(state.history):
            if entry.status != _PRELIMINARY and not analytes.isdisjoint(entry.readings):
                if condition is _ANEMIA:
                    return self._grade_red_line(state, entry)
                return self._grade_reading(state, entry, _ANALYTE_OF[condition])
        return None

    def _evaluate_febrile_neutropenia(self, state: PatientState) -> Graded | None:
        """On the latest ANC: below 1.0 with a fever close in time is grade 3, else none."""
        for entry in reversed(state.history):
            reading = entry.readings.get(Analyte.NEUTROPHILS)
            if reading is None or entry.status == _PRELIMINARY:
                continue
            if reading.value >= FEBRILE_ANC_BELOW:
                return Graded(0, entry, Analyte.NEUTROPHILS, reading, None, None)
            near = [
                (at, celsius)
                for at, celsius, _ in state.temperatures
                if abs(at - entry.collected_at) <= self._febrile_window_s
            ]
            fever = has_fever(near)
            grade_ = FEBRILE_NEUTROPENIA_GRADE if fever is not None else 0
            return Graded(
                grade_, entry, Analyte.NEUTROPHILS, reading, None, None, temperature=fever
            )
        return None

    def explained_rises(self, state: PatientState, entry: Entry) -> frozenset[Analyte]:
        """Analytes a transfusion shortly before this specimen is expected to have raised."""
        explained: set[Analyte] = set()
        for given_at, kind, _ in state.doses:
            if 0 <= entry.collected_at - given_at <= self._transfusion_s:
                explained |= _TRANSFUSION_RAISES.get(kind, frozenset())
        return frozenset(explained)

    def _evaluate_pancytopenia(self, state: PatientState) -> Graded | None:
        """Pancytopenia as of the latest window in which all three lines can be judged.

        A window ends at a result carrying a line and reaches back ``pancytopenia_window_hours``;
        each line is judged on its latest value inside it. When the newest window lacks a line
        (partial panels), the latest earlier window that has all three decides, so the answer
        depends on the history alone, never on the order the results arrived in.
        """
        history = state.history
        for anchor in range(len(history) - 1, -1, -1):
            entry = history[anchor]
            if entry.status != _PRELIMINARY and not _PANCY_ANALYTES.isdisjoint(entry.readings):
                graded = self._pancytopenia_window(state, anchor)
                if graded is not None:
                    return graded
        return None

    def _pancytopenia_window(self, state: PatientState, anchor: int) -> Graded | None:
        history = state.history
        window_start = history[anchor].collected_at - self._pancy_window_s
        found: dict[str, Graded | None] = {}
        for i in range(anchor, -1, -1):
            entry = history[i]
            if entry.collected_at < window_start:
                break
            if entry.status == _PRELIMINARY:
                continue
            readings = entry.readings
            for name, line, analyte in _LINES:
                if name in found or line.isdisjoint(readings):
                    continue
                if analyte is None:
                    found[name] = self._grade_red_line(state, entry)
                else:
                    found[name] = self._grade_reading(state, entry, analyte)
            if len(found) == len(_LINES):
                break
        known: dict[str, Graded] = {}
        latest: Entry | None = None  # the newest entry a line was judged on
        low = 0  # lines below their limit
        worst = 0
        for name, g in found.items():
            if g is None:
                continue
            known[name] = g
            if latest is None or (g.entry is not latest and _later(g.entry, latest)):
                latest = g.entry
            if g.grade >= 1:
                low += 1
                worst = max(worst, g.grade)
        if latest is None or (low == len(known) and len(known) < len(_LINES)):
            return None  # a line is missing from the window: cannot tell
        # All three lines low: the worst of the three grades; any line normal: grade 0.
        return Graded(worst if low == len(known) else 0, latest, None, None, None, None, known)

    def _grade_red_line(self, state: PatientState, entry: Entry) -> Graded | None:
        if Analyte.HEMOGLOBIN in entry.readings:
            return self._grade_reading(state, entry, Analyte.HEMOGLOBIN)
        # No hemoglobin sent: anemia is a red cell count below its limit (grade 1), else none.
        reading = entry.readings[Analyte.RBC]
        lln, source = lower_limit(state, entry, Analyte.RBC, reading, self._default_lln)
        if lln is None:
            return None
        grade_ = 1 if reading.value < lln else 0
        return Graded(grade_, entry, Analyte.RBC, reading, lln, source)

    def _grade_reading(self, state: PatientState, entry: Entry, analyte: Analyte) -> Graded | None:
        """``analyte``'s grade in ``entry`` (memoised for this message: see ``forget``)."""
        key = (entry.result_id, analyte)
        memo = self._memo
        graded = memo.get(key, _UNSEEN)
        if graded is not _UNSEEN:
            return graded
        graded = None
        scale = self._scales.get(analyte)
        reading = entry.readings.get(analyte)
        if scale is not None and reading is not None:
            # reading_grade, inlined: this runs for every graded reading of every result.
            unit = reading.unit
            lln_in_unit = reading.lln
            lln: float | None
            source: LlnSource | None
            if analyte in state.lln_overrides:
                lln, source = lower_limit(state, entry, analyte, reading, self._default_lln)
                if lln is None:
                    lln_in_unit = None
                elif source != "lab":
                    lln_in_unit = from_canonical(analyte, lln, unit)
            elif lln_in_unit is not None:
                # The lab's limit (lower_limit's second case, the usual one).
                lln, source = to_canonical(analyte, lln_in_unit, unit), "lab"
            else:
                # The default limit for the patient's sex (lower_limit's last cases), in the
                # reading's unit, as found before for this analyte, sex and unit.
                sex = entry.sex or _known_sex(state)
                defaults = self._defaults
                known_default = defaults.get((analyte, sex, unit))
                if known_default is None:
                    if len(defaults) >= _GRADES_KEPT:
                        defaults.clear()
                    lln, source = lower_limit(state, entry, analyte, reading, self._default_lln)
                    if lln is not None:
                        lln_in_unit = from_canonical(analyte, lln, unit)
                    defaults[(analyte, sex, unit)] = (lln, source, lln_in_unit)
                else:
                    lln, source, lln_in_unit = known_default
            # The grade of these four figures on this scale, as computed before (the scale is
            # kept with it and compared, so a table changed since is never answered from here).
            grades = self._grades
            figures = (analyte, reading.raw, unit, lln_in_unit)
            known = grades.get(figures)
            if known is not None and known[0] is scale:
                grade_ = known[1]
            else:
                if len(grades) >= _GRADES_KEPT:
                    grades.clear()
                grade_ = grade_with_scale(scale, analyte, reading.raw, unit, lln_in_unit)
                grades[figures] = (scale, grade_)
            if grade_ is not None:
                graded = _new(Graded, (grade_, entry, analyte, reading, lln, source, None, None))
        memo[key] = graded
        return graded


def reading_grade(
    scale: GradeScale,
    state: PatientState,
    entry: Entry,
    analyte: Analyte,
    reading: Reading,
    default_lln: Mapping[Analyte, Mapping[Sex, float]],
) -> tuple[int | None, float | None, LlnSource | None]:
    """One reading's CTCAE grade on ``scale`` with the lower limit that applies (``lower_limit``,
    canonical unit) and where that limit came from; the grade is None when it cannot be told
    (no limit and not low enough for grade 2 or worse)."""
    lln, source = lower_limit(state, entry, analyte, reading, default_lln)
    if lln is None:
        lln_in_unit = None
    elif source == "lab":
        lln_in_unit = reading.lln
    else:
        lln_in_unit = from_canonical(analyte, lln, reading.unit)
    return grade_with_scale(scale, analyte, reading.raw, reading.unit, lln_in_unit), lln, source


def lower_limit(
    state: PatientState,
    entry: Entry,
    analyte: Analyte,
    reading: Reading,
    default_lln: Mapping[Analyte, Mapping[Sex, float]],
) -> tuple[float | None, LlnSource | None]:
    """The lower limit that applies, canonical: patient override, then lab, then default."""
    override = state.lln_overrides.get(analyte)
    if override is not None:
        return override, "patient"
    if reading.lln is not None:
        return to_canonical(analyte, reading.lln, reading.unit), "lab"
    limits = default_lln.get(analyte)
    if limits is None:
        return None, None
    sex = entry.sex or _known_sex(state)
    if sex == _MALE:
        return limits[_MALE], "default-male"
    if sex == _FEMALE:
        return limits[_FEMALE], "default-female"
    # Unknown sex: the lower of the two limits, and the alert says so.
    return min(limits.values()), "default-unknown-sex"


def baseline_of(
    state: PatientState,
    entry: Entry,
    analyte: Analyte,
    default_lln: Mapping[Analyte, Mapping[Sex, float]],
) -> float | None:
    """The patient's last normal value of ``analyte`` before ``entry`` (canonical unit)."""
    at, result_id = entry.collected_at, entry.result_id
    overridden = analyte in state.lln_overrides
    for previous in reversed(state.history):
        # Not before ``entry`` (sort_key >= entry's, compared without building the tuples), or
        # not alertable: skipped.
        previous_at = previous.collected_at
        if (
            previous_at > at
            or (previous_at == at and previous.result_id >= result_id)
            or previous.status == _PRELIMINARY
        ):
            continue
        reading = previous.readings.get(analyte)
        if reading is None:
            continue
        lab = reading.lln
        if lab is not None and not overridden:
            lln: float | None = to_canonical(analyte, lab, reading.unit)  # lower_limit's "lab"
        else:
            lln, _ = lower_limit(state, previous, analyte, reading, default_lln)
        if lln is not None and reading.value >= lln:
            return reading.value
    return None


# The conditions graded on one pancytopenia line each, as its window grades that line.
LINE_CONDITIONS = frozenset({Condition.ANEMIA, Condition.LEUKOPENIA, Condition.THROMBOCYTOPENIA})


# The conditions ``known_zero`` can ever tell about.
ZERO_KNOWABLE = frozenset({_PANCYTOPENIA, _FEBRILE_NEUTROPENIA})


def known_zero(state: PatientState, condition: Condition, normal_line: bool) -> bool:
    """Whether ``Evaluator.evaluate`` is known to give ``condition`` grade 0 or nothing without
    evaluating it: a febrile neutropenia with no temperature recorded; a pancytopenia when
    ``normal_line`` (a ``LINE_CONDITIONS`` condition graded 0 on the newest entry of the
    history: the newest window holds that normal line)."""
    if condition is _FEBRILE_NEUTROPENIA:
        return not state.temperatures
    return normal_line and condition is _PANCYTOPENIA


def _later(entry: Entry, other: Entry) -> bool:
    """``entry.sort_key > other.sort_key`` without building the two tuples."""
    at, other_at = entry.collected_at, other.collected_at
    return at > other_at or (at == other_at and entry.result_id > other.result_id)


def _known_sex(state: PatientState) -> str | None:
    for entry in reversed(state.history):
        if entry.sex is not None:
            return entry.sex
    return None
