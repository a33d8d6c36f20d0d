"""The alert for an episode transition: its figures, its context and its one-line summary.

Pure: no I/O, no clock (the caller passes ``emitted_at``). From a transition and the graded
result behind it, the alert gets the value in canonical units, the lower limit and its source,
the patient's baseline and the change from it, the days since chemotherapy and whether that
falls in the nadir window, the pancytopenia lines, whether it pages, and a summary sentence.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from monitor.clinical.alert import CLOSING_EVENTS, Alert, LineValue, make_alert_id, severity_of
from monitor.clinical.analytes import DISPLAY_NAME, Analyte, Condition, Sex
from monitor.clinical.episodes import Transition, Trigger, pages
from monitor.clinical.evaluation import DAY_S, Graded, baseline_of
from monitor.clinical.grading import CtcaeVersion
from monitor.clinical.history import Entry, PatientState
from monitor.clinical.units import CANONICAL_UNIT


class AlertWriter:
    """Writes alerts with the configured CTCAE version, paging grade, nadir window and limits."""

    def __init__(
        self,
        *,
        ctcae_version: CtcaeVersion,
        page_grade: int,
        nadir_window_days: tuple[int, int],
        default_lln: Mapping[Analyte, Mapping[Sex, float]],
        hysteresis: bool = False,
    ) -> None:
        self._hysteresis = hysteresis
        self._ctcae_version = ctcae_version
        self._page_grade = page_grade
        self._nadir_window_days = nadir_window_days
        self._default_lln = default_lln

    def alert(
        self,
        state: PatientState,
        condition: Condition,
        transition: Transition,
        graded: Graded,
        trigger: Trigger,
        entry: Entry,
        emitted_at: datetime,
        suspect: str | None,
    ) -> Alert:
        event, previous_grade, episode = (
            transition.event,
            transition.previous_grade,
            transition.episode,
        )
        version = self._ctcae_version
        value = unit = baseline = change = None
        if graded.reading is not None and graded.analyte is not None:
            value = graded.reading.value
            unit = CANONICAL_UNIT[graded.analyte]
            baseline = baseline_of(state, graded.entry, graded.analyte, self._default_lln)
            if baseline is not None:
                change = round(value - baseline, 6)
        days, in_nadir = self._chemo_context(state, entry)
        reported_grade = graded.grade if event not in CLOSING_EVENTS else 0
        gate = transition.gate
        return Alert(
            alert_id=make_alert_id(episode.dedup_key, event, reported_grade, trigger.source_id),
            dedup_key=episode.dedup_key,
            event=event,
            condition=_CONDITION_KEY[condition],
            grade=reported_grade,
            previous_grade=previous_grade,
            severity=severity_of(event, max(reported_grade, 1)),
            page=pages(event, reported_grade, self._page_grade),
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
            hysteresis=self._hysteresis,
            why=gate.why if gate is not None else None,
            compared_with=gate.compared_with if gate is not None else None,
            change=gate.change if gate is not None else None,
            rcv=gate.rcv if gate is not None else None,
            rcv_exceeded=gate.rcv_exceeded if gate is not None else None,
            summary=self._summary(
                condition, transition, graded, days, in_nadir, suspect, entry.status
            ),
        )

    def _chemo_context(self, state: PatientState, entry: Entry) -> tuple[int | None, bool | None]:
        """Days from the last chemotherapy dose before this specimen, and whether in the nadir."""
        collected_at = entry.collected_at
        dose_at: float | None = None  # the latest dose at or before the specimen
        for at in (entry.last_chemo_at, state.last_chemo_at):
            if at is not None and at <= collected_at and (dose_at is None or at > dose_at):
                dose_at = at
        for at, kind, _ in state.doses:
            if kind == "chemotherapy" and at <= collected_at and (dose_at is None or at > dose_at):
                dose_at = at
        if dose_at is None:
            return None, None
        days = int((collected_at - dose_at) // DAY_S)
        first, last = self._nadir_window_days
        return days, first <= days <= last

    def _summary(
        self,
        condition: Condition,
        transition: Transition,
        graded: Graded,
        days: int | None,
        in_nadir: bool | None,
        suspect: str | None,
        status: str,
    ) -> str:
        event, previous_grade = transition.event, transition.previous_grade
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
        version = f"CTCAE v{self._ctcae_version}"
        name = _CONDITION_NAME[condition]
        finding = f"{values}: grade {graded.grade} {name} ({version})"
        if event == "new":
            text = f"{finding}, new"
        else:
            # When the grade before was set: a new episode's summary does not say it.
            since = _date_of(transition.previous_changed_at)
            if event == "worsened":
                text = f"{finding}, worse than grade {previous_grade} on {since}"
            elif event == "improved":
                text = f"{finding}, better than grade {previous_grade} on {since}"
            elif event == "retracted":
                basis = f"{values}: " if graded.reading is not None or graded.lines else ""
                text = (
                    f"{basis}{name} closed: the result it stood on was retracted by the lab "
                    f"(was grade {previous_grade} since {since})"
                )
            else:
                text = f"{values}: {name} resolved (was grade {previous_grade} since {since})"
        gate = transition.gate
        if gate is not None and gate.why == "beyond-rcv" and gate.change is not None:
            assert gate.rcv is not None
            text += (
                f"; {gate.change:+.0%} from {gate.compared_with:g}, beyond the "
                f"{gate.rcv:+.0%} reference change value"
            )
        if status == "corrected" and event != "retracted":
            text += "; corrected result"
        if days is not None:
            text += f"; day {days} after chemotherapy" + (" (nadir window)" if in_nadir else "")
        if suspect is not None:
            text += f"; specimen suspect: {suspect}"
        return text


def _date_of(timestamp: float) -> str:
    """The UTC date of ``timestamp`` (seconds since the epoch), ISO 8601."""
    return datetime.fromtimestamp(timestamp, UTC).date().isoformat()


def _format_value(analyte: Analyte, value: float, derived: bool) -> str:
    text = f"{DISPLAY_NAME[analyte]} {value:g} {_DISPLAY_UNIT[analyte]}"
    return text + " (derived from WBC and differential)" if derived else text


def _line_value(graded: Graded) -> LineValue:
    assert graded.analyte is not None
    assert graded.reading is not None
    return LineValue(
        analyte=_ANALYTE_KEY[graded.analyte],
        value=graded.reading.value,
        unit=CANONICAL_UNIT[graded.analyte],
        grade=graded.grade,
        lln=graded.lln,
        lln_source=graded.lln_source,
        result_id=graded.entry.result_id,
        collected_at=datetime.fromtimestamp(graded.entry.collected_at, UTC),
    )


# Enum .value is a Python-level property: these are read for every alert.
_CONDITION_KEY: dict[Condition, str] = {c: c.value for c in Condition}
_CONDITION_NAME: dict[Condition, str] = {c: c.value.replace("_", " ") for c in Condition}
_ANALYTE_KEY: dict[Analyte, str] = {a: a.value for a in Analyte}
_DISPLAY_UNIT: dict[Analyte, str] = {a: u.replace("10^", "x10^") for a, u in CANONICAL_UNIT.items()}
